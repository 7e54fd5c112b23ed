//! Resources: reads with ETags, CC's merge semantics, the write rule of API.md §2 in order,
//! CC's per-resource limits, conditional DELETE and history.

use std::collections::HashSet;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const ALL_TYPES: [&str; 22] = [
    "apps",
    "builds",
    "buildpacks",
    "deployments",
    "domains",
    "droplets",
    "isolation_segments",
    "organizations",
    "packages",
    "processes",
    "revisions",
    "routes",
    "service_brokers",
    "service_credential_bindings",
    "service_instances",
    "service_offerings",
    "service_plans",
    "service_route_bindings",
    "spaces",
    "stacks",
    "tasks",
    "users",
];

#[tokio::test]
async fn a_never_written_resource_reads_as_version_0_with_empty_metadata() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    for t in ALL_TYPES {
        let res = Res::new(t);
        let r = app.get(&res.path()).await;
        assert_eq!(r.status(), StatusCode::OK, "{t}");
        assert_eq!(r.headers()["etag"], "\"0\"", "{t}");
        let mut body: Value = r.json().await.unwrap();
        // With Cloud Controller as upstream, its body of the resource comes along.
        let upstream = body["upstream"].take();
        if cloud_controller_mode() {
            assert_eq!(upstream["guid"], res.guid, "{t}");
            assert_eq!(
                upstream["metadata"],
                json!({"labels": {}, "annotations": {}}),
                "{t}"
            );
        } else {
            assert_eq!(upstream, Value::Null, "{t}");
        }
        assert_eq!(
            body,
            json!({
                "type": t,
                "guid": res.guid,
                "version": 0,
                "metadata": {"labels": {}, "annotations": {}},
                "lease": null,
                "fence": 0,
                "upstream": null,
            }),
            "{t}"
        );
    }
    // Any case in, lower case out.
    let res = Res::route();
    let upper = Res {
        resource_type: "routes".into(),
        guid: res.guid.to_uppercase(),
    };
    let (body, _) = app.resource(&upper).await;
    assert_eq!(body["guid"], res.guid.as_str());
    // A never-seen resource has an empty history.
    assert_eq!(app.history(&res).await, Vec::<Value>::new());
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_answers_304() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let r = get_with(&app, &res.path(), &[("If-None-Match", "\"0\"")]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], "\"0\"");
    assert!(r.bytes().await.unwrap().is_empty(), "304 has no body");

    let r = app
        .set_labels(&res, json!({"a": "1"}), None, Some("\"0\""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The old ETag no longer matches: 200 with the new one.
    let r = get_with(&app, &res.path(), &[("If-None-Match", "\"0\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
    for tags in ["\"1\"", "\"0\", \"1\"", "W/\"1\"", "*"] {
        let r = get_with(&app, &res.path(), &[("If-None-Match", tags)]).await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_MODIFIED,
            "If-None-Match: {tags}"
        );
        assert_eq!(r.headers()["etag"], "\"1\"");
    }
    // A lease does not change the ETag: the client's copy is still current.
    app.grant(&res, "svc/1", None).await;
    let r = get_with(&app, &res.path(), &[("If-None-Match", "\"1\"")]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_patch_merges_labels_and_annotations_like_cloud_controller() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let r = app
        .patch(
            &res,
            json!({"metadata": {
                "labels": {"keep": "k", "change": "old", "drop": "d", "example.com/env": "prod"},
                "annotations": {"note": "some text, with spaces", "gone": "x"}
            }}),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], 1);

    let r = app
        .patch(
            &res,
            json!({"metadata": {
                "labels": {"change": "new", "drop": null, "added": "a", "empty": "", "never-there": null},
                "annotations": {"gone": null, "blank": ""}
            }}),
            None,
            Some("\"1\""),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let patched: Value = r.json().await.unwrap();
    let expected = json!({
        "labels": {"keep": "k", "change": "new", "example.com/env": "prod", "added": "a", "empty": ""},
        "annotations": {"note": "some text, with spaces", "blank": ""}
    });
    assert_eq!(patched["metadata"], expected);
    assert_eq!(patched["version"], 2);
    let (read, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"2\"");
    assert_eq!(
        read, patched,
        "the PATCH answers the resource as GET shows it"
    );

    // Only annotations: labels untouched. `labels: null` is a no-op, as in CC.
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": null, "annotations": {"note": "changed"}}}),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (read, _) = app.resource(&res).await;
    assert_eq!(read["metadata"]["labels"], expected["labels"]);
    assert_eq!(read["metadata"]["annotations"]["note"], "changed");
    assert_eq!(read["version"], 3);

    // An empty metadata object changes nothing.
    let r = app.patch(&res, json!({"metadata": {}}), None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"3\"");
}

#[tokio::test]
async fn the_version_grows_by_one_per_changing_patch_and_not_for_a_no_op() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    for (i, v) in ["1", "2", "3"].iter().enumerate() {
        let r = app.set_labels(&res, json!({"n": v}), None, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["etag"], format!("\"{}\"", i + 1));
    }
    let history_before = app.history(&res).await;
    assert_eq!(history_before.len(), 3);

    // Same value, removing an absent key, an empty patch: nothing changes.
    for body in [
        json!({"metadata": {"labels": {"n": "3"}}}),
        json!({"metadata": {"labels": {"absent": null}, "annotations": {"absent": null}}}),
        json!({"metadata": {"labels": {}, "annotations": {}}}),
        json!({"metadata": {"labels": {"n": "3", "absent": null}}}),
    ] {
        let r = app.patch(&res, body.clone(), None, Some("\"3\"")).await;
        assert_eq!(r.status(), StatusCode::OK, "{body}");
        assert_eq!(r.headers()["etag"], "\"3\"", "{body}");
        let answered: Value = r.json().await.unwrap();
        assert_eq!(answered["version"], 3);
    }
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"3\"");
    assert_eq!(body["metadata"]["labels"], json!({"n": "3"}));
    assert_eq!(
        app.history(&res).await,
        history_before,
        "a no-op writes no history"
    );

    // A no-op under a lease is also not recorded.
    let lease = app.grant(&res, "svc/1", None).await;
    let r = app
        .set_labels(&res, json!({"n": "3"}), Some(token_of(&lease)), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"3\"");
    assert_eq!(app.history(&res).await.len(), 4, "only the grant was added");
}

#[tokio::test]
async fn a_write_without_a_token_while_leased_is_423_resource_locked() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    app.set_labels(&res, json!({"a": "1"}), None, None).await;
    let lease = app.grant(&res, "orders-svc/1", Some(60)).await;
    let before = snapshot(&app, &res).await;

    // Even with a matching If-Match and a satisfied expect.
    for if_match in [None, Some("\"1\"")] {
        let r = app
            .patch(
                &res,
                json!({"metadata": {"labels": {"a": "2"}}, "expect": {"labels": {"a": "1"}}}),
                None,
                if_match,
            )
            .await;
        let problem = assert_problem(r, 423, "resource-locked").await;
        assert_eq!(problem["holder"], "orders-svc/1");
        assert_eq!(problem["expires_at"], lease["expires_at"]);
    }
    let r = app.delete_resource(&res, None, Some("\"1\""), None).await;
    let problem = assert_problem(r, 423, "resource-locked").await;
    assert_eq!(problem["holder"], "orders-svc/1");
    assert_eq!(problem["expires_at"], lease["expires_at"]);
    assert_eq!(snapshot(&app, &res).await, before, "nothing changed");

    // With the token it passes.
    let r = app
        .set_labels(&res, json!({"a": "2"}), Some(token_of(&lease)), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
}

#[tokio::test]
async fn a_write_with_a_token_other_than_the_active_leases_is_409_stale() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let first = app.grant(&res, "svc/1", None).await;
    app.release(&id_of(&first)).await;
    let lease = app.grant(&res, "svc/2", None).await;
    assert_eq!(token_of(&lease), 2);
    let before = snapshot(&app, &res).await;

    for token in [1, 3, 1000] {
        let r = app
            .set_labels(&res, json!({"a": "1"}), Some(token), None)
            .await;
        let problem = assert_problem(r, 409, "stale-fencing-token").await;
        assert_eq!(problem["fencing_token"], token);
        assert_eq!(problem["current_fencing_token"], 2);
    }
    // A stale token is refused before If-Match is looked at.
    let r = app
        .set_labels(&res, json!({"a": "1"}), Some(1), Some("\"77\""))
        .await;
    assert_problem(r, 409, "stale-fencing-token").await;
    let r = app.delete_resource(&res, Some(1), None, None).await;
    assert_problem(r, 409, "stale-fencing-token").await;
    assert_eq!(snapshot(&app, &res).await, before);
}

#[tokio::test]
async fn a_write_with_the_token_of_an_ended_lease_is_409_stale() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", None).await;
    let token = token_of(&lease);
    let r = app
        .set_labels(&res, json!({"a": "1"}), Some(token), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.release(&id_of(&lease)).await.status(), 204);
    let before = snapshot(&app, &res).await;

    let r = app
        .set_labels(&res, json!({"a": "2"}), Some(token), Some("\"1\""))
        .await;
    let problem = assert_problem(r, 409, "stale-fencing-token").await;
    assert_eq!(problem["current_fencing_token"], Value::Null);
    let r = app
        .delete_resource(&res, Some(token), Some("\"1\""), None)
        .await;
    assert_problem(r, 409, "stale-fencing-token").await;
    assert_eq!(snapshot(&app, &res).await, before);

    // Same after an expiry.
    let lease = app.grant(&res, "svc/2", None).await;
    db.expire_lease(&id_of(&lease)).await;
    let r = app
        .set_labels(&res, json!({"a": "3"}), Some(token_of(&lease)), None)
        .await;
    assert_problem(r, 409, "stale-fencing-token").await;
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"");
    assert_eq!(body["metadata"]["labels"]["a"], "1");
}

