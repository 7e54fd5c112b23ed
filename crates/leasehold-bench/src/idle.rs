//! The memory workload: N keep-alive connections that made one request and sit idle, plus
//! M acquires waiting (`wait_seconds: 60`) on resources whose holder does not release
//! during the measurement; then leasehold's resident set from `/proc/<pid>/status`.
//! Raw TCP, so that the load generator's own footprint stays small.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::http;

pub struct IdleArgs {
    pub url: String,
    pub pid: Option<u32>,
    pub connections: usize,
    pub waiters: usize,
    pub resources: usize,
    /// Longest wait for every waiter to be queued (or, without a database to look at, how
    /// long to let them settle).
    pub settle: Duration,
    /// leasehold's own database, to count the queued waiters (optional).
    pub leasehold_database_url: Option<String>,
    pub run_id: String,
}

/// host:port of an `http://` URL.
fn authority(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("idle needs an http:// URL, got {url}"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_string())
}

/// The process's memory lines from `/proc/<pid>/status`, in KiB.
fn proc_status(pid: u32) -> Result<Value, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if matches!(key, "VmRSS" | "VmHWM" | "RssAnon" | "RssFile" | "Threads") {
            let number = value.split_whitespace().next().unwrap_or("");
            if let Ok(n) = number.parse::<u64>() {
                let name = if key == "Threads" {
                    "threads".to_string()
                } else {
                    format!("{}_kib", key.to_lowercase())
                };
                out.insert(name, json!(n));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Reads one HTTP/1.1 response (Content-Length bodies, or chunked); returns its status.
async fn read_response(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let header_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no status line")?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[header_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => find(body, b"0\r\n\r\n").is_some(),
            None => true,
        };
        if done {
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Opens `n` connections, at most 100 at a time, each sending `request(i)`; with
/// `await_response`, reads the answer (which must be 2xx).
async fn open_many(
    addr: &str,
    n: usize,
    request: impl Fn(usize) -> String,
    await_response: bool,
) -> Result<Vec<TcpStream>, String> {
    let mut streams = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let mut set = JoinSet::new();
        for i in start..(start + 100).min(n) {
            let addr = addr.to_string();
            let req = request(i);
            set.spawn(async move {
                let mut s = TcpStream::connect(&addr)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                s.set_nodelay(true).ok();
                s.write_all(req.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                if await_response {
                    let status = read_response(&mut s).await?;
                    if !(200..300).contains(&status) {
                        return Err(format!("answered {status}"));
                    }
                }
                Ok::<_, String>(s)
            });
        }
        while let Some(joined) = set.join_next().await {
            streams.push(joined.map_err(|e| e.to_string())??);
        }
        start += 100;
    }
    Ok(streams)
}

/// (still open and silent, closed, answered)
fn states(streams: &[TcpStream]) -> (usize, usize, usize) {
    let (mut open, mut closed, mut answered) = (0, 0, 0);
    let mut byte = [0u8; 1];
    for s in streams {
        match s.try_read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            Ok(0) | Err(_) => closed += 1,
            Ok(_) => answered += 1,
        }
    }
    (open, closed, answered)
}

async fn queued(pool: &sqlx::PgPool, run_id: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM waiters WHERE holder LIKE $1 AND deadline > now()")
        .bind(format!("bench-{run_id}-w%"))
        .fetch_one(pool)
        .await
        .ok()
}

pub async fn run(args: IdleArgs) -> Result<Value, String> {
    let addr = authority(&args.url)?;
    let host = addr.clone();
    let before = args.pid.map(proc_status).transpose()?;

    let started = Instant::now();
    let idle_request = |_| format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let idle = open_many(&addr, args.connections, idle_request, true).await?;

    // The holders: one lease per resource, held well past the measurement.
    let client = http::client();
    let base = args.url.trim_end_matches('/').to_string();
    let resources: Vec<Uuid> = (0..args.resources.max(1)).map(|_| Uuid::new_v4()).collect();
    let holder = format!("bench-{}-holder", args.run_id);
    let mut leases = Vec::new();
    for guid in &resources {
        let lease = http::acquire(&client, &http::resource_url(&base, guid), &holder, 600, 0)
            .await
            .map_err(|f| format!("holder's acquire failed: {}", f.0))?;
        leases.push(lease);
    }
    let run_id = args.run_id.clone();
    let waiter_request = |j: usize| {
        let guid = resources[j % resources.len()];
        let body =
            format!(r#"{{"holder":"bench-{run_id}-w{j}","ttl_seconds":30,"wait_seconds":60}}"#);
        format!(
            "POST /v1/resources/routes/{guid}/lease HTTP/1.1\r\nHost: {host}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let waiters = open_many(&addr, args.waiters, waiter_request, false).await?;
    let opened_in = started.elapsed();

    // Wait until every waiter is queued (when we can see the queue), else settle.
    let pool = match &args.leasehold_database_url {
        Some(url) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(|e| format!("cannot connect to leasehold's database: {e}"))?,
        ),
        None => None,
    };
    let settle_until = Instant::now() + args.settle;
    let mut queued_now = None;
    match &pool {
        Some(pool) => {
            while Instant::now() < settle_until {
                queued_now = queued(pool, &args.run_id).await;
                if queued_now == Some(args.waiters as i64) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Let the last ones' tasks settle too.
            tokio::time::sleep(Duration::from_secs(1)).await;
            queued_now = queued(pool, &args.run_id).await;
        }
        None => tokio::time::sleep_until(settle_until).await,
    }
    let during = args.pid.map(proc_status).transpose()?;
    let (idle_open, idle_closed, idle_answered) = states(&idle);
    let (waiters_open, waiters_closed, waiters_answered) = states(&waiters);

    // Clean up: waiters leave the queue by disconnecting, then the holders release.
    drop(waiters);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for lease in &leases {
        let _ = http::release(&client, &base, &lease.id).await;
    }
    drop(idle);
    // The server takes each waiter out of the queue in a transaction of its own: wait for
    // that to finish, so that the next run does not pay for it.
    let mut drained_in = None;
    if let Some(pool) = pool {
        let until = Instant::now() + Duration::from_secs(60);
        let since = Instant::now();
        while Instant::now() < until {
            let left: Option<i64> =
                sqlx::query_scalar("SELECT count(*) FROM waiters WHERE holder LIKE $1")
                    .bind(format!("bench-{}-w%", args.run_id))
                    .fetch_one(&pool)
                    .await
                    .ok();
            if left.is_none_or(|n| n == 0) {
                drained_in = Some(since.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pool.close().await;
    }

    let rss_kib = during
        .as_ref()
        .and_then(|d| d["vmrss_kib"].as_u64())
        .map(|k| k as f64 / 1024.0);
    Ok(json!({
        "primary": null,
        "errors": {},
        "extra": {
            "pid": args.pid,
            "connections": args.connections,
            "waiters": args.waiters,
            "resources": resources.len(),
            "opened_in_s": opened_in.as_secs_f64(),
            "before": before,
            "during": during,
            "rss_mib": rss_kib,
            "idle_open": idle_open,
            "idle_closed": idle_closed,
            "idle_unexpected_data": idle_answered,
            "waiters_pending": waiters_open,
            "waiters_closed": waiters_closed,
            "waiters_answered": waiters_answered,
            "waiters_queued": queued_now,
            "queue_emptied_after_s": drained_in,
        }
    }))
}
