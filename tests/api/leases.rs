//! Leases: acquire, re-acquire, contention, reads, renew, release, expiry, fencing tokens
//! and the operator listing (API.md §1 and §3 "Leases").

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_new_lease_is_granted_with_201_a_location_and_the_full_lease_body() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let r = app.acquire(&res, "orders-svc/instance-3", Some(15)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_owned();
    let lease: Value = r.json().await.unwrap();
    assert_lease_shape(&lease);
    let id = id_of(&lease);
    assert_eq!(location, format!("/v1/leases/{id}"));
    assert_eq!(id, id.to_lowercase(), "lease id is lower-case");
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "lease id is a UUID: {id}"
    );
    assert_eq!(
        lease["resource"],
        json!({"type": "routes", "guid": res.guid})
    );
    assert_eq!(lease["holder"], "orders-svc/instance-3");
    assert_eq!(lease["fencing_token"], 1);
    assert_eq!(lease["state"], "active");
    assert_eq!(lease["ttl_seconds"], 15);
    assert_eq!(lease["ended_at"], Value::Null);
    assert_eq!(lease["acquired_at"], lease["renewed_at"]);
    assert_eq!(
        ts(&lease["expires_at"]) - ts(&lease["acquired_at"]),
        chrono::Duration::seconds(15)
    );

    // The Location names the lease as GET /v1/leases/{id} shows it.
    let r = app.get(&location).await;
    assert_eq!(r.status(), StatusCode::OK);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read, lease);

    // The grant is in the resource's history, and the resource's fence is the token.
    let history = app.history(&res).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["event"], "lease-granted");
    assert_eq!(history[0]["actor"], db.actor(Some("orders-svc/instance-3")));
    assert_eq!(history[0]["lease_id"], id.as_str());
    assert_eq!(history[0]["fencing_token"], 1);
    assert_eq!(history[0]["at"], lease["acquired_at"]);
    let (body, etag) = app.resource(&res).await;
    assert_eq!(body["fence"], 1);
    assert_eq!(body["lease"], lease);
    assert_eq!(etag, "\"0\"", "a lease does not change the version");
}

#[tokio::test]
async fn a_lease_without_a_ttl_lives_30_seconds() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let lease = app.grant(&Res::route(), "svc/1", None).await;
    assert_eq!(lease["ttl_seconds"], 30);
    assert_eq!(
        ts(&lease["expires_at"]) - ts(&lease["acquired_at"]),
        chrono::Duration::seconds(30)
    );
}

#[tokio::test]
async fn ttl_and_holder_bounds_are_inclusive() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let short = app.grant(&Res::route(), "svc/1", Some(1)).await;
    assert_eq!(short["ttl_seconds"], 1);
    let long = app.grant(&Res::route(), "svc/1", Some(3600)).await;
    assert_eq!(long["ttl_seconds"], 3600);
    assert_eq!(
        ts(&long["expires_at"]) - ts(&long["acquired_at"]),
        chrono::Duration::seconds(3600)
    );
    // 128 Unicode characters (256 bytes in UTF-8) is a valid holder.
    let holder = "é".repeat(128);
    let lease = app.grant(&Res::route(), &holder, None).await;
    assert_eq!(lease["holder"], holder.as_str());
}

