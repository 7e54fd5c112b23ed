//! The cloud-controller upstream against the emulator: drift, conditional deletes following
//! CC's jobs, the delete/write race, failure handling and credentials. These run in both
//! suite modes; each test builds its own world with an emulator that knows only what it seeds.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A route seeded in the emulator, as a leasehold resource.
async fn seeded_route(db: &TestDb, labels: Value) -> Res {
    let body = db
        .sim()
        .seed(
            "routes",
            json!({"host": "orders", "metadata": {"labels": labels, "annotations": {}}}),
        )
        .await
        .expect("seed a route");
    Res {
        resource_type: "routes".into(),
        guid: body["guid"].as_str().expect("guid").to_owned(),
    }
}

fn events(history: &[Value]) -> Vec<&str> {
    history.iter().filter_map(|e| e["event"].as_str()).collect()
}

/// The PATCHes the emulator received, oldest first.
async fn patches_sent(db: &TestDb) -> Vec<Value> {
    db.sim()
        .requests()
        .await
        .expect("request log")
        .into_iter()
        .filter(|r| r["method"] == "PATCH")
        .collect()
}

#[tokio::test]
async fn reads_come_from_cloud_controller_with_its_body() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({"team": "orders"})).await;
    let (body, etag) = app.resource(&res).await;
    assert_eq!(
        etag, "\"0\"",
        "the first sight of a resource is its baseline"
    );
    assert_eq!(body["metadata"]["labels"], json!({"team": "orders"}));
    assert_eq!(body["upstream"]["host"], "orders");
    assert_eq!(body["upstream"]["guid"], res.guid.as_str());
}

#[tokio::test]
async fn a_resource_cloud_controller_does_not_have_is_404_not_found() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    assert_problem(app.get(&res.path()).await, 404, "not-found").await;
    let r = app.set_labels(&res, json!({"a": "1"}), None, None).await;
    assert_problem(r, 404, "not-found").await;
    assert!(app.history(&res).await.is_empty());
}

#[tokio::test]
async fn an_out_of_band_change_between_read_and_if_match_write_fails_with_412_and_is_recorded_as_drift()
 {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");

    // Someone runs `cf set-label` directly against Cloud Controller.
    db.sim()
        .replace(
            "routes",
            &res.guid,
            json!({"metadata": {"labels": {"usage.example.com/billing": "true"}}}),
        )
        .await
        .expect("out-of-band change");

    let r = app
        .set_labels(
            &res,
            json!({"usage.example.com/orders": "true"}),
            None,
            Some(&etag),
        )
        .await;
    assert_eq!(r.headers()["etag"], "\"1\"", "the drift bumped the version");
    assert_problem(r, 412, "precondition-failed").await;
    assert!(patches_sent(&db).await.is_empty(), "nothing was sent to CC");

    let history = app.history(&res).await;
    assert_eq!(events(&history), ["drift"]);
    assert_eq!(history[0]["version"], 1);
    assert_eq!(history[0]["detail"]["cause"], "out-of-band");
    assert_eq!(
        history[0]["detail"]["labels"]["usage.example.com/billing"],
        json!({"from": null, "to": "true"})
    );
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"");
    assert_eq!(
        body["metadata"]["labels"]["usage.example.com/billing"],
        "true"
    );

    // With the new ETag the write goes through, and both usages survive.
    let r = app
        .set_labels(
            &res,
            json!({"usage.example.com/orders": "true"}),
            None,
            Some(&etag),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cc = db
        .sim()
        .resource("routes", &res.guid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cc["metadata"]["labels"],
        json!({"usage.example.com/billing": "true", "usage.example.com/orders": "true"})
    );
}

#[tokio::test]
async fn a_read_alone_notices_drift_and_bumps_the_version_once() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    app.resource(&res).await;
    db.sim()
        .replace("routes", &res.guid, json!({"host": "renamed"}))
        .await
        .unwrap();
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"", "a change to CC's body is drift too");
    assert_eq!(body["upstream"]["host"], "renamed");
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"", "no further change, no further bump");
    assert_eq!(events(&app.history(&res).await), ["drift"]);
}

