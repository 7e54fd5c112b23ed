//! `GET /metrics`: Prometheus text with requests by route template, latency histograms,
//! problems by code, upstream calls and pool gauges. Every test shares one process-wide
//! recorder, so these assert presence and lower bounds, never exact totals.

use reqwest::StatusCode;

use crate::helpers::*;

/// The `/metrics` page, asserting 200 and the Prometheus text content type.
async fn scrape(app: &TestApp) -> String {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    r.text().await.expect("text")
}

/// The value of the one sample whose name is `name` and whose labels include all of
/// `labels` (each `key="value"`).
fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("a sample value in {l}"))
        })
        .reduce(f64::max)
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_with_histograms_problems_and_pool_gauges() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "metrics/1", Some(60)).await;
    let token = token_of(&lease);
    let held = app.acquire(&res, "metrics/2", None).await;
    assert_problem(held, 409, "lease-held").await;
    let stale = app
        .set_labels(&res, serde_json::json!({"a": "b"}), Some(token + 1), None)
        .await;
    assert_problem(stale, 409, "stale-fencing-token").await;
    let mismatch = app
        .set_labels(
            &res,
            serde_json::json!({"a": "b"}),
            Some(token),
            Some("\"99\""),
        )
        .await;
    assert_problem(mismatch, 412, "precondition-failed").await;

    let page = scrape(&app).await;
    let lease_route = r#"route="/v1/resources/{type}/{guid}/lease""#;
    assert!(
        sample(
            &page,
            "leasehold_http_requests_total",
            &[lease_route, r#"method="POST""#, r#"status="201""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "leasehold_http_requests_total",
            &[lease_route, r#"method="POST""#, r#"status="409""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "leasehold_http_requests_total",
            &[
                r#"route="/v1/resources/{type}/{guid}/metadata""#,
                r#"method="PATCH""#,
                r#"status="412""#
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        page.contains("# TYPE leasehold_http_request_duration_seconds histogram"),
        "{page}"
    );
    let bucket = |le: &str| {
        sample(
            &page,
            "leasehold_http_request_duration_seconds_bucket",
            &[lease_route, r#"method="POST""#, &format!(r#"le="{le}""#)],
        )
    };
    assert!(bucket("0.005").is_some() && bucket("1").is_some(), "{page}");
    assert!(bucket("+Inf").is_some_and(|n| n >= 1.0), "{page}");
    assert!(
        sample(
            &page,
            "leasehold_http_request_duration_seconds_count",
            &[lease_route]
        )
        .is_some_and(|n| n >= 2.0),
        "{page}"
    );
    for code in ["stale-fencing-token", "precondition-failed", "lease-held"] {
        assert!(
            sample(
                &page,
                "leasehold_problems_total",
                &[&format!(r#"code="{code}""#)]
            )
            .is_some_and(|n| n >= 1.0),
            "{code}: {page}"
        );
    }
    for state in ["in_use", "idle"] {
        assert!(
            sample(
                &page,
                "leasehold_db_pool_connections",
                &[&format!(r#"state="{state}""#)]
            )
            .is_some(),
            "{state}: {page}"
        );
    }
    assert!(
        sample(&page, "leasehold_db_pool_max_connections", &[]).is_some_and(|n| n >= 1.0),
        "{page}"
    );
    for event in ["granted", "renewed", "released", "expired", "revoked"] {
        assert!(
            sample(
                &page,
                "leasehold_leases_total",
                &[&format!(r#"event="{event}""#)]
            )
            .is_some(),
            "{event} is exported from the start: {page}"
        );
    }
    // The grant above was counted (the store counts lease events as it writes them).
    assert!(
        sample(&page, "leasehold_leases_total", &[r#"event="granted""#]).is_some_and(|n| n >= 1.0),
        "a grant is counted: {page}"
    );
    assert!(!page.contains(&res.guid), "no GUID in any label: {page}");
    assert!(!page.contains(&id_of(&lease)), "no lease id in any label");
}

#[tokio::test]
async fn paths_that_match_no_route_are_counted_as_unmatched_never_by_their_raw_path() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let guid = uuid::Uuid::new_v4().to_string();
    let r = app.get(&format!("/nowhere/{guid}")).await;
    assert_problem(r, 404, "not-found").await;

    let page = scrape(&app).await;
    assert!(
        sample(
            &page,
            "leasehold_http_requests_total",
            &[r#"route="unmatched""#, r#"method="GET""#, r#"status="404""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(!page.contains(&guid), "{page}");
    assert!(!page.contains("/nowhere"), "{page}");
}

#[tokio::test]
async fn cloud_controller_calls_are_counted_by_method_and_outcome_with_latency() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    // The emulator knows no such route: CC answers 404.
    let unknown = Res::route();
    let r = app.get(&unknown.path()).await;
    assert_problem(r, 404, "not-found").await;

    let page = scrape(&app).await;
    assert!(
        sample(
            &page,
            "leasehold_upstream_requests_total",
            &[r#"method="GET""#, r#"outcome="4xx""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "leasehold_upstream_request_duration_seconds_bucket",
            &[r#"method="GET""#, r#"le="+Inf""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
}
