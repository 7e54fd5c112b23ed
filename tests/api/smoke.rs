//! The shortest path through the service: a grant, a fenced write, a release.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_holder_acquires_writes_with_its_token_and_releases() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", Some(10)).await;
    assert_eq!(token_of(&lease), 1);
    let r = app
        .set_labels(
            &res,
            json!({"usage.example.com/orders": "1"}),
            Some(1),
            Some("\"0\""),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
    assert_eq!(
        app.release(&id_of(&lease)).await.status(),
        StatusCode::NO_CONTENT
    );
    let (body, etag) = app.resource(&res).await;
    assert_eq!(etag, "\"1\"");
    assert_eq!(body["metadata"]["labels"]["usage.example.com/orders"], "1");
    assert_eq!(body["lease"], serde_json::Value::Null);
    assert_eq!(body["fence"], 1);
}