#[tokio::test]
async fn a_patch_sends_cloud_controller_only_the_keys_that_change() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({"keep": "1", "same": "x"})).await;
    app.resource(&res).await;
    db.sim().clear_requests().await.unwrap();
    let r = app
        .patch(
            &res,
            json!({"metadata": {
                "labels": {"same": "x", "new": "2", "absent": null},
                "annotations": {"note": "hello"}
            }}),
            None,
            Some("\"0\""),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(
        body["metadata"]["labels"],
        json!({"keep": "1", "same": "x", "new": "2"})
    );
    let patches = patches_sent(&db).await;
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0]["body"],
        json!({"metadata": {"labels": {"new": "2"}, "annotations": {"note": "hello"}}})
    );

    // A PATCH that changes nothing is not sent at all.
    db.sim().clear_requests().await.unwrap();
    let r = app
        .set_labels(&res, json!({"keep": "1"}), None, Some("\"1\""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(patches_sent(&db).await.is_empty());
}

#[tokio::test]
async fn cloud_controllers_limits_hold_through_leasehold() {
    let db = TestDb::with_sim().await;
    let app = spawn_app_with(&db, &["--max-labels", "2"]).await;
    let res = seeded_route(&db, json!({"a": "1"})).await;
    let r = app
        .set_labels(&res, json!({"b": "1", "c": "1"}), None, None)
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 2 labels because it would exceed maximum of 2"])
    );
    assert!(patches_sent(&db).await.is_empty());
}

#[tokio::test]
async fn a_conditional_delete_of_a_route_follows_the_cc_job_to_completion() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    let (_, etag) = app.resource(&res).await;
    let r = app
        .delete_resource(
            &res,
            None,
            Some(&etag),
            Some(json!({"expect": {"labels": {"usage.example.com/orders": null}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        db.sim()
            .resource("routes", &res.guid)
            .await
            .unwrap()
            .is_none(),
        "the job completed: CC no longer has the route"
    );
    let deletes: Vec<Value> = db
        .sim()
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r["method"] == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_problem(app.get(&res.path()).await, 410, "resource-deleted").await;
    assert_eq!(events(&app.history(&res).await), ["deleted"]);
}

#[tokio::test]
async fn a_delete_whose_expectation_fails_sends_nothing_to_cloud_controller() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({"usage.example.com/orders": "true"})).await;
    let r = app
        .delete_resource(
            &res,
            None,
            None,
            Some(json!({"expect": {"labels": {"usage.example.com/orders": null}}})),
        )
        .await;
    assert_problem(r, 412, "expectation-failed").await;
    assert!(
        db.sim()
            .resource("routes", &res.guid)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_usage_write_racing_a_conditional_delete_never_both_succeed() {
    let db = TestDb::with_sim().await;
    let (a, b) = (spawn_app(&db).await, spawn_app(&db).await);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..20 {
        let res = seeded_route(&db, json!({})).await;
        let (_, etag) = a.resource(&res).await;
        let write = b.set_labels(
            &res,
            json!({"usage.example.com/orders": "true"}),
            None,
            None,
        );
        let delete = a.delete_resource(
            &res,
            None,
            Some(&etag),
            Some(json!({"expect": {"labels": {"usage.example.com/orders": null}}})),
        );
        let (write, delete) = tokio::join!(write, delete);
        let (w, d) = (write.status().as_u16(), delete.status().as_u16());
        let cc = db.sim().resource("routes", &res.guid).await.unwrap();
        match (w, d) {
            // The usage landed first: the delete's ETag or expectation no longer holds.
            (200, 412) => {
                let cc = cc.expect("the route must survive");
                assert_eq!(cc["metadata"]["labels"]["usage.example.com/orders"], "true");
            }
            // The delete went first: the usage write finds the resource gone.
            (410, 204) => assert!(cc.is_none(), "round {round}: the route must be gone"),
            other => panic!("round {round}: write and delete answered {other:?}"),
        }
        *outcomes.entry(format!("{w}/{d}")).or_default() += 1;
    }
    println!("write/delete outcomes over 20 rounds: {outcomes:?}");
}

#[tokio::test]
async fn types_cloud_controller_cannot_delete_answer_405() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let build = db.sim().seed("builds", json!({})).await.unwrap();
    let res = Res {
        resource_type: "builds".into(),
        guid: build["guid"].as_str().unwrap().to_owned(),
    };
    let r = app.delete_resource(&res, None, None, None).await;
    assert!(r.headers().contains_key("allow"));
    assert_problem(r, 405, "method-not-allowed").await;
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"", "nothing changed");
}

#[tokio::test]
async fn a_failed_delete_job_answers_502_and_deletes_nothing() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    app.resource(&res).await;
    db.sim()
        .set_faults(json!({"fail_next_jobs": 1}))
        .await
        .unwrap();
    let r = app.delete_resource(&res, None, Some("\"0\""), None).await;
    assert_problem(r, 502, "upstream-unavailable").await;
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");
    assert!(app.history(&res).await.is_empty());
}

