//! Cloud Controller's metadata validation rules, reproduced exactly.
//!
//! This module owns the rules Cloud Controller (CC) applies to the `metadata` member of a
//! request body (`app/messages/validators/metadata_validator.rb`,
//! `app/messages/metadata_validator_helper.rb`, `MetadataHelpers.extract_prefix`,
//! `DomainDecorator::DOMAIN_REGEX`) and the per-resource count limits of `LabelsUpdate` and
//! `AnnotationsUpdate`. Messages are CC's own strings, without the `Metadata ` attribute prefix
//! that `errors.full_messages` adds.
//!
//! Invariant: a request that passes here is not refused by CC for validation reasons, and a
//! request CC refuses for validation reasons is refused here, with the same messages in the same
//! order. Being stricter than CC keeps that invariant; this module is stricter where CC would
//! accept something it cannot store correctly or that only passes through a regex quirk:
//! - a key prefix ending in `"\n"` is rejected (CC's `DOMAIN_REGEX` ends in `\Z`, which lets one
//!   trailing newline through);
//! - the prefix DNS check is ASCII only (Onigmo's `/i` may also case-fold a few non-ASCII
//!   letters such as U+212A KELVIN SIGN onto `[a-z]`);
//! - an annotation whose value is non-null but blank (`""`, whitespace only; also Ruby-blank
//!   `false`, `[]`, `{}`) still gets its key checked for length (name <= 63, prefix <= 253):
//!   CC skips the key check for such values, but its `key_name varchar(63)` /
//!   `key_prefix varchar(253)` columns would refuse them.
//!
//! Non-string annotation values get no value-size message: CC calls Ruby's `.size` on them,
//! which is not a character count (and raises for `true`, `false` and floats, a 500 in CC).
//! leasehold refuses non-string values before calling this module.
//!
//! Object members are checked in iteration order. serde_json without its `preserve_order`
//! feature sorts object keys, so callers that want CC's order (the order of the request body)
//! must enable serde_json's `preserve_order` feature.

use serde_json::Value;
use std::borrow::Cow;

/// `MetadataValidatorHelper::MAX_LABEL_VALUE_SIZE`.
pub const MAX_LABEL_VALUE_SIZE: usize = 63;
/// `MetadataValidatorHelper::MAX_METADATA_KEY_SIZE` (the key name, without prefix).
pub const MAX_METADATA_KEY_SIZE: usize = 63;
/// `MetadataValidatorHelper::MAX_METADATA_PREFIX_SIZE`.
pub const MAX_METADATA_PREFIX_SIZE: usize = 253;
/// `MetadataValidator::MAX_ANNOTATION_VALUE_SIZE` (Unicode code points).
pub const MAX_ANNOTATION_VALUE_SIZE: usize = 5000;
/// `MetadataValidatorHelper::RESERVED_DOMAIN`; reserved as a prefix in any letter case.
pub const RESERVED_DOMAIN: &str = "cloudfoundry.org";

/// Validates the `metadata` member of a request body as CC's MetadataValidator does.
/// Returns every message, in CC's order, WITHOUT CC's "Metadata " attribute prefix,
/// e.g. "label key error: 'a b' contains invalid characters", "has unexpected field(s): 'foo'",
/// "must be an object", "'labels' is not an object". Empty vec = valid.
///
/// Order (as in `MetadataValidator#validate`): unexpected fields, then labels (per label: key
/// error, then value error), then annotations (per annotation: key error, then value error).
/// `labels`/`annotations` that are `null` or `false` are skipped, as CC's `if labels` does.
pub fn validate_metadata(metadata: &Value) -> Vec<String> {
    let Some(members) = metadata.as_object() else {
        return vec!["must be an object".to_string()];
    };
    let mut errors = Vec::new();

    let unexpected: Vec<String> = members
        .keys()
        .filter(|key| *key != "labels" && *key != "annotations")
        .map(|key| format!("'{key}'"))
        .collect();
    if !unexpected.is_empty() {
        errors.push(format!("has unexpected field(s): {}", unexpected.join(" ")));
    }

    if let Some(labels) = members.get("labels").filter(|v| ruby_truthy(v)) {
        validate_labels(labels, &mut errors);
    }
    if let Some(annotations) = members.get("annotations").filter(|v| ruby_truthy(v)) {
        validate_annotations(annotations, &mut errors);
    }
    errors
}

