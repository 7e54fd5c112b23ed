//! ccsim's CC v3 and UAA endpoints over real HTTP.

mod common;

use common::{Harness, cc_error, fetch_token, json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn the_root_document_links_v3_and_uaa_and_the_token_endpoint_issues_bearer_tokens() {
    let h = Harness::start().await;
    let base = h.sim.base_url.clone();
    let (status, root) = json(h.http.get(h.url("/")).send().await.expect("root")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(root["links"]["self"]["href"], base.as_str());
    assert_eq!(
        root["links"]["cloud_controller_v3"]["href"],
        format!("{base}/v3")
    );
    assert_eq!(
        root["links"]["cloud_controller_v3"]["meta"]["version"],
        "3.228.0"
    );
    assert_eq!(root["links"]["uaa"]["href"], format!("{base}/uaa"));
    assert_eq!(root["links"]["login"]["href"], format!("{base}/uaa"));

    let uaa = root["links"]["uaa"]["href"].as_str().expect("uaa href");
    let response = h
        .http
        .post(format!("{uaa}/oauth/token"))
        .basic_auth("leasehold", Some("leasehold-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token");
    let (status, token) = json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["expires_in"], 3600);
    assert_eq!(
        token["scope"],
        "cloud_controller.read cloud_controller.write"
    );
    assert!(token["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let access = token["access_token"].as_str().expect("access token");

    // The token works, with any case of the scheme.
    let response = h
        .http
        .get(h.url("/v3/routes"))
        .header("authorization", format!("BEARER {access}"))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_credentials_and_other_grants() {
    let h = Harness::start().await;
    let post = |id: &'static str, secret: &'static str, form: &'static str| {
        h.http
            .post(h.url("/uaa/oauth/token"))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let (status, body) = json(
        post("leasehold", "wrong", "grant_type=client_credentials")
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": "unauthorized", "error_description": "Bad credentials"})
    );
    let (status, body) = json(
        post(
            "leasehold",
            "leasehold-secret",
            "grant_type=password&username=u",
        )
        .await
        .expect("post"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn v3_requests_without_a_valid_token_or_scope_get_ccs_401_and_403() {
    let h = Harness::start().await;
    let route = h.seed("routes", json!({})).await;
    let path = format!("/v3/routes/{}", route["guid"].as_str().expect("guid"));

    let (status, body) = json(h.http.get(h.url(&path)).send().await.expect("get")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        cc_error(&body),
        (
            "CF-NotAuthenticated".into(),
            10002,
            "Authentication error".into()
        )
    );

    let (status, body) = json(
        h.http
            .get(h.url(&path))
            .bearer_auth("not-a-token")
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        cc_error(&body),
        (
            "CF-InvalidAuthToken".into(),
            1000,
            "Invalid Auth Token".into()
        )
    );

    // A read-only client may GET but not PATCH or DELETE.
    let reader = fetch_token(&h.http, &h.origin(), "reader", "reader-secret").await;
    let get = h
        .http
        .get(h.url(&path))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), StatusCode::OK);
    let (status, body) = json(
        h.http
            .patch(h.url(&path))
            .bearer_auth(&reader)
            .json(&json!({"metadata": {"labels": {"a": "b"}}}))
            .send()
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        cc_error(&body),
        (
            "CF-NotAuthorized".into(),
            10003,
            "You are not authorized to perform the requested action".into()
        )
    );
    let (status, _) = json(
        h.http
            .delete(h.url(&path))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A client without any cloud_controller scope may not even GET.
    let nobody = fetch_token(&h.http, &h.origin(), "nobody", "nobody-secret").await;
    let (status, body) = json(
        h.http
            .get(h.url(&path))
            .bearer_auth(&nobody)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(cc_error(&body).0, "CF-NotAuthorized");

    // The label was not written by the refused PATCH.
    let (_, route) = h.get(&path).await;
    assert_eq!(route["metadata"]["labels"], json!({}));
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let mut config = common::config();
    config.token_ttl = Duration::from_secs(1);
    let h = Harness::with(config).await;
    let (status, _) = h.get("/v3/apps").await;
    assert_eq!(status, StatusCode::OK);
    // JWT times are whole seconds: a 1 s token is surely expired 2 s later.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = h.get("/v3/apps").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(cc_error(&body).0, "CF-InvalidAuthToken");
}

#[tokio::test]
async fn every_type_reads_its_resources_and_answers_ccs_not_found_for_missing_ones() {
    let h = Harness::start().await;
    for ty in ccsim::types::TYPES {
        let seeded = h.seed(ty.plural, json!({"name": "x"})).await;
        let guid = seeded["guid"].as_str().expect("guid");
        let (status, body) = h.get(&format!("/v3/{}/{guid}", ty.plural)).await;
        assert_eq!(status, StatusCode::OK, "{}", ty.plural);
        assert_eq!(body, seeded);
        assert_eq!(body["metadata"], json!({"labels": {}, "annotations": {}}));
        assert_eq!(
            body["links"]["self"]["href"],
            format!("{}/v3/{}/{guid}", h.sim.base_url, ty.plural)
        );
        let (status, body) = h.get(&format!("/v3/{}/missing-guid", ty.plural)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (title, code, _) = cc_error(&body);
        assert_eq!((title.as_str(), code), ("CF-ResourceNotFound", 10010));
    }
    let detail = |path: &'static str| {
        let h = &h;
        async move { cc_error(&h.get(path).await.1).2 }
    };
    assert_eq!(detail("/v3/routes/nope").await, "Route not found");
    assert_eq!(
        detail("/v3/service_instances/nope").await,
        "Service instance not found"
    );
    assert_eq!(detail("/v3/apps/nope").await, "App not found");
    assert_eq!(detail("/v3/jobs/nope").await, "Job not found");
}

#[tokio::test]
async fn unknown_urls_and_methods_answer_unknown_request() {
    let h = Harness::start().await;
    for (method, path) in [
        (Method::GET, "/v3/potatoes/x"),
        (Method::GET, "/v3/potatoes"),
        (Method::GET, "/nothing/here"),
        (Method::POST, "/v3/routes/x"),
        (Method::PATCH, "/v3/jobs/x"),
        (Method::GET, "/v3/routes/x/destinations"),
    ] {
        let (status, body) = json(h.call(method.clone(), path, None).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            cc_error(&body),
            ("CF-NotFound".into(), 10000, "Unknown request".into()),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_patch_merges_metadata_per_key_and_answers_the_full_resource() {
    let h = Harness::start().await;
    let route = h
        .seed(
            "routes",
            json!({"host": "app", "metadata": {"labels": {"keep": "me", "gone": "soon", "edit": "old"},
                                              "annotations": {"note": "hi"}}}),
        )
        .await;
    let path = format!("/v3/routes/{}", route["guid"].as_str().expect("guid"));
    let (status, body) = h
        .patch(
            &path,
            json!({"metadata": {
                "labels": {"gone": null, "edit": "new", "flag": true, "count": 5, "absent": null},
                "annotations": {"example.com/long": "any text: ü", "note": ""}
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["metadata"],
        json!({"labels": {"keep": "me", "edit": "new", "flag": "true", "count": "5"},
               "annotations": {"note": "", "example.com/long": "any text: ü"}})
    );
    assert_eq!(body["host"], "app");
    assert_eq!(body["guid"], route["guid"]);
    let (_, again) = h.get(&path).await;
    assert_eq!(again, body);

    // Missing resource: CC's 404.
    let (status, body) = h
        .patch(
            "/v3/routes/nope",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(cc_error(&body).2, "Route not found");
}

#[tokio::test]
async fn invalid_patches_get_ccs_exact_errors_and_change_nothing() {
    let h = Harness::start().await;
    let route = h
        .seed("routes", json!({"metadata": {"labels": {"a": "1"}}}))
        .await;
    let path = format!("/v3/routes/{}", route["guid"].as_str().expect("guid"));

    let (status, body) = h
        .patch(
            &path,
            json!({"metadata": {"labels": {"": "mashed", "/potato": ".value."}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"errors": [{
            "detail": "Metadata label key error: key cannot be empty string, Metadata label key error: prefix '' must be in valid dns format, Metadata label value error: '.value.' starts or ends with invalid characters",
            "title": "CF-UnprocessableEntity",
            "code": 10008
        }]})
    );

    let (status, body) = h
        .patch(&path, json!({"metadata": {"labels": {"b": "2"}}, "x": 1}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        cc_error(&body),
        (
            "CF-UnprocessableEntity".into(),
            10008,
            "Unknown field(s): 'x'".into()
        )
    );

    let (status, body) = h.patch(&path, json!({"metadata": {"foo": 1}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cc_error(&body).2, "Metadata has unexpected field(s): 'foo'");

    let response = h
        .http
        .patch(h.url(&path))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("patch");
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        cc_error(&body),
        (
            "CF-MessageParseError".into(),
            1001,
            "Request invalid due to parse error: invalid request body".into()
        )
    );

    // CC validates the body before looking the route up.
    let (status, _) = h
        .patch(
            "/v3/routes/nope",
            json!({"metadata": {"labels": {"-": "x"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Spaces look the space up first.
    let (status, _) = h
        .patch(
            "/v3/spaces/nope",
            json!({"metadata": {"labels": {"-": "x"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, now) = h.get(&path).await;
    assert_eq!(now, route);
}

#[tokio::test]
async fn label_and_annotation_limits_refuse_growth_with_ccs_errors() {
    let mut config = common::config();
    config.max_labels = 2;
    config.max_annotations = 1;
    let h = Harness::with(config).await;
    let app = h
        .seed("apps", json!({"metadata": {"labels": {"a": "1"}}}))
        .await;
    let path = format!("/v3/apps/{}", app["guid"].as_str().expect("guid"));

    let (status, body) = h
        .patch(
            &path,
            json!({"metadata": {"labels": {"b": "2", "c": "3", "a": null, "d": "4"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        cc_error(&body),
        (
            "CF-LabelLimitExceeded".into(),
            390020,
            "Failed to add 4 labels because it would exceed maximum of 2".into()
        )
    );
    let (status, body) = h
        .patch(
            &path,
            json!({"metadata": {"annotations": {"x": "1", "y": "2"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        cc_error(&body),
        (
            "CF-AnnotationLimitExceeded".into(),
            390023,
            "Failed to add 2 annotations because it would exceed maximum of 1".into()
        )
    );
    let (_, now) = h.get(&path).await;
    assert_eq!(now["metadata"], app["metadata"]);

    // Growing up to the limit is fine.
    let (status, body) = h
        .patch(
            &path,
            json!({"metadata": {"labels": {"b": "2"}, "annotations": {"x": "1"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["metadata"]["labels"], json!({"a": "1", "b": "2"}));
}

#[tokio::test]
async fn a_metadata_patch_bumps_updated_at_for_a_route_but_not_for_a_domain() {
    let h = Harness::start().await;
    let old = "2019-05-10T17:17:48Z";
    let stamps = json!({"created_at": old, "updated_at": old});
    let route = h.seed("routes", stamps.clone()).await;
    let domain = h.seed("domains", stamps).await;
    let patch = json!({"metadata": {"labels": {"a": "b"}}});

    let (status, body) = h
        .patch(
            &format!("/v3/routes/{}", route["guid"].as_str().expect("guid")),
            patch.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let updated = body["updated_at"].as_str().expect("updated_at");
    assert!(updated > old, "{updated}");
    assert_eq!(updated.len(), "2019-05-10T17:17:48Z".len());
    assert!(updated.ends_with('Z'));
    assert_eq!(body["created_at"], old);

    let (status, body) = h
        .patch(
            &format!("/v3/domains/{}", domain["guid"].as_str().expect("guid")),
            patch,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["updated_at"], old);
    assert_eq!(body["metadata"]["labels"], json!({"a": "b"}));
}

async fn job_state(h: &Harness, location: &str) -> Value {
    let response = h
        .http
        .get(location)
        .bearer_auth(&h.token)
        .send()
        .await
        .expect("job");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("job json")
}

#[tokio::test]
async fn deleting_a_route_answers_202_with_a_job_that_completes_and_removes_it() {
    let mut config = common::config();
    config.job_delay = Duration::from_millis(300);
    let h = Harness::with(config).await;
    let route = h.seed("routes", json!({})).await;
    let guid = route["guid"].as_str().expect("guid");
    let path = format!("/v3/routes/{guid}");

    let response = h.delete(&path).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    assert!(location.starts_with(&format!("{}/v3/jobs/", h.sim.base_url)));

    let job = job_state(&h, &location).await;
    assert_eq!(job["state"], "PROCESSING");
    assert_eq!(job["operation"], "route.delete");
    assert_eq!(job["links"]["self"]["href"], location.as_str());
    assert_eq!(
        job["links"]["route"]["href"],
        format!("{}{path}", h.sim.base_url)
    );
    assert_eq!(job["errors"], json!([]));
    assert_eq!(job["warnings"], json!([]));
    // Still readable while the job runs; a second DELETE gets another job.
    assert_eq!(h.get(&path).await.0, StatusCode::OK);
    assert_eq!(h.delete(&path).await.status(), StatusCode::ACCEPTED);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let job = job_state(&h, &location).await;
    assert_eq!(job["state"], "COMPLETE");
    assert!(job["links"].get("route").is_none(), "{job}");
    let (status, body) = h.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(cc_error(&body).2, "Route not found");
    assert_eq!(h.delete(&path).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sync_types_delete_with_204_and_types_without_delete_answer_unknown_request() {
    let h = Harness::start().await;
    for ty in [
        "isolation_segments",
        "stacks",
        "service_plans",
        "service_offerings",
    ] {
        let r = h.seed(ty, json!({})).await;
        let path = format!("/v3/{ty}/{}", r["guid"].as_str().expect("guid"));
        assert_eq!(
            h.delete(&path).await.status(),
            StatusCode::NO_CONTENT,
            "{ty}"
        );
        assert_eq!(h.get(&path).await.0, StatusCode::NOT_FOUND, "{ty}");
    }

    let managed = h
        .seed("service_instances", json!({"type": "managed"}))
        .await;
    let user_provided = h
        .seed("service_instances", json!({"type": "user-provided"}))
        .await;
    let response = h
        .delete(&format!(
            "/v3/service_instances/{}",
            managed["guid"].as_str().expect("guid")
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(
        job_state(&h, &location).await["operation"],
        "service_instance.delete"
    );
    let response = h
        .delete(&format!(
            "/v3/service_instances/{}",
            user_provided["guid"].as_str().expect("guid")
        ))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for ty in ["builds", "deployments", "processes", "revisions", "tasks"] {
        let r = h.seed(ty, json!({})).await;
        let path = format!("/v3/{ty}/{}", r["guid"].as_str().expect("guid"));
        let (status, body) = json(h.delete(&path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{ty}");
        assert_eq!(
            cc_error(&body),
            ("CF-NotFound".into(), 10000, "Unknown request".into())
        );
        assert_eq!(h.get(&path).await.0, StatusCode::OK, "{ty}");
    }
}

#[tokio::test]
async fn out_of_band_changes_through_the_admin_api_bump_updated_at() {
    let h = Harness::start().await;
    let old = "2019-05-10T17:17:48Z";
    let route = h
        .seed(
            "routes",
            json!({"updated_at": old, "host": "a", "metadata": {"labels": {"x": "1", "y": "2"}}}),
        )
        .await;
    let guid = route["guid"].as_str().expect("guid");
    let changed = h
        .sim
        .replace(
            "routes",
            guid,
            json!({"host": "b", "metadata": {"labels": {"x": null, "z": "3"}}}),
        )
        .await
        .expect("replaced");
    assert_eq!(changed["host"], "b");
    assert_eq!(changed["metadata"]["labels"], json!({"y": "2", "z": "3"}));
    assert!(changed["updated_at"].as_str().expect("updated_at") > old);
    let (_, body) = h.get(&format!("/v3/routes/{guid}")).await;
    assert_eq!(body, changed);

    h.sim.remove("routes", guid).await.expect("removed");
    assert_eq!(
        h.get(&format!("/v3/routes/{guid}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(
        h.sim
            .resource("routes", guid)
            .await
            .expect("admin get")
            .is_none()
    );
}
