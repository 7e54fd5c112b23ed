//! Concurrency: the guarantees of API.md §6 under contention, each test against two
//! leasehold instances sharing one database, with clients alternating between them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------
// Helpers (shared with crash.rs)
// ---------------------------------------------------------------------------------------

/// Several instances on one database; `at(i)` alternates between them.
pub(crate) struct Instances(Vec<TestApp>);

impl Instances {
    pub(crate) async fn two(db: &TestDb) -> Arc<Self> {
        Arc::new(Self(vec![spawn_app(db).await, spawn_app(db).await]))
    }

    pub(crate) fn at(&self, i: usize) -> &TestApp {
        &self.0[i % self.0.len()]
    }
}

/// A tiny xorshift generator for jitter (no `rand` in the dev-dependencies).
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    /// Sleeps 0..`max_micros` µs.
    pub(crate) async fn pause(&mut self, max_micros: u64) {
        tokio::time::sleep(Duration::from_micros(self.below(max_micros))).await;
    }
}

/// GET `url` (absolute) and return the JSON body, asserting 200.
pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "GET {url}");
    r.json().await.expect("JSON body")
}

/// A resource's whole history (every page), oldest first; asserts `seq` strictly increases.
pub(crate) async fn full_history(client: &reqwest::Client, base: &str, res: &Res) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{base}{}/history?limit=1000", res.path());
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(client, &url).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    items.reverse();
    for pair in items.windows(2) {
        assert!(
            seq(&pair[0]) < seq(&pair[1]),
            "history seq must strictly increase: {} then {}",
            pair[0],
            pair[1]
        );
    }
    items
}

/// Every lease ever granted on `res` (operator listing, `state=all`, every page).
pub(crate) async fn all_leases(client: &reqwest::Client, base: &str, res: &Res) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!(
            "{base}/v1/leases?type={}&guid={}&state=all&limit=1000",
            res.resource_type, res.guid
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(client, &url).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    items
}

pub(crate) fn seq(entry: &Value) -> u64 {
    entry["seq"].as_u64().expect("seq")
}

pub(crate) fn event(entry: &Value) -> &str {
    entry["event"].as_str().expect("event")
}

pub(crate) fn entry_token(entry: &Value) -> Option<u64> {
    entry["fencing_token"].as_u64()
}

pub(crate) fn entry_lease(entry: &Value) -> Option<&str> {
    entry["lease_id"].as_str()
}

pub(crate) fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("timestamp: {v}")))
        .unwrap_or_else(|e| panic!("timestamp {v}: {e}"))
        .with_timezone(&Utc)
}

/// `"<n>"` → n.
pub(crate) fn etag_version(r: &reqwest::Response) -> u64 {
    let tag = r.headers()["etag"].to_str().expect("etag");
    tag.trim_matches('"')
        .parse()
        .unwrap_or_else(|_| panic!("ETag {tag} is not a version"))
}

/// A label's value as a number (absent → 0).
pub(crate) fn label_number(resource: &Value, key: &str) -> u64 {
    match &resource["metadata"]["labels"][key] {
        Value::Null => 0,
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("label {key} is not a number: {s}")),
        other => panic!("label {key}: {other}"),
    }
}

/// Asserts that the leases, ordered by grant, never overlap: each one's `acquired_at` is at
/// or after the previous one's `ended_at`, and only the last may still be open.
fn assert_no_overlap(mut leases: Vec<Value>) {
    leases.sort_by_key(|l| l["fencing_token"].as_u64().expect("fencing_token"));
    for pair in leases.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        assert!(
            !prev["ended_at"].is_null(),
            "lease {} is not ended although a later one was granted: {next}",
            prev
        );
        assert!(
            ts(&next["acquired_at"]) >= ts(&prev["ended_at"]),
            "leases overlap: {prev} ended after {next} was acquired"
        );
        assert!(
            ts(&next["acquired_at"]) >= ts(&prev["acquired_at"]),
            "a higher token was granted earlier: {prev} / {next}"
        );
    }
}

