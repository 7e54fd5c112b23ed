//! The workloads. Each client is one task that issues one request at a time over its own
//! keep-alive connection until the window ends; what ended inside the measurement window
//! is counted.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cpu;
use crate::http::{self, Failure, Precondition};
use crate::stats::{Recorder, Window};

/// What every workload needs to know.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub urls: Vec<String>,
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Makes holders and keys unique to this run.
    pub run_id: String,
    /// Send-time margin under which two acquires count as simultaneous (FIFO check).
    pub fifo_slack: Duration,
    /// leasehold's processes, whose CPU time is reported.
    pub pids: Vec<u32>,
}

impl Ctx {
    /// Client `i`'s instance: clients are spread round-robin over the URLs.
    pub fn url(&self, i: usize) -> String {
        self.urls[i % self.urls.len()]
            .trim_end_matches('/')
            .to_string()
    }
}

/// A run's merged counters plus what the clients returned.
pub struct Outcome<T> {
    pub recorder: Recorder,
    pub per_client: Vec<T>,
    /// Clients still running `drain` after the window ended, then aborted.
    pub aborted: usize,
    /// Where the CPU went during the measurement window.
    pub cpu: Value,
}

/// Starts `ctx.clients` tasks at once and collects them; a client still running `drain`
/// after the window ended is aborted (dropping its connection, which also takes it out of
/// any lease queue).
async fn run_clients<T, F, Fut>(ctx: &Ctx, drain: Duration, client: F) -> Outcome<T>
where
    F: Fn(usize, Window) -> Fut,
    Fut: Future<Output = (Recorder, T)> + Send + 'static,
    T: Send + 'static,
{
    let window = Window::new(ctx.warmup, ctx.duration);
    let pids = ctx.pids.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(window.measure_from).await;
        let before = cpu::sample(&pids);
        tokio::time::sleep_until(window.end).await;
        (before, cpu::sample(&pids))
    });
    let mut set = JoinSet::new();
    for i in 0..ctx.clients {
        set.spawn(client(i, window));
    }
    let mut recorder = Recorder::new(window);
    let mut per_client = Vec::with_capacity(ctx.clients);
    let deadline = window.end + drain;
    let mut aborted = 0;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((rec, extra)))) => {
                recorder.merge(rec);
                per_client.push(extra);
            }
            Ok(Some(Err(e))) => recorder.error(format!("client task failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                aborted = set.len();
                set.abort_all();
                while set.join_next().await.is_some() {}
                break;
            }
        }
    }
    let cpu = match sampler.await {
        Ok((before, after)) => {
            cpu::between(&before, &after, window.measured_seconds(), recorder.ops)
        }
        Err(_) => Value::Null,
    };
    Outcome {
        recorder,
        per_client,
        aborted,
        cpu,
    }
}

