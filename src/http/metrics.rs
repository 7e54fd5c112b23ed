//! The request-metrics middleware: counts every request and times it, labelled with the
//! matched route TEMPLATE (e.g. `/v1/resources/{type}/{guid}/lease`) or `unmatched` — never
//! the raw path, so GUIDs and ids never become label values.

use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The route label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// Records `leasehold_http_requests_total` and `leasehold_http_request_duration_seconds`.
pub async fn track_requests(request: Request<axum::body::Body>, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = crate::metrics::method_label(request.method());
    let response = next.run(request).await;
    crate::metrics::http_request(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