#[tokio::test]
async fn the_same_holder_reacquiring_renews_the_same_lease_with_200() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let first = app.grant(&res, "svc/1", Some(10)).await;

    let r = app.acquire(&res, "svc/1", Some(20)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_lease_shape(&again);
    assert_eq!(again["id"], first["id"], "same lease");
    assert_eq!(again["fencing_token"], first["fencing_token"], "same token");
    assert_eq!(again["acquired_at"], first["acquired_at"]);
    assert_eq!(again["state"], "active");
    assert_eq!(again["ttl_seconds"], 20);
    assert!(ts(&again["expires_at"]) > ts(&first["expires_at"]));
    assert_eq!(
        ts(&again["expires_at"]) - ts(&again["renewed_at"]),
        chrono::Duration::seconds(20),
        "expires_at = now + the ttl_seconds sent"
    );

    // Without ttl_seconds the lease's own TTL applies.
    let r = app.acquire(&res, "svc/1", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let third: Value = r.json().await.unwrap();
    assert_eq!(third["id"], first["id"]);
    assert_eq!(third["ttl_seconds"], 20);
    assert_eq!(
        ts(&third["expires_at"]) - ts(&third["renewed_at"]),
        chrono::Duration::seconds(20)
    );
    assert!(ts(&third["renewed_at"]) >= ts(&again["renewed_at"]));

    let history = app.history(&res).await;
    let events: Vec<&str> = history
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["lease-renewed", "lease-renewed", "lease-granted"],
        "re-acquires are recorded as renewals"
    );
    assert_eq!(history[0]["lease_id"], first["id"]);
    assert_eq!(history[0]["fencing_token"], 1);
    assert_eq!(history[0]["actor"], db.actor(Some("svc/1")));
    let (body, _) = app.resource(&res).await;
    assert_eq!(body["fence"], 1, "a renewal issues no token");
}

#[tokio::test]
async fn another_holder_gets_409_lease_held_with_holder_expiry_and_retry_after() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", Some(30)).await;

    let r = app.acquire(&res, "svc/2", Some(5)).await;
    let retry_after = r
        .headers()
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .to_owned();
    let problem = assert_problem(r, 409, "lease-held").await;
    assert_eq!(problem["holder"], "svc/1");
    assert_eq!(problem["expires_at"], lease["expires_at"]);
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is whole seconds: {retry_after:?}"));
    assert!(
        (1..=30).contains(&seconds),
        "Retry-After {seconds} is within the lease's remaining 30 s"
    );

    // Nothing changed: still svc/1's lease, token 1, no new history.
    let r = app.get(&res.lease_path()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let active: Value = r.json().await.unwrap();
    assert_eq!(active, lease);
    assert_eq!(app.history(&res).await.len(), 1);

    // A lease about to expire still gets Retry-After >= 1.
    let res2 = Res::route();
    app.grant(&res2, "svc/1", Some(1)).await;
    let r = app.acquire(&res2, "svc/2", None).await;
    if r.status() == StatusCode::CONFLICT {
        let ra: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ra, 1);
    } else {
        // The second passed already: the lease expired and svc/2 got it.
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

#[tokio::test]
async fn the_active_lease_of_a_resource_is_readable_and_404_when_there_is_none() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    assert_problem(app.get(&res.lease_path()).await, 404, "no-active-lease").await;

    let lease = app.grant(&res, "svc/1", None).await;
    let r = app.get(&res.lease_path()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let active: Value = r.json().await.unwrap();
    assert_lease_shape(&active);
    assert_eq!(active, lease);

    app.release(&id_of(&lease)).await;
    assert_problem(app.get(&res.lease_path()).await, 404, "no-active-lease").await;

    let lease = app.grant(&res, "svc/2", None).await;
    db.expire_lease(&id_of(&lease)).await;
    assert_problem(app.get(&res.lease_path()).await, 404, "no-active-lease").await;
}

#[tokio::test]
async fn a_lease_is_readable_by_id_while_active_and_after_it_ended() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();

    let lease = app.grant(&res, "svc/1", None).await;
    let id = id_of(&lease);
    let active = get_lease(&app, &id).await;
    assert_eq!(active["state"], "active");
    assert_eq!(active["ended_at"], Value::Null);

    assert_eq!(app.release(&id).await.status(), StatusCode::NO_CONTENT);
    let released = get_lease(&app, &id).await;
    assert_lease_shape(&released);
    assert_eq!(released["state"], "released");
    assert_eq!(released["id"], lease["id"]);
    assert_eq!(released["fencing_token"], lease["fencing_token"]);
    let ended_at = ts(&released["ended_at"]);
    assert!(ended_at >= ts(&lease["acquired_at"]));
    assert!(ended_at < ts(&lease["expires_at"]));

    let other = app.grant(&res, "svc/2", None).await;
    let other_id = id_of(&other);
    db.expire_lease(&other_id).await;
    let expired = get_lease(&app, &other_id).await;
    assert_lease_shape(&expired);
    assert_eq!(expired["state"], "expired");
    assert_eq!(expired["ended_at"], expired["expires_at"]);
    assert!(ts(&expired["expires_at"]) < Utc::now());

    // An ended lease stays readable, and says the same, after its expiry was recorded.
    app.grant(&res, "svc/3", None).await;
    assert_eq!(get_lease(&app, &other_id).await, expired);
    assert_eq!(get_lease(&app, &id).await, released);
}

