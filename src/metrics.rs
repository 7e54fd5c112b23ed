//! Prometheus metrics: this module owns every metric name and the process-wide recorder.
//!
//! The recorder is installed once per process, on first use (tests start many apps in one
//! process, and the `metrics` facade has one global recorder), and rendered by our own
//! `GET /metrics` route: the exporter runs no listener of its own. Every label value is
//! drawn from a bounded set (route templates, never raw paths or GUIDs), so the number of
//! series stays bounded whatever clients send.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::PoolStats;

/// HTTP requests by `route` (template or `unmatched`), `method` and `status`.
const HTTP_REQUESTS: &str = "leasehold_http_requests_total";
/// HTTP latency by `route` and `method`, in seconds.
const HTTP_DURATION: &str = "leasehold_http_request_duration_seconds";
/// Lease events by `event`.
const LEASES: &str = "leasehold_leases_total";
/// Problems answered, by `code`.
const PROBLEMS: &str = "leasehold_problems_total";
/// Cloud Controller requests by `method` and `outcome`.
const UPSTREAM_REQUESTS: &str = "leasehold_upstream_requests_total";
/// Cloud Controller latency by `method`, in seconds.
const UPSTREAM_DURATION: &str = "leasehold_upstream_request_duration_seconds";
/// Pool connections by `state` (`in_use`, `idle`).
const POOL_CONNECTIONS: &str = "leasehold_db_pool_connections";
/// The pool's size.
const POOL_MAX: &str = "leasehold_db_pool_max_connections";

/// Bucket bounds of every latency histogram, in seconds: 1 ms to the 30 s request timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets between scrapes, so memory
/// stays bounded when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The lease events counted, each pre-registered at 0 so `rate()` works from the start.
const LEASE_EVENTS: [&str; 5] = ["granted", "renewed", "released", "expired", "revoked"];

/// The installed recorder's handle; installs the recorder on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(install)
}

fn install() -> PrometheusHandle {
    let handle = match PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder)
    {
        Ok(handle) => handle,
        Err(error) => {
            // Another recorder owns the process: /metrics then renders an empty page.
            tracing::warn!(%error, "cannot install the Prometheus recorder; /metrics stays empty");
            PrometheusBuilder::new().build_recorder().handle()
        }
    };
    describe();
    for event in LEASE_EVENTS {
        ::metrics::counter!(LEASES, "event" => event).increment(0);
    }
    let upkept = handle.clone();
    let upkeep = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkept.run_upkeep();
            }
        });
    if let Err(error) = upkeep {
        tracing::warn!(%error, "cannot start the metrics upkeep thread; scrapes still upkeep");
    }
    handle
}

/// The `# HELP` lines.
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template and method"
    );
    describe_counter!(
        LEASES,
        "Lease events: granted, renewed, released, expired, revoked"
    );
    describe_counter!(
        PROBLEMS,
        "Problem responses by code, e.g. stale-fencing-token, precondition-failed"
    );
    describe_counter!(
        UPSTREAM_REQUESTS,
        "Cloud Controller requests by method and outcome (ok, 4xx, 5xx, timeout, error)"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Cloud Controller request latency by method"
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        "Database pool connections by state (in_use, idle)"
    );
    describe_gauge!(POOL_MAX, "Database pool size");
}

/// A lease event: `granted`, `renewed`, `released`, `expired` or `revoked`.
pub fn lease_event(event: &'static str) {
    handle();
    ::metrics::counter!(LEASES, "event" => event).increment(1);
}

/// A problem answered, by its code (e.g. `stale-fencing-token`, `precondition-failed`).
pub fn problem(code: &'static str) {
    handle();
    ::metrics::counter!(PROBLEMS, "code" => code).increment(1);
}

/// One Cloud Controller request: `outcome` is `ok`, `4xx`, `5xx`, `timeout` or `error`.
pub fn upstream_call(method: &'static str, outcome: &'static str, seconds: f64) {
    handle();
    ::metrics::counter!(UPSTREAM_REQUESTS, "method" => method, "outcome" => outcome).increment(1);
    ::metrics::histogram!(UPSTREAM_DURATION, "method" => method).record(seconds);
}

/// The connection pool as it stands.
pub fn pool(stats: PoolStats) {
    handle();
    ::metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(stats.in_use));
    ::metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(stats.idle));
    ::metrics::gauge!(POOL_MAX).set(f64::from(stats.max));
}

/// One HTTP request. `route` must be a route template or `unmatched`, never a raw path;
/// `method` one of a bounded set (see [`method_label`]).
pub fn http_request(route: String, method: &'static str, status: u16, seconds: f64) {
    handle();
    ::metrics::counter!(
        HTTP_REQUESTS,
        "route" => route.clone(),
        "method" => method,
        "status" => status.to_string()
    )
    .increment(1);
    ::metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(seconds);
}

/// A method as a label from a bounded set: the standard methods, else `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_increase_and_end_at_the_default_request_timeout() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LATENCY_BUCKETS.last().copied(), Some(30.0));
    }

    #[test]
    fn extension_methods_are_labelled_other() {
        let custom = axum::http::Method::from_bytes(b"PURGE").expect("a valid method token");
        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
    }
}
