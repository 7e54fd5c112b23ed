//! ccsim: a Cloud Foundry Cloud Controller (CC) v3 API + UAA emulator with fault injection.
//!
//! leasehold uses ccsim as its upstream in tests, in Docker Compose, and for developers without
//! a CF. ccsim reproduces the CC behaviour leasehold depends on, as read from CC's source
//! (`/work/shared/cc-api.md`): metadata validation messages (from the `cf-metadata` crate),
//! PATCH merge semantics and limits, async DELETE jobs, error bodies and codes, the
//! `label_selector` grammar, UAA client-credentials tokens and scope checks, and `updated_at`
//! behaviour per type. An `/admin` API seeds and edits resources out of band, records requests
//! and injects faults (latency, 5xx, 429, dropped connections, refused connections, expired
//! tokens, failed jobs).
//!
//! Admin API (no auth, no faults, not logged):
//! - `POST /admin/resources` `{"type", "body"}` → 201; 409 if the guid exists.
//! - `GET|PUT|DELETE /admin/resources/{type}/{guid}`: `PUT` deep-merges (a `null` label or
//!   annotation deletes it), `?replace=true` replaces; both bump `updated_at` unless given.
//! - `GET|DELETE /admin/requests`; `GET|PUT|DELETE /admin/faults` (see [`Faults`]).
//!
//! Decisions where CC's source does not settle the behaviour:
//! - Faults apply to `/v3/*` and `/uaa/*` only (not `/` nor `/admin`), in the order latency,
//!   `rate_limit_next`, `fail_next`, `fail_every`; `fail_every` counts every such request since
//!   the last `PUT /admin/faults`. `drop_after_patch` only counts PATCHes that were applied
//!   (a 4xx PATCH is answered normally). `refuse_connections_ms` also closes open connections
//!   (idle at once, busy after their response), so pooled clients notice. `fail_next_jobs` is
//!   decided when the DELETE is received.
//! - `GET /v3/routes?label_selector=<unparseable>` answers 500 `UnknownError` (CC hands a `nil`
//!   requirement to its query generator); other invalid selectors on routes just filter.
//! - A PATCH body that is JSON but not an object is 400 `CF-MessageParseError`; an empty body
//!   is `{}`. Non-string metadata values are stored as their JSON text (`true` → `"true"`).
//! - Service instances and bindings delete synchronously (204) only when the stored `type` is
//!   `user-provided`.
//! - Unknown list query parameters are ignored; `order_by` accepts `[+-]created_at|updated_at`.
//!
//! In-process use:
//! ```no_run
//! # async fn demo() -> Result<(), ccsim::Error> {
//! let sim = ccsim::spawn(ccsim::Config::default()).await?;
//! let route = sim.seed("routes", serde_json::json!({"host": "a"})).await?;
//! println!("{} {}", sim.base_url, route["guid"]);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod faults;
pub mod metadata;
pub mod query;
pub mod reqlog;
pub mod selector;
pub mod server;
pub mod state;
pub mod store;
pub mod token;
pub mod types;
pub mod uaa;
pub mod v3;

pub use config::{ClientConfig, Config};
pub use error::{CcError, Error};
pub use faults::Faults;
pub use server::{Sim, spawn};