#[tokio::test]
async fn renewing_extends_a_lease_by_its_own_ttl_or_the_one_sent() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", Some(40)).await;
    let id = id_of(&lease);

    let r = app.renew(&id, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let renewed: Value = r.json().await.unwrap();
    assert_lease_shape(&renewed);
    assert_eq!(renewed["id"], lease["id"]);
    assert_eq!(renewed["fencing_token"], lease["fencing_token"]);
    assert_eq!(renewed["acquired_at"], lease["acquired_at"]);
    assert_eq!(renewed["state"], "active");
    assert_eq!(renewed["ttl_seconds"], 40);
    assert!(ts(&renewed["renewed_at"]) >= ts(&lease["renewed_at"]));
    assert_eq!(
        ts(&renewed["expires_at"]) - ts(&renewed["renewed_at"]),
        chrono::Duration::seconds(40)
    );

    // An empty JSON object is the same as no body.
    let r = app
        .client
        .post(app.url(&format!("/v1/leases/{id}/renew")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = app.renew(&id, Some(120)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let longer: Value = r.json().await.unwrap();
    assert_eq!(longer["ttl_seconds"], 120);
    assert_eq!(
        ts(&longer["expires_at"]) - ts(&longer["renewed_at"]),
        chrono::Duration::seconds(120)
    );
    assert_eq!(longer["fencing_token"], 1);
    assert_eq!(get_lease(&app, &id).await, longer);

    let history = app.history(&res).await;
    let events: Vec<&str> = history
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "lease-renewed",
            "lease-renewed",
            "lease-renewed",
            "lease-granted"
        ]
    );
    assert_eq!(history[0]["at"], longer["renewed_at"]);
    let (body, etag) = app.resource(&res).await;
    assert_eq!(body["fence"], 1);
    assert_eq!(etag, "\"0\"");
}

#[tokio::test]
async fn a_released_lease_cannot_be_renewed_or_released_again() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", None).await;
    let id = id_of(&lease);
    assert_eq!(app.release(&id).await.status(), StatusCode::NO_CONTENT);
    let before = app.history(&res).await.len();

    assert_problem(app.renew(&id, None).await, 410, "lease-released").await;
    assert_problem(app.renew(&id, Some(60)).await, 410, "lease-released").await;
    assert_problem(app.release(&id).await, 410, "lease-released").await;

    let after = get_lease(&app, &id).await;
    assert_eq!(after["state"], "released");
    assert_eq!(after["expires_at"], lease["expires_at"], "not extended");
    assert_eq!(app.history(&res).await.len(), before);
    // The release is recorded once.
    let history = app.history(&res).await;
    assert_eq!(history[0]["event"], "lease-released");
    assert_eq!(history[0]["lease_id"], id.as_str());
    assert_eq!(history[0]["at"], after["ended_at"]);
}

#[tokio::test]
async fn an_expired_lease_cannot_be_renewed_or_released() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", None).await;
    let id = id_of(&lease);
    db.expire_lease(&id).await;

    assert_problem(app.renew(&id, None).await, 410, "lease-expired").await;
    assert_problem(app.release(&id).await, 410, "lease-expired").await;
    assert_problem(app.renew(&id, Some(30)).await, 410, "lease-expired").await;

    let after = get_lease(&app, &id).await;
    assert_eq!(after["state"], "expired");
    assert_eq!(after["ended_at"], after["expires_at"]);
    assert!(ts(&after["expires_at"]) < Utc::now(), "not revived");
    let history = app.history(&res).await;
    let expiries = history
        .iter()
        .filter(|e| e["event"] == "lease-expired")
        .count();
    assert_eq!(
        expiries, 1,
        "the expiry is recorded exactly once: {history:?}"
    );
}