#[tokio::test]
async fn an_if_match_mismatch_is_412_with_the_current_etag() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    app.set_labels(&res, json!({"a": "1"}), None, None).await;
    app.set_labels(&res, json!({"a": "2"}), None, None).await;
    let before = snapshot(&app, &res).await;

    for stale in ["\"1\"", "\"0\"", "\"3\"", "W/\"2\"", "\"1\", \"3\""] {
        let r = app
            .set_labels(&res, json!({"a": "x"}), None, Some(stale))
            .await;
        assert_eq!(
            r.headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some("\"2\"".to_owned()),
            "412 names the current ETag (If-Match: {stale})"
        );
        assert_problem(r, 412, "precondition-failed").await;
    }
    let r = app.delete_resource(&res, None, Some("\"1\""), None).await;
    assert_eq!(r.headers()["etag"], "\"2\"");
    assert_problem(r, 412, "precondition-failed").await;
    assert_eq!(snapshot(&app, &res).await, before);

    // Under a lease with the right token, If-Match still applies.
    let lease = app.grant(&res, "svc/1", None).await;
    let r = app
        .set_labels(
            &res,
            json!({"a": "x"}),
            Some(token_of(&lease)),
            Some("\"1\""),
        )
        .await;
    assert_problem(r, 412, "precondition-failed").await;

    // The current ETag passes, alone or in a list.
    let r = app
        .set_labels(
            &res,
            json!({"a": "3"}),
            Some(token_of(&lease)),
            Some("\"1\", \"2\""),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"3\"");
}

