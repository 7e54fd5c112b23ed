//! The metadata-only `PATCH` body: parsing, validation and CC's merge.
//!
//! This module owns what CC's `*UpdateMessage` + `MetadataUpdate` do with a PATCH body:
//! - parse errors (400 `CF-MessageParseError`);
//! - validation messages: `cf_metadata::validate_metadata` (never re-implemented here), each
//!   prefixed `Metadata ` as `errors.full_messages` does, followed by
//!   `Unknown field(s): 'x', 'y'` for top-level keys other than `metadata` (CC's base-class
//!   validator runs first), joined with `", "` into one 422 `CF-UnprocessableEntity`;
//! - the per-key merge (`LabelsUpdate`/`AnnotationsUpdate`): a value sets (non-strings
//!   coerced with Ruby's `to_s`), `null` deletes, absent keys stay; then CC's count limits
//!   (`cf_metadata::label_limit_error` / `annotation_limit_error`), labels first. A rejected
//!   PATCH changes nothing.

use crate::error::CcError;
use serde_json::{Map, Value};

/// Parses a PATCH body. An empty body is `{}` (as Rails treats it); anything that is not a
/// JSON object is CC's 400 `CF-MessageParseError`.
pub fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, CcError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(CcError::message_parse_error()),
    }
}

/// CC's validation of a metadata-only update message; `Err` is the 422 to answer.
pub fn validate_body(body: &Map<String, Value>) -> Result<(), CcError> {
    let mut messages: Vec<String> = match body.get("metadata") {
        Some(metadata) => cf_metadata::validate_metadata(metadata)
            .into_iter()
            .map(|m| format!("Metadata {m}"))
            .collect(),
        None => Vec::new(),
    };
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "metadata")
        .collect();
    if !unknown.is_empty() {
        messages.push(format!("Unknown field(s): '{}'", unknown.join("', '")));
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(CcError::unprocessable(&messages))
    }
}

/// Per-resource count limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `max_labels_per_resource`.
    pub labels: usize,
    /// `max_annotations_per_resource`.
    pub annotations: usize,
}

/// Merges a validated `metadata` member into a resource body's `metadata`. On a limit error the
/// resource is left untouched.
pub fn apply(
    resource: &mut Value,
    metadata: Option<&Value>,
    limits: Limits,
) -> Result<(), CcError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let current = resource.get("metadata");
    let section = |name: &str| -> Map<String, Value> {
        current
            .and_then(|m| m.get(name))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (mut labels, mut annotations) = (section("labels"), section("annotations"));

    if let Some(changes) = metadata.get("labels").and_then(Value::as_object) {
        let before = labels.len();
        merge(&mut labels, changes);
        if let Some(detail) =
            cf_metadata::label_limit_error(changes.len(), before, labels.len(), limits.labels)
        {
            return Err(CcError::label_limit_exceeded(detail));
        }
    }
    if let Some(changes) = metadata.get("annotations").and_then(Value::as_object) {
        let before = annotations.len();
        merge(&mut annotations, changes);
        if let Some(detail) = cf_metadata::annotation_limit_error(
            changes.len(),
            before,
            annotations.len(),
            limits.annotations,
        ) {
            return Err(CcError::annotation_limit_exceeded(detail));
        }
    }

    let mut merged = Map::new();
    merged.insert("labels".to_string(), Value::Object(labels));
    merged.insert("annotations".to_string(), Value::Object(annotations));
    if let Some(body) = resource.as_object_mut() {
        body.insert("metadata".to_string(), Value::Object(merged));
    }
    Ok(())
}

/// CC's per-key update: null deletes (a missing key is a no-op), anything else is stored as
/// its `to_s`. Existing keys keep their position; new keys are appended.
fn merge(target: &mut Map<String, Value>, changes: &Map<String, Value>) {
    for (key, value) in changes {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            target.insert(key.clone(), Value::String(ruby_to_s(value)));
        }
    }
}

/// Ruby's `to_s` for a JSON value as CC stores a label or annotation value: strings as they
/// are, `true`/`false`, numbers in JSON notation, `nil` → `""`; arrays and objects as JSON text
/// (Ruby would print `{"x" => 1}`; labels refuse them anyway).
pub fn ruby_to_s(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        labels: 3,
        annotations: 2,
    };

    #[test]
    fn the_potato_case_gives_ccs_exact_detail() {
        let body = parse_body(br#"{"metadata":{"labels":{"": "mashed", "/potato": ".value."}}}"#)
            .expect("object");
        let err = validate_body(&body).expect_err("invalid");
        assert_eq!(
            err.detail,
            "Metadata label key error: key cannot be empty string, Metadata label key error: prefix '' must be in valid dns format, Metadata label value error: '.value.' starts or ends with invalid characters"
        );
        assert_eq!(err.code, 10008);
    }

    #[test]
    fn unknown_fields_come_after_metadata_messages() {
        let body = parse_body(br#"{"x": 1, "metadata": null, "y": 2}"#).expect("object");
        assert_eq!(
            validate_body(&body).expect_err("invalid").detail,
            "Metadata must be an object, Unknown field(s): 'x', 'y'"
        );
        assert!(validate_body(&parse_body(b"").expect("empty")).is_ok());
        assert_eq!(parse_body(b"[1]"), Err(CcError::message_parse_error()));
        assert_eq!(parse_body(b"{"), Err(CcError::message_parse_error()));
    }

    #[test]
    fn merge_sets_deletes_and_keeps_absent_keys() {
        let mut r = json!({"guid": "g", "metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"n": "x"}}});
        apply(
            &mut r,
            Some(
                &json!({"labels": {"a": null, "c": true, "zz": null, "b": 5}, "annotations": null}),
            ),
            LIMITS,
        )
        .expect("applied");
        assert_eq!(
            r["metadata"],
            json!({"labels": {"b": "5", "c": "true"}, "annotations": {"n": "x"}})
        );
    }

    #[test]
    fn limits_refuse_growth_past_the_maximum_and_change_nothing() {
        let mut r =
            json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}, "annotations": {}}});
        let before = r.clone();
        let err = apply(
            &mut r,
            Some(&json!({"labels": {"d": "4", "a": null, "e": "5"}})),
            LIMITS,
        )
        .expect_err("limit");
        assert_eq!(
            err.detail,
            "Failed to add 3 labels because it would exceed maximum of 3"
        );
        assert_eq!(err.title, "CF-LabelLimitExceeded");
        assert_eq!(r, before);
        let err = apply(
            &mut r,
            Some(&json!({"annotations": {"x": "1", "y": "2", "z": "3"}})),
            LIMITS,
        )
        .expect_err("limit");
        assert_eq!(err.code, 390023);
        assert_eq!(r, before);
    }
}
