//! Test harness: a fresh PostgreSQL database per test (from the admin `DATABASE_URL` that
//! `scripts/test` exports), and leasehold instances spawned on port 0 against it — as many
//! as a test wants, sharing only the database.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use leasehold::app::App;
use leasehold::config::Cli;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;
use uuid::Uuid;

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a PostgreSQL server the tests may create databases on (scripts/test sets it)")
}

/// Which upstream the suite runs against: `LEASEHOLD_TEST_UPSTREAM=cloud-controller` runs it
/// against the Cloud Controller emulator (scripts/test runs the suite in both modes).
pub fn cloud_controller_mode() -> bool {
    std::env::var("LEASEHOLD_TEST_UPSTREAM").is_ok_and(|v| v == "cloud-controller")
}

/// The world of one test: its own database and, in cloud-controller mode, its own Cloud
/// Controller emulator, shared by every leasehold instance the test starts.
pub struct TestDb {
    pub url: String,
    pub sim: Option<ccsim::Sim>,
}

impl TestDb {
    /// A fresh database, plus an emulator (creating unknown resources on first access, so
    /// tests can use fresh GUIDs) in cloud-controller mode.
    pub async fn new() -> Self {
        let mut db = Self::database_only().await;
        if cloud_controller_mode() {
            db.sim = Some(spawn_sim(true).await);
        }
        db
    }

    /// A fresh database and an emulator that knows only what a test seeds, whatever the mode.
    pub async fn with_sim() -> Self {
        Self::with_sim_config(sim_config(false)).await
    }

    /// A fresh database and an emulator configured by the test.
    pub async fn with_sim_config(config: ccsim::Config) -> Self {
        let mut db = Self::database_only().await;
        db.sim = Some(
            ccsim::spawn(config)
                .await
                .expect("spawn the Cloud Controller emulator"),
        );
        db
    }

    /// The emulator of a world that has one.
    pub fn sim(&self) -> &ccsim::Sim {
        self.sim
            .as_ref()
            .expect("this test's world has a Cloud Controller emulator")
    }