#[tokio::test]
async fn unknown_lease_ids_are_404_not_found() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let id = uuid::Uuid::new_v4().to_string();
    assert_problem(app.get(&format!("/v1/leases/{id}")).await, 404, "not-found").await;
    assert_problem(app.renew(&id, None).await, 404, "not-found").await;
    assert_problem(app.release(&id).await, 404, "not-found").await;
    // Upper-case spelling of an unknown id: still a well-formed id, still 404.
    assert_problem(
        app.get(&format!("/v1/leases/{}", id.to_uppercase())).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_grants_and_are_never_reused() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let other = Res::new("apps");
    let mut tokens = Vec::new();

    // Grant 1, released.
    let l1 = app.grant(&res, "svc/1", None).await;
    tokens.push(token_of(&l1));
    app.renew(&id_of(&l1), None).await;
    assert_eq!(app.release(&id_of(&l1)).await.status(), 204);
    // Grant 2, expired.
    let l2 = app.grant(&res, "svc/2", None).await;
    tokens.push(token_of(&l2));
    db.expire_lease(&id_of(&l2)).await;
    // Grant 3 by the first holder again, expired; then the same holder re-acquires.
    let l3 = app.grant(&res, "svc/1", None).await;
    tokens.push(token_of(&l3));
    db.expire_lease(&id_of(&l3)).await;
    let l4 = app.grant(&res, "svc/1", None).await;
    tokens.push(token_of(&l4));
    assert_ne!(
        l4["id"], l3["id"],
        "an expired lease is not renewed by re-acquire"
    );
    app.release(&id_of(&l4)).await;

    // Tokens survive a restart of the service.
    app.stop().await;
    let app = spawn_app(&db).await;
    let l5 = app.grant(&res, "svc/3", None).await;
    tokens.push(token_of(&l5));

    assert_eq!(tokens, [1, 2, 3, 4, 5], "each grant takes the next token");
    let (body, _) = app.resource(&res).await;
    assert_eq!(body["fence"], 5, "fence is the last token issued");
    assert_eq!(body["lease"]["fencing_token"], 5);

    // History has each token granted exactly once.
    let granted: Vec<u64> = app
        .history(&res)
        .await
        .iter()
        .filter(|e| e["event"] == "lease-granted")
        .map(|e| e["fencing_token"].as_u64().unwrap())
        .collect();
    assert_eq!(granted, [5, 4, 3, 2, 1]);

    // Tokens are per resource.
    let o = app.grant(&other, "svc/1", None).await;
    assert_eq!(token_of(&o), 1);
    let (body, _) = app.resource(&other).await;
    assert_eq!(body["fence"], 1);
}

#[tokio::test]
async fn an_expired_lease_lets_another_holder_in_with_the_next_token_and_history_records_the_expiry()
 {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let old = app.grant(&res, "svc/1", Some(60)).await;
    let old_id = id_of(&old);
    db.expire_lease(&old_id).await;
    let old_expires_at = get_lease(&app, &old_id).await["expires_at"].clone();

    let r = app.acquire(&res, "svc/2", None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let new: Value = r.json().await.unwrap();
    assert_eq!(token_of(&new), token_of(&old) + 1);
    assert_eq!(new["holder"], "svc/2");
    assert!(ts(&new["acquired_at"]) >= ts(&old_expires_at));

    let history = app.history(&res).await;
    let events: Vec<&str> = history
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["lease-granted", "lease-expired", "lease-granted"]);
    let expiry = &history[1];
    assert_eq!(
        expiry["at"], old_expires_at,
        "recorded at the lease's expires_at"
    );
    assert_eq!(expiry["lease_id"], old_id.as_str());
    assert_eq!(expiry["fencing_token"], token_of(&old));
    assert_eq!(expiry["actor"], db.actor(Some("svc/1")));
    assert_eq!(history[0]["fencing_token"], token_of(&new));

    // The old holder's write is fenced off.
    let r = app
        .set_labels(&res, json!({"a": "1"}), Some(token_of(&old)), None)
        .await;
    assert_problem(r, 409, "stale-fencing-token").await;
}