#[tokio::test]
async fn if_match_zero_passes_on_a_never_written_resource_and_star_needs_an_existing_one() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();

    let r = app
        .set_labels(&res, json!({"a": "1"}), None, Some("*"))
        .await;
    assert_eq!(r.headers()["etag"], "\"0\"");
    assert_problem(r, 412, "precondition-failed").await;
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");
    // A lease does not make a resource exist.
    let lease = app.grant(&res, "svc/1", None).await;
    let r = app
        .set_labels(&res, json!({"a": "1"}), Some(token_of(&lease)), Some("*"))
        .await;
    assert_problem(r, 412, "precondition-failed").await;
    app.release(&id_of(&lease)).await;

    let r = app
        .set_labels(&res, json!({"a": "1"}), None, Some("\"0\""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");

    let r = app
        .set_labels(&res, json!({"a": "2"}), None, Some("*"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "* matches once written");
    assert_eq!(r.headers()["etag"], "\"2\"");
    // ... even when the metadata is empty again.
    let r = app
        .set_labels(&res, json!({"a": null}), None, Some("*"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .set_labels(&res, json!({"b": "1"}), None, Some("*"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"4\"");
}

#[tokio::test]
async fn an_unmet_expectation_is_412_expectation_failed_with_the_mismatches() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    app.patch(
        &res,
        json!({"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"n": "x"}}}),
        None,
        None,
    )
    .await;
    let before = snapshot(&app, &res).await;

    let r = app
        .patch(
            &res,
            json!({
                "metadata": {"labels": {"z": "1"}},
                "expect": {
                    "labels": {"a": "2", "b": "2", "c": "3", "d": null},
                    "annotations": {"n": null, "m": null}
                }
            }),
            None,
            Some("\"1\""),
        )
        .await;
    let problem = assert_problem(r, 412, "expectation-failed").await;
    // Members in any order, mismatches in any order (null meaning absent).
    let mismatches = problem["mismatches"].as_array().expect("mismatches");
    for m in mismatches {
        let keys: HashSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from(["kind", "key", "expected", "actual"]),
            "{m}"
        );
    }
    let expected = [
        json!({"kind": "labels", "key": "a", "expected": "2", "actual": "1"}),
        json!({"kind": "labels", "key": "c", "expected": "3", "actual": null}),
        json!({"kind": "annotations", "key": "n", "expected": null, "actual": "x"}),
    ];
    assert_eq!(mismatches.len(), expected.len(), "{problem}");
    for m in &expected {
        assert!(mismatches.contains(m), "{m} missing from {problem}");
    }
    assert_eq!(snapshot(&app, &res).await, before);

    // If-Match is checked before expect.
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": {"z": "1"}}, "expect": {"labels": {"a": "9"}}}),
            None,
            Some("\"0\""),
        )
        .await;
    assert_problem(r, 412, "precondition-failed").await;

    // A satisfied expectation lets the write through.
    let r = app
        .patch(
            &res,
            json!({
                "metadata": {"labels": {"a": "2"}},
                "expect": {"labels": {"a": "1", "d": null}, "annotations": {"n": "x"}}
            }),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
}

#[tokio::test]
async fn preconditions_are_required_only_when_the_server_says_so() {
    let db = TestDb::new().await;
    let strict = spawn_app_with(&db, &["--require-preconditions"]).await;
    let res = Res::route();

    let r = strict.set_labels(&res, json!({"a": "1"}), None, None).await;
    assert_problem(r, 428, "precondition-required").await;
    let r = strict
        .patch(
            &res,
            json!({"metadata": {"labels": {"a": "1"}}, "expect": {"labels": {"a": null}}}),
            None,
            None,
        )
        .await;
    assert_problem(r, 428, "precondition-required").await;
    let r = strict.delete_resource(&res, None, None, None).await;
    assert_problem(r, 428, "precondition-required").await;
    let (_, etag) = strict.resource(&res).await;
    assert_eq!(etag, "\"0\"", "nothing written");

    // An unmet expect is reported before the missing precondition.
    let r = strict
        .patch(
            &res,
            json!({"metadata": {"labels": {"a": "1"}}, "expect": {"labels": {"a": "1"}}}),
            None,
            None,
        )
        .await;
    assert_problem(r, 412, "expectation-failed").await;

    let r = strict
        .set_labels(&res, json!({"a": "1"}), None, Some("\"0\""))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "If-Match satisfies it");

    let lease = strict.grant(&res, "svc/1", None).await;
    // With a lease, a write without headers is locked (step 2 comes before step 7).
    let r = strict.set_labels(&res, json!({"a": "2"}), None, None).await;
    assert_problem(r, 423, "resource-locked").await;
    let r = strict
        .set_labels(&res, json!({"a": "2"}), Some(token_of(&lease)), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "Fencing-Token satisfies it");
    strict.release(&id_of(&lease)).await;

    // The same database served without the flag takes plain writes (on SQLite, spawning
    // another configuration replaces the instance: one file serves one instance).
    let lax = spawn_app(&db).await;
    let r = lax.set_labels(&res, json!({"a": "3"}), None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"3\"");
    let strict = spawn_app_with(&db, &["--require-preconditions"]).await;
    let r = strict.delete_resource(&res, None, None, None).await;
    assert_problem(r, 428, "precondition-required").await;
    let r = strict
        .delete_resource(&res, None, Some("\"3\""), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn cloud_controllers_label_limit_applies_only_when_the_count_grows_past_it() {
    let db = TestDb::new().await;
    let limited = spawn_app_with(&db, &["--max-labels", "2"]).await;
    let res = Res::route();

    let r = limited
        .set_labels(&res, json!({"a": "1", "b": "1", "c": "1"}), None, None)
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 3 labels because it would exceed maximum of 2"])
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Failed to add 3 labels because it would exceed maximum of 2")
    );
    let (_, etag) = limited.resource(&res).await;
    assert_eq!(etag, "\"0\"");
    assert!(limited.history(&res).await.is_empty());

    let r = limited
        .set_labels(&res, json!({"a": "1", "b": "1"}), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let before = snapshot(&limited, &res).await;
    let r = limited
        .set_labels(&res, json!({"c": "1"}), None, None)
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 1 labels because it would exceed maximum of 2"])
    );
    // Deletes count among the keys of the request, as in CC.
    let r = limited
        .set_labels(&res, json!({"c": "1", "d": "1", "a": null}), None, None)
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 3 labels because it would exceed maximum of 2"])
    );
    assert_eq!(snapshot(&limited, &res).await, before);
    // Swapping one key for another keeps the count: allowed.
    let r = limited
        .set_labels(&res, json!({"c": "1", "a": null}), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A resource already over the limit (written under the default limit) may still be
    // edited and shrunk, but not grown.
    let unlimited = spawn_app(&db).await;
    let over = Res::route();
    let r = unlimited
        .set_labels(
            &over,
            json!({"a": "1", "b": "1", "c": "1", "d": "1"}),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let limited = spawn_app_with(&db, &["--max-labels", "2"]).await;
    let r = limited
        .set_labels(&over, json!({"a": "2"}), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "an edit passes");
    let r = limited
        .set_labels(&over, json!({"b": null, "c": "2"}), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "a removal passes");
    let r = limited
        .set_labels(&over, json!({"e": "1"}), None, None)
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 1 labels because it would exceed maximum of 2"])
    );
    let (body, etag) = limited.resource(&over).await;
    assert_eq!(etag, "\"3\"");
    assert_eq!(
        body["metadata"]["labels"],
        json!({"a": "2", "c": "2", "d": "1"})
    );
}

#[tokio::test]
async fn the_limits_are_checked_after_the_lease_and_if_match_steps() {
    let db = TestDb::new().await;
    let app = spawn_app_with(&db, &["--max-labels", "1"]).await;
    let res = Res::route();
    let two = json!({"a": "1", "b": "1"});
    let lease = app.grant(&res, "svc/1", None).await;
    let token = token_of(&lease);
    let r = app.set_labels(&res, two.clone(), None, None).await;
    assert_problem(r, 423, "resource-locked").await;
    let r = app
        .set_labels(&res, two.clone(), Some(token + 1), None)
        .await;
    assert_problem(r, 409, "stale-fencing-token").await;
    let r = app
        .set_labels(&res, two.clone(), Some(token), Some("\"5\""))
        .await;
    assert_problem(r, 412, "precondition-failed").await;
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": two.clone()}, "expect": {"labels": {"a": "1"}}}),
            Some(token),
            None,
        )
        .await;
    assert_problem(r, 412, "expectation-failed").await;
    let r = app.set_labels(&res, two, Some(token), Some("\"0\"")).await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 2 labels because it would exceed maximum of 1"])
    );
    let (_, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"0\"");
}

#[tokio::test]
async fn cloud_controllers_annotation_limit_is_enforced_alongside_the_label_limit() {
    let db = TestDb::new().await;
    let app = spawn_app_with(&db, &["--max-labels", "1", "--max-annotations", "1"]).await;
    let res = Res::route();
    let r = app
        .patch(
            &res,
            json!({"metadata": {"annotations": {"x": "1", "y": "2"}}}),
            None,
            None,
        )
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!(["Failed to add 2 annotations because it would exceed maximum of 1"])
    );
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": {"a": "1", "b": "1"}, "annotations": {"x": "1", "y": "2"}}}),
            None,
            None,
        )
        .await;
    let problem = assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(
        problem["errors"],
        json!([
            "Failed to add 2 labels because it would exceed maximum of 1",
            "Failed to add 2 annotations because it would exceed maximum of 1"
        ])
    );
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"x": "1"}}}),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
}

