//! leasehold: fenced leases and versioned metadata for Cloud Foundry resources.
//!
//! A guided tour, in the direction data flows:
#![forbid(unsafe_code)]

/// Building the service from a configuration and a bound listener; graceful shutdown.
pub mod app;
/// Who is calling: UAA JWTs or static tokens, and the scopes they grant.
pub mod auth;
/// The operator CLI: `leases` and `resource` subcommands and `probe`, over HTTP.
pub mod cli;
/// Flags and environment variables.
pub mod config;
/// The one place that opens a resource's critical section and decides inside it.
pub mod coordinator;
/// Pure types and rules: resources, leases, versions, metadata, the write rule.
pub mod domain;
/// Routers, request parsing, problems, the OpenAPI document.
pub mod http;
/// Prometheus metric names and the process-wide recorder rendered at `/metrics`.
pub mod metrics;
/// Cloud Foundry's `VCAP_SERVICES` and `PORT`, turned into a database URL and a listen address.
pub mod platform;
/// All SQL: leases, resources, history, behind the `Store` traits.
pub mod store;
/// Logging setup.
pub mod telemetry;
/// Where metadata of record lives when it is not leasehold's own: Cloud Controller.
pub mod upstream;
