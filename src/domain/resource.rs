//! A resource is `(type, guid)`: a CF v3 collection that carries metadata, and a UUID.
//! Parsing is the only way in, so a `ResourceKey` always names a valid CF resource.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The CF v3 resource collections whose resources carry labels and annotations.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Apps,
    Builds,
    Buildpacks,
    Deployments,
    Domains,
    Droplets,
    IsolationSegments,
    Organizations,
    Packages,
    Processes,
    Revisions,
    Routes,
    ServiceBrokers,
    ServiceCredentialBindings,
    ServiceInstances,
    ServiceOfferings,
    ServicePlans,
    ServiceRouteBindings,
    Spaces,
    Stacks,
    Tasks,
    Users,
}

impl ResourceType {
    pub const ALL: [ResourceType; 22] = [
        Self::Apps,
        Self::Builds,
        Self::Buildpacks,
        Self::Deployments,
        Self::Domains,
        Self::Droplets,
        Self::IsolationSegments,
        Self::Organizations,
        Self::Packages,
        Self::Processes,
        Self::Revisions,
        Self::Routes,
        Self::ServiceBrokers,
        Self::ServiceCredentialBindings,
        Self::ServiceInstances,
        Self::ServiceOfferings,
        Self::ServicePlans,
        Self::ServiceRouteBindings,
        Self::Spaces,
        Self::Stacks,
        Self::Tasks,
        Self::Users,
    ];

    /// The collection name as it appears in CF v3 paths, e.g. `service_instances`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apps => "apps",
            Self::Builds => "builds",
            Self::Buildpacks => "buildpacks",
            Self::Deployments => "deployments",
            Self::Domains => "domains",
            Self::Droplets => "droplets",
            Self::IsolationSegments => "isolation_segments",
            Self::Organizations => "organizations",
            Self::Packages => "packages",
            Self::Processes => "processes",
            Self::Revisions => "revisions",
            Self::Routes => "routes",
            Self::ServiceBrokers => "service_brokers",
            Self::ServiceCredentialBindings => "service_credential_bindings",
            Self::ServiceInstances => "service_instances",
            Self::ServiceOfferings => "service_offerings",
            Self::ServicePlans => "service_plans",
            Self::ServiceRouteBindings => "service_route_bindings",
            Self::Spaces => "spaces",
            Self::Stacks => "stacks",
            Self::Tasks => "tasks",
            Self::Users => "users",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no CF resource collection leasehold knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a CF resource type with metadata; expected one of: {list}", list = type_list())]
pub struct UnknownResourceType(pub String);

fn type_list() -> String {
    ResourceType::ALL.map(ResourceType::as_str).join(", ")
}

impl FromStr for ResourceType {
    type Err = UnknownResourceType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownResourceType(s.to_owned()))
    }
}

/// A string that is not a UUID in its hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a GUID (a UUID such as 4f0ae8a4-6d3c-4b1e-9f27-2b8a0c7e5d11)")]
pub struct InvalidGuid(pub String);

/// Parses a CF GUID: the 36-character hyphenated UUID form, any letter case.
pub fn parse_guid(s: &str) -> Result<Uuid, InvalidGuid> {
    if s.len() != 36 {
        return Err(InvalidGuid(s.to_owned()));
    }
    Uuid::try_parse(s).map_err(|_| InvalidGuid(s.to_owned()))
}

/// One CF resource: the unit of locking, versioning, leasing and history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub resource_type: ResourceType,
    pub guid: Uuid,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.resource_type, self.guid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in ResourceType::ALL {
            assert_eq!(t.as_str().parse::<ResourceType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn unknown_and_miscased_types_are_refused() {
        for bad in ["app", "Apps", "", "route_policies", "routes/"] {
            assert!(bad.parse::<ResourceType>().is_err(), "{bad}");
        }
    }

    #[test]
    fn guids_are_hyphenated_uuids_in_any_case_and_print_lower_case() {
        let g = parse_guid("4F0AE8A4-6D3C-4B1E-9F27-2B8A0C7E5D11").unwrap();
        assert_eq!(g.to_string(), "4f0ae8a4-6d3c-4b1e-9f27-2b8a0c7e5d11");
        for bad in [
            "",
            "not-a-guid",
            "4f0ae8a46d3c4b1e9f272b8a0c7e5d11",
            "{4f0ae8a4-6d3c-4b1e-9f27-2b8a0c7e5d11}",
            "4f0ae8a4-6d3c-4b1e-9f27-2b8a0c7e5d1g",
        ] {
            assert!(parse_guid(bad).is_err(), "{bad}");
        }
    }
}
