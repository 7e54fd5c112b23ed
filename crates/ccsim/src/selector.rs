//! CC's `label_selector`: parsing, validation and matching.
//!
//! This module owns the grammar of `MetadataHelpers` (the `REQUIREMENT_SPLITTER` scan and the
//! six requirement patterns, tried in CC's order), `LabelSelectorRequirementValidator`'s
//! messages (keys and values are checked with `cf_metadata`'s `key_error` and
//! `label_value_error`), and `LabelSelectorQueryGenerator`'s semantics (all requirements ANDed;
//! `!=`/`notin`/`!key` also match resources without the key). Matching compares the key's
//! `(prefix, name)` split and values exactly (case-sensitive, as on CC's Postgres).

use serde_json::{Map, Value};

/// CC's `MAX_REQUIREMENTS`.
pub const MAX_REQUIREMENTS: usize = 50;

/// The operator of one requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key in (v1,v2)`
    In,
    /// `key notin (v1,v2)`
    NotIn,
    /// `key=v` or `key==v`
    Equal,
    /// `key!=v`
    NotEqual,
    /// `key`
    Exists,
    /// `!key`
    NotExists,
}

/// One parsed requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The key as written (may be invalid; validation is separate).
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// Ruby's `values.split(',')`.
    pub values: Vec<String>,
}

/// `label_selector.scan(REQUIREMENT_SPLITTER).map { parse_requirement }`: one entry per
/// requirement, `None` where no pattern matched.
pub fn parse(selector: &str) -> Vec<Option<Requirement>> {
    split_requirements(selector)
        .iter()
        .map(|r| parse_requirement(r))
        .collect()
}