/// CC's key_error rules 1–9 for one key (label, annotation or selector key); the message without a
/// "label key error: " prefix, e.g. "key has more than one '/'". None when valid.
pub fn key_error(key: &str) -> Option<String> {
    let (prefix, name) = extract_prefix(key);
    if is_blank(key) {
        return Some("key cannot be empty string".to_string());
    }
    if key.matches('/').count() > 1 {
        return Some("key has more than one '/'".to_string());
    }
    if let Some(prefix) = prefix {
        if !is_dns_name(prefix) {
            return Some(format!("prefix '{prefix}' must be in valid dns format"));
        }
        if let Some(message) = prefix_size_error(prefix) {
            return Some(message);
        }
        if prefix.to_lowercase() == RESERVED_DOMAIN {
            return Some(format!("prefix '{RESERVED_DOMAIN}' is reserved"));
        }
    }
    if is_blank(name) {
        return Some("key cannot be empty string".to_string());
    }
    if !has_valid_characters(name) {
        return Some(format!("'{name}' contains invalid characters"));
    }
    if !starts_and_ends_alphanumeric(name) {
        return Some(format!("'{name}' starts or ends with invalid characters"));
    }
    name_size_error(name)
}

/// CC's label value rules; None when valid ("" is valid).
pub fn label_value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if !has_valid_characters(value) {
        return Some(format!("'{value}' contains invalid characters"));
    }
    if !starts_and_ends_alphanumeric(value) {
        return Some(format!("'{value}' starts or ends with invalid characters"));
    }
    if value.chars().count() > MAX_LABEL_VALUE_SIZE {
        return Some(format!(
            "'{}...' is greater than {MAX_LABEL_VALUE_SIZE} characters",
            first_8(value)
        ));
    }
    None
}

/// CC's annotation value size rule (5000 Unicode code points); None when valid.
/// The message has no "annotation value error: " prefix.
pub fn annotation_value_error(value: &str) -> Option<String> {
    (value.chars().count() > MAX_ANNOTATION_VALUE_SIZE).then(|| {
        format!(
            "'{}...' is greater than {MAX_ANNOTATION_VALUE_SIZE} characters",
            first_8(value)
        )
    })
}

/// CC's per-resource count limit (LabelsUpdate.validate_max_label_limit!): Some("Failed to add {keys_in_request} labels because it would exceed maximum of {max}")
/// only when the count grew in this request AND the final count exceeds max.
pub fn label_limit_error(
    keys_in_request: usize,
    count_before: usize,
    count_after: usize,
    max: usize,
) -> Option<String> {
    limit_error("labels", keys_in_request, count_before, count_after, max)
}

/// Same for annotations ("Failed to add N annotations because it would exceed maximum of M").
pub fn annotation_limit_error(
    keys_in_request: usize,
    count_before: usize,
    count_after: usize,
    max: usize,
) -> Option<String> {
    limit_error(
        "annotations",
        keys_in_request,
        count_before,
        count_after,
        max,
    )
}

fn limit_error(
    what: &str,
    keys_in_request: usize,
    count_before: usize,
    count_after: usize,
    max: usize,
) -> Option<String> {
    (count_before < count_after && count_after > max).then(|| {
        format!("Failed to add {keys_in_request} {what} because it would exceed maximum of {max}")
    })
}

fn validate_labels(labels: &Value, errors: &mut Vec<String>) {
    let Some(labels) = labels.as_object() else {
        errors.push("'labels' is not an object".to_string());
        return;
    };
    for (key, value) in labels {
        if let Some(message) = key_error(key) {
            errors.push(format!("label key error: {message}"));
        }
        if let Some(message) = label_value_error(&ruby_to_s(value)) {
            errors.push(format!("label value error: {message}"));
        }
    }
}

fn validate_annotations(annotations: &Value, errors: &mut Vec<String>) {
    let Some(annotations) = annotations.as_object() else {
        errors.push("'annotations' is not an object".to_string());
        return;
    };
    for (key, value) in annotations {
        let key_message = if ruby_present(value) {
            key_error(key)
        } else if value.is_null() {
            None
        } else {
            // leasehold's extra rule: CC skips the key check for blank values, but its DB
            // columns would still refuse an over-long name or prefix.
            key_length_error(key)
        };
        if let Some(message) = key_message {
            errors.push(format!("annotation key error: {message}"));
        }
        // CC calls `.size` on whatever the value is; only strings have CC's meaning of size.
        if let Some(message) = value.as_str().and_then(annotation_value_error) {
            errors.push(format!("annotation value error: {message}"));
        }
    }
}