#[tokio::test]
async fn a_lease_expires_by_itself_when_its_ttl_runs_out() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", Some(1)).await;
    assert_problem(app.acquire(&res, "svc/2", None).await, 409, "lease-held").await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = app.acquire(&res, "svc/2", None).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the 1 s lease has expired");
    let next: Value = r.json().await.unwrap();
    assert_eq!(token_of(&next), 2);
    let old = get_lease(&app, &id_of(&lease)).await;
    assert_eq!(old["state"], "expired");
    assert_eq!(old["ended_at"], lease["expires_at"]);
    assert!(ts(&next["acquired_at"]) >= ts(&old["ended_at"]));
}

#[tokio::test]
async fn reading_history_records_an_expiry_nobody_noticed_yet() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", None).await;
    let id = id_of(&lease);
    db.expire_lease(&id).await;
    let expires_at = get_lease(&app, &id).await["expires_at"].clone();
    let history = app.history(&res).await;
    assert_eq!(history[0]["event"], "lease-expired");
    assert_eq!(history[0]["at"], expires_at);
    assert_eq!(history.len(), 2);
}

#[tokio::test]
async fn a_new_grant_is_never_earlier_than_the_previous_lease_ended() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let mut previous_end: Option<DateTime<Utc>> = None;
    for i in 0..5 {
        let lease = app.grant(&res, &format!("svc/{i}"), None).await;
        if let Some(end) = previous_end {
            assert!(
                ts(&lease["acquired_at"]) >= end,
                "grant {i} acquired at {} before the previous lease ended at {end}",
                lease["acquired_at"]
            );
        }
        let id = id_of(&lease);
        if i % 2 == 0 {
            assert_eq!(app.release(&id).await.status(), StatusCode::NO_CONTENT);
        } else {
            db.expire_lease(&id).await;
        }
        let ended = get_lease(&app, &id).await;
        assert!(ts(&ended["ended_at"]) >= ts(&ended["acquired_at"]));
        previous_end = Some(ts(&ended["ended_at"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_acquires_grant_exactly_one_lease() {
    let db = TestDb::new().await;
    let a = spawn_app(&db).await;
    let b = spawn_app(&db).await;
    let res = Res::route();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = db.client_builder().await.build().unwrap();
        let app_url = if i % 2 == 0 {
            a.url(&res.lease_path())
        } else {
            b.url(&res.lease_path())
        };
        tasks.push(tokio::spawn(async move {
            client
                .post(app_url)
                .json(&json!({"holder": format!("svc/{i}"), "ttl_seconds": 60}))
                .send()
                .await
                .expect("acquire")
        }));
    }
    let mut granted = Vec::new();
    let mut held = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            201 => granted.push(r.json::<Value>().await.unwrap()),
            409 => {
                assert_problem(r, 409, "lease-held").await;
                held += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(granted.len(), 1, "exactly one grant");
    assert_eq!(held, 11);
    assert_eq!(token_of(&granted[0]), 1);
    let (body, _) = a.resource(&res).await;
    assert_eq!(body["fence"], 1);
    assert_eq!(body["lease"]["id"], granted[0]["id"]);
}

#[tokio::test]
async fn a_guid_in_upper_case_names_the_same_resource_and_is_printed_lower_case() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let upper = Res {
        resource_type: "routes".into(),
        guid: res.guid.to_uppercase(),
    };
    let lease = app.grant(&upper, "svc/1", None).await;
    assert_eq!(lease["resource"]["guid"], res.guid.as_str());
    let r = app.get(&res.lease_path()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], lease["id"]);
    assert_problem(app.acquire(&res, "svc/2", None).await, 409, "lease-held").await;
}

#[tokio::test]
async fn the_lease_listing_shows_active_leases_by_default_and_filters_by_type_guid_holder_and_state()
 {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let route_a = Res::route();
    let app_b = Res::new("apps");
    let route_c = Res::route();
    let space_d = Res::new("spaces");
    let a = app.grant(&route_a, "h1", None).await; // active
    let b = app.grant(&app_b, "h2", None).await; // released
    app.release(&id_of(&b)).await;
    let c = app.grant(&route_c, "h1", None).await; // expired
    db.expire_lease(&id_of(&c)).await;
    let d = app.grant(&space_d, "h3", None).await; // active

    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    };
    let set = |v: &[&Value]| -> HashSet<String> { v.iter().map(|l| id_of(l)).collect() };
    let as_set = |v: Vec<String>| -> HashSet<String> { v.into_iter().collect() };

    let default = list(&app, "").await;
    assert_eq!(default["next_cursor"], Value::Null);
    assert_eq!(as_set(ids(&default)), set(&[&a, &d]), "active by default");
    for item in default["items"].as_array().unwrap() {
        assert_lease_shape(item);
        assert_eq!(item["state"], "active");
    }
    assert_eq!(
        as_set(ids(&list(&app, "?state=active").await)),
        set(&[&a, &d])
    );
    let ended = list(&app, "?state=ended").await;
    assert_eq!(as_set(ids(&ended)), set(&[&b, &c]));
    for item in ended["items"].as_array().unwrap() {
        assert!(item["ended_at"].is_string(), "{item}");
        let expected = if item["id"] == b["id"] {
            "released"
        } else {
            "expired"
        };
        assert_eq!(item["state"], expected);
    }
    let all = list(&app, "?state=all").await;
    assert_eq!(as_set(ids(&all)), set(&[&a, &b, &c, &d]));
    let times: Vec<DateTime<Utc>> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| ts(&l["acquired_at"]))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    assert_eq!(
        as_set(ids(&list(&app, "?type=routes&state=all").await)),
        set(&[&a, &c])
    );
    assert_eq!(ids(&list(&app, "?type=routes").await), [id_of(&a)]);
    assert_eq!(ids(&list(&app, "?type=apps").await), Vec::<String>::new());
    assert_eq!(
        ids(&list(&app, &format!("?guid={}&state=all", app_b.guid)).await),
        [id_of(&b)]
    );
    assert_eq!(
        ids(&list(
            &app,
            &format!("?guid={}&state=all", app_b.guid.to_uppercase())
        )
        .await),
        [id_of(&b)],
        "guid filter in any case"
    );
    assert_eq!(
        as_set(ids(&list(&app, "?holder=h1&state=all").await)),
        set(&[&a, &c])
    );
    assert_eq!(ids(&list(&app, "?holder=h1").await), [id_of(&a)]);
    assert_eq!(
        ids(&list(&app, "?holder=h1&state=ended").await),
        [id_of(&c)]
    );
    assert_eq!(
        ids(&list(&app, "?holder=nobody&state=all").await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&list(
            &app,
            &format!("?type=spaces&guid={}&holder=h3&state=active", space_d.guid)
        )
        .await),
        [id_of(&d)]
    );
}