/// Polls the operator listing and GET lease on both instances until `stop`; panics when it
/// ever sees two active leases on `res` (or two different active leases in one look).
fn spawn_active_lease_watcher(
    apps: Arc<Instances>,
    res: Res,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut looks = 0usize;
        while !stop.load(Ordering::Acquire) && looks < 100_000 {
            let app = apps.at(looks);
            let page = get_json(
                &app.client,
                &app.url(&format!(
                    "/v1/leases?type={}&guid={}&state=active",
                    res.resource_type, res.guid
                )),
            )
            .await;
            let active = page["items"].as_array().expect("items");
            assert!(
                active.len() <= 1,
                "two active leases coexisted on one resource: {page}"
            );
            let r = app.get(&res.lease_path()).await;
            assert!(
                r.status() == StatusCode::OK || r.status() == StatusCode::NOT_FOUND,
                "GET lease: {}",
                r.status()
            );
            looks += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        looks
    })
}

// ---------------------------------------------------------------------------------------
// (a) one winner per epoch
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_racing_for_one_resource_get_exactly_one_winner_per_epoch() {
    const CLIENTS: usize = 32;
    const EPOCHS: usize = 6;
    let db = TestDb::new().await;
    let apps = Instances::two(&db).await;
    let res = Res::route();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = spawn_active_lease_watcher(apps.clone(), res.clone(), stop.clone());

    let mut winners: Vec<Value> = Vec::new();
    for epoch in 1..=EPOCHS {
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let mut set = JoinSet::new();
        for c in 0..CLIENTS {
            let (apps, res, barrier) = (apps.clone(), res.clone(), barrier.clone());
            set.spawn(async move {
                let holder = format!("racer-{c}");
                barrier.wait().await;
                let r = apps.at(c + epoch).acquire(&res, &holder, Some(30)).await;
                let status = r.status();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().expect("Retry-After").to_owned());
                let ct = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or("").to_owned());
                let body: Value = r.json().await.expect("JSON body");
                (holder, status, retry_after, ct, body)
            });
        }
        let outcomes = set.join_all().await;
        let won: Vec<_> = outcomes
            .iter()
            .filter(|o| o.1 == StatusCode::CREATED)
            .collect();
        assert_eq!(
            won.len(),
            1,
            "epoch {epoch}: exactly one 201 expected, got {:?}",
            outcomes.iter().map(|o| o.1).collect::<Vec<_>>()
        );
        let winner = won[0].4.clone();
        assert_eq!(winner["holder"], won[0].0.as_str());
        assert_eq!(
            token_of(&winner),
            epoch as u64,
            "epoch {epoch}: the winner's token: {winner}"
        );
        for (holder, status, retry_after, ct, body) in &outcomes {
            if *status == StatusCode::CREATED {
                continue;
            }
            assert_eq!(
                *status,
                StatusCode::CONFLICT,
                "epoch {epoch}: {holder} got {status}: {body}"
            );
            assert_eq!(ct.as_deref(), Some("application/problem+json"));
            assert_eq!(body["type"], "/problems/lease-held", "{body}");
            assert_eq!(body["holder"], winner["holder"], "{body}");
            assert_eq!(ts(&body["expires_at"]), ts(&winner["expires_at"]), "{body}");
            let retry: u64 = retry_after
                .as_deref()
                .expect("Retry-After on lease-held")
                .parse()
                .expect("Retry-After in whole seconds");
            assert!(retry >= 1, "Retry-After {retry}");
        }
        // Both instances see the winner's lease as the one active lease.
        for i in 0..2 {
            let r = apps.at(i).get(&res.lease_path()).await;
            assert_eq!(r.status(), StatusCode::OK);
            let active: Value = r.json().await.expect("lease JSON");
            assert_eq!(active["id"], winner["id"]);
            let page = get_json(
                &apps.at(i).client,
                &apps
                    .at(i)
                    .url(&format!("/v1/leases?guid={}&state=active", res.guid)),
            )
            .await;
            let items = page["items"].as_array().expect("items");
            assert_eq!(items.len(), 1, "{page}");
            assert_eq!(items[0]["id"], winner["id"]);
        }
        assert_eq!(
            apps.at(epoch + 1).release(&id_of(&winner)).await.status(),
            StatusCode::NO_CONTENT
        );
        winners.push(winner);
    }
    stop.store(true, Ordering::Release);
    let looks = watcher.await.expect("watcher");
    assert!(looks > 0);

    let history = full_history(&apps.at(0).client, &apps.at(0).url(""), &res).await;
    let grants: Vec<&Value> = history
        .iter()
        .filter(|e| event(e) == "lease-granted")
        .collect();
    assert_eq!(grants.len(), EPOCHS, "one lease-granted per epoch");
    for (grant, winner) in grants.iter().zip(&winners) {
        assert_eq!(entry_token(grant), Some(token_of(winner)), "{grant}");
        assert_eq!(grant["lease_id"], winner["id"], "{grant}");
        assert_eq!(
            grant["actor"],
            db.actor(winner["holder"].as_str()),
            "{grant}"
        );
    }
    let leases = all_leases(&apps.at(1).client, &apps.at(1).url(""), &res).await;
    assert_eq!(leases.len(), EPOCHS);
    assert!(
        leases.iter().all(|l| l["state"] == "released"),
        "{leases:?}"
    );
    assert_no_overlap(leases);
}

