//! The operator CLI: the real `leasehold` binary against a running instance (`leases
//! list|show|revoke`, `resource show|history`, `probe`), tables by default and the server's
//! own types with `--json`.

use std::process::Output;

use leasehold::domain::lease::LeaseState;
use leasehold::http::wire::{HistoryListOut, LeaseListOut, LeaseOut, ResourceOut};
use serde_json::json;

use crate::helpers::*;

/// Runs `leasehold --url <app> <args>` and waits for it (without blocking the runtime the
/// app is served on).
async fn leasehold(app: &TestApp, args: &[&str]) -> Output {
    run_cli(&format!("http://{}", app.addr), args, app.token.as_deref()).await
}

async fn leasehold_at(url: &str, args: &[&str]) -> Output {
    run_cli(url, args, None).await
}

async fn run_cli(url: &str, args: &[&str], token: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_leasehold"));
    command
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("LEASEHOLD_URL")
        .env_remove("LEASEHOLD_TOKEN");
    if let Some(token) = token {
        command.env("LEASEHOLD_TOKEN", token);
    }
    command.output().await.expect("run the leasehold binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts exit 0 and returns stdout.
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts that each line starts its columns where the header's titles start.
fn assert_aligned(table: &str, columns: &[&str]) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let starts: Vec<usize> = columns
        .iter()
        .map(|c| header.find(c).unwrap_or_else(|| panic!("{c} in {header}")))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "columns in order: {header}"
    );
    for line in lines {
        let chars: Vec<char> = line.chars().collect();
        for &start in &starts[1..] {
            assert!(
                chars.get(start - 1) == Some(&' ') && chars.get(start) != Some(&' '),
                "a column starts at {start} in {line:?} (header {header:?})"
            );
        }
    }
}

/// Data rows (below the header) that mention `needle`.
fn rows_with<'a>(table: &'a str, needle: &str) -> Vec<&'a str> {
    table
        .lines()
        .skip(1)
        .filter(|l| l.contains(needle))
        .collect()
}

#[tokio::test]
async fn leases_list_prints_an_aligned_table_of_the_active_leases() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let (a, b, c) = (Res::route(), Res::route(), Res::new("apps"));
    let first = app.grant(&a, "orders-svc/instance-3", Some(60)).await;
    let second = app.grant(&b, "billing-svc/1", Some(60)).await;
    let released = app.grant(&c, "orders-svc/instance-3", None).await;
    assert_eq!(app.release(&id_of(&released)).await.status(), 204);

    let table = succeeded(&leasehold(&app, &["leases", "list"]).await);
    let columns = [
        "ID",
        "TYPE",
        "GUID",
        "HOLDER",
        "TOKEN",
        "STATE",
        "EXPIRES_AT",
        "ENDED_AT",
    ];
    assert!(table.starts_with("ID  "), "{table}");
    assert_aligned(&table, &columns);
    assert_eq!(
        table.lines().count(),
        3,
        "header and two active leases:\n{table}"
    );
    let row = rows_with(&table, &id_of(&first));
    assert_eq!(row.len(), 1, "{table}");
    for cell in ["routes", &a.guid, "orders-svc/instance-3", "active"] {
        assert!(row[0].contains(cell), "{cell} in {}", row[0]);
    }
    assert!(
        row[0].contains(first["expires_at"].as_str().expect("expires_at")),
        "timestamps as sent: {}",
        row[0]
    );
    assert_eq!(rows_with(&table, &id_of(&second)).len(), 1, "{table}");
    assert!(rows_with(&table, &id_of(&released)).is_empty(), "{table}");

    // Filters go to the server.
    let ended = succeeded(&leasehold(&app, &["leases", "list", "--state", "ended"]).await);
    assert_eq!(ended.lines().count(), 2, "{ended}");
    assert!(rows_with(&ended, &id_of(&released))[0].contains("released"));
    let by_holder = succeeded(
        &leasehold(
            &app,
            &[
                "leases",
                "list",
                "--holder",
                "billing-svc/1",
                "--type",
                "routes",
            ],
        )
        .await,
    );
    assert_eq!(by_holder.lines().count(), 2, "{by_holder}");
    assert_eq!(rows_with(&by_holder, &id_of(&second)).len(), 1);
}

