//! Operations: liveness, readiness, info, the OpenAPI document and Swagger UI (API.md §3
//! "Operations").

use clap::Parser;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_200() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_answers_200_with_the_database_ok() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("readyz body is JSON");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn without_a_database_readyz_is_503_naming_it_while_healthz_stays_200() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let (addr, stop) = spawn_unready(&url).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();

    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "healthz does no I/O");

    let r = get("/readyz").await.unwrap();
    let problem = assert_problem(r, 503, "unavailable").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("database"),
        "the detail names the part that failed: {problem}"
    );
    assert!(problem.get("database").is_some(), "{problem}");

    // Requests that need the database get a 503 problem, never a 500 or a hang.
    let guid = uuid::Uuid::new_v4();
    let r = client
        .post(format!("http://{addr}/v1/resources/routes/{guid}/lease"))
        .json(&json!({"holder": "svc/1"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 503, "unavailable").await;
    let r = get(&format!("/v1/resources/routes/{guid}")).await.unwrap();
    assert_problem(r, 503, "unavailable").await;
    let _ = stop.send(());
}

#[tokio::test]
async fn info_names_version_upstream_store_and_the_limits_in_force() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let r = app.get("/v1/info").await;
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let mode = if cloud_controller_mode() {
        "cloud-controller"
    } else {
        "local"
    };
    assert_eq!(info["upstream"], mode);
    assert_eq!(info["store"], store_kind());
    let limits = &info["limits"];
    assert_eq!(
        limits["metadata"],
        json!({"max_labels": 50, "max_annotations": 200})
    );
    assert_eq!(
        limits["ttl_seconds"],
        json!({"min": 1, "max": 3600, "default": 30})
    );
    assert_eq!(limits["max_body_bytes"], 1024 * 1024);
    assert_eq!(limits["require_preconditions"], false);
    assert_eq!(
        limits["wait_seconds"],
        json!({"min": 0, "max": 60, "default": 0})
    );
    assert_eq!(
        limits["lock_delay_seconds"],
        json!({"min": 0, "max": 60, "default": 0})
    );

    let custom = spawn_app_with(
        &db,
        &[
            "--max-labels",
            "7",
            "--max-annotations",
            "9",
            "--require-preconditions",
        ],
    )
    .await;
    let info: Value = custom.get("/v1/info").await.json().await.unwrap();
    assert_eq!(
        info["limits"]["metadata"],
        json!({"max_labels": 7, "max_annotations": 9})
    );
    assert_eq!(info["limits"]["require_preconditions"], true);
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_covers_every_route() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let doc: Value = r.json().await.expect("the document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().expect("paths");
    let expected: &[(&str, &[&str])] = &[
        ("/v1/resources/{type}/{guid}/lease", &["post", "get"]),
        ("/v1/leases", &["get"]),
        ("/v1/leases/{id}", &["get", "delete"]),
        ("/v1/leases/{id}/renew", &["post"]),
        ("/v1/resources/{type}/{guid}", &["get", "delete"]),
        ("/v1/resources/{type}/{guid}/metadata", &["patch"]),
        ("/v1/resources/{type}/{guid}/history", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/v1/info", &["get"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is documented; paths: {:?}", paths.keys()));
        for method in *methods {
            let op = item
                .get(*method)
                .unwrap_or_else(|| panic!("{method} {path} is documented"));
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents its success"
            );
            if path.starts_with("/v1/leases") || path.starts_with("/v1/resources") {
                let bad = responses
                    .get("400")
                    .unwrap_or_else(|| panic!("{method} {path} documents 400"));
                assert!(
                    bad["content"].get("application/problem+json").is_some(),
                    "{method} {path}: 400 is a problem: {bad}"
                );
            }
        }
    }
}

#[tokio::test]
async fn docs_serve_swagger_ui_from_the_binary() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    for path in ["/docs", "/docs/"] {
        let r = app.get(path).await; // reqwest follows redirects
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let final_path = r.url().path().to_owned();
        let html = r.text().await.unwrap();
        assert!(
            html.to_lowercase().contains("swagger"),
            "{path} serves Swagger UI: {html}"
        );
        for cdn in ["unpkg.com", "cdn.jsdelivr", "cdnjs", "https://", "http://"] {
            assert!(!html.contains(cdn), "{path} loads nothing from {cdn}");
        }
        assert!(final_path.starts_with("/docs"), "{final_path}");
    }
    // Its assets come from this server, and it is pointed at /openapi.json.
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let r = app.get(asset).await;
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(r.bytes().await.unwrap().len() > 1000, "{asset} has content");
    }
    let r = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("/openapi.json"));
}

// ---- helpers of this file ----

/// Starts an instance on `database_url` without waiting for it to be ready; returns its
/// address and the sender that stops it.
async fn spawn_unready(
    database_url: &str,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let cli = leasehold::config::Cli::try_parse_from([
        "leasehold",
        "--database-url",
        database_url,
        "--listen",
        "127.0.0.1:0",
    ])
    .expect("valid flags");
    let app = leasehold::app::App::build(&cli.config).expect("builds without a database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = app
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}