// ---------------------------------------------------------------------------------------
// (b) If-Match counter
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_incrementing_a_counter_with_if_match_lose_no_update() {
    const CLIENTS: usize = 16;
    const INCREMENTS: u64 = 25;
    const TOTAL: u64 = CLIENTS as u64 * INCREMENTS;
    let db = TestDb::new().await;
    let apps = Instances::two(&db).await;
    let res = Res::route();

    let mut set = JoinSet::new();
    for c in 0..CLIENTS {
        let (apps, res) = (apps.clone(), res.clone());
        set.spawn(async move {
            let mut jitter = Jitter::new(c as u64 + 1);
            let mut written = Vec::new();
            let mut attempts = 0usize;
            while (written.len() as u64) < INCREMENTS {
                attempts += 1;
                assert!(attempts < 20_000, "client {c} is not making progress");
                let (body, etag) = apps.at(c + attempts).resource(&res).await;
                let n = label_number(&body, "counter");
                let next = (n + 1).to_string();
                let r = apps
                    .at(c + attempts + 1)
                    .set_labels(&res, json!({"counter": next}), None, Some(&etag))
                    .await;
                match r.status() {
                    StatusCode::OK => {
                        let version = etag_version(&r);
                        let after: Value = r.json().await.expect("resource JSON");
                        assert_eq!(after["metadata"]["labels"]["counter"], next);
                        assert_eq!(after["version"], version);
                        written.push((n + 1, version));
                    }
                    StatusCode::PRECONDITION_FAILED => {
                        assert!(r.headers().contains_key("etag"), "412 without ETag");
                        assert_problem(r, 412, "precondition-failed").await;
                        jitter.pause(2000).await;
                    }
                    other => panic!(
                        "client {c}: unexpected {other}: {}",
                        r.text().await.unwrap_or_default()
                    ),
                }
            }
            written
        });
    }
    let written: Vec<(u64, u64)> = set.join_all().await.into_iter().flatten().collect();
    assert_eq!(written.len() as u64, TOTAL, "successful PATCHes");
    // Each success wrote a distinct value n+1 at version n+1: no two clients won the same n.
    let values: BTreeSet<u64> = written.iter().map(|w| w.0).collect();
    assert_eq!(
        values,
        (1..=TOTAL).collect(),
        "values written by successful PATCHes"
    );
    assert!(
        written.iter().all(|(v, version)| v == version),
        "{written:?}"
    );

    let (body, etag) = apps.at(0).resource(&res).await;
    assert_eq!(body["metadata"]["labels"]["counter"], TOTAL.to_string());
    assert_eq!(body["version"], TOTAL);
    assert_eq!(etag, format!("\"{TOTAL}\""));

    let history = full_history(&apps.at(1).client, &apps.at(1).url(""), &res).await;
    assert_eq!(history.len() as u64, TOTAL, "history entries");
    for (i, entry) in history.iter().enumerate() {
        let n = i as u64;
        assert_eq!(event(entry), "metadata-changed", "{entry}");
        assert_eq!(entry["version"], n + 1, "{entry}");
        let change = &entry["detail"]["labels"]["counter"];
        let from = if n == 0 {
            Value::Null
        } else {
            json!(n.to_string())
        };
        assert_eq!(change["from"], from, "entry {}: {entry}", n + 1);
        assert_eq!(change["to"], json!((n + 1).to_string()), "{entry}");
    }
}

