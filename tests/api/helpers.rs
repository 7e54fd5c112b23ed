//! Test harness: a fresh database per test — on PostgreSQL (from the admin `DATABASE_URL`
//! that `scripts/test` exports), or with `LEASEHOLD_TEST_STORE=sqlite` a SQLite file in a
//! temporary directory — and leasehold instances spawned on port 0 against it: as many as a
//! test wants on PostgreSQL, sharing only the database; on SQLite, where one file serves one
//! instance, every spawn with the same flags is a handle on the one running instance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use clap::Parser;
use leasehold::app::App;
use leasehold::config::Cli;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::{oneshot, watch};
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

/// `LEASEHOLD_TEST_AUTH=uaa` (with the emulator) turns UAA authentication on for every
/// instance, and every test client carries a token of an admin client.
pub fn auth_mode() -> bool {
    std::env::var("LEASEHOLD_TEST_AUTH").is_ok_and(|v| v == "uaa")
}

/// The emulator's client that test requests authenticate as in auth mode.
pub const TEST_CLIENT: (&str, &str) = ("tester", "tester-secret");

/// Which store the suite runs against: `LEASEHOLD_TEST_STORE=sqlite` runs it against the
/// embedded SQLite store (scripts/test runs the suite on both); PostgreSQL otherwise.
pub fn sqlite_mode() -> bool {
    std::env::var("LEASEHOLD_TEST_STORE").is_ok_and(|v| v == "sqlite")
}

/// What `/v1/info` names as the store in this mode.
pub fn store_kind() -> &'static str {
    if sqlite_mode() { "sqlite" } else { "postgres" }
}

/// The world of one test: its own database and, in cloud-controller mode, its own Cloud
/// Controller emulator, shared by every leasehold instance the test starts.
pub struct TestDb {
    pub url: String,
    pub sim: Option<ccsim::Sim>,
    /// SQLite: the temporary directory holding the database (removed with the world).
    dir: Option<PathBuf>,
    /// SQLite: the one instance serving the file, and the flags it was started with.
    serving: tokio::sync::Mutex<Option<Serving>>,
}

/// The instance that serves a SQLite world.
struct Serving {
    args: Vec<String>,
    addr: SocketAddr,
    instance: Weak<Instance>,
    stopped: watch::Receiver<bool>,
}

/// A direct connection to a world's database, for the few checks the API cannot make.
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Now, as the SQLite store stores time: microseconds since the epoch.
fn sqlite_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

