//! Operations routes: liveness, readiness and the limits in force.

use axum::Json;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::lease::{DEFAULT_TTL, MAX_TTL, MIN_TTL};

use super::problem::Problem;
use super::wire::{InfoOut, LimitsOut, ProblemOut, RangeOut, ReadyOut};
use super::{AppState, MAX_BODY_BYTES};

/// Probes answer quickly: a database that does not answer within this is not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(info))
}

/// The process is up (no I/O).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Up")))]
async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The database is reachable and its schema in place.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, body = ReadyOut),
        (status = 503, description = "`unavailable`, naming the part that failed", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<ReadyOut>, Problem> {
    let check = tokio::time::timeout(READY_TIMEOUT, state.coordinator.store().check_ready()).await;
    match check {
        Ok(Ok(())) => Ok(Json(ReadyOut {
            status: "ready",
            database: "ok",
        })),
        Err(_) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            format!(
                "database: no answer within {} ms",
                READY_TIMEOUT.as_millis()
            ),
        )
        .with("database", "timeout")),
        Ok(Err(error)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            format!("database: {error}"),
        )
        .with("database", error.to_string())),
    }
}

/// Version, upstream mode, store kind and the limits in force.
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, body = InfoOut)))]
async fn info(State(state): State<AppState>) -> Json<InfoOut> {
    let rules = state.coordinator.rules();
    Json(InfoOut {
        version: env!("CARGO_PKG_VERSION"),
        upstream: "local",
        store: state.coordinator.store().kind(),
        limits: LimitsOut {
            metadata: rules.limits,
            ttl_seconds: RangeOut {
                min: MIN_TTL.as_secs(),
                max: MAX_TTL.as_secs(),
                default: DEFAULT_TTL.as_secs(),
            },
            wait_seconds: RangeOut {
                min: 0,
                max: 0,
                default: 0,
            },
            lock_delay_seconds: RangeOut {
                min: 0,
                max: 0,
                default: 0,
            },
            max_body_bytes: MAX_BODY_BYTES,
            require_preconditions: rules.require_preconditions,
        },
    })
}
