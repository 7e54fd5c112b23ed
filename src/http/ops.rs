//! Operations routes: liveness, readiness, the limits in force and Prometheus metrics.

use axum::Json;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::lease::{DEFAULT_TTL, MAX_LOCK_DELAY, MAX_TTL, MAX_WAIT, MIN_TTL};

use super::problem::Problem;
use super::wire::{InfoOut, LimitsOut, ProblemOut, RangeOut, ReadyOut};
use super::{AppState, MAX_BODY_BYTES};

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Probes answer quickly: a database that does not answer within this is not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(info))
        .routes(routes!(metrics))
}

/// The process is up (no I/O).
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "Up")))]
async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The database (and the upstream, when configured) answers, and the schema is in place.
#[utoipa::path(
    get,
    path = "/readyz",
    security(()),
    tag = "operations",
    responses(
        (status = 200, body = ReadyOut),
        (status = 503, description = "`unavailable`, naming the part that failed (`database`, `upstream`)", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<ReadyOut>, Problem> {
    let database = within(READY_TIMEOUT, state.coordinator.store().check_ready()).await;
    let upstream = match state.coordinator.upstream() {
        None => None,
        Some(upstream) => Some(within(READY_TIMEOUT, upstream.check_ready()).await),
    };
    let failed: Vec<String> = [
        ("database", Some(&database)),
        ("upstream", upstream.as_ref()),
    ]
    .into_iter()
    .filter_map(|(part, result)| match result {
        Some(Err(e)) => Some(format!("{part}: {e}")),
        _ => None,
    })
    .collect();
    if failed.is_empty() {
        return Ok(Json(ReadyOut {
            status: "ready",
            database: "ok",
            upstream: upstream.map(|_| "ok"),
        }));
    }
    let mut problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Service unavailable",
        failed.join("; "),
    );
    if let Err(e) = &database {
        problem = problem.with("database", e.clone());
    }
    if let Some(Err(e)) = &upstream {
        problem = problem.with("upstream", e.clone());
    }
    Err(problem)
}

/// Runs a readiness check with a time limit; the error as text.
async fn within<E: std::fmt::Display>(
    limit: Duration,
    check: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(limit, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Version, upstream mode, store kind and the limits in force.
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, body = InfoOut)))]
async fn info(State(state): State<AppState>) -> Json<InfoOut> {
    let rules = state.coordinator.rules();
    Json(InfoOut {
        version: env!("CARGO_PKG_VERSION"),
        upstream: if state.coordinator.upstream().is_some() {
            "cloud-controller"
        } else {
            "local"
        },
        store: state.coordinator.store().kind(),
        auth: state.auth.mode(),
        limits: LimitsOut {
            metadata: rules.limits,
            ttl_seconds: RangeOut {
                min: MIN_TTL.as_secs(),
                max: MAX_TTL.as_secs(),
                default: DEFAULT_TTL.as_secs(),
            },
            wait_seconds: RangeOut {
                min: 0,
                max: MAX_WAIT.as_secs(),
                default: 0,
            },
            lock_delay_seconds: RangeOut {
                min: 0,
                max: MAX_LOCK_DELAY.as_secs(),
                default: 0,
            },
            max_body_bytes: MAX_BODY_BYTES,
            require_preconditions: rules.require_preconditions,
        },
    })
}

/// Prometheus metrics.
///
/// Requests by route template, method and status with latency histograms; lease events;
/// problems by code (e.g. `stale-fencing-token`, `precondition-failed`); Cloud Controller
/// calls by outcome with latency; database pool usage.
#[utoipa::path(
    get,
    path = "/metrics",
    security((), ("uaa" = ["leasehold.read"]), ("static_token" = [])),
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::pool(state.coordinator.store().pool_stats());
    (
        [(CONTENT_TYPE, PROMETHEUS_TEXT)],
        crate::metrics::handle().render(),
    )
}