/// Only the length rules (4 and 9) of `key_error`, in CC's order and with CC's messages.
fn key_length_error(key: &str) -> Option<String> {
    let (prefix, name) = extract_prefix(key);
    prefix
        .and_then(prefix_size_error)
        .or_else(|| name_size_error(name))
}

fn prefix_size_error(prefix: &str) -> Option<String> {
    (prefix.chars().count() > MAX_METADATA_PREFIX_SIZE).then(|| {
        format!(
            "prefix '{}...' is greater than {MAX_METADATA_PREFIX_SIZE} characters",
            first_8(prefix)
        )
    })
}

fn name_size_error(name: &str) -> Option<String> {
    (name.chars().count() > MAX_METADATA_KEY_SIZE).then(|| {
        format!(
            "'{}...' is greater than {MAX_METADATA_KEY_SIZE} characters",
            first_8(name)
        )
    })
}

/// `MetadataHelpers.extract_prefix`: Ruby's `split('/')` drops trailing empty fields, so
/// "/potato" gives prefix "", "example.com/" gives name "" and "/" gives no prefix.
fn extract_prefix(key: &str) -> (Option<&str>, &str) {
    if !key.contains('/') {
        return (None, key);
    }
    let mut fields: Vec<&str> = key.split('/').collect();
    while fields.last() == Some(&"") {
        fields.pop();
    }
    (
        fields.first().copied(),
        fields.get(1).copied().unwrap_or(""),
    )
}

