//! List endpoints: pagination, `guids`, and every `label_selector` form over real HTTP.

mod common;

use common::{Harness, cc_error, enc};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn guids(body: &Value) -> Vec<String> {
    body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["guid"].as_str().expect("guid").to_string())
        .collect()
}

#[tokio::test]
async fn lists_paginate_like_cc() {
    let h = Harness::start().await;
    let mut all = Vec::new();
    for i in 0..5 {
        let r = h.seed("apps", json!({"guid": format!("app-{i}")})).await;
        all.push(r["guid"].as_str().expect("guid").to_string());
    }
    let base = h.sim.base_url.clone();

    let (status, body) = h.get("/v3/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(guids(&body), all);
    assert_eq!(body["pagination"]["total_results"], 5);
    assert_eq!(body["pagination"]["total_pages"], 1);
    assert_eq!(body["pagination"]["next"], Value::Null);
    assert_eq!(body["pagination"]["previous"], Value::Null);
    assert_eq!(
        body["pagination"]["first"]["href"],
        format!("{base}/v3/apps?page=1&per_page=50")
    );

    let (_, body) = h.get("/v3/apps?per_page=2&page=2").await;
    assert_eq!(guids(&body), all[2..4]);
    assert_eq!(
        body["pagination"],
        json!({
            "total_results": 5,
            "total_pages": 3,
            "first": {"href": format!("{base}/v3/apps?page=1&per_page=2")},
            "last": {"href": format!("{base}/v3/apps?page=3&per_page=2")},
            "next": {"href": format!("{base}/v3/apps?page=3&per_page=2")},
            "previous": {"href": format!("{base}/v3/apps?page=1&per_page=2")},
        })
    );
    let (_, body) = h.get("/v3/apps?per_page=2&page=3").await;
    assert_eq!(guids(&body), all[4..]);
    assert_eq!(body["pagination"]["next"], Value::Null);
    let (_, body) = h.get("/v3/apps?per_page=2&page=9").await;
    assert!(guids(&body).is_empty());

    let (_, body) = h.get("/v3/apps?guids=app-3,app-1,nope").await;
    assert_eq!(guids(&body), vec!["app-1", "app-3"]);
    assert_eq!(
        body["pagination"]["first"]["href"],
        format!("{base}/v3/apps?guids=app-3%2Capp-1%2Cnope&page=1&per_page=50")
    );
    let (_, body) = h.get("/v3/apps?order_by=-created_at&per_page=5000").await;
    assert_eq!(guids(&body).len(), 5);

    for (query, detail) in [
        ("per_page=0", "Per page must be a positive integer"),
        ("per_page=5001", "Per page must be between 1 and 5000"),
        ("page=0", "Page must be a positive integer"),
        ("page=x", "Page must be a positive integer"),
    ] {
        let (status, body) = h.get(&format!("/v3/apps?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            cc_error(&body),
            (
                "CF-BadQueryParameter".into(),
                10005,
                format!("The query parameter is invalid: {detail}")
            )
        );
    }
}

async fn seed_animals(h: &Harness, ty: &str) {
    for (guid, labels) in [
        ("dog", json!({"animal": "dog", "example.com/legs": "4"})),
        (
            "cat",
            json!({"animal": "cat", "example.com/legs": "4", "santa": "claus"}),
        ),
        ("bird", json!({"animal": "bird", "example.com/legs": "2"})),
        ("rock", json!({})),
    ] {
        h.seed(ty, json!({"guid": guid, "metadata": {"labels": labels}}))
            .await;
    }
}

async fn select(h: &Harness, ty: &str, selector: &str) -> (StatusCode, Value) {
    h.get(&format!("/v3/{ty}?label_selector={}", enc(selector)))
        .await
}

#[tokio::test]
async fn every_label_selector_form_filters_and_requirements_are_anded() {
    let h = Harness::start().await;
    for ty in ["apps", "routes"] {
        seed_animals(&h, ty).await;
        for (selector, expected) in [
            ("animal=dog", vec!["dog"]),
            ("animal==dog", vec!["dog"]),
            ("animal!=dog", vec!["cat", "bird", "rock"]),
            ("animal in (dog,cat)", vec!["dog", "cat"]),
            ("animal notin (dog,cat)", vec!["bird", "rock"]),
            ("santa", vec!["cat"]),
            ("!santa", vec!["dog", "bird", "rock"]),
            ("example.com/legs=4", vec!["dog", "cat"]),
            ("example.com/legs=4,!santa", vec!["dog"]),
            ("example.com/legs in (2,4),animal!=bird", vec!["dog", "cat"]),
            ("animal=", vec![]),
            ("animal=DOG", vec![]),
        ] {
            let (status, body) = select(&h, ty, selector).await;
            assert_eq!(status, StatusCode::OK, "{ty} {selector}: {body}");
            assert_eq!(guids(&body), expected, "{ty} {selector}");
        }
    }
}

#[tokio::test]
async fn invalid_label_selectors_get_ccs_400_except_on_routes() {
    let h = Harness::start().await;
    seed_animals(&h, "apps").await;
    seed_animals(&h, "routes").await;
    let many = vec!["a"; 51].join(",");
    for (selector, detail) in [
        ("", "Missing label_selector value"),
        ("!", "Invalid label_selector value"),
        (
            many.as_str(),
            "Too many label_selector requirements (maximum is 50)",
        ),
        ("a b=c", "Invalid label_selector value"),
        ("animal in (dog, cat)", "' cat' contains invalid characters"),
        (
            "-animal=dog",
            "'-animal' starts or ends with invalid characters",
        ),
        (
            "cloudfoundry.org/x",
            "prefix 'cloudfoundry.org' is reserved",
        ),
        (
            "animal=.x,!,y=z-",
            "'.x' starts or ends with invalid characters, Invalid label_selector value, 'z-' starts or ends with invalid characters",
        ),
    ] {
        let (status, body) = select(&h, "apps", selector).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{selector:?}");
        assert_eq!(
            cc_error(&body),
            (
                "CF-BadQueryParameter".into(),
                10005,
                format!("The query parameter is invalid: {detail}")
            ),
            "{selector:?}"
        );
    }
    // `?label_selector` without `=` is missing too.
    let (status, body) = h.get("/v3/apps?label_selector").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(cc_error(&body).2.ends_with("Missing label_selector value"));

    // /v3/routes skips validation: an empty selector is no filter, invalid values just filter.
    let (status, body) = select(&h, "routes", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(guids(&body), vec!["dog", "cat", "bird", "rock"]);
    let (status, body) = select(&h, "routes", "animal in (dog, cat)").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(guids(&body), vec!["dog"]);
    let (status, body) = select(&h, "routes", &many).await;
    assert_eq!(status, StatusCode::OK);
    assert!(guids(&body).is_empty());
    // An unparseable requirement makes CC's query generator fail: 500 UnknownError.
    let (status, body) = select(&h, "routes", "!").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        cc_error(&body),
        (
            "UnknownError".into(),
            10001,
            "An unknown error occurred.".into()
        )
    );
}
