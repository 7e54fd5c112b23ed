//! The OpenAPI document is generated from the code, committed, and served; all three agree.

use serde_json::Value;

use crate::helpers::*;

fn committed() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/leasehold.json");
    let text = std::fs::read_to_string(path).expect("openapi/leasehold.json is committed");
    serde_json::from_str(&text).expect("openapi/leasehold.json is JSON")
}

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = serde_json::to_value(leasehold::http::openapi()).expect("document serialises");
    assert!(
        generated == committed(),
        "openapi/leasehold.json is out of date: run scripts/openapi and commit the result"
    );
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.expect("JSON");
    assert_eq!(served, committed());
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
}
