//! Helpers shared by ccsim's HTTP tests: start a Sim, get tokens, call the API.
#![allow(dead_code)]

use ccsim::{ClientConfig, Config, Sim};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;

pub const CLIENT: (&str, &str) = ("leasehold", "leasehold-secret");

/// A config with the default client plus a read-only one and an admin one.
pub fn config() -> Config {
    let mut config = Config::default();
    config.clients.push(ClientConfig::new(
        "reader",
        "reader-secret",
        &["cloud_controller.read"],
    ));
    config
        .clients
        .push(ClientConfig::new("nobody", "nobody-secret", &["openid"]));
    config
}

pub struct Harness {
    pub sim: Sim,
    pub http: Client,
    pub token: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(config()).await
    }

    pub async fn with(config: Config) -> Self {
        let sim = ccsim::spawn(config).await.expect("ccsim starts");
        let http = Client::new();
        let token = fetch_token(&http, &format!("http://{}", sim.addr), CLIENT.0, CLIENT.1).await;
        Self { sim, http, token }
    }

    /// Where requests go (`base_url` may be a public URL that does not resolve here).
    pub fn origin(&self) -> String {
        format!("http://{}", self.sim.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.origin(), path)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        json(self.call(Method::GET, path, None).await).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        json(self.call(Method::PATCH, path, Some(body)).await).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn seed(&self, ty: &str, body: Value) -> Value {
        self.sim.seed(ty, body).await.expect("seeded")
    }
}

pub async fn fetch_token(http: &Client, base: &str, id: &str, secret: &str) -> String {
    let response = http
        .post(format!("{base}/uaa/oauth/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// Status and JSON body (Null when empty or not JSON).
pub async fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The single CC error of a body: (title, code, detail).
pub fn cc_error(body: &Value) -> (String, i64, String) {
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    (
        errors[0]["title"].as_str().expect("title").to_string(),
        errors[0]["code"].as_i64().expect("code"),
        errors[0]["detail"].as_str().expect("detail").to_string(),
    )
}

/// Percent-encodes a query component.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