#[tokio::test]
async fn a_delete_job_still_running_when_the_wait_ends_answers_202_deleting() {
    let db = TestDb::with_sim_config(ccsim::Config {
        job_delay: Duration::from_secs(3),
        ..ccsim::Config::default()
    })
    .await;
    let app = spawn_app_with(&db, &["--cf-delete-wait-seconds", "1"]).await;
    let res = seeded_route(&db, json!({})).await;
    let r = app.delete_resource(&res, None, None, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "deleting");
    assert!(body["job"].as_str().unwrap().contains("/v3/jobs/"));
    assert_problem(app.get(&res.path()).await, 410, "resource-deleted").await;
    let history = app.history(&res).await;
    assert_eq!(history[0]["detail"]["state"], "deleting");
}

#[tokio::test]
async fn reads_are_retried_through_transient_5xx_and_answer_502_when_cc_stays_down() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({"a": "1"})).await;
    db.sim()
        .set_faults(json!({"fail_next": {"count": 2, "status": 503}}))
        .await
        .unwrap();
    let (body, _) = app.resource(&res).await;
    assert_eq!(
        body["metadata"]["labels"]["a"], "1",
        "the third attempt succeeded"
    );

    db.sim()
        .set_faults(json!({"fail_next": {"count": 10, "status": 500}}))
        .await
        .unwrap();
    assert_problem(app.get(&res.path()).await, 502, "upstream-unavailable").await;
}

#[tokio::test]
async fn a_write_cloud_controller_fails_with_5xx_answers_502_and_changes_nothing() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    app.resource(&res).await;
    // The read inside the write succeeds; the PATCH itself fails.
    db.sim()
        .set_faults(json!({"fail_every": {"n": 2, "status": 500}}))
        .await
        .unwrap();
    let r = app.set_labels(&res, json!({"a": "1"}), None, None).await;
    assert_problem(r, 502, "upstream-unavailable").await;
    db.sim().reset_faults().await.unwrap();
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");
    assert_eq!(body["metadata"]["labels"], json!({}));
    assert!(app.history(&res).await.is_empty());
}

#[tokio::test]
async fn rate_limited_reads_are_retried_or_answer_502_with_ccs_retry_after() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    // A short Retry-After is honoured: leasehold waits and reads again.
    db.sim()
        .set_faults(json!({"rate_limit_next": {"count": 1, "retry_after": 1}}))
        .await
        .unwrap();
    app.resource(&res).await;

    // A long one is passed on to the client, and the write changes nothing.
    db.sim()
        .set_faults(json!({"rate_limit_next": {"count": 1, "retry_after": 7}}))
        .await
        .unwrap();
    let r = app.set_labels(&res, json!({"a": "1"}), None, None).await;
    assert_eq!(r.headers()["retry-after"], "7");
    assert_problem(r, 502, "upstream-unavailable").await;
    db.sim().reset_faults().await.unwrap();
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");
    assert!(app.history(&res).await.is_empty());
}

#[tokio::test]
async fn a_lost_patch_response_answers_504_and_the_next_read_records_the_landed_write_as_drift() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    app.resource(&res).await;
    db.sim()
        .set_faults(json!({"drop_after_patch": 1}))
        .await
        .unwrap();
    let r = app
        .set_labels(&res, json!({"a": "1"}), None, Some("\"0\""))
        .await;
    let problem = assert_problem(r, 504, "upstream-unavailable").await;
    assert_eq!(problem["outcome"], "unknown");
    assert!(
        app.history(&res).await.is_empty(),
        "the failed write recorded nothing"
    );

    // CC applied it: the next read finds it, names it, and bumps the version once.
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"");
    assert_eq!(body["metadata"]["labels"]["a"], "1");
    let history = app.history(&res).await;
    assert_eq!(events(&history), ["drift"]);
    assert_eq!(history[0]["detail"]["cause"], "unacknowledged-write");
}