#[tokio::test]
async fn the_lease_listing_pages_newest_first_through_next_cursor() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let lease = app.grant(&Res::route(), &format!("svc/{i}"), None).await;
        created.push(id_of(&lease));
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let page = list(&app, &query).await;
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(sizes.len() < 10, "pagination does not end");
                query = format!("?limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, newest_first, "every lease exactly once, newest first");

    // A page that ends exactly at the last lease has no next_cursor.
    let page = list(&app, "?limit=7").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert_eq!(page["next_cursor"], Value::Null);

    // Cursors combine with filters.
    let first = list(&app, "?limit=1&state=all&type=routes").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let second = list(
        &app,
        &format!("?limit=1&state=all&type=routes&cursor={cursor}"),
    )
    .await;
    assert_eq!(id_of(&second["items"][0]), newest_first[1]);
}

#[tokio::test]
async fn the_lease_listing_limit_defaults_to_100_and_goes_up_to_1000() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    for i in 0..101 {
        app.grant(&Res::route(), &format!("svc/{i}"), Some(600))
            .await;
    }
    let page = list(&app, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert!(page["next_cursor"].is_string());
    let rest = list(
        &app,
        &format!("?cursor={}", page["next_cursor"].as_str().unwrap()),
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);

    let big = list(&app, "?limit=1000").await;
    assert_eq!(big["items"].as_array().unwrap().len(), 101);
    assert_eq!(big["next_cursor"], Value::Null);
    let one = list(&app, "?limit=1").await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert!(one["next_cursor"].is_string());
}