const HOUR_MICROS: i64 = 3_600_000_000;

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

    /// A fresh database and an emulator configured by the test (plus the test client).
    pub async fn with_sim_config(mut config: ccsim::Config) -> Self {
        if !config.clients.iter().any(|c| c.id == TEST_CLIENT.0) {
            config.clients.extend(
                sim_config(false)
                    .clients
                    .into_iter()
                    .filter(|c| c.id == TEST_CLIENT.0),
            );
        }
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

    /// Whether leasehold authenticates callers in this world.
    pub fn authenticated(&self) -> bool {
        self.sim.is_some() && auth_mode()
    }

    /// The history `actor` of an action by `holder` (`None`: no lease): with
    /// authentication it is the principal, the test client.
    pub fn actor(&self, holder: Option<&str>) -> Value {
        if self.authenticated() {
            json!(TEST_CLIENT.0)
        } else {
            json!(holder)
        }
    }

    /// A bearer token for test requests when authentication is on in this world.
    pub async fn bearer(&self) -> Option<String> {
        match &self.sim {
            Some(sim) if auth_mode() => Some(
                sim.token(TEST_CLIENT.0, TEST_CLIENT.1)
                    .await
                    .expect("a token from the emulator's UAA"),
            ),
            _ => None,
        }
    }

    /// An HTTP client that authenticates as the test client when authentication is on.
    pub async fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = self.bearer().await {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("bearer {token}").parse().expect("a header value"),
            );
        }
        reqwest::Client::builder().default_headers(headers)
    }

    /// The flags that point leasehold at this world's upstream and authentication (none in
    /// local mode).
    pub fn upstream_flags(&self) -> Vec<String> {
        let mut flags = match &self.sim {
            Some(sim) if auth_mode() => vec![
                "--auth".to_owned(),
                "uaa".to_owned(),
                "--uaa-url".to_owned(),
                format!("{}/uaa", sim.base_url),
            ],
            _ => Vec::new(),
        };
        flags.extend(self.cloud_controller_flags());
        flags
    }

    fn cloud_controller_flags(&self) -> Vec<String> {
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
        if sqlite_mode() {
            let dir = std::env::temp_dir().join(format!("lh_test_{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("create the test's data directory");
            return Self {
                url: format!("sqlite://{}", dir.join("leasehold.db").display()),
                sim: None,
                dir: Some(dir),
                serving: tokio::sync::Mutex::new(None),
            };
        }
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
            dir: None,
            serving: tokio::sync::Mutex::new(None),
        }
    }

    /// A direct connection to the world's database (the SQLite file is shared with the
    /// instance serving it: SQLite's own locking keeps them apart).
    pub async fn connect(&self) -> DbConn {
        if sqlite_mode() {
            DbConn::Sqlite(
                SqliteConnection::connect(&self.url)
                    .await
                    .expect("open the test database"),
            )
        } else {
            DbConn::Pg(
                PgConnection::connect(&self.url)
                    .await
                    .expect("connect to the test database"),
            )
        }
    }

    /// Moves a lease's times one hour into the past, so it has expired (no sleeping).
    pub async fn expire_lease(&self, lease_id: &str) {
        let id: Uuid = lease_id.parse().expect("lease id");
        let done = match self.connect().await {
            DbConn::Pg(mut conn) => sqlx::query(
                "UPDATE leases SET acquired_at = acquired_at - interval '1 hour', \
                 renewed_at = renewed_at - interval '1 hour', expires_at = expires_at - interval '1 hour' \
                 WHERE id = $1 AND ended_at IS NULL",
            )
            .bind(id)
            .execute(&mut conn)
            .await
            .map(|done| done.rows_affected()),
            DbConn::Sqlite(mut conn) => sqlx::query(
                "UPDATE leases SET acquired_at = acquired_at - $2, renewed_at = renewed_at - $2, \
                 expires_at = expires_at - $2 WHERE id = $1 AND ended_at IS NULL",
            )
            .bind(id.to_string())
            .bind(HOUR_MICROS)
            .execute(&mut conn)
            .await
            .map(|done| done.rows_affected()),
        };
        assert_eq!(
            done.expect("expire the lease"),
            1,
            "lease {lease_id} was not open"
        );
    }

    /// How many waiters are queued for `res` (live or not).
    pub async fn queued_waiters(&self, res: &Res) -> i64 {
        const SQL: &str =
            "SELECT count(*) FROM waiters WHERE resource_type = $1 AND resource_guid = $2";
        match self.connect().await {
            DbConn::Pg(mut conn) => {
                sqlx::query_scalar(SQL)
                    .bind(&res.resource_type)
                    .bind(res.guid.parse::<Uuid>().expect("guid"))
                    .fetch_one(&mut conn)
                    .await
            }
            DbConn::Sqlite(mut conn) => {
                sqlx::query_scalar(SQL)
                    .bind(&res.resource_type)
                    .bind(&res.guid)
                    .fetch_one(&mut conn)
                    .await
            }
        }
        .expect("count waiters")
    }

    /// Queues a waiter for `res` (which must have been used already) that belongs to a live
    /// instance (the nil UUID, alive for an hour) that never acts, and gives up in 2 s.
    pub async fn queue_ghost_waiter(&self, res: &Res) {
        let nil = Uuid::nil();
        let waiter = Uuid::new_v4();
        match self.connect().await {
            DbConn::Pg(mut conn) => {
                sqlx::query("INSERT INTO instances (id, started_at, alive_until) VALUES ($1, now(), now() + interval '1 hour')")
                    .bind(nil)
                    .execute(&mut conn)
                    .await
                    .expect("insert the ghost instance");
                sqlx::query(
                    "INSERT INTO waiters (id, resource_type, resource_guid, holder, instance_id, deadline) \
                     VALUES ($1, $2, $3::uuid, 'ghost', $4, now() + interval '2 seconds')",
                )
                .bind(waiter)
                .bind(&res.resource_type)
                .bind(&res.guid)
                .bind(nil)
                .execute(&mut conn)
                .await
                .expect("queue the ghost waiter");
            }
            DbConn::Sqlite(mut conn) => {
                let now = sqlite_now();
                sqlx::query(
                    "INSERT INTO instances (id, started_at, alive_until) VALUES ($1, $2, $3)",
                )
                .bind(nil.to_string())
                .bind(now)
                .bind(now + HOUR_MICROS)
                .execute(&mut conn)
                .await
                .expect("insert the ghost instance");
                sqlx::query(
                    "INSERT INTO waiters (id, resource_type, resource_guid, holder, instance_id, deadline) \
                     VALUES ($1, $2, $3, 'ghost', $4, $5)",
                )
                .bind(waiter.to_string())
                .bind(&res.resource_type)
                .bind(&res.guid)
                .bind(nil.to_string())
                .bind(now + 2_000_000)
                .execute(&mut conn)
                .await
                .expect("queue the ghost waiter");
            }
        }
    }

    /// How a lease ended as recorded in the leases table (`None` while it is open).
    pub async fn lease_end_reason(&self, lease_id: &str) -> Option<String> {
        const SQL: &str = "SELECT end_reason FROM leases WHERE id = $1";
        let id: Uuid = lease_id.parse().expect("lease id");
        match self.connect().await {
            DbConn::Pg(mut conn) => sqlx::query_scalar(SQL).bind(id).fetch_one(&mut conn).await,
            DbConn::Sqlite(mut conn) => {
                sqlx::query_scalar(SQL)
                    .bind(id.to_string())
                    .fetch_one(&mut conn)
                    .await
            }
        }
        .expect("read the lease")
    }

    /// How many history entries of `event` the resource has.
    pub async fn history_count(&self, res: &Res, event: &str) -> i64 {
        const SQL: &str = "SELECT count(*) FROM history WHERE resource_guid = $1 AND event = $2";
        match self.connect().await {
            DbConn::Pg(mut conn) => {
                sqlx::query_scalar(SQL)
                    .bind(res.guid.parse::<Uuid>().expect("guid"))
                    .bind(event)
                    .fetch_one(&mut conn)
                    .await
            }
            DbConn::Sqlite(mut conn) => {
                sqlx::query_scalar(SQL)
                    .bind(&res.guid)
                    .bind(event)
                    .fetch_one(&mut conn)
                    .await
            }
        }
        .expect("count history entries")
    }

    /// SQLite: a handle on the instance serving this world if it runs with `args`; otherwise
    /// stops it (one file serves one instance) and starts one with `args`.
    async fn serve_shared(&self, args: Vec<String>) -> TestApp {
        let mut serving = self.serving.lock().await;
        if let Some(current) = serving.take() {
            match current.instance.upgrade() {
                Some(instance) if current.args == args => {
                    let addr = current.addr;
                    *serving = Some(current);
                    return TestApp {
                        addr,
                        client: self.client_builder().await.build().expect("an HTTP client"),
                        token: self.bearer().await,
                        instance: Some(instance),
                    };
                }
                Some(instance) => instance.stop().await,
                None => wait_stopped(current.stopped).await,
            }
        }
        let (app, stopped) = start_instance(self, &args).await;
        *serving = Some(Serving {
            args,
            addr: app.addr,
            instance: app.instance.as_ref().map_or_else(Weak::new, Arc::downgrade),
            stopped,
        });
        app
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// An emulator configuration with short delete jobs.
pub fn sim_config(auto_create: bool) -> ccsim::Config {
    let mut clients = ccsim::Config::default().clients;
    clients.push(ccsim::ClientConfig::new(
        TEST_CLIENT.0,
        TEST_CLIENT.1,
        &[
            "cloud_controller.read",
            "cloud_controller.write",
            "leasehold.read",
            "leasehold.write",
            "leasehold.admin",
        ],
    ));
    ccsim::Config {
        job_delay: Duration::from_millis(50),
        auto_create,
        clients,
        ..ccsim::Config::default()
    }
}

/// A Cloud Controller emulator with short delete jobs.
pub async fn spawn_sim(auto_create: bool) -> ccsim::Sim {
    ccsim::spawn(sim_config(auto_create))
        .await
        .expect("spawn the Cloud Controller emulator")
}

/// A handle on a running leasehold instance. The instance stops when the last handle that
/// owns it goes (`clone_handle`s do not own it), or when one of them is `stop`ped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The bearer token `client` sends, when authentication is on.
    pub token: Option<String>,
    instance: Option<Arc<Instance>>,
}

/// A leasehold served on a task of the test's runtime.
struct Instance {
    shutdown: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    stopped: watch::Receiver<bool>,
}

impl Instance {
    /// Asks for a graceful shutdown.
    fn signal(&self) {
        let sender = self
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = sender {
            let _ = tx.send(());
        }
    }

    /// Shuts down gracefully and waits until the instance let go of its database.
    async fn stop(&self) {
        self.signal();
        wait_stopped(self.stopped.clone()).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.signal();
    }
}

async fn wait_stopped(mut stopped: watch::Receiver<bool>) {
    // An error means the serving task ended without saying so (it panicked): stopped too.
    let _ = stopped.wait_for(|done| *done).await;
}

/// Spawns an instance on `db` with the default configuration.
pub async fn spawn_app(db: &TestDb) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Spawns an instance on `db` with extra command-line flags, e.g. `["--require-preconditions"]`.
/// On SQLite, the instance already serving `db` with the same flags, or a new one in its
/// place: a test that needs two configurations at once gives each its own `TestDb`.
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
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    if sqlite_mode() {
        db.serve_shared(args).await
    } else {
        start_instance(db, &args).await.0
    }
}

