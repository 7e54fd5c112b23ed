//! The HTTP layer: routers per area, request parsing, the problem mapping and the OpenAPI
//! document. Handlers parse and render; the coordinator decides.

mod auth;
mod extract;
mod leases;
mod metrics;
mod ops;
pub mod problem;
mod resources;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::coordinator::Coordinator;

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub coordinator: Arc<Coordinator>,
    pub auth: Arc<crate::auth::Authenticator>,
    /// Whether /metrics answers without a token.
    pub metrics_open: bool,
    /// The resource types served; `None`: all.
    pub resource_types:
        Option<Arc<std::collections::BTreeSet<crate::domain::resource::ResourceType>>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leasehold",
        description = "Fenced leases and versioned metadata for Cloud Foundry resources. \
            Errors are RFC 9457 problems (`application/problem+json`) whose `type` is `/problems/<code>`."
    ),
    tags(
        (name = "leases", description = "Fenced leases on (type, guid)"),
        (name = "resources", description = "Versioned metadata, conditional writes and deletes, history"),
        (name = "operations", description = "Health, readiness, info, metrics"),
    ),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// Declares how `/v1` requests authenticate (when leasehold runs with `LEASEHOLD_AUTH`):
/// UAA client-credentials tokens with leasehold's scopes, or static bearer tokens.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes,
            SecurityRequirement, SecurityScheme,
        };
        let scopes = Scopes::from_iter([
            (crate::auth::READ, "read leases, resources and history"),
            (
                crate::auth::WRITE,
                "take, renew and release leases; write and delete resources",
            ),
            (
                crate::auth::ADMIN,
                "revoke others' leases and list every lease (implies read and write)",
            ),
        ]);
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "uaa",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::ClientCredentials(ClientCredentials::new(
                    "<uaa>/oauth/token",
                    scopes,
                ))],
                "UAA-issued RS256 JWTs (LEASEHOLD_AUTH=uaa); `aud` must name leasehold",
            )),
        );
        components.add_security_scheme(
            "static_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "static tokens from LEASEHOLD_AUTH_TOKENS_FILE (LEASEHOLD_AUTH=tokens)",
                    ))
                    .build(),
            ),
        );
        api.security = Some(vec![
            SecurityRequirement::new("uaa", [crate::auth::READ, crate::auth::WRITE]),
            SecurityRequirement::new("static_token", Vec::<String>::new()),
        ]);
    }
}

/// The routes and their OpenAPI document, before state and layers.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(leases::router())
        .merge(resources::router())
        .merge(ops::router())
}

/// The OpenAPI document, as served at `/openapi.json` and committed as `openapi/leasehold.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routes().split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The whole HTTP application.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    crate::metrics::handle();
    let (router, _) = routes().split_for_parts();
    let authenticate = axum::middleware::from_fn_with_state(state.clone(), auth::authenticate);
    let router = router
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
        .fallback(|| async { StatusCode::NOT_FOUND });
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(axum::middleware::from_fn(metrics::track_requests))
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %request.method(), route, request_id)
                }),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(axum::middleware::from_fn(problem::problem_fallback))
            .layer(authenticate)
            .layer(CatchPanicLayer::new())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                request_timeout,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}
