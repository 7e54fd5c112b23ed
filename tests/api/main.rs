//! The integration suite: real HTTP against leasehold instances on a real PostgreSQL.

mod helpers;
mod openapi_drift;
mod smoke;
