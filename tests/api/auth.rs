//! Authentication and authorization: UAA JWTs (signed RS256 by the emulator's UAA), static
//! tokens, scopes, leases bound to principals. Every attack gets 401/403 and changes nothing.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The emulator's clients: two services, a reader and an operator.
fn world_config() -> ccsim::Config {
    let mut config = sim_config(false);
    for (id, scopes) in [
        ("orders", &["leasehold.read", "leasehold.write"][..]),
        ("billing", &["leasehold.read", "leasehold.write"][..]),
        ("reader", &["leasehold.read"][..]),
        ("operator", &["leasehold.admin"][..]),
    ] {
        config.clients.push(ccsim::ClientConfig::new(
            id,
            &format!("{id}-secret"),
            scopes,
        ));
    }
    config
}

struct World {
    db: TestDb,
    app: TestApp,
}

impl World {
    async fn new(flags: &[&str]) -> Self {
        let db = TestDb::with_sim_config(world_config()).await;
        let uaa = format!("{}/uaa", db.sim().base_url);
        let mut all = vec!["--auth", "uaa", "--uaa-url", uaa.as_str()];
        all.extend_from_slice(flags);
        let app = spawn_app_with(&db, &all).await;
        Self { db, app }
    }

    async fn token(&self, client: &str) -> String {
        self.db
            .sim()
            .token(client, &format!("{client}-secret"))
            .await
            .expect("a token")
    }