/// After a transport failure, do not spin.
async fn pause(failure: &Failure) {
    if failure.is_transport() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const DRAIN: Duration = Duration::from_secs(15);
/// A hot-key waiter may wait up to its `wait_seconds` (60).
const HOT_DRAIN: Duration = Duration::from_secs(65);

/// Workloads (1) and (3): acquire, (PATCH the metadata with the fencing token,) release,
/// each client on its own resource.
pub async fn lease_cycle(ctx: &Ctx, fenced: bool) -> Value {
    let outcome = run_clients(ctx, DRAIN, |i, window| {
        let base = ctx.url(i);
        let holder = format!("bench-{}-{i}", ctx.run_id);
        async move {
            let client = http::client();
            let mut rec = Recorder::new(window);
            let resource = http::resource_url(&base, &Uuid::new_v4());
            let mut writes = 0u64;
            while window.running() {
                let t0 = Instant::now();
                let result = http::acquire(&client, &resource, &holder, 30, 0).await;
                let t1 = Instant::now();
                rec.attempt(t1);
                let lease = match result {
                    Ok(lease) => lease,
                    Err(f) => {
                        rec.error(format!("acquire {}", f.0));
                        pause(&f).await;
                        continue;
                    }
                };
                rec.latency("acquire", t0, t1);
                // A renewal means an earlier release failed: not a cycle.
                let mut ok = lease.granted;
                if !lease.granted {
                    rec.error("acquire 200 (renewed)");
                }
                if fenced {
                    writes += 1;
                    let fence = Precondition::Fence(lease.fencing_token);
                    match http::patch_counter(&client, &resource, writes, fence).await {
                        Ok(_) => rec.latency("patch", t1, Instant::now()),
                        Err(f) => {
                            rec.error(format!("patch {}", f.0));
                            ok = false;
                        }
                    }
                }
                let t2 = Instant::now();
                match http::release(&client, &base, &lease.id).await {
                    Ok(()) => {
                        let t3 = Instant::now();
                        rec.latency("release", t2, t3);
                        if ok {
                            rec.latency("cycle", t0, t3);
                            rec.op(t3);
                        }
                    }
                    Err(f) => {
                        rec.error(format!("release {}", f.0));
                        pause(&f).await;
                    }
                }
            }
            (rec, ())
        }
    })
    .await;
    finish(outcome, "cycle", json!({}))
}

/// One grant on the hot resource, as its client saw it.
#[derive(Debug, Clone, Copy)]
struct Grant {
    client: usize,
    token: u64,
    /// The acquire was sent / its 201 arrived / the release was sent.
    sent: Instant,
    granted: Instant,
    release_sent: Instant,
}

/// Workload (2): every client acquires ONE resource with `wait_seconds: 60` and releases
/// right after the grant. A grant is a hand-over.
pub async fn hot(ctx: &Ctx) -> Value {
    let guid = Uuid::new_v4();
    let outcome = run_clients(ctx, HOT_DRAIN, |i, window| {
        let base = ctx.url(i);
        let resource = http::resource_url(&base, &guid);
        let holder = format!("bench-{}-{i}", ctx.run_id);
        async move {
            let client = http::client();
            let mut rec = Recorder::new(window);
            let mut grants = Vec::new();
            while window.running() {
                let t0 = Instant::now();
                let result = http::acquire(&client, &resource, &holder, 30, 60).await;
                let t1 = Instant::now();
                rec.attempt(t1);
                let lease = match result {
                    Ok(lease) => lease,
                    Err(f) => {
                        rec.error(format!("acquire {}", f.0));
                        pause(&f).await;
                        continue;
                    }
                };
                let t2 = Instant::now();
                if lease.granted {
                    rec.latency("wait", t0, t1);
                    rec.op(t1);
                    grants.push(Grant {
                        client: i,
                        token: lease.fencing_token,
                        sent: t0,
                        granted: t1,
                        release_sent: t2,
                    });
                } else {
                    // Its own lease, renewed: an earlier release failed. Not a hand-over.
                    rec.error("acquire 200 (renewed)");
                }
                match http::release(&client, &base, &lease.id).await {
                    Ok(()) => {
                        let t3 = Instant::now();
                        rec.latency("release", t2, t3);
                        rec.latency("cycle", t0, t3);
                    }
                    Err(f) => {
                        rec.error(format!("release {}", f.0));
                        pause(&f).await;
                    }
                }
            }
            (rec, grants)
        }
    })
    .await;
    let mut grants: Vec<Grant> = outcome.per_client.iter().flatten().copied().collect();
    let measure_from = outcome.recorder.window().measure_from;
    let fifo = fifo_report(&mut grants, ctx.fifo_slack, outcome.aborted, measure_from);
    finish(
        outcome,
        "wait",
        json!({"resource": guid.to_string(), "fifo": fifo}),
    )
}

/// What the tokens and the clients' clocks say about the hot key's hand-overs:
/// - every token granted once (`duplicate_tokens`), none skipped (`token_gaps`);
/// - mutual exclusion: lease k's release was sent before lease k+1's grant arrived
///   (`overlaps`, which must be 0);
/// - FIFO: an acquire sent more than `slack` after another must not get a smaller token
///   (`overtaken`), and with slack 0 (`overtaken_strict`, which also counts acquires that
///   reached the server's queue in another order than they were sent); the largest such
///   lead (`max_overtake_lead_ms`) bounds how far from FIFO the grants were;
/// - rounds: with C clients always queued, strict FIFO grants a client again only after
///   the C-1 others (`token_distance_same_client`).
fn fifo_report(
    grants: &mut [Grant],
    slack: Duration,
    aborted: usize,
    measure_from: Instant,
) -> Value {
    grants.sort_by_key(|g| g.token);
    let mut duplicates = 0u64;
    let mut gaps = 0u64;
    let mut overlaps = 0u64;
    for w in grants.windows(2) {
        if w[0].token == w[1].token {
            duplicates += 1;
        } else {
            gaps += w[1].token - w[0].token - 1;
        }
        if w[0].release_sent > w[1].granted {
            overlaps += 1;
        }
    }
    // FIFO is judged on the acquires sent after the warm-up: the first burst of C acquires
    // (C new connections at once) reaches the queue in whatever order the server takes
    // them; it is reported apart (`..._with_warmup`).
    let all_leads = overtake_leads(grants);
    let measured: Vec<Grant> = grants
        .iter()
        .filter(|g| g.sent >= measure_from)
        .copied()
        .collect();
    let judged = &measured[..];
    let leads = overtake_leads(judged);
    let overtaken = leads.iter().filter(|l| **l > slack).count();
    let overtaken_strict = leads.iter().filter(|l| !l.is_zero()).count();
    let max_lead = leads.iter().max().copied().unwrap_or_default();
    // The worst cases, for whoever looks into them: when they happened and how long they
    // waited (times from the first acquire sent).
    let origin = grants.iter().map(|g| g.sent).min();
    let mut worst: Vec<(Duration, &Grant)> = leads
        .iter()
        .copied()
        .zip(judged.iter())
        .filter(|(lead, _)| *lead > slack)
        .collect();
    worst.sort_by_key(|w| std::cmp::Reverse(w.0));
    let worst: Vec<Value> = worst
        .iter()
        .take(5)
        .map(|(lead, g)| {
            let at = |t: Instant| origin.map_or(0.0, |o| (t - o).as_secs_f64());
            json!({
                "token": g.token,
                "client": g.client,
                "lead_ms": lead.as_secs_f64() * 1000.0,
                "sent_at_s": at(g.sent),
                "granted_at_s": at(g.granted),
            })
        })
        .collect();

    let mut per_client: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for g in grants.iter() {
        per_client.entry(g.client).or_default().push(g.token);
    }
    let distances: Vec<u64> = per_client
        .values()
        .flat_map(|tokens| tokens.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>())
        .collect();
    let distance = if distances.is_empty() {
        Value::Null
    } else {
        let sum: u64 = distances.iter().sum();
        json!({
            "min": distances.iter().min(),
            "mean": sum as f64 / distances.len() as f64,
            "max": distances.iter().max(),
        })
    };
    let strictly_increasing = duplicates == 0 && overlaps == 0;
    json!({
        "grants": grants.len(),
        "first_token": grants.first().map(|g| g.token),
        "last_token": grants.last().map(|g| g.token),
        "duplicate_tokens": duplicates,
        "token_gaps": gaps,
        "overlaps": overlaps,
        "slack_ms": slack.as_secs_f64() * 1000.0,
        "overtaken": overtaken,
        "overtaken_strict": overtaken_strict,
        "max_overtake_lead_ms": max_lead.as_secs_f64() * 1000.0,
        "judged_grants": judged.len(),
        "overtaken_with_warmup": all_leads.iter().filter(|l| **l > slack).count(),
        "max_overtake_lead_with_warmup_ms":
            all_leads.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        "worst_overtakes": worst,
        "token_distance_same_client": distance,
        "aborted_waiters": aborted,
        "tokens_strictly_increase": strictly_increasing,
        // Shown from the client's side: no grant overtaken beyond the slack. Otherwise not
        // shown (the client cannot tell a late enqueue from a queue-order violation).
        "fifo_ok": strictly_increasing && overtaken == 0,
    })
}

/// For each grant, how long after its acquire was sent the latest acquire that got a
/// smaller token was sent (0 if none was sent later): the lead by which it was overtaken.
fn overtake_leads(grants_by_token: &[Grant]) -> Vec<Duration> {
    let mut latest: Option<Instant> = None;
    grants_by_token
        .iter()
        .map(|g| {
            let lead = latest.map_or(Duration::ZERO, |l| l.saturating_duration_since(g.sent));
            latest = Some(latest.map_or(g.sent, |l| l.max(g.sent)));
            lead
        })
        .collect()
}

/// Workload (4): read the resource, PATCH the counter label +1 with `If-Match`, again
/// from the read on 412. A completed operation is a successful PATCH. Each client on its
/// own resource (`hot == false`) or all on one.
pub async fn rmw(ctx: &Ctx, hot: bool) -> Value {
    let shared = Uuid::new_v4();
    let outcome = run_clients(ctx, DRAIN, |i, window| {
        let base = ctx.url(i);
        let guid = if hot { shared } else { Uuid::new_v4() };
        async move {
            let client = http::client();
            let mut rec = Recorder::new(window);
            let resource = http::resource_url(&base, &guid);
            let mut successes = 0u64;
            // Gives up a contended read-modify-write this long after the window.
            let give_up = window.end + Duration::from_secs(10);
            while window.running() {
                let t0 = Instant::now();
                loop {
                    let (etag, n) = match http::read_counter(&client, &resource).await {
                        Ok(read) => read,
                        Err(f) => {
                            rec.error(format!("read {}", f.0));
                            pause(&f).await;
                            break;
                        }
                    };
                    let ta = Instant::now();
                    let result = http::patch_counter(
                        &client,
                        &resource,
                        n + 1,
                        Precondition::IfMatch(&etag),
                    )
                    .await;
                    let tb = Instant::now();
                    rec.attempt(tb);
                    match result {
                        Ok(_) => {
                            successes += 1;
                            rec.latency("patch", ta, tb);
                            rec.latency("op", t0, tb);
                            rec.op(tb);
                            break;
                        }
                        Err(f) if f.0 == "412" => {
                            rec.retry(tb);
                            if tb > give_up {
                                rec.error("gave up after the window");
                                break;
                            }
                        }
                        Err(f) => {
                            rec.error(format!("patch {}", f.0));
                            pause(&f).await;
                            break;
                        }
                    }
                }
            }
            (rec, (resource, successes))
        }
    })
    .await;
    // Lost-update check: each resource's counter must equal the successful PATCHes on it.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (resource, successes) in &outcome.per_client {
        *expected.entry(resource.clone()).or_insert(0) += successes;
    }
    let client = http::client();
    let (mut want, mut got, mut unreadable) = (0u64, 0u64, 0u64);
    for (resource, n) in &expected {
        want += n;
        match http::read_counter(&client, resource).await {
            Ok((_, value)) => got += value,
            Err(_) => unreadable += 1,
        }
    }
    let rec = &outcome.recorder;
    let attempts = rec.attempts.max(1) as f64;
    let extra = json!({
        "success_rate": rec.ops as f64 / attempts,
        "retry_rate": rec.retries as f64 / attempts,
        "counter_expected": want,
        "counter_actual": got,
        "lost_updates": want.saturating_sub(got),
        "unreadable_resources": unreadable,
    });
    finish(outcome, "op", extra)
}

