//! Labels and annotations: the resource state leasehold versions. A request's `metadata`
//! is parsed into a [`MetadataPatch`] only after Cloud Controller's validation passed, so
//! a patch applied here is one CC accepts too.

/// Cloud Controller's validation rules, shared with the Cloud Controller emulator.
pub use cf_metadata as validation;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Key → value of one kind of metadata.
pub type Entries = BTreeMap<String, String>;

/// The two kinds of metadata; named in `expect` mismatches and history details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Labels,
    Annotations,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Labels => "labels",
            Self::Annotations => "annotations",
        }
    }
}

/// A resource's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Metadata {
    pub labels: Entries,
    pub annotations: Entries,
}

impl Metadata {
    fn entries(&self, kind: Kind) -> &Entries {
        match kind {
            Kind::Labels => &self.labels,
            Kind::Annotations => &self.annotations,
        }
    }

    /// CC's merge: a value sets its key, `null` removes it, keys not named stay.
    pub fn apply(&self, patch: &MetadataPatch) -> Metadata {
        Metadata {
            labels: merge(&self.labels, &patch.labels),
            annotations: merge(&self.annotations, &patch.annotations),
        }
    }

    /// The keys of `expect` whose current value differs from the expected one.
    pub fn mismatches(&self, expect: &Expectations) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for (kind, wanted) in [
            (Kind::Labels, &expect.labels),
            (Kind::Annotations, &expect.annotations),
        ] {
            let current = self.entries(kind);
            for (key, expected) in wanted {
                let actual = current.get(key);
                if actual != expected.as_ref() {
                    out.push(Mismatch {
                        kind,
                        key: key.clone(),
                        expected: expected.clone(),
                        actual: actual.cloned(),
                    });
                }
            }
        }
        out
    }

    /// What changed from `self` to `after`, key by key; `None` when nothing did.
    pub fn change_to(&self, after: &Metadata) -> Option<MetadataChange> {
        let change = MetadataChange {
            labels: diff(&self.labels, &after.labels),
            annotations: diff(&self.annotations, &after.annotations),
        };
        (!change.labels.is_empty() || !change.annotations.is_empty()).then_some(change)
    }

    /// CC's per-resource count limits for moving from `self` to `after` with `patch`.
    pub fn limit_errors(
        &self,
        patch: &MetadataPatch,
        after: &Metadata,
        limits: MetadataLimits,
    ) -> Vec<String> {
        let labels = validation::label_limit_error(
            patch.labels.len(),
            self.labels.len(),
            after.labels.len(),
            limits.max_labels,
        );
        let annotations = validation::annotation_limit_error(
            patch.annotations.len(),
            self.annotations.len(),
            after.annotations.len(),
            limits.max_annotations,
        );
        labels.into_iter().chain(annotations).collect()
    }
}

fn merge(current: &Entries, patch: &BTreeMap<String, Option<String>>) -> Entries {
    let mut out = current.clone();
    for (key, value) in patch {
        match value {
            Some(v) => out.insert(key.clone(), v.clone()),
            None => out.remove(key),
        };
    }
    out
}

fn diff(before: &Entries, after: &Entries) -> BTreeMap<String, ValueChange> {
    let keys = before.keys().chain(after.keys());
    let mut out = BTreeMap::new();
    for key in keys {
        let (from, to) = (before.get(key), after.get(key));
        if from != to {
            out.insert(
                key.clone(),
                ValueChange {
                    from: from.cloned(),
                    to: to.cloned(),
                },
            );
        }
    }
    out
}

/// The per-resource limits in force (CC's `max_labels_per_resource` and
/// `max_annotations_per_resource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct MetadataLimits {
    pub max_labels: usize,
    pub max_annotations: usize,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        Self {
            max_labels: 50,
            max_annotations: 200,
        }
    }
}

/// A validated change: per key, the new value or `None` to remove it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataPatch {
    pub labels: BTreeMap<String, Option<String>>,
    pub annotations: BTreeMap<String, Option<String>>,
}

/// Why a request's `metadata` member was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// A value that is neither a string nor null (CC would coerce it; we refuse to guess): 400.
    NotAString { kind: Kind, key: String },
    /// A key or value with a NUL character, which no database stores as text: 400.
    ContainsNul { kind: Kind, key: String },
    /// CC's validator refused it; every message in CC's words: 422.
    Invalid(Vec<String>),
}

impl MetadataPatch {
    /// Parses the `metadata` member of a request: value types first, then CC's validation.
    pub fn parse(metadata: &Value) -> Result<Self, PatchError> {
        for kind in [Kind::Labels, Kind::Annotations] {
            let Some(Value::Object(entries)) = metadata.get(kind.as_str()) else {
                continue;
            };
            for (key, value) in entries {
                let key = key.clone();
                match value {
                    Value::Null => {}
                    Value::String(v) if v.contains('\0') || key.contains('\0') => {
                        return Err(PatchError::ContainsNul { kind, key });
                    }
                    Value::String(_) => {}
                    _ => return Err(PatchError::NotAString { kind, key }),
                }
            }
        }
        let messages = validation::validate_metadata(metadata);
        if !messages.is_empty() {
            return Err(PatchError::Invalid(messages));
        }
        Ok(Self {
            labels: string_entries(metadata.get("labels")),
            annotations: string_entries(metadata.get("annotations")),
        })
    }
}

