//! The resource types ccsim serves and CC's per-type behaviour.
//!
//! This module owns the table of the 22 CC v3 collections that carry metadata (leasehold's
//! API.md §1): CC's singular resource name (used in `"<Resource> not found"`, job operations and
//! job links), what `DELETE` answers (cc-api.md c.) and whether a metadata-only `PATCH` bumps
//! `updated_at` (cc-api.md h.).

use serde_json::Value;

/// What CC's `DELETE /v3/{type}/{guid}` does for a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteKind {
    /// `202 Accepted` + `Location: /v3/jobs/{guid}`; the resource goes when the job completes.
    Async,
    /// `204 No Content`; the resource is gone at once.
    Sync,
    /// CC has no DELETE route: its router answers `404 CF-NotFound` `Unknown request`.
    NoDelete,
    /// Managed service instance (and bindings to one): async; user-provided: sync.
    /// ccsim reads the stored body's `type`: `"user-provided"` means sync, anything else
    /// (absent, `"managed"`, a binding's `"app"`/`"key"`) means async.
    ByServiceInstanceType,
}

/// One CC v3 resource collection.
#[derive(Debug)]
pub struct ResourceType {
    /// The collection name in the URL, e.g. `routes`.
    pub plural: &'static str,
    /// CC's resource type, e.g. `route`, `service_credential_binding`.
    pub singular: &'static str,
    /// What DELETE answers.
    pub delete: DeleteKind,
    /// Whether a metadata-only PATCH bumps `updated_at` (the update action saves the parent row).
    pub bumps_updated_at: bool,
    /// CC checks that the resource exists before validating the body (spaces only).
    pub not_found_before_validation: bool,
}

const fn t(
    plural: &'static str,
    singular: &'static str,
    delete: DeleteKind,
    bumps_updated_at: bool,
) -> ResourceType {
    ResourceType {
        plural,
        singular,
        delete,
        bumps_updated_at,
        not_found_before_validation: false,
    }
}

use DeleteKind::{Async, ByServiceInstanceType, NoDelete, Sync};

/// Every type ccsim serves, in API.md §1 order.
pub static TYPES: &[ResourceType] = &[
    t("apps", "app", Async, true),
    t("builds", "build", NoDelete, false),
    t("buildpacks", "buildpack", Async, true),
    t("deployments", "deployment", NoDelete, true),
    t("domains", "domain", Async, false),
    t("droplets", "droplet", Async, true),
    t("isolation_segments", "isolation_segment", Sync, true),
    t("organizations", "organization", Async, true),
    t("packages", "package", Async, false),
    t("processes", "process", NoDelete, true),
    t("revisions", "revision", NoDelete, false),
    t("routes", "route", Async, true),
    t("service_brokers", "service_broker", Async, false),
    t(
        "service_credential_bindings",
        "service_credential_binding",
        ByServiceInstanceType,
        false,
    ),
    t(
        "service_instances",
        "service_instance",
        ByServiceInstanceType,
        false,
    ),
    t("service_offerings", "service_offering", Sync, false),
    t("service_plans", "service_plan", Sync, false),
    t(
        "service_route_bindings",
        "service_route_binding",
        ByServiceInstanceType,
        false,
    ),
    ResourceType {
        plural: "spaces",
        singular: "space",
        delete: Async,
        bumps_updated_at: true,
        not_found_before_validation: true,
    },
    t("stacks", "stack", Sync, false),
    t("tasks", "task", NoDelete, false),
    t("users", "user", Async, false),
];

/// The type for a collection name, if ccsim serves it.
pub fn lookup(plural: &str) -> Option<&'static ResourceType> {
    TYPES.iter().find(|t| t.plural == plural)
}

impl ResourceType {
    /// CC's `"#{resource.to_s.humanize} not found"`, e.g. `Service instance not found`.
    pub fn not_found_detail(&self) -> String {
        format!("{} not found", humanize(self.singular))
    }

    /// Whether DELETE of this stored body answers 202 with a job (true) or 204 (false).
    /// None when CC has no DELETE for the type.
    pub fn deletes_async(&self, body: &Value) -> Option<bool> {
        match self.delete {
            DeleteKind::Async => Some(true),
            DeleteKind::Sync => Some(false),
            DeleteKind::NoDelete => None,
            DeleteKind::ByServiceInstanceType => {
                Some(body.get("type").and_then(Value::as_str) != Some("user-provided"))
            }
        }
    }

    /// The job's `operation` for a delete of this body (CC's job `display_name`).
    pub fn delete_operation(&self, body: &Value) -> String {
        match self.plural {
            // DeleteServiceCredentialBindingJobActor / DeleteServiceKeyBindingJobActor
            "service_credential_bindings" => {
                if body.get("type").and_then(Value::as_str) == Some("key") {
                    "service_keys.delete".to_string()
                } else {
                    "service_bindings.delete".to_string()
                }
            }
            // DeleteServiceRouteBindingJobActor
            "service_route_bindings" => "service_route_bindings.delete".to_string(),
            // DeleteActionJob / DeleteServiceInstanceJob / RecursiveDeleteAppJob
            _ => format!("{}.delete", self.singular),
        }
    }
}

/// ActiveSupport `humanize` for a snake_case identifier: underscores become spaces and the
/// first letter is upper-cased.
pub fn humanize(snake: &str) -> String {
    let spaced = snake.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn not_found_details_are_ccs_humanized_singulars() {
        let detail = |p: &str| lookup(p).map(ResourceType::not_found_detail);
        assert_eq!(detail("routes").as_deref(), Some("Route not found"));
        assert_eq!(
            detail("service_instances").as_deref(),
            Some("Service instance not found")
        );
        assert_eq!(
            detail("isolation_segments").as_deref(),
            Some("Isolation segment not found")
        );
        assert_eq!(TYPES.len(), 22);
    }

    #[test]
    fn service_types_delete_async_unless_user_provided() {
        let si = lookup("service_instances").expect("type");
        assert_eq!(si.deletes_async(&json!({})), Some(true));
        assert_eq!(si.deletes_async(&json!({"type": "managed"})), Some(true));
        assert_eq!(
            si.deletes_async(&json!({"type": "user-provided"})),
            Some(false)
        );
        let scb = lookup("service_credential_bindings").expect("type");
        assert_eq!(
            scb.delete_operation(&json!({"type": "key"})),
            "service_keys.delete"
        );
        assert_eq!(
            lookup("tasks").expect("type").deletes_async(&json!({})),
            None
        );
    }
}