#[tokio::test]
async fn a_deleted_resource_answers_410_everywhere_but_its_history() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    app.set_labels(&res, json!({"a": "1"}), None, None).await;
    let r = app.delete_resource(&res, None, Some("\"1\""), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().await.unwrap().is_empty());

    assert_problem(app.get(&res.path()).await, 410, "resource-deleted").await;
    assert_problem(
        get_with(&app, &res.path(), &[("If-None-Match", "\"2\"")]).await,
        410,
        "resource-deleted",
    )
    .await;
    assert_problem(app.get(&res.lease_path()).await, 410, "resource-deleted").await;
    assert_problem(
        app.set_labels(&res, json!({"a": "2"}), None, None).await,
        410,
        "resource-deleted",
    )
    .await;
    assert_problem(
        app.set_labels(&res, json!({"a": "2"}), None, Some("\"2\""))
            .await,
        410,
        "resource-deleted",
    )
    .await;
    assert_problem(
        app.acquire(&res, "svc/1", None).await,
        410,
        "resource-deleted",
    )
    .await;
    assert_problem(
        app.delete_resource(&res, None, None, None).await,
        410,
        "resource-deleted",
    )
    .await;
    assert_problem(
        app.delete_resource(&res, Some(1), Some("\"2\""), None)
            .await,
        410,
        "resource-deleted",
    )
    .await;
    // The same resource spelled in upper case is just as deleted.
    let upper = Res {
        resource_type: "routes".into(),
        guid: res.guid.to_uppercase(),
    };
    assert_problem(app.get(&upper.path()).await, 410, "resource-deleted").await;

    let history = app.history(&res).await;
    let events: Vec<&str> = history
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["deleted", "metadata-changed"]);
    assert_eq!(history[0]["version"], 2, "a delete bumps the version");
    assert_eq!(history[0]["actor"], db.actor(None));
    // Form is checked before the critical section: invalid metadata is 422 even now.
    let r = app.set_labels(&res, json!({"a b": "1"}), None, None).await;
    assert_problem(r, 422, "invalid-metadata").await;
    assert_eq!(app.history(&res).await.len(), 2, "nothing recorded");
}