#[tokio::test]
async fn leases_list_with_json_parses_into_the_servers_lease_list() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", Some(45)).await;

    let out = succeeded(&leasehold(&app, &["leases", "list", "--json", "--guid", &res.guid]).await);
    let page: LeaseListOut = serde_json::from_str(&out).expect("the server's LeaseListOut");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id.to_string(), id_of(&lease));
    assert_eq!(page.items[0].fencing_token, token_of(&lease));
    assert_eq!(page.items[0].state, LeaseState::Active);
    assert_eq!(page.items[0].ttl_seconds, 45);
    assert!(page.next_cursor.is_none());
    let raw: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(raw["items"][0], lease, "the server's JSON, as sent");
    assert!(out.contains("\n  "), "pretty-printed: {out}");
}

#[tokio::test]
async fn leases_list_with_all_follows_next_cursor_through_every_page() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id_of(
            &app.grant(&Res::route(), &format!("pager/{i}"), Some(60))
                .await,
        ));
    }

    let one_page = leasehold(&app, &["leases", "list", "--limit", "2"]).await;
    let table = succeeded(&one_page);
    assert_eq!(table.lines().count(), 3, "one page of two: {table}");
    assert!(stderr(&one_page).contains("--all"), "{}", stderr(&one_page));

    let table = succeeded(&leasehold(&app, &["leases", "list", "--limit", "2", "--all"]).await);
    assert_eq!(table.lines().count(), 6, "every lease: {table}");
    for id in &ids {
        assert_eq!(rows_with(&table, id).len(), 1, "{id} once in {table}");
    }

    let out =
        succeeded(&leasehold(&app, &["leases", "list", "--limit", "2", "--all", "--json"]).await);
    let all: LeaseListOut = serde_json::from_str(&out).expect("LeaseListOut");
    assert_eq!(all.items.len(), 5);
    assert!(all.next_cursor.is_none());
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let listed: Vec<String> = all.items.iter().map(|l| l.id.to_string()).collect();
    assert_eq!(listed, newest_first);
}

#[tokio::test]
async fn leases_show_prints_one_lease_with_its_fields() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "orders-svc/1", Some(20)).await;
    let id = id_of(&lease);

    let out = succeeded(&leasehold(&app, &["leases", "show", &id]).await);
    let field = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    assert_eq!(field("id"), id);
    assert_eq!(field("resource"), format!("routes/{}", res.guid));
    assert_eq!(field("holder"), "orders-svc/1");
    assert_eq!(field("fencing_token"), token_of(&lease).to_string());
    assert_eq!(field("state"), "active");
    assert_eq!(field("ttl_seconds"), "20");
    assert_eq!(
        field("expires_at"),
        lease["expires_at"].as_str().expect("ts")
    );
    assert_eq!(field("ended_at"), "-");
    let value_columns: Vec<usize> = out
        .lines()
        .map(|l| l.len() - l.split_at(l.find(' ').expect("a gap")).1.trim_start().len())
        .collect();
    assert!(
        value_columns.windows(2).all(|w| w[0] == w[1]),
        "values aligned: {out}"
    );

    let json = succeeded(&leasehold(&app, &["leases", "show", &id, "--json"]).await);
    let parsed: LeaseOut = serde_json::from_str(&json).expect("the server's LeaseOut");
    assert_eq!(parsed.id.to_string(), id);
}

#[tokio::test]
async fn leases_show_of_an_unknown_id_exits_1_with_the_problem_on_stderr() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let unknown = uuid::Uuid::new_v4().to_string();

    let out = leasehold(&app, &["leases", "show", &unknown]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: Not found (404): no lease has this id\n"
    );

    let out = leasehold(&app, &["leases", "show", "not-a-uuid"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Invalid request (400): "),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn leases_revoke_ends_the_lease_as_revoked() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "paused-svc/1", Some(60)).await;
    let id = id_of(&lease);

    let revoked = leasehold(&app, &["leases", "revoke", &id, "--json"]).await;
    let revoked: LeaseOut =
        serde_json::from_str(&succeeded(&revoked)).expect("revoke answers 200 + Lease");
    assert_eq!(revoked.state, LeaseState::Revoked);

    let shown = succeeded(&leasehold(&app, &["leases", "show", &id]).await);
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().eq(["state", "revoked"])),
        "{shown}"
    );

    // A second revoke: the lease has ended.
    let again = leasehold(&app, &["leases", "revoke", &id]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("(410)"), "{}", stderr(&again));
}