/// Equivalent of `DomainDecorator::DOMAIN_REGEX` (case-insensitive): two or more dot-separated
/// labels of 1–63 ASCII letters, digits or '-', not starting or ending with '-'. Unlike the
/// regex's `\Z`, a trailing "\n" is not accepted.
fn is_dns_name(prefix: &str) -> bool {
    let labels: Vec<&str> = prefix.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Negation of `INVALID_CHAR_REGEX = /[^\w\-.]/` (Ruby's `\w` is ASCII only).
fn has_valid_characters(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// `ALPHANUMERIC_START_END_REGEX = /\A(?=[a-zA-Z\d]).*[a-zA-Z\d]\z/`, applied only to strings that
/// already passed `has_valid_characters` (so `.` never meets a newline).
fn starts_and_ends_alphanumeric(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(s.chars().next()) && alnum(s.chars().last())
}

/// ActiveSupport `String#blank?`: empty or only `[[:space:]]` (Unicode White_Space).
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Ruby's `str[0...8]`: the first 8 code points.
fn first_8(s: &str) -> String {
    s.chars().take(8).collect()
}

/// Ruby truthiness: everything except `nil` and `false`.
fn ruby_truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

/// ActiveSupport `present?` for a parsed JSON value.
fn ruby_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(_) => true,
        Value::String(s) => !is_blank(s),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Ruby-like `to_s` for a label value: nil → "", booleans and numbers → their text, strings
/// unchanged, arrays/objects → JSON text (which then fails as invalid characters, as in CC).
fn ruby_to_s(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(_) | Value::Object(_) => Cow::Owned(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check<F: Fn(&str) -> Option<String>>(f: F, cases: &[(&str, Option<&str>)]) {
        for (input, expected) in cases {
            assert_eq!(
                f(input).as_deref(),
                *expected,
                "input {input:?} (length {})",
                input.chars().count()
            );
        }
    }

    fn check_metadata(cases: &[(Value, &[&str])]) {
        for (input, expected) in cases {
            assert_eq!(validate_metadata(input), *expected, "input {input}");
        }
    }

    /// ASCII 32..=126 minus the characters CC's spec loop excludes with `exclude`.
    fn printable_except(exclude: impl Fn(char) -> bool) -> Vec<char> {
        (32u8..=126)
            .map(char::from)
            .filter(|c| !exclude(*c))
            .collect()
    }

    fn word_dash_dot(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
    }

    const EMPTY: Option<&str> = Some("key cannot be empty string");

    /// ((keys_in_request, count_before, count_after, max), expected message)
    type LimitCase = ((usize, usize, usize, usize), Option<&'static str>);

    #[test]
    fn valid_keys_from_cc_spec_pass() {
        let long_domain = format!("{}.sub-part.{}.com/release", "a".repeat(61), "b".repeat(61));
        let a63 = "a".repeat(63);
        check(
            key_error,
            &[
                ("potato", None),
                ("p_otato", None),
                ("p.otato", None),
                ("p-otato", None),
                ("empty", None),
                ("yams", None),
                (&a63, None),
                ("example.com/potato", None),
                (&long_domain, None),
                ("capi.ci.cf-app.com/dashboard", None),
                ("a", None),
                ("A-b_C.9", None),
            ],
        );
    }

    #[test]
    fn a_key_with_a_space_or_any_other_invalid_character_is_refused() {
        check(
            key_error,
            &[
                (
                    "potato mashed",
                    Some("'potato mashed' contains invalid characters"),
                ),
                ("ключ", Some("'ключ' contains invalid characters")),
                ("a\nb", Some("'a\nb' contains invalid characters")),
            ],
        );
        // metadata_validator_spec.rb: ASCII 32..126 minus [\w\-._/\s]
        for c in printable_except(|c| word_dash_dot(c) || c == '/' || c.is_whitespace()) {
            for key in [format!("potato{c}"), c.to_string()] {
                assert_eq!(
                    key_error(&key),
                    Some(format!("'{key}' contains invalid characters")),
                    "key {key:?}"
                );
            }
        }
    }

    #[test]
    fn a_key_name_must_start_and_end_with_a_letter_or_digit() {
        check(
            key_error,
            &[
                ("-a", Some("'-a' starts or ends with invalid characters")),
                ("a-", Some("'a-' starts or ends with invalid characters")),
                ("-", Some("'-' starts or ends with invalid characters")),
                (".a", Some("'.a' starts or ends with invalid characters")),
                ("_a", Some("'_a' starts or ends with invalid characters")),
                (
                    "example.com/_a",
                    Some("'_a' starts or ends with invalid characters"),
                ),
            ],
        );
    }

    #[test]
    fn a_key_name_longer_than_63_characters_is_refused() {
        let b64 = "b".repeat(64);
        let prefixed = format!("example.com/{}", "c".repeat(64));
        check(
            key_error,
            &[
                (&"a".repeat(63), None),
                (&b64, Some("'bbbbbbbb...' is greater than 63 characters")),
                (
                    &prefixed,
                    Some("'cccccccc...' is greater than 63 characters"),
                ),
            ],
        );
    }

    #[test]
    fn an_empty_or_blank_key_or_key_name_is_refused() {
        check(
            key_error,
            &[
                ("", EMPTY),
                ("example.com/", EMPTY),
                ("/", EMPTY),
                (" ", EMPTY),
                ("\t\n", EMPTY),
                ("\u{a0}\u{3000}", EMPTY),
                ("example.com/ ", EMPTY),
            ],
        );
    }

    #[test]
    fn a_key_with_more_than_one_slash_is_refused_before_prefix_checks() {
        let msg = Some("key has more than one '/'");
        check(
            key_error,
            &[
                ("example.com/capi/tests", msg),
                ("//", msg),
                ("-a/b/c", msg),
                ("a//", msg),
            ],
        );
    }

    #[test]
    fn a_prefix_must_be_a_dns_name_with_at_least_two_labels() {
        check(
            key_error,
            &[
                ("-a/key1", Some("prefix '-a' must be in valid dns format")),
                (
                    "a%a.com/key2",
                    Some("prefix 'a%a.com' must be in valid dns format"),
                ),
                (
                    "a..com/key3",
                    Some("prefix 'a..com' must be in valid dns format"),
                ),
                (
                    "onlycom/key4",
                    Some("prefix 'onlycom' must be in valid dns format"),
                ),
                ("/potato", Some("prefix '' must be in valid dns format")),
                (
                    "underscores_not_allowed/key",
                    Some("prefix 'underscores_not_allowed' must be in valid dns format"),
                ),
                (
                    "a-.com/key",
                    Some("prefix 'a-.com' must be in valid dns format"),
                ),
                (
                    "a.com./key",
                    Some("prefix 'a.com.' must be in valid dns format"),
                ),
                (
                    ".a.com/key",
                    Some("prefix '.a.com' must be in valid dns format"),
                ),
                ("  /key", Some("prefix '  ' must be in valid dns format")),
                (
                    "ex\u{e4}mple.com/key",
                    Some("prefix 'ex\u{e4}mple.com' must be in valid dns format"),
                ),
                ("EXAMPLE.Com/key", None),
                ("a.b/key", None),
                ("1-2.3/key", None),
            ],
        );
    }

    #[test]
    fn a_prefix_with_a_trailing_newline_is_refused_unlike_ccs_backslash_capital_z() {
        check(
            key_error,
            &[
                (
                    "example.com\n/foo",
                    Some("prefix 'example.com\n' must be in valid dns format"),
                ),
                (
                    "example.com\n\n/foo",
                    Some("prefix 'example.com\n\n' must be in valid dns format"),
                ),
            ],
        );
    }

    #[test]
    fn dns_labels_are_limited_to_63_characters() {
        let ok = format!("{}.com/key", "a".repeat(63));
        let too_long = format!("{}.com/key", "a".repeat(64));
        let msg = format!(
            "prefix '{}.com' must be in valid dns format",
            "a".repeat(64)
        );
        check(key_error, &[(&ok, None), (&too_long, Some(&msg))]);
    }

    #[test]
    fn a_prefix_longer_than_253_characters_is_refused_after_the_dns_check() {
        let spec_domain = ["a", "b", "c", "d", "e"].map(|c| c.repeat(61)).join(".");
        let spec_key = format!("{spec_domain}/key");
        let p253 = format!("{}b/key", "a.".repeat(126));
        let p254 = format!("{}bb/key", "a.".repeat(126));
        let msg = Some("prefix 'aaaaaaaa...' is greater than 253 characters");
        check(
            key_error,
            &[
                (&spec_key, msg),
                (&p253, None),
                (
                    &p254,
                    Some("prefix 'a.a.a.a....' is greater than 253 characters"),
                ),
            ],
        );
    }

    #[test]
    fn only_the_exact_prefix_cloudfoundry_org_is_reserved_in_any_case() {
        let reserved = Some("prefix 'cloudfoundry.org' is reserved");
        check(
            key_error,
            &[
                ("cloudfoundry.org/key", reserved),
                ("CloudFoundry.org/key", reserved),
                ("CLOUDFOUNDRY.ORG/-", reserved),
                ("cloudfoundry.org/", reserved),
                ("foo.cloudfoundry.org/key", None),
                ("metric.tag.cloudfoundry.org/key", None),
                ("clodefloundry.org/release", None),
                ("cloudfoundry.com/key", None),
            ],
        );
    }

    #[test]
    fn label_values_follow_cc_value_rules() {
        let a63 = "a".repeat(63);
        let b64 = "b".repeat(64);
        check(
            label_value_error,
            &[
                ("", None),
                ("mashed", None),
                ("stable", None),
                (&a63, None),
                (&b64, Some("'bbbbbbbb...' is greater than 63 characters")),
                ("-a", Some("'-a' starts or ends with invalid characters")),
                ("a-", Some("'a-' starts or ends with invalid characters")),
                ("-", Some("'-' starts or ends with invalid characters")),
                (".a", Some("'.a' starts or ends with invalid characters")),
                ("_a", Some("'_a' starts or ends with invalid characters")),
                (" ", Some("' ' contains invalid characters")),
                ("a/b", Some("'a/b' contains invalid characters")),
                ("é", Some("'é' contains invalid characters")),
            ],
        );
        // metadata_validator_spec.rb: ASCII 32..126 minus [\w\-._]
        for c in printable_except(word_dash_dot) {
            for value in [format!("mashed{c}"), c.to_string()] {
                assert_eq!(
                    label_value_error(&value),
                    Some(format!("'{value}' contains invalid characters")),
                    "value {value:?}"
                );
            }
        }
    }

    #[test]
    fn annotation_values_are_limited_to_5000_code_points() {
        let b5000 = "b".repeat(5000);
        let a5001 = "a".repeat(5001);
        let e5000 = "é".repeat(5000);
        let e5001 = "é".repeat(5001);
        let mixed = format!("日本語の注釈です{}", "x".repeat(4993));
        check(
            annotation_value_error,
            &[
                ("", None),
                ("Bill tel(1111111) email(bill@fixme)", None),
                (&b5000, None),
                (
                    &a5001,
                    Some("'aaaaaaaa...' is greater than 5000 characters"),
                ),
                (&e5000, None),
                (
                    &e5001,
                    Some("'éééééééé...' is greater than 5000 characters"),
                ),
                (
                    &mixed,
                    Some("'日本語の注釈です...' is greater than 5000 characters"),
                ),
            ],
        );
    }

    #[test]
    fn metadata_must_be_an_object_with_only_labels_and_annotations() {
        let must = &["must be an object"][..];
        check_metadata(&[
            (
                json!({"other": "stuff", "extra": "fields"}),
                &["has unexpected field(s): 'other' 'extra'"],
            ),
            (json!({"foo": {}}), &["has unexpected field(s): 'foo'"]),
            (json!("notahash"), must),
            (json!(null), must),
            (json!([]), must),
            (json!(false), must),
            (json!(5), must),
            (json!({}), &[]),
            (json!({"labels": null, "annotations": null}), &[]),
            (json!({"labels": {}, "annotations": {}}), &[]),
        ]);
    }

    #[test]
    fn labels_and_annotations_must_be_objects_unless_null_or_false() {
        check_metadata(&[
            (json!({"labels": "potato"}), &["'labels' is not an object"]),
            (json!({"labels": []}), &["'labels' is not an object"]),
            (json!({"labels": 0}), &["'labels' is not an object"]),
            (json!({"labels": ""}), &["'labels' is not an object"]),
            (json!({"labels": true}), &["'labels' is not an object"]),
            (
                json!({"annotations": "potato"}),
                &["'annotations' is not an object"],
            ),
            (
                json!({"annotations": "potato", "labels": "potato", "x": 1}),
                &[
                    "has unexpected field(s): 'x'",
                    "'labels' is not an object",
                    "'annotations' is not an object",
                ],
            ),
            // CC: `validate_labels if labels` skips false, and LabelsUpdate does `labels ||= {}`.
            (json!({"labels": false, "annotations": false}), &[]),
        ]);
    }

    #[test]
    fn label_cases_from_cc_metadata_validator_spec_give_ccs_messages() {
        let long_domain = format!("{}.sub-part.{}.com/release", "a".repeat(61), "b".repeat(61));
        let long_prefix = format!(
            "{}/key",
            ["a", "b", "c", "d", "e"].map(|c| c.repeat(61)).join(".")
        );
        check_metadata(&[
            (
                json!({"labels": {"potato": "mashed", "p_otato": "mashed", "p.otato": "mashed",
                                  "p-otato": "mashed", "empty": "", "yams": null}}),
                &[],
            ),
            (
                json!({"labels": {"potato mashed": "value"}}),
                &["label key error: 'potato mashed' contains invalid characters"],
            ),
            (
                json!({"labels": {"-a": "value1", "a-": "value2", "-": "value3", ".a": "value5", "_a": "value4"}}),
                &[
                    "label key error: '-a' starts or ends with invalid characters",
                    "label key error: 'a-' starts or ends with invalid characters",
                    "label key error: '-' starts or ends with invalid characters",
                    "label key error: '.a' starts or ends with invalid characters",
                    "label key error: '_a' starts or ends with invalid characters",
                ],
            ),
            (json!({"labels": {"a".repeat(63): "value2"}}), &[]),
            (
                json!({"labels": {"b".repeat(64): "value3"}}),
                &["label key error: 'bbbbbbbb...' is greater than 63 characters"],
            ),
            (
                json!({"labels": {"": "value3", "example.com/": "empty"}}),
                &[
                    "label key error: key cannot be empty string",
                    "label key error: key cannot be empty string",
                ],
            ),
            (
                json!({"labels": {"example.com/potato": "mashed", long_domain: "stable",
                                  "capi.ci.cf-app.com/dashboard": "green"}}),
                &[],
            ),
            (
                json!({"labels": {"example.com/capi/tests": "failing"}}),
                &["label key error: key has more than one '/'"],
            ),
            (
                json!({"labels": {"-a/key1": "value1", "a%a.com/key2": "value2",
                                  "a..com/key3": "value3", "onlycom/key4": "value5"}}),
                &[
                    "label key error: prefix '-a' must be in valid dns format",
                    "label key error: prefix 'a%a.com' must be in valid dns format",
                    "label key error: prefix 'a..com' must be in valid dns format",
                    "label key error: prefix 'onlycom' must be in valid dns format",
                ],
            ),
            (
                json!({"labels": {"cloudfoundry.org/key": "value", "CloudFoundry.org/key": "value"}}),
                &[
                    "label key error: prefix 'cloudfoundry.org' is reserved",
                    "label key error: prefix 'cloudfoundry.org' is reserved",
                ],
            ),
            (
                json!({"labels": {long_prefix: "value1"}}),
                &["label key error: prefix 'aaaaaaaa...' is greater than 253 characters"],
            ),
            (
                json!({"labels": {"key1": "-a", "key2": "a-", "key3": "-", "key4": ".a", "key5": "_a"}}),
                &[
                    "label value error: '-a' starts or ends with invalid characters",
                    "label value error: 'a-' starts or ends with invalid characters",
                    "label value error: '-' starts or ends with invalid characters",
                    "label value error: '.a' starts or ends with invalid characters",
                    "label value error: '_a' starts or ends with invalid characters",
                ],
            ),
            (json!({"labels": {"key": "a".repeat(63)}}), &[]),
            (
                json!({"labels": {"key": "b".repeat(64)}}),
                &["label value error: 'bbbbbbbb...' is greater than 63 characters"],
            ),
        ]);
    }

    #[test]
    fn every_invalid_character_in_label_keys_and_values_is_reported_per_label() {
        for c in printable_except(|c| word_dash_dot(c) || c == '/' || c.is_whitespace()) {
            let mut labels = serde_json::Map::new();
            labels.insert(format!("potato{c}"), json!("mashed"));
            labels.insert(c.to_string(), json!("fried"));
            let errors = validate_metadata(&json!({ "labels": labels }));
            assert_eq!(
                errors,
                vec![
                    format!("label key error: 'potato{c}' contains invalid characters"),
                    format!("label key error: '{c}' contains invalid characters"),
                ]
            );
        }
        for c in printable_except(word_dash_dot) {
            let errors = validate_metadata(
                &json!({"labels": {"potato": format!("mashed{c}"), "release": c.to_string()}}),
            );
            assert_eq!(
                errors,
                vec![
                    format!("label value error: 'mashed{c}' contains invalid characters"),
                    format!("label value error: '{c}' contains invalid characters"),
                ]
            );
        }
    }

    #[test]
    fn annotation_cases_from_cc_metadata_validator_spec_give_ccs_messages() {
        let contacts = "Bill tel(1111111) email(bill@fixme), Bob tel(222222) pager(3333333#555) email(bob@fixme)";
        let key_msg = format!("annotation key error: '{contacts}' contains invalid characters");
        check_metadata(&[
            // The spec's context "validating message with annotations" expects `not_to be_valid`
            // because of the second key (spaces), although its example is named 'is valid'.
            (
                json!({"annotations": {"contacts": contacts, contacts: "contacts",
                                       "a".repeat(63): "b".repeat(5000)}}),
                &[&key_msg],
            ),
            (
                json!({"annotations": "potato"}),
                &["'annotations' is not an object"],
            ),
            (
                json!({"annotations": {"b".repeat(64): "value3"}}),
                &["annotation key error: 'bbbbbbbb...' is greater than 63 characters"],
            ),
            (
                json!({"annotations": {"potato mashed": "value"}}),
                &["annotation key error: 'potato mashed' contains invalid characters"],
            ),
            (
                json!({"annotations": {"": "value3"}}),
                &["annotation key error: key cannot be empty string"],
            ),
            (
                json!({"annotations": {"key": "a".repeat(5001)}}),
                &["annotation value error: 'aaaaaaaa...' is greater than 5000 characters"],
            ),
        ]);
    }

    #[test]
    fn annotation_keys_are_checked_only_for_present_values_except_leaseholds_length_rule() {
        let b64 = "b".repeat(64);
        let name_msg = "annotation key error: 'bbbbbbbb...' is greater than 63 characters";
        let p254 = format!("{}bb/key", "a.".repeat(126));
        let prefix_msg =
            "annotation key error: prefix 'a.a.a.a....' is greater than 253 characters";
        check_metadata(&[
            // CC spec "and it is going to be deleted": valid in CC, but key_name is varchar(63),
            // so leasehold refuses it (CC accepts the request, then its DB refuses the row).
            (json!({"annotations": {&b64: ""}}), &[name_msg]),
            (json!({"annotations": {&b64: "  \t"}}), &[name_msg]),
            (json!({"annotations": {&p254: ""}}), &[prefix_msg]),
            // null deletes: no key check at all.
            (json!({"annotations": {&b64: null}}), &[]),
            (
                json!({"annotations": {&p254: null, "": null, "a b": null}}),
                &[],
            ),
            // blank values: only the length rules apply.
            (
                json!({"annotations": {"a b": "", "": " ", "/x": "", "cloudfoundry.org/x": ""}}),
                &[],
            ),
            // a non-string value like 5 or true is present: the key is checked.
            (
                json!({"annotations": {"a b": 5, "c d": true}}),
                &[
                    "annotation key error: 'a b' contains invalid characters",
                    "annotation key error: 'c d' contains invalid characters",
                ],
            ),
            // false, [] and {} are blank in Ruby: only the length rules apply.
            (
                json!({"annotations": {"a b": false, "c d": [], "e f": {}}}),
                &[],
            ),
            (json!({"annotations": {&b64: false}}), &[name_msg]),
            // a blank value over 5000 characters still gets the value error, after the key error.
            (
                json!({"annotations": {&b64: " ".repeat(5001)}}),
                &[
                    name_msg,
                    "annotation value error: '        ...' is greater than 5000 characters",
                ],
            ),
            // annotation values can hold any character.
            (
                json!({"annotations": {"example.com/note": "any thing: ü, \n, /"}}),
                &[],
            ),
        ]);
    }

    #[test]
    fn the_combined_case_gives_ccs_three_messages_in_order() {
        check_metadata(&[(
            json!({"labels": {"": "mashed", "/potato": ".value."}}),
            &[
                "label key error: key cannot be empty string",
                "label key error: prefix '' must be in valid dns format",
                "label value error: '.value.' starts or ends with invalid characters",
            ],
        )]);
    }

    #[test]
    fn messages_come_in_ccs_order_whatever_the_body_order() {
        check_metadata(&[(
            json!({"zzz": 1, "annotations": {"": "x", "k": "v".repeat(5001)},
                   "labels": {"b": "-", "": "y"}, "aaa": 2}),
            &[
                "has unexpected field(s): 'zzz' 'aaa'",
                "label value error: '-' starts or ends with invalid characters",
                "label key error: key cannot be empty string",
                "annotation key error: key cannot be empty string",
                "annotation value error: 'vvvvvvvv...' is greater than 5000 characters",
            ],
        )]);
    }

    #[test]
    fn non_string_label_values_are_checked_as_ruby_to_s_would_render_them() {
        check_metadata(&[
            (
                json!({"labels": {"a": true, "b": false, "c": 5, "d": 1.5, "e": null}}),
                &[],
            ),
            (
                json!({"labels": {"a": -5}}),
                &["label value error: '-5' starts or ends with invalid characters"],
            ),
            (
                json!({"labels": {"a": {"x": 1}, "b": [1]}}),
                &[
                    "label value error: '{\"x\":1}' contains invalid characters",
                    "label value error: '[1]' contains invalid characters",
                ],
            ),
        ]);
    }

    #[test]
    fn label_limit_applies_only_when_the_count_grew_past_the_maximum() {
        let cases: &[LimitCase] = &[
            // labels_update_spec: 4 new labels, max 2
            (
                (4, 0, 4, 2),
                Some("Failed to add 4 labels because it would exceed maximum of 2"),
            ),
            // app already has max labels, one more added
            (
                (1, 2, 3, 2),
                Some("Failed to add 1 labels because it would exceed maximum of 2"),
            ),
            // already over the limit (4 of 2): deleting and editing are allowed
            ((1, 4, 3, 2), None),
            ((1, 4, 4, 2), None),
            // growing up to the limit is fine
            ((2, 0, 2, 2), None),
            ((50, 0, 50, 50), None),
            (
                (3, 49, 51, 50),
                Some("Failed to add 3 labels because it would exceed maximum of 50"),
            ),
        ];
        for ((keys, before, after, max), expected) in cases {
            assert_eq!(
                label_limit_error(*keys, *before, *after, *max).as_deref(),
                *expected
            );
        }
    }

    #[test]
    fn annotation_limit_applies_only_when_the_count_grew_past_the_maximum() {
        let cases: &[LimitCase] = &[
            (
                (4, 0, 4, 2),
                Some("Failed to add 4 annotations because it would exceed maximum of 2"),
            ),
            (
                (1, 2, 3, 2),
                Some("Failed to add 1 annotations because it would exceed maximum of 2"),
            ),
            ((1, 4, 3, 2), None),
            ((1, 4, 4, 2), None),
            ((200, 0, 200, 200), None),
        ];
        for ((keys, before, after, max), expected) in cases {
            assert_eq!(
                annotation_limit_error(*keys, *before, *after, *max).as_deref(),
                *expected
            );
        }
    }

    #[test]
    fn keys_split_like_rubys_split_on_slash() {
        let cases: &[(&str, (Option<&str>, &str))] = &[
            ("potato", (None, "potato")),
            ("example.com/potato", (Some("example.com"), "potato")),
            ("/potato", (Some(""), "potato")),
            ("example.com/", (Some("example.com"), "")),
            ("/", (None, "")),
            ("a/b/c", (Some("a"), "b")),
            ("", (None, "")),
        ];
        for (key, expected) in cases {
            assert_eq!(extract_prefix(key), *expected, "key {key:?}");
        }
    }
}
