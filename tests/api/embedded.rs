//! The embedded SQLite store as an operator meets it: the real binary with no `DATABASE_URL`
//! serves from `<data dir>/leasehold.db`, and a second process on the same file refuses to
//! start (no split brain). These run in every mode: they never touch the suite's database.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lh_embedded_{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_listen_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    format!("127.0.0.1:{}", l.local_addr().expect("local addr").port())
}

/// `leasehold serve` with an environment that names no database, so the embedded default
/// applies; `configure` adds flags, variables or a working directory.
fn leasehold(listen: &str, configure: impl FnOnce(&mut Command)) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leasehold"));
    command
        .args(["serve", "--listen", listen])
        .env_remove("DATABASE_URL")
        .env_remove("LEASEHOLD_DATA_DIR")
        .env_remove("VCAP_SERVICES")
        .env_remove("PORT")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    configure(&mut command);
    command
}

/// A running `leasehold serve`, killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(listen: &str, configure: impl FnOnce(&mut Command)) -> Self {
        let child = leasehold(listen, configure)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the leasehold binary");
        let mut server = Self {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("leasehold exited early with {status}");
            }
            let r = reqwest::get(format!("{}/readyz", server.base)).await;
            if r.is_ok_and(|r| r.status() == StatusCode::OK) {
                return server;
            }
            assert!(Instant::now() < deadline, "leasehold never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a second `leasehold serve` to its end (it must not serve), off the runtime's threads.
async fn run_to_end(listen: String, data_dir: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        leasehold(&listen, |c| {
            c.arg("--data-dir").arg(&data_dir);
        })
        .output()
        .expect("run the leasehold binary")
    })
    .await
    .expect("the blocking task")
}

async fn set_label(base: &str, res: &Res, value: &str) -> reqwest::Response {
    reqwest::Client::new()
        .patch(format!("{base}{}/metadata", res.path()))
        .json(&json!({"metadata": {"labels": {"written": value}}}))
        .send()
        .await
        .expect("PATCH")
}

async fn labels(base: &str, res: &Res) -> Value {
    let r = reqwest::get(format!("{base}{}", res.path()))
        .await
        .expect("GET resource");
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.expect("JSON")["metadata"]["labels"].clone()
}

fn assert_database_in(dir: &Path) {
    assert!(
        dir.join("leasehold.db").is_file(),
        "{}/leasehold.db exists",
        dir.display()
    );
    assert!(
        dir.join("leasehold.db.lock").is_file(),
        "the lock file exists"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leasehold_serve_without_database_url_serves_from_leasehold_db_in_the_data_directory() {
    let (cwd, data_dir) = (TempDir::new(), TempDir::new());
    let res = Res::route();

    // No DATABASE_URL and no data directory: ./leasehold.db in the working directory.
    let listen = free_listen_addr();
    let first = Server::start(&listen, |c| {
        c.current_dir(&cwd.0);
    })
    .await;
    let info: Value = reqwest::get(format!("{}/v1/info", first.base))
        .await
        .expect("GET /v1/info")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["store"], "sqlite");
    assert_eq!(
        set_label(&first.base, &res, "in-cwd").await.status(),
        StatusCode::OK
    );
    assert_database_in(&cwd.0);
    drop(first);

    // LEASEHOLD_DATA_DIR moves it; the first database is untouched by the second.
    let listen = free_listen_addr();
    let second = Server::start(&listen, |c| {
        c.current_dir(&cwd.0).env("LEASEHOLD_DATA_DIR", &data_dir.0);
    })
    .await;
    assert_eq!(
        labels(&second.base, &res).await,
        json!({}),
        "a fresh database"
    );
    assert_eq!(
        set_label(&second.base, &res, "in-data-dir").await.status(),
        StatusCode::OK
    );
    assert_database_in(&data_dir.0);
    drop(second);

    // After a SIGKILL, the same directory serves what was acknowledged.
    let listen = free_listen_addr();
    let again = Server::start(&listen, |c| {
        c.current_dir(&cwd.0);
    })
    .await;
    assert_eq!(
        labels(&again.base, &res).await,
        json!({"written": "in-cwd"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_sqlite_file_refuses_to_start_with_a_clear_message() {
    let data_dir = TempDir::new();
    let listen = free_listen_addr();
    let dir = data_dir.0.clone();
    let first = Server::start(&listen, move |c| {
        c.arg("--data-dir").arg(&dir);
    })
    .await;
    let res = Res::route();
    assert_eq!(
        set_label(&first.base, &res, "first").await.status(),
        StatusCode::OK
    );

    let out = run_to_end(free_listen_addr(), data_dir.0.clone()).await;
    assert!(!out.status.success(), "the second process must not serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lock_file = data_dir.0.join("leasehold.db.lock");
    for needle in [
        "another leasehold process",
        &format!("pid {}", first.child.id()),
        &lock_file.display().to_string(),
        "one SQLite file serves one leasehold instance",
        "PostgreSQL",
    ] {
        assert!(stderr.contains(needle), "stderr names {needle:?}: {stderr}");
    }

    // The first process is unaffected and still the only writer.
    assert_eq!(
        set_label(&first.base, &res, "still-first").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        labels(&first.base, &res).await,
        json!({"written": "still-first"})
    );
}