const FLOOR_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_floor_leases (
    key text PRIMARY KEY, holder text, token bigint, expires_at timestamptz)";
/// Grant when free or expired, as leasehold's acquire does, in one statement.
const FLOOR_ACQUIRE: &str = "INSERT INTO bench_floor_leases AS l (key, holder, token, expires_at)
    VALUES ($1, $2, 1, now() + interval '30 seconds')
    ON CONFLICT (key) DO UPDATE
        SET holder = excluded.holder, token = l.token + 1, expires_at = excluded.expires_at
        WHERE l.expires_at < now()
    RETURNING token";
const FLOOR_RELEASE: &str =
    "UPDATE bench_floor_leases SET expires_at = now() WHERE key = $1 AND token = $2";

/// The raw-SQL floor: the same cycle as workload (1) in two autocommit statements (prepared
/// once per connection), one dedicated connection per client; on distinct keys, or all on one key retrying at once
/// (`hot`: a completed operation is a grant, a lost race a retry).
pub async fn floor(ctx: &Ctx, database_url: &str, hot: bool) -> Result<Value, String> {
    let mut setup = PgConnection::connect(database_url)
        .await
        .map_err(|e| format!("cannot connect to the floor database: {e}"))?;
    sqlx::query(FLOOR_TABLE)
        .execute(&mut setup)
        .await
        .map_err(|e| format!("cannot create bench_floor_leases: {e}"))?;
    setup.close().await.ok();
    let shared_key = format!("{}-hot", ctx.run_id);
    let outcome = run_clients(ctx, DRAIN, |i, window| {
        let url = database_url.to_string();
        let key = if hot {
            shared_key.clone()
        } else {
            format!("{}-{i}", ctx.run_id)
        };
        let holder = format!("bench-{}-{i}", ctx.run_id);
        async move {
            let mut rec = Recorder::new(window);
            let mut conn = match PgConnection::connect(&url).await {
                Ok(conn) => conn,
                Err(e) => {
                    rec.error(format!("connect: {e}"));
                    return (rec, ());
                }
            };
            let mut first_try = Instant::now();
            while window.running() {
                let t0 = Instant::now();
                let granted: Result<Option<i64>, _> = sqlx::query_scalar(FLOOR_ACQUIRE)
                    .bind(&key)
                    .bind(&holder)
                    .fetch_optional(&mut conn)
                    .await;
                let t1 = Instant::now();
                rec.attempt(t1);
                let token = match granted {
                    Ok(Some(token)) => token,
                    Ok(None) if hot => {
                        rec.retry(t1);
                        continue;
                    }
                    Ok(None) => {
                        // Same now() as the previous release: the lease still looks live.
                        rec.error("acquire not granted");
                        continue;
                    }
                    Err(e) => {
                        rec.error(format!("acquire: {e}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                rec.latency("acquire", t0, t1);
                if hot {
                    rec.latency("wait", first_try, t1);
                    rec.op(t1);
                }
                let released = sqlx::query(FLOOR_RELEASE)
                    .bind(&key)
                    .bind(token)
                    .execute(&mut conn)
                    .await;
                let t2 = Instant::now();
                match released {
                    Ok(r) if r.rows_affected() == 1 => {
                        rec.latency("release", t1, t2);
                        rec.latency("cycle", t0, t2);
                        if !hot {
                            rec.op(t2);
                        }
                    }
                    Ok(_) => rec.error("release matched no row"),
                    Err(e) => rec.error(format!("release: {e}")),
                }
                first_try = Instant::now();
            }
            conn.close().await.ok();
            (rec, ())
        }
    })
    .await;
    let primary = if hot { "wait" } else { "cycle" };
    Ok(finish(outcome, primary, json!({})))
}

/// The common part of every result.
fn finish<T>(outcome: Outcome<T>, primary: &str, extra: Value) -> Value {
    let mut out = outcome.recorder.summary();
    out["primary"] = json!(primary);
    out["aborted_clients"] = json!(outcome.aborted);
    out["cpu"] = outcome.cpu;
    out["extra"] = extra;
    out
}
