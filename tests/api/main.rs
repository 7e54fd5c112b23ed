//! The integration suite: real HTTP against leasehold instances on a real PostgreSQL.

mod helpers;
mod openapi_drift;
mod smoke;

mod bad_input;
mod leases;
mod ops;
mod resources;

mod auth;
mod cli;
mod cloud_controller;
mod concurrency;
mod crash;
mod embedded;
mod metrics;
mod waiting;