/// Starts an instance with `args` and waits until it is ready; the receiver turns true when
/// it has stopped.
async fn start_instance(db: &TestDb, args: &[String]) -> (TestApp, watch::Receiver<bool>) {
    let cli = Cli::try_parse_from(args).expect("valid test flags");
    let app = App::build(&cli.config).expect("build the app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let (stopped_tx, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let served = app
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
        let _ = stopped_tx.send(true);
        served.expect("serve");
    });
    let app = TestApp {
        addr,
        client: db.client_builder().await.build().expect("an HTTP client"),
        token: db.bearer().await,
        instance: Some(Arc::new(Instance {
            shutdown: std::sync::Mutex::new(Some(tx)),
            stopped: stopped.clone(),
        })),
    };
    app.wait_ready().await;
    if app.token.is_some() {
        // Fetch UAA's keys now, before a test injects faults into the emulator.
        let r = app.get("/v1/info").await;
        assert_eq!(r.status(), StatusCode::OK, "an authenticated first request");
    }
    (app, stopped)
}

impl TestApp {
    /// Another handle on the same instance (for tasks); it does not stop the instance.
    pub fn clone_handle(&self) -> TestApp {
        TestApp {
            addr: self.addr,
            client: self.client.clone(),
            token: self.token.clone(),
            instance: None,
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
        if let Some(instance) = self.instance.take() {
            instance.stop().await;
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