#[tokio::test]
async fn deleting_a_never_written_resource_with_if_match_zero_tombstones_it() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let r = app.delete_resource(&res, None, Some("*"), None).await;
    assert_problem(r, 412, "precondition-failed").await;
    let r = app.delete_resource(&res, None, Some("\"0\""), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&res.path()).await, 410, "resource-deleted").await;
    let history = app.history(&res).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["event"], "deleted");
    assert_eq!(history[0]["version"], 1);
}

#[tokio::test]
async fn deleting_a_leased_resource_with_its_token_ends_the_lease_as_released() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "janitor/1", None).await;
    let id = id_of(&lease);
    let token = token_of(&lease);
    app.set_labels(&res, json!({"a": "1"}), Some(token), None)
        .await;

    let r = app
        .delete_resource(
            &res,
            Some(token),
            Some("\"1\""),
            Some(json!({"expect": {"labels": {"a": "1", "b": null}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = app.get(&format!("/v1/leases/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ended: Value = r.json().await.unwrap();
    assert_eq!(ended["state"], "released");
    assert!(ended["ended_at"].is_string());
    assert_problem(app.renew(&id, None).await, 410, "lease-released").await;
    assert_problem(app.release(&id).await, 410, "lease-released").await;

    let history = app.history(&res).await;
    let events: HashSet<&str> = history
        .iter()
        .take(2)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, HashSet::from(["deleted", "lease-released"]));
    let deleted = history
        .iter()
        .find(|e| e["event"] == "deleted")
        .expect("deleted entry");
    assert_eq!(deleted["actor"], db.actor(Some("janitor/1")));
    assert_eq!(deleted["lease_id"], id.as_str());
    assert_eq!(deleted["fencing_token"], token);
    assert_eq!(deleted["version"], 2);
    let released = history
        .iter()
        .find(|e| e["event"] == "lease-released")
        .expect("lease-released entry");
    assert_eq!(released["at"], ended["ended_at"]);
    assert_eq!(released["lease_id"], id.as_str());
}

#[tokio::test]
async fn a_delete_whose_preconditions_fail_deletes_nothing() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    app.set_labels(
        &res,
        json!({"usage.example.com/orders": "true"}),
        None,
        None,
    )
    .await;
    let before = snapshot(&app, &res).await;

    let r = app.delete_resource(&res, None, Some("\"0\""), None).await;
    assert_eq!(r.headers()["etag"], "\"1\"");
    assert_problem(r, 412, "precondition-failed").await;
    let r = app
        .delete_resource(
            &res,
            None,
            Some("\"1\""),
            Some(json!({"expect": {"labels": {"usage.example.com/orders": null}}})),
        )
        .await;
    let problem = assert_problem(r, 412, "expectation-failed").await;
    assert_eq!(
        problem["mismatches"],
        json!([{"kind": "labels", "key": "usage.example.com/orders", "expected": null, "actual": "true"}])
    );
    let r = app
        .delete_resource(
            &res,
            None,
            None,
            Some(json!({"expect": {"annotations": {"n": "x"}}})),
        )
        .await;
    assert_problem(r, 412, "expectation-failed").await;
    assert_eq!(snapshot(&app, &res).await, before, "nothing deleted");

    // Once the usage is gone, the same conditional delete succeeds.
    app.set_labels(&res, json!({"usage.example.com/orders": null}), None, None)
        .await;
    let r = app
        .delete_resource(
            &res,
            None,
            Some("\"2\""),
            Some(json!({"expect": {"labels": {"usage.example.com/orders": null}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&res.path()).await, 410, "resource-deleted").await;
}

#[tokio::test]
async fn history_lists_entries_newest_first_with_metadata_change_details() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": {"a": "1", "b": "x"}, "annotations": {"n": "note"}}}),
            None,
            Some("\"0\""),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let lease = app.grant(&res, "orders-svc/1", None).await;
    let r = app
        .patch(
            &res,
            json!({"metadata": {"labels": {"a": "2", "b": null, "c": "", "absent": null}, "annotations": {"n": null}}}),
            Some(token_of(&lease)),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.release(&id_of(&lease)).await;

    let history = app.history(&res).await;
    for entry in &history {
        let keys: HashSet<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from([
                "seq",
                "at",
                "event",
                "actor",
                "lease_id",
                "fencing_token",
                "version",
                "detail"
            ]),
            "{entry}"
        );
    }
    let events: Vec<&str> = history
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "lease-released",
            "metadata-changed",
            "lease-granted",
            "metadata-changed"
        ]
    );
    let seqs: Vec<u64> = history.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "seq strictly decreasing: {seqs:?}"
    );
    let ats: Vec<&str> = history.iter().map(|e| e["at"].as_str().unwrap()).collect();
    for at in &ats {
        // RFC 3339 UTC with milliseconds, e.g. 2026-11-26T14:36:54.123Z.
        assert!(
            at.len() == 24
                && at.as_bytes()[19] == b'.'
                && at.ends_with('Z')
                && chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "history at {at}"
        );
    }
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "at newest first: {ats:?}"
    );
    let versions: Vec<u64> = history
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 2, 1, 1], "the version after each event");

    let first = &history[3];
    assert_eq!(
        first["detail"],
        json!({
            "labels": {"a": {"from": null, "to": "1"}, "b": {"from": null, "to": "x"}},
            "annotations": {"n": {"from": null, "to": "note"}}
        })
    );
    assert_eq!(
        first["actor"],
        db.actor(None),
        "an If-Match-only write names nobody (but its principal, with authentication)"
    );
    assert_eq!(first["lease_id"], Value::Null);
    assert_eq!(first["fencing_token"], Value::Null);

    let under_lease = &history[1];
    assert_eq!(
        under_lease["detail"],
        json!({
            "labels": {"a": {"from": "1", "to": "2"}, "b": {"from": "x", "to": null}, "c": {"from": null, "to": ""}},
            "annotations": {"n": {"from": "note", "to": null}}
        })
    );
    assert_eq!(under_lease["actor"], db.actor(Some("orders-svc/1")));
    assert_eq!(under_lease["lease_id"], lease["id"]);
    assert_eq!(under_lease["fencing_token"], token_of(&lease));
    assert_eq!(history[2]["at"], lease["acquired_at"]);
    assert_eq!(history[2]["detail"], Value::Null);
}