    /// A request with `Authorization: bearer <token>` (or none).
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = reqwest::Client::new().request(method, self.app.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("bearer {t}"));
        }
        req
    }

    async fn acquire(&self, res: &Res, token: &str, holder: &str) -> Value {
        let r = self
            .call(reqwest::Method::POST, &res.lease_path(), Some(token))
            .json(&json!({"holder": holder, "ttl_seconds": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    /// Claims like UAA's for `client`, valid for a minute, for forging variants.
    fn claims(&self, client: &str, scopes: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "jti": uuid::Uuid::new_v4().to_string(), "client_id": client, "sub": client,
            "scope": scopes, "aud": ["leasehold"], "iat": now, "exp": now + 60,
        })
    }
}

/// What a resource looks like, to prove a refused request changed nothing.
async fn snapshot(world: &World, res: &Res, admin: &str) -> (Value, Vec<Value>) {
    let body: Value = world
        .call(reqwest::Method::GET, &res.path(), Some(admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history: Value = world
        .call(
            reqwest::Method::GET,
            &format!("{}/history", res.path()),
            Some(admin),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (body, history["items"].as_array().unwrap().clone())
}

#[tokio::test]
async fn every_attack_on_authentication_gets_401_or_403_and_changes_nothing() {
    let w = World::new(&[]).await;
    let (orders, reader, operator) = (
        w.token("orders").await,
        w.token("reader").await,
        w.token("operator").await,
    );
    let res = Res::route();
    w.db.sim()
        .seed("routes", json!({"guid": res.guid}))
        .await
        .unwrap();
    let lease = w.acquire(&res, &orders, "orders/1").await;
    let before = snapshot(&w, &res, &operator).await;

    // Forged tokens, each signed (or not) to defeat one check.
    let expired = {
        let mut c = w.claims("orders", &["leasehold.write"]);
        c["exp"] = json!(chrono::Utc::now().timestamp() - 120);
        w.db.sim().sign(c).await.unwrap()
    };
    let not_yet_valid = {
        let mut c = w.claims("orders", &["leasehold.write"]);
        c["nbf"] = json!(chrono::Utc::now().timestamp() + 120);
        w.db.sim().sign(c).await.unwrap()
    };
    let wrong_issuer = {
        let mut c = w.claims("orders", &["leasehold.write"]);
        c["iss"] = json!("https://uaa.evil.example.com/oauth/token");
        w.db.sim().sign(c).await.unwrap()
    };
    let wrong_audience = {
        let mut c = w.claims("orders", &["leasehold.write"]);
        c["aud"] = json!(["cloud_controller"]);
        w.db.sim().sign(c).await.unwrap()
    };
    let bad_signature = {
        let mut t = orders.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    let alg_none = {
        let payload = URL_SAFE_NO_PAD.encode(w.claims("orders", &["leasehold.write"]).to_string());
        format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        )
    };
    let hs256_with_public_key = {
        let keys: Value = reqwest::get(format!("{}/uaa/token_keys", w.db.sim().base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let public = keys["keys"][0]["n"].as_str().unwrap().to_owned();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = keys["keys"][0]["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &w.claims("orders", &["leasehold.write"]),
            &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap()
    };

    let write = json!({"metadata": {"labels": {"a": "1"}}});
    let patch = format!("{}/metadata", res.path());
    let token = token_of(&lease).to_string();
    let cases: Vec<(&str, Option<&str>, u16, &str)> = vec![
        ("no token", None, 401, "unauthenticated"),
        ("malformed token", Some("not-a-jwt"), 401, "unauthenticated"),
        (
            "bad signature",
            Some(&bad_signature),
            401,
            "unauthenticated",
        ),
        ("alg none", Some(&alg_none), 401, "unauthenticated"),
        (
            "HS256 signed with the public key",
            Some(&hs256_with_public_key),
            401,
            "unauthenticated",
        ),
        ("expired", Some(&expired), 401, "unauthenticated"),
        (
            "not yet valid",
            Some(&not_yet_valid),
            401,
            "unauthenticated",
        ),
        ("wrong issuer", Some(&wrong_issuer), 401, "unauthenticated"),
        (
            "wrong audience",
            Some(&wrong_audience),
            401,
            "unauthenticated",
        ),
        ("missing scope", Some(&reader), 403, "insufficient-scope"),
    ];
    for (name, bearer, status, code) in cases {
        let r = w
            .call(reqwest::Method::PATCH, &patch, bearer)
            .header("fencing-token", &token)
            .json(&write)
            .send()
            .await
            .unwrap();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let challenge = challenge.unwrap_or_else(|| panic!("{name}: no WWW-Authenticate"));
        assert!(
            challenge.starts_with("Bearer realm=\"leasehold\""),
            "{name}: {challenge}"
        );
        match status {
            401 if bearer.is_some() => assert!(
                challenge.contains("error=\"invalid_token\""),
                "{name}: {challenge}"
            ),
            401 => assert!(
                !challenge.contains("error="),
                "{name}: RFC 6750 §3.1: {challenge}"
            ),
            _ => assert!(
                challenge.contains("error=\"insufficient_scope\""),
                "{name}: {challenge}"
            ),
        }
        assert_problem(r, status, code).await;
    }
    assert_eq!(
        snapshot(&w, &res, &operator).await,
        before,
        "nothing changed"
    );
}

#[tokio::test]
async fn another_principals_lease_cannot_be_renewed_released_revoked_or_written_with() {
    let w = World::new(&[]).await;
    let (orders, billing, operator) = (
        w.token("orders").await,
        w.token("billing").await,
        w.token("operator").await,
    );
    let res = Res::route();
    w.db.sim()
        .seed("routes", json!({"guid": res.guid}))
        .await
        .unwrap();
    let lease = w.acquire(&res, &orders, "shared-label").await;
    assert_eq!(lease["principal"], "orders");
    let id = id_of(&lease);
    let before = snapshot(&w, &res, &operator).await;

    let attempts = [
        w.call(
            reqwest::Method::POST,
            &format!("/v1/leases/{id}/renew"),
            Some(&billing),
        ),
        w.call(
            reqwest::Method::DELETE,
            &format!("/v1/leases/{id}"),
            Some(&billing),
        ),
        w.call(
            reqwest::Method::POST,
            &format!("/v1/leases/{id}/revoke"),
            Some(&billing),
        ),
        w.call(
            reqwest::Method::PATCH,
            &format!("{}/metadata", res.path()),
            Some(&billing),
        )
        .header("fencing-token", token_of(&lease).to_string())
        .json(&json!({"metadata": {"labels": {"a": "1"}}})),
        w.call(reqwest::Method::DELETE, &res.path(), Some(&billing))
            .header("fencing-token", token_of(&lease).to_string()),
    ];
    for attempt in attempts {
        assert_problem(attempt.send().await.unwrap(), 403, "not-lease-holder").await;
    }
    // The same holder label from another principal does not renew someone else's lease.
    let r = w
        .call(reqwest::Method::POST, &res.lease_path(), Some(&billing))
        .json(&json!({"holder": "shared-label"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "lease-held").await;
    assert_eq!(
        snapshot(&w, &res, &operator).await,
        before,
        "nothing changed"
    );

    // The owner writes, and history names the principal.
    let r = w
        .call(
            reqwest::Method::PATCH,
            &format!("{}/metadata", res.path()),
            Some(&orders),
        )
        .header("fencing-token", token_of(&lease).to_string())
        .json(&json!({"metadata": {"labels": {"a": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, history) = snapshot(&w, &res, &operator).await;
    assert_eq!(history[0]["actor"], "orders");

    // An admin may revoke anyone's lease.
    let r = w
        .call(
            reqwest::Method::POST,
            &format!("/v1/leases/{id}/revoke"),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn only_admins_list_every_lease_others_see_their_own() {
    let w = World::new(&[]).await;
    let (orders, billing, operator) = (
        w.token("orders").await,
        w.token("billing").await,
        w.token("operator").await,
    );
    w.acquire(&Res::route(), &orders, "o").await;
    w.acquire(&Res::route(), &billing, "b").await;
    let list = |token: String| {
        let req = w.call(reqwest::Method::GET, "/v1/leases", Some(&token));
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            let mut principals: Vec<String> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["principal"].as_str().unwrap().to_owned())
                .collect();
            principals.sort();
            principals
        }
    };
    assert_eq!(list(orders).await, ["orders"]);
    assert_eq!(list(operator).await, ["billing", "orders"]);
}

#[tokio::test]
async fn a_rotated_uaa_key_is_picked_up_without_restart_and_the_old_one_is_refused() {
    let w = World::new(&[]).await;
    let old = w.token("orders").await;
    let r = w
        .call(reqwest::Method::GET, "/v1/leases", Some(&old))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    w.db.sim().rotate_key().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let new = w.token("orders").await;
    let r = w
        .call(reqwest::Method::GET, "/v1/leases", Some(&new))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the new kid is fetched on first sight"
    );
    let r = w
        .call(reqwest::Method::GET, "/v1/leases", Some(&old))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn open_routes_stay_open_and_metrics_can_be_protected() {
    let w = World::new(&[]).await;
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/", "/metrics"] {
        let r = w
            .call(reqwest::Method::GET, path, None)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let protected = World::new(&["--metrics-auth", "token"]).await;
    let r = protected
        .call(reqwest::Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    let reader = protected.token("reader").await;
    let r = protected
        .call(reqwest::Method::GET, "/metrics", Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The real binary, for what happens at start and on signals.
fn leasehold_binary(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_leasehold"));
    command
        .args(args)
        .env_remove("LEASEHOLD_AUTH")
        .env_remove("LEASEHOLD_INSECURE_NO_AUTH")
        .env_remove("LEASEHOLD_LISTEN")
        .env("RUST_LOG", "warn");
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn without_authentication_leasehold_refuses_to_listen_beyond_loopback() {
    let db = TestDb::new().await;
    let listen = format!("0.0.0.0:{}", free_port());
    let out = leasehold_binary(&["serve", "--listen", &listen, "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve without authentication"),
        "{stderr}"
    );

    let mut child = leasehold_binary(&[
        "serve",
        "--listen",
        &listen,
        "--database-url",
        &db.url,
        "--insecure-no-auth",
    ])
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "it serves when the operator insists"
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WITHOUT authentication"),
        "it warns: {stderr}"
    );
}

#[tokio::test]
async fn static_tokens_authenticate_by_hash_and_reload_on_sighup() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("lh-auth-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let write_tokens = |token: &str, principal: &str| {
        let body = json!({"tokens": [{
            "sha256": leasehold::auth::tokens::hash(token),
            "principal": principal,
            "scopes": ["leasehold.read", "leasehold.write"],
        }]});
        std::fs::write(&file, body.to_string()).unwrap();
    };
    write_tokens("first-secret", "static-svc");
    let port = free_port();
    let file_arg = file.to_string_lossy().into_owned();
    let mut child = leasehold_binary(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        &db.url,
        "--auth",
        "tokens",
        "--auth-tokens-file",
        &file_arg,
    ])
    .spawn()
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "leasehold became ready");
    let leases = |token: &'static str| {
        client
            .get(format!("{base}/v1/leases"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    assert_eq!(leases("first-secret").await.unwrap().status(), 200);
    assert_eq!(leases("wrong").await.unwrap().status(), 401);

    write_tokens("second-secret", "static-svc");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut reloaded = false;
    for _ in 0..50 {
        if leases("second-secret").await.unwrap().status() == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_after = leases("first-secret").await.unwrap().status();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(reloaded, "SIGHUP reloaded the file");
    assert_eq!(first_after, 401, "the old token is gone");
}

#[tokio::test]
async fn a_resource_type_outside_the_configured_ones_is_refused_with_403() {
    let db = TestDb::new().await;
    let app = spawn_app_with(&db, &["--resource-types", "routes,apps"]).await;
    assert_eq!(app.get(&Res::route().path()).await.status(), StatusCode::OK);
    assert_eq!(
        app.get(&Res::new("apps").path()).await.status(),
        StatusCode::OK
    );
    let space = Res::new("spaces");
    assert_problem(
        app.acquire(&space, "svc", None).await,
        403,
        "resource-type-not-allowed",
    )
    .await;
    assert_problem(
        app.get(&space.path()).await,
        403,
        "resource-type-not-allowed",
    )
    .await;
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert!(info["auth"].is_string());
}