    /// The flags that point leasehold at this world's upstream (none in local mode).
    pub fn upstream_flags(&self) -> Vec<String> {
        match &self.sim {
            None => Vec::new(),
            Some(sim) => [
                "--upstream",
                "cloud-controller",
                "--cf-api-url",
                &sim.base_url,
                "--cf-client-id",
                "leasehold",
                "--cf-client-secret",
                "leasehold-secret",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }

    async fn database_only() -> Self {
        let admin = admin_url();
        let name = format!("lh_test_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to the admin database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            url: url.to_string(),
            sim: None,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Moves a lease's times one hour into the past, so it has expired (no sleeping).
    pub async fn expire_lease(&self, lease_id: &str) {
        let id: Uuid = lease_id.parse().expect("lease id");
        let done = sqlx::query(
            "UPDATE leases SET acquired_at = acquired_at - interval '1 hour', \
             renewed_at = renewed_at - interval '1 hour', expires_at = expires_at - interval '1 hour' \
             WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id)
        .execute(&mut self.connect().await)
        .await
        .expect("expire the lease");
        assert_eq!(done.rows_affected(), 1, "lease {lease_id} was not open");
    }
}

/// An emulator configuration with short delete jobs.
pub fn sim_config(auto_create: bool) -> ccsim::Config {
    ccsim::Config {
        job_delay: Duration::from_millis(50),
        auto_create,
        ..ccsim::Config::default()
    }
}

/// A Cloud Controller emulator with short delete jobs.
pub async fn spawn_sim(auto_create: bool) -> ccsim::Sim {
    ccsim::spawn(sim_config(auto_create))
        .await
        .expect("spawn the Cloud Controller emulator")
}

/// One running leasehold instance.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Spawns an instance on `db` with the default configuration.
pub async fn spawn_app(db: &TestDb) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Spawns an instance on `db` with extra command-line flags, e.g. `["--require-preconditions"]`.
pub async fn spawn_app_with(db: &TestDb, flags: &[&str]) -> TestApp {
    let upstream = db.upstream_flags();
    let mut args = vec![
        "leasehold",
        "--database-url",
        &db.url,
        "--listen",
        "127.0.0.1:0",
    ];
    // The world's upstream flags, less those the test sets itself.
    for pair in upstream.chunks(2) {
        if !flags.contains(&pair[0].as_str()) {
            args.extend(pair.iter().map(String::as_str));
        }
    }
    args.extend_from_slice(flags);
    let cli = Cli::try_parse_from(args).expect("valid test flags");
    let app = App::build(&cli.config).expect("build the app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.serve(listener, async move {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    let app = TestApp {
        addr,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
    };
    app.wait_ready().await;
    app
}

impl TestApp {
    /// Another handle on the same instance (for tasks); it does not stop the instance.
    pub fn clone_handle(&self) -> TestApp {
        TestApp {
            addr: self.addr,
            client: self.client.clone(),
            shutdown: None,
            server: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200 (migrations applied).
    pub async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("leasehold at {} never became ready", self.addr);
    }

    /// Stops the instance gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    pub async fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn acquire(&self, res: &Res, holder: &str, ttl: Option<u64>) -> Response {
        let mut body = json!({"holder": holder});
        if let Some(ttl) = ttl {
            body["ttl_seconds"] = json!(ttl);
        }
        self.client
            .post(self.url(&res.lease_path()))
            .json(&body)
            .send()
            .await
            .expect("acquire")
    }

    /// Acquires and asserts 201; returns the lease.
    pub async fn grant(&self, res: &Res, holder: &str, ttl: Option<u64>) -> Value {
        let r = self.acquire(res, holder, ttl).await;
        assert_eq!(r.status(), StatusCode::CREATED, "acquire by {holder}");
        r.json().await.expect("lease JSON")
    }

    pub async fn renew(&self, lease_id: &str, ttl: Option<u64>) -> Response {
        let mut req = self
            .client
            .post(self.url(&format!("/v1/leases/{lease_id}/renew")));
        if let Some(ttl) = ttl {
            req = req.json(&json!({"ttl_seconds": ttl}));
        }
        req.send().await.expect("renew")
    }

    pub async fn release(&self, lease_id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/v1/leases/{lease_id}")))
            .send()
            .await
            .expect("release")
    }

    /// PATCH metadata with optional `Fencing-Token` and `If-Match`.
    pub async fn patch(
        &self,
        res: &Res,
        body: Value,
        token: Option<u64>,
        if_match: Option<&str>,
    ) -> Response {
        let mut req = self
            .client
            .patch(self.url(&format!("{}/metadata", res.path())))
            .json(&body);
        if let Some(token) = token {
            req = req.header("Fencing-Token", token.to_string());
        }
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        req.send().await.expect("patch")
    }

    /// Sets labels (`{k: v}`) with the given preconditions.
    pub async fn set_labels(
        &self,
        res: &Res,
        labels: Value,
        token: Option<u64>,
        if_match: Option<&str>,
    ) -> Response {
        self.patch(
            res,
            json!({"metadata": {"labels": labels}}),
            token,
            if_match,
        )
        .await
    }

    pub async fn delete_resource(
        &self,
        res: &Res,
        token: Option<u64>,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.delete(self.url(&res.path()));
        if let Some(token) = token {
            req = req.header("Fencing-Token", token.to_string());
        }
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("delete")
    }

    /// GET the resource, asserting 200; returns (body, ETag).
    pub async fn resource(&self, res: &Res) -> (Value, String) {
        let r = self.get(&res.path()).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {}", res.path());
        let etag = r.headers()["etag"].to_str().expect("etag").to_owned();
        (r.json().await.expect("resource JSON"), etag)
    }

    /// The resource's history, newest first (one page of up to 1000).
    pub async fn history(&self, res: &Res) -> Vec<Value> {
        let r = self
            .get(&format!("{}/history?limit=1000", res.path()))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("history JSON");
        body["items"].as_array().expect("items").clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A resource under test.
#[derive(Debug, Clone)]
pub struct Res {
    pub resource_type: String,
    pub guid: String,
}

impl Res {
    /// A fresh route.
    pub fn route() -> Self {
        Self::new("routes")
    }

    pub fn new(resource_type: &str) -> Self {
        Self {
            resource_type: resource_type.to_owned(),
            guid: Uuid::new_v4().to_string(),
        }
    }

    pub fn path(&self) -> String {
        format!("/v1/resources/{}/{}", self.resource_type, self.guid)
    }

    pub fn lease_path(&self) -> String {
        format!("{}/lease", self.path())
    }
}

/// Asserts a problem response: status, `application/problem+json`, `type`; returns the body.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status for expected {code}");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/problem+json"),
        "content type of {code}"
    );
    let body: Value = r.json().await.expect("problem JSON");
    assert_eq!(
        body["type"],
        format!("/problems/{code}"),
        "problem body: {body}"
    );
    assert_eq!(body["status"], status, "problem body: {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "problem body: {body}"
    );
    body
}

pub fn token_of(lease: &Value) -> u64 {
    lease["fencing_token"].as_u64().expect("fencing_token")
}

pub fn id_of(lease: &Value) -> String {
    lease["id"].as_str().expect("id").to_owned()
}