/// `REQUIREMENT_SPLITTER = /(?:\(.*?\)|[^,])+/` scanned over the selector: commas separate
/// requirements except inside `(...)` (`.` does not cross a newline); empty pieces vanish.
fn split_requirements(selector: &str) -> Vec<String> {
    let chars: Vec<char> = selector.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '(' {
            let close = chars[i + 1..]
                .iter()
                .position(|&c| c == ')' || c == '\n')
                .filter(|&p| chars[i + 1 + p] == ')');
            if let Some(p) = close {
                current.extend(&chars[i..=i + 1 + p]);
                i += p + 2;
                continue;
            }
        }
        if c == ',' {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
        i += 1;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `KEY_CHARACTERS = [\w\-._/]` (Ruby's `\w` is ASCII).
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

fn parse_requirement(r: &str) -> Option<Requirement> {
    let req = |key: &str, operator, values: &str| {
        Some(Requirement {
            key: key.to_string(),
            operator,
            values: ruby_split_comma(values),
        })
    };
    // In Ruby regexes `.` does not match "\n"; every pattern below needs `.` or key characters
    // over the whole requirement, so a newline anywhere means no match.
    if r.contains('\n') {
        return None;
    }
    // IN_PATTERN / NOT_IN_PATTERN: /\A(?<key>.*?) in \((?<values>.*)\)\z/ (lazy key).
    for (marker, operator) in [(" in (", Operator::In), (" notin (", Operator::NotIn)] {
        if r.ends_with(')')
            && let Some(pos) = r.find(marker)
            && pos + marker.len() < r.len()
        {
            return req(&r[..pos], operator, &r[pos + marker.len()..r.len() - 1]);
        }
    }
    let key_len: usize = r
        .chars()
        .take_while(|&c| is_key_char(c))
        .map(char::len_utf8)
        .sum();
    let (key, rest) = r.split_at(key_len);
    if !key.is_empty() {
        // EQUAL_PATTERN: /\A(?<key>KEY+)(==?)(?<values>.*)\z/
        if let Some(values) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            return req(key, Operator::Equal, values);
        }
        // NOT_EQUAL_PATTERN: /\A(?<key>KEY+)(!=)(?<values>.*)\z/
        if let Some(values) = rest.strip_prefix("!=") {
            return req(key, Operator::NotEqual, values);
        }
        // EXISTS_PATTERN: /^\A(?<key>KEY+)(?<values>)\z/
        if rest.is_empty() {
            return req(key, Operator::Exists, "");
        }
    }
    // NOT_EXISTS_PATTERN: /\A!(?<key>KEY+)(?<values>)\z/
    let negated = r.strip_prefix('!')?;
    (!negated.is_empty() && negated.chars().all(is_key_char))
        .then(|| req(negated, Operator::NotExists, ""))
        .flatten()
}

/// Ruby's `String#split(',')`: trailing empty fields are dropped, `""` gives `[]`.
fn ruby_split_comma(s: &str) -> Vec<String> {
    let mut fields: Vec<String> = s.split(',').map(str::to_string).collect();
    while fields.last().is_some_and(String::is_empty) {
        fields.pop();
    }
    fields
}

/// `LabelSelectorRequirementValidator`: the messages for a parsed selector, empty when valid.
pub fn validate(requirements: &[Option<Requirement>]) -> Vec<String> {
    if requirements.is_empty() {
        return vec!["Missing label_selector value".to_string()];
    }
    if requirements.len() > MAX_REQUIREMENTS {
        return vec![format!(
            "Too many label_selector requirements (maximum is {MAX_REQUIREMENTS})"
        )];
    }
    requirements
        .iter()
        .filter_map(|r| match r {
            None => Some("Invalid label_selector value".to_string()),
            Some(r) => cf_metadata::key_error(&r.key).or_else(|| {
                r.values
                    .iter()
                    .find_map(|v| cf_metadata::label_value_error(v))
            }),
        })
        .collect()
}

/// Whether a resource's labels satisfy every requirement.
pub fn matches(requirements: &[Requirement], labels: &Map<String, Value>) -> bool {
    requirements.iter().all(|r| {
        let wanted = split_key(&r.key);
        let value = labels
            .iter()
            .find(|(k, _)| split_key(k) == wanted)
            .map(|(_, v)| crate::metadata::ruby_to_s(v));
        let in_values = || value.as_ref().is_some_and(|v| r.values.contains(v));
        match r.operator {
            Operator::In | Operator::Equal => in_values(),
            Operator::NotIn | Operator::NotEqual => !in_values(),
            Operator::Exists => value.is_some(),
            Operator::NotExists => value.is_none(),
        }
    })
}

/// `(key_prefix.to_s, key_name)` as CC stores and queries keys (`MetadataHelpers.extract_prefix`,
/// Ruby's `split('/')` dropping trailing empty fields).
fn split_key(key: &str) -> (&str, &str) {
    if !key.contains('/') {
        return ("", key);
    }
    let mut fields: Vec<&str> = key.split('/').collect();
    while fields.last() == Some(&"") {
        fields.pop();
    }
    (
        fields.first().copied().unwrap_or(""),
        fields.get(1).copied().unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(s: &str) -> Option<Requirement> {
        let mut v = parse(s);
        assert_eq!(v.len(), 1, "{s:?}");
        v.pop().flatten()
    }

    fn r(key: &str, operator: Operator, values: &[&str]) -> Option<Requirement> {
        Some(Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        })
    }

    #[test]
    fn the_six_requirement_forms_parse() {
        assert_eq!(
            one("animal in (dog,cat)"),
            r("animal", Operator::In, &["dog", "cat"])
        );
        assert_eq!(
            one("animal notin (dog)"),
            r("animal", Operator::NotIn, &["dog"])
        );
        assert_eq!(one("animal=dog"), r("animal", Operator::Equal, &["dog"]));
        assert_eq!(one("animal==dog"), r("animal", Operator::Equal, &["dog"]));
        assert_eq!(
            one("animal!=dog"),
            r("animal", Operator::NotEqual, &["dog"])
        );
        assert_eq!(
            one("example.com/santa"),
            r("example.com/santa", Operator::Exists, &[])
        );
        assert_eq!(one("!santa"), r("santa", Operator::NotExists, &[]));
        assert_eq!(one("animal="), r("animal", Operator::Equal, &[]));
        assert_eq!(one("a in (b, c)"), r("a", Operator::In, &["b", " c"]));
        assert_eq!(one("a===b"), r("a", Operator::Equal, &["=b"]));
    }

    #[test]
    fn unparseable_requirements_are_none() {
        for s in [
            "!",
            "a b",
            "a in(b)",
            "=x",
            "a in ()x",
            "!a=b",
            "a\nb",
            "a in (b\n)",
        ] {
            assert_eq!(parse(s), vec![None], "{s:?}");
        }
    }

    #[test]
    fn requirements_split_on_commas_outside_parentheses() {
        assert_eq!(
            split_requirements("env=dev,!x,tier in (a,b),,y"),
            vec!["env=dev", "!x", "tier in (a,b)", "y"]
        );
        assert!(split_requirements(",").is_empty());
        assert_eq!(split_requirements("a (b,c"), vec!["a (b", "c"]);
    }

    #[test]
    fn validation_gives_ccs_messages() {
        assert_eq!(validate(&parse("")), vec!["Missing label_selector value"]);
        assert_eq!(validate(&parse("!")), vec!["Invalid label_selector value"]);
        let many = vec!["a"; 51].join(",");
        assert_eq!(
            validate(&parse(&many)),
            vec!["Too many label_selector requirements (maximum is 50)"]
        );
        assert_eq!(
            validate(&parse("a in (b, c),-x=1,k=.v")),
            vec![
                "' c' contains invalid characters",
                "'-x' starts or ends with invalid characters",
                "'.v' starts or ends with invalid characters",
            ]
        );
        assert!(validate(&parse("a=b,c in (d,e),!f,g")).is_empty());
    }

    #[test]
    fn matching_ands_requirements_and_negations_match_missing_keys() {
        let labels = json!({"env": "dev", "example.com/tier": "web"});
        let labels = labels.as_object().expect("object");
        let m = |s: &str| {
            let reqs: Vec<Requirement> = parse(s).into_iter().flatten().collect();
            matches(&reqs, labels)
        };
        assert!(m("env=dev"));
        assert!(m("env in (prod,dev)"));
        assert!(!m("env notin (prod,dev)"));
        assert!(m("other!=x"));
        assert!(m("other notin (x)"));
        assert!(m("example.com/tier,!other"));
        assert!(!m("env=dev,other"));
        assert!(!m("env="));
        assert!(m("env!="));
    }
}