fn string_entries(entries: Option<&Value>) -> BTreeMap<String, Option<String>> {
    let Some(Value::Object(entries)) = entries else {
        return BTreeMap::new();
    };
    entries
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
        .collect()
}

/// `expect`: per key, the value it must have now, `None` meaning absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    #[serde(default)]
    pub labels: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Option<String>>,
}

/// One unmet expectation: the key's value is `actual`, not `expected` (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Mismatch {
    pub kind: Kind,
    pub key: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// A value's change in history: `None` meaning absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValueChange {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The detail of a `metadata-changed` history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetadataChange {
    pub labels: BTreeMap<String, ValueChange>,
    pub annotations: BTreeMap<String, ValueChange>,
}

impl MetadataChange {
    /// The smallest patch that makes this change: only the keys that change.
    pub fn as_patch(&self) -> MetadataPatch {
        let keys = |e: &BTreeMap<String, ValueChange>| {
            e.iter().map(|(k, v)| (k.clone(), v.to.clone())).collect()
        };
        MetadataPatch {
            labels: keys(&self.labels),
            annotations: keys(&self.annotations),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Metadata {
        let e = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Metadata {
            labels: e(labels),
            annotations: e(annotations),
        }
    }

    #[test]
    fn a_patch_sets_and_removes_keys_and_leaves_the_rest() {
        let before = md(&[("a", "1"), ("b", "2")], &[("x", "long text")]);
        let patch = MetadataPatch::parse(&json!({
            "labels": {"a": "10", "b": null, "c": "3", "gone": null},
            "annotations": {"y": ""}
        }))
        .unwrap();
        let after = before.apply(&patch);
        assert_eq!(
            after,
            md(&[("a", "10"), ("c", "3")], &[("x", "long text"), ("y", "")])
        );
        let change = before.change_to(&after).unwrap();
        assert_eq!(
            change.labels.len(),
            3,
            "a changed, b removed, c added; gone was absent"
        );
        assert_eq!(
            change.labels["b"],
            ValueChange {
                from: Some("2".into()),
                to: None
            }
        );
        assert_eq!(
            change.annotations["y"],
            ValueChange {
                from: None,
                to: Some(String::new())
            }
        );
    }

    #[test]
    fn a_patch_that_changes_nothing_reports_no_change() {
        let before = md(&[("a", "1")], &[]);
        let patch = MetadataPatch::parse(&json!({"labels": {"a": "1", "b": null}})).unwrap();
        assert_eq!(before.change_to(&before.apply(&patch)), None);
    }

    #[test]
    fn expectations_compare_values_and_absence() {
        let m = md(&[("usage/a", "1")], &[]);
        let expect = Expectations {
            labels: [("usage/a".to_string(), None), ("other".to_string(), None)].into(),
            annotations: [("note".to_string(), Some("x".to_string()))].into(),
        };
        let mismatches = m.mismatches(&expect);
        assert_eq!(
            mismatches,
            vec![
                Mismatch {
                    kind: Kind::Labels,
                    key: "usage/a".into(),
                    expected: None,
                    actual: Some("1".into())
                },
                Mismatch {
                    kind: Kind::Annotations,
                    key: "note".into(),
                    expected: Some("x".into()),
                    actual: None
                },
            ]
        );
    }

    #[test]
    fn non_string_values_are_refused_before_cc_validation() {
        assert_eq!(
            MetadataPatch::parse(&json!({"labels": {"bad key": 5}})),
            Err(PatchError::NotAString {
                kind: Kind::Labels,
                key: "bad key".into()
            })
        );
        assert!(matches!(
            MetadataPatch::parse(&json!({"labels": {"bad key": "v"}})),
            Err(PatchError::Invalid(m)) if m == vec!["label key error: 'bad key' contains invalid characters".to_string()]
        ));
    }

    #[test]
    fn limits_apply_only_when_the_count_grows_past_the_maximum() {
        let limits = MetadataLimits {
            max_labels: 2,
            max_annotations: 1,
        };
        let before = md(&[("a", "1"), ("b", "1")], &[]);
        let patch =
            MetadataPatch::parse(&json!({"labels": {"c": "1", "a": null, "d": "1"}})).unwrap();
        let after = before.apply(&patch);
        assert_eq!(
            before.limit_errors(&patch, &after, limits),
            vec!["Failed to add 3 labels because it would exceed maximum of 2".to_string()]
        );
        let shrink = MetadataPatch::parse(&json!({"labels": {"a": null}})).unwrap();
        assert!(
            before
                .limit_errors(&shrink, &before.apply(&shrink), limits)
                .is_empty()
        );
    }
}