#[tokio::test]
async fn resource_show_prints_version_etag_fence_lease_labels_and_annotations() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "orders-svc/1", Some(60)).await;
    let token = token_of(&lease);
    let r = app
        .patch(
            &res,
            json!({"metadata": {
                "labels": {"usage.example.com/orders": "true"},
                "annotations": {"note": "two\nlines"}
            }}),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let (body, etag) = app.resource(&res).await;

    let out = succeeded(&leasehold(&app, &["resource", "show", "routes", &res.guid]).await);
    let has = |name: &str, value: &str| {
        out.lines()
            .any(|l| l.starts_with(name) && l[name.len()..].trim_start().starts_with(value))
    };
    assert!(has("resource", &format!("routes/{}", res.guid)), "{out}");
    assert!(has("version", &body["version"].to_string()), "{out}");
    assert!(has("etag", &etag), "{out}");
    assert!(has("fence", &token.to_string()), "{out}");
    assert!(has("lease", &id_of(&lease)), "{out}");
    assert!(out.contains("orders-svc/1"), "{out}");
    let metadata = &out[out.find("KIND").expect("a metadata table")..];
    assert_aligned(metadata, &["KIND", "KEY", "VALUE"]);
    assert_eq!(rows_with(metadata, "usage.example.com/orders").len(), 1);
    assert!(
        metadata.contains("annotation  note                      two\\nlines"),
        "one line per annotation, escaped: {metadata}"
    );

    let json =
        succeeded(&leasehold(&app, &["--json", "resource", "show", "routes", &res.guid]).await);
    let parsed: ResourceOut = serde_json::from_str(&json).expect("the server's ResourceOut");
    assert_eq!(parsed.fence, token);
    assert_eq!(
        parsed
            .metadata
            .labels
            .get("usage.example.com/orders")
            .map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn resource_history_lists_entries_newest_first_and_pages_with_all() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/1", None).await;
    let r = app
        .set_labels(
            &res,
            json!({"team": "orders"}),
            Some(token_of(&lease)),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.release(&id_of(&lease)).await.status(), 204);

    let args = ["resource", "history", "routes", res.guid.as_str()];
    let table = succeeded(&leasehold(&app, &args).await);
    assert_aligned(
        &table,
        &["SEQ", "AT", "EVENT", "ACTOR", "TOKEN", "VERSION", "DETAIL"],
    );
    let events: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).expect("an event"))
        .collect();
    assert_eq!(
        events,
        ["lease-released", "metadata-changed", "lease-granted"],
        "{table}"
    );
    let detail_at = table.find("DETAIL").expect("a DETAIL column");
    let changed = rows_with(&table, "metadata-changed")[0];
    let detail: serde_json::Value =
        serde_json::from_str(&changed[detail_at..]).expect("DETAIL is compact JSON");
    assert_eq!(
        detail["labels"]["team"],
        json!({"from": null, "to": "orders"})
    );

    let mut paged = args.to_vec();
    paged.extend(["--limit", "1", "--all", "--json"]);
    let all: HistoryListOut =
        serde_json::from_str(&succeeded(&leasehold(&app, &paged).await)).expect("HistoryListOut");
    assert_eq!(all.items.len(), 3);
    assert!(all.items.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(all.next_cursor.is_none());
}

#[tokio::test]
async fn probe_exits_0_when_the_path_answers_2xx_and_1_otherwise() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;

    let ready = leasehold(&app, &["probe"]).await;
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert_eq!(stdout(&ready), "");
    let healthy = leasehold(&app, &["probe", "--path", "/healthz"]).await;
    assert_eq!(healthy.status.code(), Some(0));

    let missing = leasehold(&app, &["probe", "--path", "/nowhere"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("answered 404"),
        "{}",
        stderr(&missing)
    );

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{closed}");
    let refused = leasehold_at(&url, &["probe"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).starts_with(&format!("error: cannot reach leasehold at {url}/readyz")),
        "names the URL that failed: {}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn the_url_comes_from_leasehold_url_when_no_flag_is_given() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["leases", "list"])
        .env("LEASEHOLD_URL", format!("http://{}", app.addr))
        .env("LEASEHOLD_TOKEN", app.token.clone().unwrap_or_default())
        .output()
        .await
        .expect("run the leasehold binary");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no leases match"), "{}", stderr(&out));
}