#[tokio::test]
async fn ending_and_renewing_leases_leaves_the_resource_version_alone() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", None).await;
    let r = app
        .set_labels(&res, json!({"a": "1"}), Some(token_of(&lease)), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"");
    app.renew(&id_of(&lease), Some(90)).await;
    app.acquire(&res, "svc/1", None).await;
    app.release(&id_of(&lease)).await;
    let l2 = app.grant(&res, "svc/2", None).await;
    db.expire_lease(&id_of(&l2)).await;
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"");
    assert_eq!(body["version"], 1);
    assert_eq!(body["lease"], Value::Null);
    assert_eq!(body["fence"], 2);
}

// ---- helpers of this file ----

/// The lease members of API.md §3, exactly, with their formats.
fn assert_lease_shape(lease: &Value) {
    let keys: HashSet<&str> = lease
        .as_object()
        .unwrap_or_else(|| panic!("a lease is an object: {lease}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected: HashSet<&str> = [
        "id",
        "resource",
        "holder",
        "fencing_token",
        "state",
        "ttl_seconds",
        "lock_delay_seconds",
        "acquired_at",
        "renewed_at",
        "expires_at",
        "ended_at",
    ]
    .into_iter()
    .collect();
    // With authentication a lease also names the principal that took it.
    let mut keys = keys;
    if auth_mode() && keys.remove("principal") {
        assert!(lease["principal"].is_string(), "{lease}");
    }
    assert_eq!(keys, expected, "lease members: {lease}");
    let id = lease["id"].as_str().expect("id is a string");
    assert_eq!(id, id.to_lowercase());
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert!(lease["resource"]["type"].is_string());
    let guid = lease["resource"]["guid"].as_str().expect("resource.guid");
    assert_eq!(guid, guid.to_lowercase());
    assert!(lease["holder"].is_string());
    assert!(lease["fencing_token"].as_u64().is_some_and(|t| t >= 1));
    assert!(
        ["active", "released", "expired", "revoked"].contains(&lease["state"].as_str().unwrap())
    );
    assert!(lease["ttl_seconds"].as_u64().is_some());
    for field in ["acquired_at", "renewed_at", "expires_at"] {
        ts(&lease[field]);
    }
    if !lease["ended_at"].is_null() {
        ts(&lease["ended_at"]);
        assert_ne!(lease["state"], "active");
    } else {
        assert_eq!(lease["state"], "active");
    }
}

/// Parses an RFC 3339 UTC timestamp with exactly millisecond precision, e.g.
/// `2026-11-26T14:36:54.123Z`, and panics on any other form.
fn ts(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is a string: {v}"));
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    let ok = b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z';
    assert!(ok, "not RFC 3339 UTC with milliseconds: {s}");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

async fn get_lease(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/v1/leases/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK, "GET /v1/leases/{id}");
    r.json().await.expect("lease JSON")
}

async fn list(app: &TestApp, query: &str) -> Value {
    let r: Response = app
        .request(Method::GET, &format!("/v1/leases{query}"))
        .await
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::OK, "GET /v1/leases{query}");
    let body: Value = r.json().await.expect("list JSON");
    assert!(body["items"].is_array(), "{body}");
    assert!(
        body["next_cursor"].is_null() || body["next_cursor"].is_string(),
        "{body}"
    );
    body
}