#[tokio::test]
async fn a_cloud_controller_that_does_not_answer_in_time_gets_504_and_state_stays_consistent() {
    let db = TestDb::with_sim().await;
    let app = spawn_app_with(&db, &["--cf-timeout-seconds", "1"]).await;
    let res = seeded_route(&db, json!({})).await;
    app.resource(&res).await;
    db.sim()
        .set_faults(json!({"latency_ms": 1500}))
        .await
        .unwrap();
    let r = app.set_labels(&res, json!({"a": "1"}), None, None).await;
    assert_problem(r, 504, "upstream-unavailable").await;
    db.sim().reset_faults().await.unwrap();
    // The slow request may or may not have reached CC's handler before leasehold gave up;
    // either way leasehold's view agrees with CC's after the next read.
    let (body, etag) = app.resource(&res).await;
    let cc = db
        .sim()
        .resource("routes", &res.guid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body["metadata"]["labels"], cc["metadata"]["labels"]);
    let history = app.history(&res).await;
    if cc["metadata"]["labels"]["a"] == "1" {
        assert_eq!(etag, "\"1\"");
        assert_eq!(events(&history), ["drift"]);
    } else {
        assert_eq!(etag, "\"0\"");
        assert!(history.is_empty());
    }
}

#[tokio::test]
async fn refused_connections_answer_502_and_readyz_names_the_upstream() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    db.sim()
        .set_faults(json!({"refuse_connections_ms": 1500}))
        .await
        .unwrap();
    assert_problem(app.get(&res.path()).await, 502, "upstream-unavailable").await;
    let r = app.get("/readyz").await;
    let problem = assert_problem(r, 503, "unavailable").await;
    assert!(problem["upstream"].is_string(), "{problem}");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    app.wait_ready().await;
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");
}

#[tokio::test]
async fn an_expired_uaa_token_is_refreshed_without_the_client_noticing() {
    let db = TestDb::with_sim().await;
    let app = spawn_app(&db).await;
    let res = seeded_route(&db, json!({})).await;
    app.resource(&res).await;
    db.sim().clear_requests().await.unwrap();
    db.sim()
        .set_faults(json!({"expire_tokens": true}))
        .await
        .unwrap();
    let r = app.set_labels(&res, json!({"a": "1"}), None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens = db
        .sim()
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/oauth/token"))
        })
        .count();
    assert_eq!(tokens, 1, "a fresh token after CC refused the expired one");
}

#[tokio::test]
async fn wrong_service_account_credentials_answer_502_naming_them() {
    let db = TestDb::with_sim().await;
    let app = spawn_app_with(&db, &["--cf-client-secret", "wrong"]).await;
    let res = seeded_route(&db, json!({})).await;
    let problem = assert_problem(app.get(&res.path()).await, 502, "upstream-unavailable").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("CF_CLIENT_ID"),
        "{problem}"
    );
}

/// A token from the emulator's UAA for `client`.
async fn token_for(db: &TestDb, client: &str, secret: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/uaa/oauth/token", db.sim().base_url))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn passthrough_sends_the_callers_own_token_so_cloud_controllers_roles_decide() {
    let db = TestDb::with_sim_config(ccsim::Config {
        clients: vec![
            // leasehold's own scopes too, so that with authentication on, leasehold lets
            // both through and Cloud Controller's roles decide.
            ccsim::ClientConfig::new(
                "writer",
                "w",
                &[
                    "cloud_controller.read",
                    "cloud_controller.write",
                    "leasehold.read",
                    "leasehold.write",
                ],
            ),
            ccsim::ClientConfig::new(
                "reader",
                "r",
                &["cloud_controller.read", "leasehold.read", "leasehold.write"],
            ),
        ],
        ..sim_config(false)
    })
    .await;
    let app = spawn_app_with(&db, &["--cf-auth", "passthrough"]).await;
    let res = seeded_route(&db, json!({})).await;
    let (writer, reader) = (
        token_for(&db, "writer", "w").await,
        token_for(&db, "reader", "r").await,
    );
    // A client of its own: the test client's default token must not stand in for "none".
    let bare = reqwest::Client::new();
    let patch = |token: Option<String>| {
        let mut req = bare
            .patch(app.url(&format!("{}/metadata", res.path())))
            .json(&json!({"metadata": {"labels": {"a": "1"}}}));
        if let Some(t) = token {
            req = req.header("authorization", format!("bearer {t}"));
        }
        req.send()
    };

    let r = patch(None).await.unwrap();
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_problem(r, 401, "unauthenticated").await;
    let r = app
        .client
        .get(app.url(&res.path()))
        .header("authorization", format!("bearer {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a reader may read");
    let r = patch(Some(reader)).await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = patch(Some(writer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a writer may write");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], 1);
}
