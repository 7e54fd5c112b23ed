//! Waiting for a lease (first come, first served across instances), revocation, lock-delay
//! and the expiry sweep.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::*;

/// Live waiters queued for a resource, straight from the database.
async fn queued(db: &TestDb, res: &Res) -> i64 {
    db.queued_waiters(res).await
}

async fn wait_until_queued(db: &TestDb, res: &Res, n: i64) {
    for _ in 0..200 {
        if queued(db, res).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never saw {n} waiters queued");
}

async fn acquire_waiting(app: &TestApp, res: &Res, holder: &str, wait: u64) -> reqwest::Response {
    app.client
        .post(app.url(&res.lease_path()))
        .json(&json!({"holder": holder, "ttl_seconds": 30, "wait_seconds": wait}))
        .send()
        .await
        .expect("acquire")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_waiters_queued_in_a_known_order_get_the_lease_in_that_order_across_two_instances() {
    let db = TestDb::new().await;
    let apps = [spawn_app(&db).await, spawn_app(&db).await];
    let res = Res::route();
    let first = apps[0].grant(&res, "holder/0", Some(30)).await;

    let (tx, mut grants) = tokio::sync::mpsc::unbounded_channel::<(usize, Value)>();
    let mut set = JoinSet::new();
    for i in 0..10 {
        let app = apps[i % 2].clone_handle();
        let (waited, tx) = (res.clone(), tx.clone());
        set.spawn(async move {
            let r = acquire_waiting(&app, &waited, &format!("waiter/{i}"), 30).await;
            assert_eq!(r.status(), StatusCode::CREATED, "waiter {i}");
            let lease: Value = r.json().await.unwrap();
            tx.send((i, lease.clone())).unwrap();
            // Hold it briefly, then hand it on.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                app.release(&id_of(&lease)).await.status(),
                StatusCode::NO_CONTENT
            );
        });
        // The next waiter arrives only once this one holds its place.
        wait_until_queued(&db, &res, i as i64 + 1).await;
    }
    assert_eq!(
        apps[1].release(&id_of(&first)).await.status(),
        StatusCode::NO_CONTENT
    );
    let mut order = Vec::new();
    for _ in 0..10 {
        order.push(grants.recv().await.expect("a grant"));
    }
    while let Some(done) = set.join_next().await {
        done.expect("waiter task");
    }
    let arrivals: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        arrivals,
        (0..10).collect::<Vec<_>>(),
        "served in arrival order"
    );
    let tokens: Vec<u64> = order.iter().map(|(_, l)| token_of(l)).collect();
    assert_eq!(
        tokens,
        (2..=11).collect::<Vec<_>>(),
        "one new token per hand-over"
    );
    assert_eq!(queued(&db, &res).await, 0, "the queue is empty again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_whose_client_disconnects_leaves_the_queue_and_does_not_block_it() {
    let db = TestDb::new().await;
    let apps = [spawn_app(&db).await, spawn_app(&db).await];
    let res = Res::route();
    let held = apps[0].grant(&res, "holder", Some(30)).await;

    // A client that gives up after 300 ms, while its waiter would wait 30 s.
    let impatient = db
        .client_builder()
        .await
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = impatient
        .post(apps[0].url(&res.lease_path()))
        .json(&json!({"holder": "impatient", "wait_seconds": 30}))
        .send()
        .await;
    assert!(r.is_err(), "the client timed out");
    wait_until_queued(&db, &res, 0).await;

    let patient = {
        let (app, res) = (apps[1].clone_handle(), res.clone());
        tokio::spawn(async move { acquire_waiting(&app, &res, "patient", 20).await })
    };
    wait_until_queued(&db, &res, 1).await;
    apps[0].release(&id_of(&held)).await;
    let r = patient.await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let lease: Value = r.json().await.unwrap();
    assert_eq!(lease["holder"], "patient");
}

#[tokio::test]
async fn a_waiter_gets_409_lease_held_when_its_wait_runs_out() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    app.grant(&res, "holder", Some(30)).await;
    let r = acquire_waiting(&app, &res, "waiter", 1).await;
    assert!(r.headers().contains_key("retry-after"));
    let problem = assert_problem(r, 409, "lease-held").await;
    assert_eq!(problem["holder"], "holder");
    assert_eq!(queued(&db, &res).await, 0, "it left the queue");
}

#[tokio::test]
async fn a_waiter_gets_the_lease_when_the_lease_in_its_way_expires() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let first = app.grant(&res, "paused", Some(1)).await;
    let r = acquire_waiting(&app, &res, "waiter", 10).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let lease: Value = r.json().await.unwrap();
    assert_eq!(token_of(&lease), 2);
    let events: Vec<Value> = app.history(&res).await.into_iter().rev().collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names, ["lease-granted", "lease-expired", "lease-granted"]);
    assert_eq!(events[1]["at"], first["expires_at"]);
}

