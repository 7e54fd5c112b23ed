//! Seeding from a file, public URLs, and the command-line binary.

mod common;

use common::Harness;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_seed_file_loads_resources_at_start_with_ccs_shape() {
    let dir = std::env::temp_dir().join(format!("ccsim-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("seed.json");
    std::fs::write(
        &file,
        json!([
            {"type": "routes", "body": {
                "guid": "cbad697f-cac1-48f4-9017-ac08f39dfb31", "host": "a-hostname", "path": "/some_path",
                "relationships": {"space": {"data": {"guid": "885a8cb3-c07b-4856-b448-eeb10bf36236"}},
                                  "domain": {"data": {"guid": "0b5f3633-194c-42d2-9408-972366617e0e"}}},
                "metadata": {"labels": {"env": "dev"}}}},
            {"type": "spaces", "body": {"name": "my-space"}}
        ])
        .to_string(),
    )
    .expect("write");
    let mut config = common::config();
    config.seed_file = Some(file.clone());
    config.public_url = Some("https://api.example.org/".to_string());
    let h = Harness::with(config).await;

    let (status, route) = h
        .get("/v3/routes/cbad697f-cac1-48f4-9017-ac08f39dfb31")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(route["host"], "a-hostname");
    assert_eq!(
        route["metadata"],
        json!({"labels": {"env": "dev"}, "annotations": {}})
    );
    let api = "https://api.example.org/v3";
    assert_eq!(
        route["links"],
        json!({
            "self": {"href": format!("{api}/routes/cbad697f-cac1-48f4-9017-ac08f39dfb31")},
            "space": {"href": format!("{api}/spaces/885a8cb3-c07b-4856-b448-eeb10bf36236")},
            "domain": {"href": format!("{api}/domains/0b5f3633-194c-42d2-9408-972366617e0e")},
            "destinations": {"href": format!("{api}/routes/cbad697f-cac1-48f4-9017-ac08f39dfb31/destinations")},
        })
    );
    let created = route["created_at"].as_str().expect("created_at");
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok());
    assert_eq!(created.len(), 20);
    let (_, spaces) = h.get("/v3/spaces").await;
    assert_eq!(spaces["resources"][0]["name"], "my-space");
    assert_eq!(spaces["pagination"]["total_results"], 1);

    // A bad seed file is an error at start.
    std::fs::write(&file, r#"[{"type": "potatoes", "body": {}}]"#).expect("write");
    let mut config = common::config();
    config.seed_file = Some(file.clone());
    assert!(matches!(
        ccsim::spawn(config).await,
        Err(ccsim::Error::Seed(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn seeding_the_same_guid_twice_is_a_conflict() {
    let h = Harness::start().await;
    h.seed("apps", json!({"guid": "same"})).await;
    assert!(matches!(
        h.sim.seed("apps", json!({"guid": "same"})).await,
        Err(ccsim::Error::Admin { status: 409, .. })
    ));
    assert!(matches!(
        h.sim.seed("potatoes", json!({})).await,
        Err(ccsim::Error::Admin { status: 400, .. })
    ));
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let h = Harness::start().await;
    let url = h.url("/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    assert!(http.get(&url).send().await.is_ok());
    h.sim.shutdown().await;
    assert!(http.get(&url).send().await.is_err());
}
