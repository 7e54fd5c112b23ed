//! The in-memory Cloud Controller: resources and delete jobs.
//!
//! This module owns the stored resource bodies (per type, in creation order), how a new body
//! gets CC's shape (defaults merged under the given body), CC's timestamp format, and the
//! delete jobs: a job is `PROCESSING` until its delay has passed, then `COMPLETE` (the resource
//! is deleted at that moment) or `FAILED` (fault injection; the resource is kept). Jobs settle
//! lazily: [`Store::settle`] runs before every read or write of the store, so every observer
//! sees a job complete exactly when its delay has passed.

use crate::error::CcError;
use crate::types::ResourceType;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// CC's timestamp format: second precision, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A delete job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its delay.
    Processing,
    /// Done; the resource is gone.
    Complete,
    /// Failed (fault injection); the resource is kept.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Processing => "PROCESSING",
            JobState::Complete => "COMPLETE",
            JobState::Failed => "FAILED",
        }
    }
}

/// A delete job (`/v3/jobs/{guid}`).
#[derive(Clone, Debug)]
pub struct Job {
    guid: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    due: Instant,
    delay: Duration,
    operation: String,
    ty: &'static ResourceType,
    resource_guid: String,
    fail: bool,
    state: JobState,
    errors: Vec<Value>,
}

impl Job {
    /// The job's guid.
    pub fn guid(&self) -> &str {
        &self.guid
    }

    /// The job's state.
    pub fn state(&self) -> JobState {
        self.state
    }
}

/// Resources and jobs.
#[derive(Debug, Default)]
pub struct Store {
    resources: HashMap<&'static str, Map<String, Value>>,
    jobs: HashMap<String, Job>,
    /// Resources deleted so far, never auto-created again.
    deleted: std::collections::HashSet<(&'static str, String)>,
}

impl Store {
    /// Completes or fails every job whose delay has passed, in due order.
    pub fn settle(&mut self, now: Instant) {
        let mut due: Vec<(Instant, String)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Processing && j.due <= now)
            .map(|j| (j.due, j.guid.clone()))
            .collect();
        due.sort();
        for (_, guid) in due {
            let Some(job) = self.jobs.get_mut(&guid) else {
                continue;
            };
            job.updated_at = job.created_at
                + chrono::Duration::from_std(job.delay).unwrap_or(chrono::Duration::zero());
            if job.fail {
                job.state = JobState::Failed;
                job.errors = vec![
                    CcError::unprocessable(&[format!(
                        "{} failed: injected by ccsim's fail_next_jobs fault",
                        job.operation
                    )])
                    .entry(),
                ];
            } else {
                job.state = JobState::Complete;
                let (ty, resource_guid) = (job.ty.plural, job.resource_guid.clone());
                // A resource already deleted by a parallel job is ignored, as in CC.
                if let Some(resources) = self.resources.get_mut(ty) {
                    resources.shift_remove(&resource_guid);
                }
                self.deleted.insert((ty, resource_guid));
            }
        }
    }

    /// A resource's body.
    pub fn get(&self, ty: &ResourceType, guid: &str) -> Option<&Value> {
        self.resources.get(ty.plural)?.get(guid)
    }

    /// Whether a resource exists.
    pub fn contains(&self, ty: &ResourceType, guid: &str) -> bool {
        self.get(ty, guid).is_some()
    }