// ---------------------------------------------------------------------------------------
// (c) a paused holder
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_paused_past_its_ttl_cannot_write_after_another_took_over() {
    let db = TestDb::new().await;
    let apps = Instances::two(&db).await;
    let (one, two) = (apps.at(0), apps.at(1));
    let res = Res::route();

    let a = one.grant(&res, "svc-a/1", Some(1)).await;
    let a_token = token_of(&a);
    // A's pause: longer than its TTL.
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let b = two.grant(&res, "svc-b/1", Some(30)).await;
    assert_eq!(token_of(&b), a_token + 1, "B's token follows A's");
    let r = two
        .set_labels(&res, json!({"owner": "b"}), Some(token_of(&b)), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A wakes up and writes with its old token, on either instance.
    for app in [one, two] {
        let r = app
            .set_labels(&res, json!({"owner": "a"}), Some(a_token), None)
            .await;
        let body = assert_problem(r, 409, "stale-fencing-token").await;
        assert!(body["detail"].is_string());
    }
    let (body, etag) = one.resource(&res).await;
    assert_eq!(body["metadata"]["labels"]["owner"], "b");
    assert_eq!(etag, "\"1\"");

    // Without any token: the resource is locked by B.
    let r = one
        .set_labels(&res, json!({"owner": "a"}), None, None)
        .await;
    let body = assert_problem(r, 423, "resource-locked").await;
    assert_eq!(body["holder"], "svc-b/1", "{body}");
    let (body, _) = two.resource(&res).await;
    assert_eq!(body["metadata"]["labels"]["owner"], "b");
    assert_eq!(body["version"], 1);

    // A's lease reads as expired, at its own expires_at, and history agrees.
    let a_now = get_json(&one.client, &one.url(&format!("/v1/leases/{}", id_of(&a)))).await;
    assert_eq!(a_now["state"], "expired");
    assert_eq!(ts(&a_now["ended_at"]), ts(&a["expires_at"]));
    let history = full_history(&two.client, &two.url(""), &res).await;
    let events: Vec<(&str, Option<u64>)> =
        history.iter().map(|e| (event(e), entry_token(e))).collect();
    assert_eq!(
        events,
        vec![
            ("lease-granted", Some(a_token)),
            ("lease-expired", Some(a_token)),
            ("lease-granted", Some(a_token + 1)),
            ("metadata-changed", Some(a_token + 1)),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// (d) expired leases; release racing a write
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renew_and_release_of_an_expired_lease_get_410() {
    let db = TestDb::new().await;
    let apps = Instances::two(&db).await;

    // Part 1: expiry through real time on one instance, seen by the other.
    let res = Res::route();
    let lease = apps.at(0).grant(&res, "svc/expiring", Some(1)).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = apps.at(1).renew(&id_of(&lease), None).await;
    assert_problem(r, 410, "lease-expired").await;
    let r = apps.at(1).release(&id_of(&lease)).await;
    assert_problem(r, 410, "lease-expired").await;
    let r = apps.at(0).renew(&id_of(&lease), Some(30)).await;
    assert_problem(r, 410, "lease-expired").await;
    let history = full_history(&apps.at(0).client, &apps.at(0).url(""), &res).await;
    let events: Vec<&str> = history.iter().map(event).collect();
    assert_eq!(events, ["lease-granted", "lease-expired"]);

    // Part 2: a token-carrying PATCH racing the lease's release.
    const RESOURCES: usize = 8;
    const ROUNDS: usize = 10;
    let mut set = JoinSet::new();
    for r_i in 0..RESOURCES {
        let apps = apps.clone();
        set.spawn(async move {
            let res = Res::route();
            let mut jitter = Jitter::new(r_i as u64 + 77);
            // (round, lease id, token, PATCH applied?)
            let mut rounds = Vec::new();
            for round in 0..ROUNDS {
                let (writer, releaser) = (apps.at(r_i + round), apps.at(r_i + round + 1));
                let lease = writer
                    .grant(&res, &format!("racer-{r_i}-{round}"), Some(30))
                    .await;
                let (token, id) = (token_of(&lease), id_of(&lease));
                let value = format!("r{round}");
                let delay = jitter.below(1500);
                let (patched, released) = tokio::join!(
                    writer.set_labels(&res, json!({"round": value}), Some(token), None),
                    async {
                        tokio::time::sleep(Duration::from_micros(delay)).await;
                        releaser.release(&id).await
                    }
                );
                assert_eq!(released.status(), StatusCode::NO_CONTENT, "release");
                let applied = match patched.status() {
                    StatusCode::OK => true,
                    StatusCode::CONFLICT => {
                        assert_problem(patched, 409, "stale-fencing-token").await;
                        false
                    }
                    other => panic!("racing PATCH answered {other}"),
                };
                rounds.push((round, id, token, applied));
            }
            (res, rounds)
        });
    }
    let mut applied_total = 0;
    for (res, rounds) in set.join_all().await {
        let history = full_history(&apps.at(0).client, &apps.at(0).url(""), &res).await;
        let pos = |ev: &str, id: &str| {
            history
                .iter()
                .position(|e| event(e) == ev && entry_lease(e) == Some(id))
        };
        let mut last_applied = None;
        for (round, id, token, applied) in &rounds {
            let granted = pos("lease-granted", id).expect("lease-granted in history");
            let released = pos("lease-released", id).expect("lease-released in history");
            assert!(granted < released);
            let changes: Vec<&Value> = history
                .iter()
                .filter(|e| event(e) == "metadata-changed" && entry_token(e) == Some(*token))
                .collect();
            if *applied {
                assert_eq!(changes.len(), 1, "round {round}: the acknowledged PATCH");
                let change = pos("metadata-changed", id).expect("change carries the lease id");
                assert!(
                    granted < change && change < released,
                    "round {round}: an acknowledged PATCH must come before the release in history"
                );
                assert_eq!(
                    history[change]["detail"]["labels"]["round"]["to"],
                    format!("r{round}")
                );
                last_applied = Some(format!("r{round}"));
                applied_total += 1;
            } else {
                assert!(
                    changes.is_empty(),
                    "round {round}: a PATCH refused as stale was applied: {changes:?}"
                );
            }
        }
        let n_applied = rounds.iter().filter(|r| r.3).count();
        let (body, _) = apps.at(1).resource(&res).await;
        assert_eq!(body["version"], n_applied as u64);
        match last_applied {
            Some(v) => assert_eq!(body["metadata"]["labels"]["round"], v),
            None => assert!(body["metadata"]["labels"]["round"].is_null()),
        }
    }
    eprintln!(
        "release-vs-write race: {applied_total} of {} PATCHes won",
        RESOURCES * ROUNDS
    );
}

// ---------------------------------------------------------------------------------------
// (e) fenced writes race
// ---------------------------------------------------------------------------------------

/// What one holder saw.
#[derive(Default)]
struct HolderLog {
    /// Tokens of its 201s, with lease ids.
    grants: Vec<(u64, String)>,
    /// Acknowledged writes: (token, version after).
    writes: Vec<(u64, u64)>,
    /// Writes with a token that had ended, all refused.
    stale_refused: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_writes_from_racing_holders_carry_only_the_active_leases_token() {
    const HOLDERS: usize = 6;
    const RUN: Duration = Duration::from_millis(3000);
    let db = TestDb::new().await;
    let apps = Instances::two(&db).await;
    let res = Res::route();
    let deadline = Instant::now() + RUN;

    let mut set = JoinSet::new();
    for h in 0..HOLDERS {
        let (apps, res) = (apps.clone(), res.clone());
        set.spawn(async move {
            let mut log = HolderLog::default();
            let mut jitter = Jitter::new(h as u64 + 1000);
            let label = format!("h{h}");
            let mut i = 0usize;
            while Instant::now() < deadline && i < 5000 {
                i += 1;
                // Holder 0, once: acquire with a 2 s TTL, write, pause past the TTL without
                // releasing, then write again with the old token.
                let pauses = h == 0 && log.grants.len() == 2;
                let ttl = if pauses { 2 } else { 10 };
                // Waiting in line (first come, first served) gives every holder its turns
                // however loaded the machine is.
                let app = apps.at(h + i);
                let r = app
                    .client
                    .post(app.url(&res.lease_path()))
                    .json(&json!({"holder": format!("holder-{h}"), "ttl_seconds": ttl, "wait_seconds": 5}))
                    .send()
                    .await
                    .expect("acquire");
                match r.status() {
                    StatusCode::CREATED => {}
                    StatusCode::CONFLICT => {
                        assert_problem(r, 409, "lease-held").await;
                        jitter.pause(3000).await;
                        continue;
                    }
                    other => panic!("holder {h}: acquire answered {other}"),
                }
                let lease: Value = r.json().await.expect("lease JSON");
                let (token, id) = (token_of(&lease), id_of(&lease));
                log.grants.push((token, id.clone()));
                let (body, _) = apps.at(h + i + 1).resource(&res).await;
                let n = label_number(&body, &label);
                let r = apps
                    .at(h + i)
                    .set_labels(
                        &res,
                        json!({ &label: (n + 1).to_string() }),
                        Some(token),
                        None,
                    )
                    .await;
                assert_eq!(r.status(), StatusCode::OK, "holder {h}: fenced write");
                log.writes.push((token, etag_version(&r)));
                if pauses {
                    tokio::time::sleep(Duration::from_millis(2200)).await;
                } else {
                    let r = apps.at(h + i + 1).release(&id).await;
                    assert_eq!(r.status(), StatusCode::NO_CONTENT, "holder {h}: release");
                }
                // A late write with the token that just ended: always refused.
                let r = apps
                    .at(h + i + 1)
                    .set_labels(&res, json!({ &label: "stale" }), Some(token), None)
                    .await;
                assert_problem(r, 409, "stale-fencing-token").await;
                log.stale_refused += 1;
                if pauses {
                    let lease = get_json(
                        &apps.at(h).client,
                        &apps.at(h).url(&format!("/v1/leases/{id}")),
                    )
                    .await;
                    assert_eq!(lease["state"], "expired", "{lease}");
                }
            }
            (h, log)
        });
    }
    // join_all yields in completion order: put the logs back in holder order.
    let mut logs = set.join_all().await;
    logs.sort_by_key(|(h, _)| *h);

    let history = full_history(&apps.at(0).client, &apps.at(0).url(""), &res).await;
    // Walk history in seq order, tracking the active lease.
    let mut current: Option<(String, u64)> = None;
    let mut changes_by_version: HashMap<u64, &Value> = HashMap::new();
    for e in &history {
        let lease = entry_lease(e).map(str::to_owned);
        let token = entry_token(e);
        match event(e) {
            "lease-granted" => {
                assert!(current.is_none(), "granted while {current:?} active: {e}");
                current = Some((lease.expect("lease id"), token.expect("token")));
            }
            "lease-renewed" => {
                assert_eq!(current, Some((lease.expect("id"), token.expect("token"))));
            }
            "lease-released" | "lease-expired" | "lease-revoked" => {
                assert_eq!(
                    current,
                    Some((lease.expect("id"), token.expect("token"))),
                    "{e}"
                );
                current = None;
            }
            "metadata-changed" => {
                let active = current
                    .clone()
                    .unwrap_or_else(|| panic!("a fenced write applied with no active lease: {e}"));
                assert_eq!(
                    (lease, token),
                    (Some(active.0), Some(active.1)),
                    "a write carrying a token other than the active lease's was applied: {e}"
                );
                let labels = e["detail"]["labels"].as_object().expect("labels");
                assert!(
                    labels.values().all(|c| c["to"] != "stale"),
                    "a stale write was applied: {e}"
                );
                changes_by_version.insert(e["version"].as_u64().expect("version"), e);
            }
            other => panic!("unexpected event {other}: {e}"),
        }
    }
    let granted_in_history: BTreeMap<u64, &str> = history
        .iter()
        .filter(|e| event(e) == "lease-granted")
        .map(|e| (entry_token(e).expect("token"), entry_lease(e).expect("id")))
        .collect();
    let mut total_writes = 0;
    let (body, _) = apps.at(1).resource(&res).await;
    for (h, log) in &logs {
        assert!(!log.grants.is_empty(), "holder {h} never got the lease");
        for (token, id) in &log.grants {
            assert_eq!(
                granted_in_history.get(token).copied(),
                Some(id.as_str()),
                "holder {h}'s grant with token {token} is not in history"
            );
        }
        for (token, version) in &log.writes {
            let e = changes_by_version
                .get(version)
                .unwrap_or_else(|| panic!("acknowledged write at version {version} missing"));
            assert_eq!(entry_token(e), Some(*token), "{e}");
            assert_eq!(e["actor"], db.actor(Some(&format!("holder-{h}"))), "{e}");
        }
        // No lost update: each holder's counter counts its acknowledged writes.
        assert_eq!(
            label_number(&body, &format!("h{h}")),
            log.writes.len() as u64,
            "holder {h}'s counter"
        );
        total_writes += log.writes.len();
        assert_eq!(log.stale_refused, log.grants.len());
    }
    assert_eq!(changes_by_version.len(), total_writes, "writes in history");
    assert_eq!(body["version"], total_writes as u64);
}

// ---------------------------------------------------------------------------------------
// (f) token order under contention
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_for_a_resource_strictly_increase_in_grant_order_under_contention() {
    const CLIENTS: usize = 12;
    const RUN: Duration = Duration::from_millis(2000);
    let db = TestDb::new().await;
    let apps = Instances::two(&db).await;
    let res = Res::route();
    let deadline = Instant::now() + RUN;
    let refused = Arc::new(AtomicUsize::new(0));

    let mut set = JoinSet::new();
    for c in 0..CLIENTS {
        let (apps, res, refused) = (apps.clone(), res.clone(), refused.clone());
        set.spawn(async move {
            let mut jitter = Jitter::new(c as u64 + 500);
            let mut tokens = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline && i < 5000 {
                i += 1;
                let r = apps
                    .at(c + i)
                    .acquire(&res, &format!("client-{c}"), Some(30))
                    .await;
                match r.status() {
                    StatusCode::CREATED => {
                        let lease: Value = r.json().await.expect("lease JSON");
                        let token = token_of(&lease);
                        if let Some(prev) = tokens.last() {
                            assert!(token > *prev, "client {c}: token {token} after {prev}");
                        }
                        tokens.push(token);
                        let r = apps.at(c + i + 1).release(&id_of(&lease)).await;
                        assert_eq!(r.status(), StatusCode::NO_CONTENT);
                    }
                    StatusCode::CONFLICT => {
                        assert_problem(r, 409, "lease-held").await;
                        refused.fetch_add(1, Ordering::Relaxed);
                        jitter.pause(3000).await;
                    }
                    other => panic!("client {c}: acquire answered {other}"),
                }
            }
            tokens
        });
    }
    let mut seen: Vec<u64> = set.join_all().await.into_iter().flatten().collect();
    seen.sort_unstable();
    let n = seen.len() as u64;
    assert!(n > 1, "at least two grants");
    assert_eq!(
        seen,
        (1..=n).collect::<Vec<_>>(),
        "tokens handed out in 201s must be 1..=N, each once"
    );

    let history = full_history(&apps.at(1).client, &apps.at(1).url(""), &res).await;
    let grants: Vec<&Value> = history
        .iter()
        .filter(|e| event(e) == "lease-granted")
        .collect();
    let tokens: Vec<u64> = grants
        .iter()
        .map(|e| entry_token(e).expect("token"))
        .collect();
    assert_eq!(
        tokens,
        (1..=n).collect::<Vec<_>>(),
        "lease-granted tokens in seq order"
    );
    // Grants never overlap: each acquired_at is at or after the previous lease's ended_at.
    let mut leases = Vec::new();
    for (k, grant) in grants.iter().enumerate() {
        let id = entry_lease(grant).expect("lease id");
        let app = apps.at(k);
        let lease = get_json(&app.client, &app.url(&format!("/v1/leases/{id}"))).await;
        assert_eq!(lease["state"], "released", "{lease}");
        assert_eq!(token_of(&lease), tokens[k]);
        leases.push(lease);
    }
    assert_no_overlap(leases);
    eprintln!("{n} grants, {} refusals", refused.load(Ordering::Relaxed));
}