#[tokio::test]
async fn an_acquire_finding_the_lease_free_while_others_wait_joins_the_queue_or_gets_409() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    // Create the resource row, then queue a waiter of a live instance that never acts.
    app.grant(&res, "setup", Some(1)).await;
    db.queue_ghost_waiter(&res).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let r = app.acquire(&res, "newcomer", None).await;
    let problem = assert_problem(r, 409, "lease-held").await;
    assert_eq!(problem["waiting"], 1);
    assert_eq!(problem["holder"], Value::Null);

    // Waiting, it is served once the ghost's place lapses.
    let r = acquire_waiting(&app, &res, "newcomer", 10).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn revoking_a_lease_ends_it_at_once_and_its_holder_can_no_longer_write() {
    let db = TestDb::new().await;
    let apps = [spawn_app(&db).await, spawn_app(&db).await];
    let res = Res::route();
    let lease = apps[0].grant(&res, "holder", Some(60)).await;
    let id = id_of(&lease);
    let r = apps[1]
        .client
        .post(apps[1].url(&format!("/v1/leases/{id}/revoke")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let revoked: Value = r.json().await.unwrap();
    assert_eq!(revoked["state"], "revoked");
    assert!(revoked["ended_at"].is_string());

    let r = apps[0]
        .set_labels(&res, json!({"a": "1"}), Some(token_of(&lease)), None)
        .await;
    assert_problem(r, 409, "stale-fencing-token").await;
    assert_problem(apps[0].renew(&id, None).await, 410, "lease-revoked").await;
    let r = apps[0]
        .client
        .post(apps[0].url(&format!("/v1/leases/{id}/revoke")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 410, "lease-revoked").await;
    let history = apps[0].history(&res).await;
    assert_eq!(history[0]["event"], "lease-revoked");
    assert_eq!(history[0]["lease_id"], id.as_str());
    let (body, _) = apps[0].resource(&res).await;
    assert_eq!(body["lease"], Value::Null);
}

#[tokio::test]
async fn lock_delay_holds_the_resource_after_expiry_or_revocation_but_not_after_release() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let acquire = |res: &Res, holder: &str, delay: u64, wait: u64| {
        app.client
            .post(app.url(&res.lease_path()))
            .json(&json!({"holder": holder, "ttl_seconds": 30, "lock_delay_seconds": delay, "wait_seconds": wait}))
            .send()
    };

    // Released cleanly: no delay.
    let released = Res::route();
    let r = acquire(&released, "a", 2, 0).await.unwrap();
    let lease: Value = r.json().await.unwrap();
    assert_eq!(lease["lock_delay_seconds"], 2);
    app.release(&id_of(&lease)).await;
    assert_eq!(
        acquire(&released, "b", 0, 0).await.unwrap().status(),
        StatusCode::CREATED
    );

    // Revoked: nobody gets it for the delay.
    let revoked = Res::route();
    let lease: Value = acquire(&revoked, "a", 2, 0)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url(&format!("/v1/leases/{}/revoke", id_of(&lease))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = acquire(&revoked, "b", 0, 0).await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let problem = assert_problem(r, 409, "lock-delay").await;
    assert!(problem["until"].is_string());
    // A waiter is served once the delay is over.
    let r = acquire(&revoked, "b", 0, 10).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Expired: the delay counts from the expiry.
    let expired = Res::route();
    let r = app
        .client
        .post(app.url(&expired.lease_path()))
        .json(&json!({"holder": "a", "ttl_seconds": 1, "lock_delay_seconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let problem = assert_problem(
        acquire(&expired, "b", 0, 0).await.unwrap(),
        409,
        "lock-delay",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("expired or was revoked")
    );
}

#[tokio::test]
async fn the_sweep_records_expired_leases_without_any_request_touching_them() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "forgotten", Some(1)).await;
    let mut recorded = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        recorded = db.lease_end_reason(&id_of(&lease)).await;
        if recorded.is_some() {
            break;
        }
    }
    assert_eq!(
        recorded.as_deref(),
        Some("expired"),
        "the sweep recorded the expiry"
    );
    assert_eq!(db.history_count(&res, "lease-expired").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_first_waiters_on_a_fresh_instance_do_not_exhaust_its_connection_pool() {
    // More concurrent waiters than pooled connections, all queueing at once on an instance
    // that has not announced itself yet: none may starve the others of connections.
    let db = TestDb::new().await;
    let app = spawn_app_with(&db, &["--db-max-connections", "4"]).await;
    let res = Res::route();
    let held = app.grant(&res, "holder", Some(30)).await;
    let mut set = JoinSet::new();
    for i in 0..8 {
        let (app, res) = (app.clone_handle(), res.clone());
        set.spawn(async move {
            let r = acquire_waiting(&app, &res, &format!("waiter/{i}"), 30).await;
            assert_eq!(r.status(), StatusCode::CREATED, "waiter {i}");
            let lease: Value = r.json().await.unwrap();
            assert_eq!(
                app.release(&id_of(&lease)).await.status(),
                StatusCode::NO_CONTENT
            );
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.release(&id_of(&held)).await.status(),
        StatusCode::NO_CONTENT
    );
    while let Some(done) = set.join_next().await {
        done.expect("waiter");
    }
}