    /// Stores a body under its `guid` (replacing one with the same guid in place).
    pub fn put(&mut self, ty: &'static ResourceType, body: Value) {
        let guid = body
            .get("guid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.resources
            .entry(ty.plural)
            .or_default()
            .insert(guid, body);
    }

    /// Removes a resource.
    pub fn remove(&mut self, ty: &'static ResourceType, guid: &str) -> Option<Value> {
        self.deleted.insert((ty.plural, guid.to_string()));
        self.resources.get_mut(ty.plural)?.shift_remove(guid)
    }

    /// Creates a resource in its default shape if it is unknown, its GUID is a UUID, and it
    /// was never deleted (the `auto_create` testing aid).
    pub fn auto_create(&mut self, ty: &'static ResourceType, guid: &str, base_url: &str) {
        if self.contains(ty, guid)
            || uuid::Uuid::try_parse(guid).is_err()
            || self.deleted.contains(&(ty.plural, guid.to_string()))
        {
            return;
        }
        if let Ok(body) = build_resource(ty, &json!({ "guid": guid }), base_url, Utc::now()) {
            self.put(ty, body);
        }
    }

    /// All resources of a type, in creation order.
    pub fn list(&self, ty: &ResourceType) -> Vec<&Value> {
        self.resources
            .get(ty.plural)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    /// Starts a delete job for a resource; returns the job's guid.
    pub fn start_delete_job(
        &mut self,
        ty: &'static ResourceType,
        guid: &str,
        operation: String,
        delay: Duration,
        fail: bool,
    ) -> String {
        let now = Utc::now();
        let job = Job {
            guid: Uuid::new_v4().to_string(),
            created_at: now,
            updated_at: now,
            due: Instant::now() + delay,
            delay,
            operation,
            ty,
            resource_guid: guid.to_string(),
            fail,
            state: JobState::Processing,
            errors: Vec::new(),
        };
        let job_guid = job.guid.clone();
        self.jobs.insert(job_guid.clone(), job);
        job_guid
    }

    /// A job.
    pub fn job(&self, guid: &str) -> Option<&Job> {
        self.jobs.get(guid)
    }

    /// CC's job body (`JobPresenter`): the link to the resource is present while it exists.
    pub fn job_body(&self, job: &Job, base_url: &str) -> Value {
        let mut links = Map::new();
        links.insert(
            "self".to_string(),
            json!({"href": format!("{base_url}/v3/jobs/{}", job.guid)}),
        );
        if self.contains(job.ty, &job.resource_guid) {
            links.insert(
                job.ty.singular.to_string(),
                json!({"href": format!("{base_url}/v3/{}/{}", job.ty.plural, job.resource_guid)}),
            );
        }
        json!({
            "guid": job.guid,
            "created_at": timestamp(job.created_at),
            "updated_at": timestamp(job.updated_at),
            "operation": job.operation,
            "state": job.state.as_str(),
            "errors": job.errors,
            "warnings": [],
            "links": links,
        })
    }
}

/// Links derived from `relationships.<name>.data.guid`, for the relationships CC presents a
/// link for.
fn relationship_collection(name: &str) -> Option<&'static str> {
    Some(match name {
        "space" => "spaces",
        "organization" => "organizations",
        "domain" => "domains",
        "app" => "apps",
        "route" => "routes",
        "service_instance" => "service_instances",
        "service_offering" => "service_offerings",
        "service_plan" => "service_plans",
        "service_broker" => "service_brokers",
        "current_droplet" => "droplets",
        "droplet" => "droplets",
        "package" => "packages",
        "stack" => "stacks",
        _ => return None,
    })
}

/// A new resource body: CC's common shape (`guid`, `created_at`, `updated_at`, empty
/// `metadata`, `links.self`, links derived from `relationships`, a route's `destinations`
/// link) with `given` deep-merged over it. `given` must be an object or null.
pub fn build_resource(
    ty: &ResourceType,
    given: &Value,
    base_url: &str,
    now: DateTime<Utc>,
) -> Result<Value, String> {
    let given = match given {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        _ => return Err("body must be a JSON object".to_string()),
    };
    let guid = match given.get("guid") {
        None | Some(Value::Null) => Uuid::new_v4().to_string(),
        Some(Value::String(g)) if !g.is_empty() => g.clone(),
        Some(_) => return Err("guid must be a non-empty string".to_string()),
    };
    let self_href = format!("{base_url}/v3/{}/{guid}", ty.plural);
    let mut links = Map::new();
    links.insert("self".to_string(), json!({ "href": self_href }));
    if let Some(relationships) = given.get("relationships").and_then(Value::as_object) {
        for (name, rel) in relationships {
            let target = rel.pointer("/data/guid").and_then(Value::as_str);
            if let (Some(collection), Some(target)) = (relationship_collection(name), target) {
                links.insert(
                    name.clone(),
                    json!({"href": format!("{base_url}/v3/{collection}/{target}")}),
                );
            }
        }
    }
    if ty.plural == "routes" {
        links.insert(
            "destinations".to_string(),
            json!({"href": format!("{self_href}/destinations")}),
        );
    }
    let now = timestamp(now);
    let mut body = json!({
        "guid": guid,
        "created_at": now,
        "updated_at": now,
        "metadata": {"labels": {}, "annotations": {}},
        "links": links,
    });
    let mut given = Value::Object(given);
    if let Some(g) = given.as_object_mut() {
        g.insert("guid".to_string(), Value::String(guid));
    }
    merge_over(&mut body, &given);
    Ok(body)
}

/// Deep-merges `patch` over `target`: objects merge key by key, anything else replaces.
/// Inside `metadata.labels` and `metadata.annotations` a `null` deletes the key (as a
/// `cf set-label`/`unset-label` would); elsewhere `null` is stored as `null`.
pub fn merge_over(target: &mut Value, patch: &Value) {
    merge_at(target, patch, 0, false);
}

fn merge_at(target: &mut Value, patch: &Value, depth: usize, in_metadata: bool) {
    let (Some(target_map), Some(patch_map)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (key, value) in patch_map {
        let metadata_here = depth == 0 && key == "metadata";
        let section = in_metadata && depth == 1 && (key == "labels" || key == "annotations");
        if section && value.is_object() {
            let entry = target_map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let (Some(entries), Some(changes)) = (entry.as_object_mut(), value.as_object()) {
                for (k, v) in changes {
                    if v.is_null() {
                        entries.shift_remove(k);
                    } else {
                        entries.insert(k.clone(), v.clone());
                    }
                }
            }
            continue;
        }
        match target_map.get_mut(key) {
            Some(existing) if existing.is_object() && value.is_object() => {
                merge_at(existing, value, depth + 1, metadata_here);
            }
            _ => {
                target_map.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::lookup;

    #[test]
    fn new_resources_get_ccs_shape_under_the_given_body() {
        let routes = lookup("routes").expect("type");
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .expect("time")
            .with_timezone(&Utc);
        let body = build_resource(
            routes,
            &json!({"guid": "r1", "host": "h",
                    "relationships": {"space": {"data": {"guid": "s1"}}},
                    "metadata": {"labels": {"a": "b"}}}),
            "http://cc",
            now,
        )
        .expect("built");
        assert_eq!(
            body,
            json!({
                "guid": "r1", "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
                "metadata": {"labels": {"a": "b"}, "annotations": {}},
                "links": {"self": {"href": "http://cc/v3/routes/r1"},
                          "space": {"href": "http://cc/v3/spaces/s1"},
                          "destinations": {"href": "http://cc/v3/routes/r1/destinations"}},
                "host": "h",
                "relationships": {"space": {"data": {"guid": "s1"}}},
            })
        );
        assert!(build_resource(routes, &json!([1]), "http://cc", now).is_err());
    }

    #[test]
    fn merging_deletes_labels_with_null_and_keeps_nulls_elsewhere() {
        let mut body =
            json!({"port": 1, "metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {}}});
        merge_over(
            &mut body,
            &json!({"port": null, "metadata": {"labels": {"a": null, "c": "3"}}}),
        );
        assert_eq!(
            body,
            json!({"port": null, "metadata": {"labels": {"b": "2", "c": "3"}, "annotations": {}}})
        );
    }
}