#[tokio::test]
async fn history_pages_through_next_cursor() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    for i in 0..7 {
        let r = app
            .set_labels(&res, json!({"n": i.to_string()}), None, None)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let all = app.history(&res).await;
    assert_eq!(all.len(), 7);

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut query = format!("{}/history?limit=3", res.path());
    loop {
        let r = app.get(&query).await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        let page: Value = r.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert!(sizes.len() < 10, "pagination does not end");
                query = format!("{}/history?limit=3&cursor={c}", res.path());
            }
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, all, "every entry exactly once, newest first");
    assert_eq!(all[0]["detail"]["labels"]["n"]["to"], "6");

    // The default page is 100, and a full last page has no next_cursor.
    let r = app.get(&format!("{}/history", res.path())).await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert_eq!(page["next_cursor"], Value::Null);
    let r = app.get(&format!("{}/history?limit=7", res.path())).await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["next_cursor"], Value::Null);
}

// ---- helpers of this file ----

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = app.request(Method::GET, path).await;
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("GET")
}

/// What a refused write must leave as it was: version and ETag, metadata, lease, fence and
/// history.
async fn snapshot(app: &TestApp, res: &Res) -> (Value, String, usize) {
    let (body, etag) = app.resource(res).await;
    let history = app.history(res).await;
    (body, etag, history.len())
}
