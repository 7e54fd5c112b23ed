//! Pure types and rules, no I/O: what a resource, a lease, a version and metadata are,
//! and the write rule of API.md §2 that decides whether a mutation may go ahead.

pub mod etag;
pub mod lease;
pub mod metadata;
pub mod resource;
pub mod write_rule;
