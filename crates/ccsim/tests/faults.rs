//! Fault injection and the request log over real HTTP.

mod common;

use common::{Harness, cc_error, fetch_token, json};
use reqwest::{Client, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn latency_is_added_to_v3_and_uaa_responses_but_not_to_admin() {
    let h = Harness::start().await;
    h.sim
        .set_faults(json!({"latency_ms": 300}))
        .await
        .expect("faults");
    let started = Instant::now();
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    fetch_token(&h.http, &h.origin(), "leasehold", "leasehold-secret").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    let response = h
        .http
        .get(h.url("/admin/faults"))
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));

    h.sim.reset_faults().await.expect("reset");
    let started = Instant::now();
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn fail_next_answers_ccs_5xx_bodies_for_the_next_requests_only() {
    let h = Harness::start().await;
    h.sim
        .set_faults(json!({"fail_next": {"count": 2, "status": 503}}))
        .await
        .expect("faults");
    for _ in 0..2 {
        let (status, body) = h.get("/v3/apps").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            cc_error(&body),
            (
                "CF-ServiceUnavailable".into(),
                10015,
                "Database connection failure".into()
            )
        );
    }
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);

    h.sim
        .set_faults(json!({"fail_next": {"count": 1, "status": 500}}))
        .await
        .expect("faults");
    let (status, body) = h.get("/v3/apps").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        cc_error(&body),
        (
            "UnknownError".into(),
            10001,
            "An unknown error occurred.".into()
        )
    );

    h.sim
        .set_faults(json!({"fail_next": {"count": 1, "status": 502}}))
        .await
        .expect("faults");
    let response = h.call(reqwest::Method::GET, "/v3/apps", None).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.expect("text"), "502 Bad Gateway\n");
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);

    let refused = h
        .sim
        .set_faults(json!({"fail_next": {"count": 1, "status": 404}}))
        .await;
    assert!(matches!(
        refused,
        Err(ccsim::Error::Admin { status: 400, .. })
    ));
}

#[tokio::test]
async fn fail_every_fails_every_nth_request() {
    let h = Harness::start().await;
    h.sim
        .set_faults(json!({"fail_every": {"n": 3, "status": 503}}))
        .await
        .expect("faults");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(h.get("/v3/apps").await.0.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 503, 200, 200, 503, 200]);
    let faults = h.sim.set_faults(json!({})).await.expect("faults");
    assert_eq!(faults["requests_seen"], 0);
}

#[tokio::test]
async fn rate_limit_next_answers_429_with_retry_after_and_rate_limit_headers() {
    let h = Harness::start().await;
    h.sim
        .set_faults(json!({"rate_limit_next": {"count": 1, "retry_after": 7}}))
        .await
        .expect("faults");
    let response = h.call(reqwest::Method::GET, "/v3/apps", None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = |name: &str| {
        response.headers()[name]
            .to_str()
            .expect("header")
            .to_string()
    };
    assert_eq!(header("retry-after"), "7");
    assert_eq!(header("x-ratelimit-remaining"), "0");
    assert_eq!(header("x-ratelimit-limit"), "20000");
    let reset: i64 = header("x-ratelimit-reset").parse().expect("reset");
    assert!(reset >= chrono::Utc::now().timestamp() + 5);
    let (_, body) = json(response).await;
    assert_eq!(
        cc_error(&body),
        (
            "CF-RateLimitExceeded".into(),
            10013,
            "Rate Limit Exceeded".into()
        )
    );
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);
}

#[tokio::test]
async fn drop_after_patch_applies_the_patch_and_closes_the_connection_without_a_response() {
    let h = Harness::start().await;
    let route = h.seed("routes", json!({})).await;
    let guid = route["guid"].as_str().expect("guid");
    let path = format!("/v3/routes/{guid}");
    h.sim
        .set_faults(json!({"drop_after_patch": 1}))
        .await
        .expect("faults");
    h.sim.clear_requests().await.expect("cleared");

    let result = h
        .http
        .patch(h.url(&path))
        .bearer_auth(&h.token)
        .json(&json!({"metadata": {"labels": {"dropped": "yes"}}}))
        .send()
        .await;
    let error = result.expect_err("the connection is closed without a response");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");

    // The PATCH was applied.
    let (status, body) = h.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["metadata"]["labels"], json!({"dropped": "yes"}));
    let log = h.sim.requests().await.expect("log");
    assert_eq!(log[0]["method"], "PATCH");
    assert_eq!(log[0]["path"], path.as_str());
    assert_eq!(log[0]["status"], serde_json::Value::Null);
    assert_eq!(log[0]["dropped"], true);
    assert_eq!(
        log[0]["body"],
        json!({"metadata": {"labels": {"dropped": "yes"}}})
    );
    assert_eq!(log[1]["status"], 200);

    // Only one: the next PATCH is answered.
    let (status, _) = h
        .patch(&path, json!({"metadata": {"labels": {"again": "ok"}}}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn refuse_connections_closes_the_listener_then_listens_again_on_the_same_port() {
    let h = Harness::start().await;
    h.sim
        .set_faults(json!({"refuse_connections_ms": 600}))
        .await
        .expect("faults");
    let fresh = Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let error = fresh
        .get(h.url("/v3/apps"))
        .bearer_auth(&h.token)
        .send()
        .await
        .expect_err("refused");
    assert!(error.is_connect(), "{error:?}");
    // A pooled connection was closed too.
    assert!(
        h.http
            .get(h.url("/v3/apps"))
            .bearer_auth(&h.token)
            .send()
            .await
            .is_err()
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fresh
            .get(h.url("/v3/apps"))
            .bearer_auth(&h.token)
            .send()
            .await
        {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK);
                break;
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "never recovered: {error:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);
}

#[tokio::test]
async fn expire_tokens_invalidates_every_token_issued_so_far() {
    let h = Harness::start().await;
    assert_eq!(h.get("/v3/apps").await.0, StatusCode::OK);
    h.sim
        .set_faults(json!({"expire_tokens": true}))
        .await
        .expect("faults");
    let (status, body) = h.get("/v3/apps").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        cc_error(&body),
        (
            "CF-InvalidAuthToken".into(),
            1000,
            "Invalid Auth Token".into()
        )
    );
    let token = fetch_token(&h.http, &h.origin(), "leasehold", "leasehold-secret").await;
    let response = h
        .http
        .get(h.url("/v3/apps"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn fail_next_jobs_makes_the_next_delete_job_fail_and_keeps_the_resource() {
    let mut config = common::config();
    config.job_delay = Duration::from_millis(50);
    let h = Harness::with(config).await;
    let route = h.seed("routes", json!({})).await;
    let path = format!("/v3/routes/{}", route["guid"].as_str().expect("guid"));
    h.sim
        .set_faults(json!({"fail_next_jobs": 1}))
        .await
        .expect("faults");

    let response = h.delete(&path).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let job: serde_json::Value = h
        .http
        .get(&location)
        .bearer_auth(&h.token)
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("json");
    assert_eq!(job["state"], "FAILED");
    let errors = job["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["title"], "CF-UnprocessableEntity");
    assert_eq!(errors[0]["code"], 10008);
    assert!(job["links"]["route"]["href"].is_string());
    assert_eq!(h.get(&path).await.0, StatusCode::OK);

    // The next delete job succeeds.
    let response = h.delete(&path).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.get(&path).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_request_log_records_method_path_query_status_and_body() {
    let h = Harness::start().await;
    let route = h.seed("routes", json!({})).await;
    let path = format!("/v3/routes/{}", route["guid"].as_str().expect("guid"));
    h.sim.clear_requests().await.expect("cleared");
    h.get("/v3/routes?per_page=1").await;
    h.patch(&path, json!({"metadata": {"labels": {"a": "b"}}}))
        .await;
    let log = h.sim.requests().await.expect("log");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["method"], "GET");
    assert_eq!(log[0]["path"], "/v3/routes");
    assert_eq!(log[0]["query"], "per_page=1");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["body"], serde_json::Value::Null);
    assert_eq!(log[1]["method"], "PATCH");
    assert_eq!(log[1]["body"], json!({"metadata": {"labels": {"a": "b"}}}));
    assert_eq!(log[1]["status"], 200);
    h.sim.clear_requests().await.expect("cleared");
    assert!(h.sim.requests().await.expect("log").is_empty());
}
