//! Merges the JSON of several runs: `results.json` (machine facts, every run, the
//! leasehold/floor ratios and the issue's targets, each met or not) and a Markdown table.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Directory holding one JSON file per run (as written by --json).
    #[arg(long)]
    dir: PathBuf,
    /// Where to write the merged JSON.
    #[arg(long)]
    json: PathBuf,
    /// Where to write the Markdown.
    #[arg(long)]
    md: PathBuf,
    /// A fact about the machine or the run, KEY=VALUE (repeatable, kept in order).
    #[arg(long = "fact")]
    facts: Vec<String>,
}

/// Reference figures quoted in the issue (measured earlier on this kind of machine, not
/// in this run): raw-SQL cycles/s by C, and the hot key.
const ISSUE_FLOOR: [(u64, f64); 3] = [(1, 1450.0), (16, 6900.0), (64, 6700.0)];
const ISSUE_ETCD_LOCK_64: f64 = 3500.0;
const ISSUE_HOT_RAW: f64 = 160.0;
const ISSUE_HOT_ETCD: f64 = 590.0;

const TARGET_HOT_HANDOVERS: f64 = 1000.0;
const TARGET_P99_ACQUIRE_MS: f64 = 10.0;
const TARGET_RSS_MIB: f64 = 64.0;

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) => format!("{x:.decimals$}"),
        None => "–".into(),
    }
}

fn errors_text(v: &Value) -> String {
    match v.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

/// The latency summary a run is judged by (`primary`), e.g. the whole cycle.
fn primary(run: &Value) -> &Value {
    let name = run["primary"].as_str().unwrap_or("");
    &run["latency_ms"][name]
}

/// One line per run, printed by the load generator itself.
pub fn one_line(run: &Value) -> String {
    let mut line = format!(
        "{:<12} C={:<4} instances={}",
        run["workload"].as_str().unwrap_or("?"),
        run["clients"],
        run["instances"]
    );
    if run["workload"] == "idle" {
        let e = &run["extra"];
        let _ = write!(
            line,
            ": RSS {} MiB (HWM {} KiB) with {} idle connections open and {} waiters pending ({} queued)",
            num(f(&e["rss_mib"]), 1),
            e["during"]["vmhwm_kib"],
            e["idle_open"],
            e["waiters_pending"],
            e["waiters_queued"],
        );
        return line;
    }
    let _ = write!(
        line,
        ": {} ops/s, {} attempts/s",
        num(f(&run["ops_per_s"]), 1),
        num(f(&run["attempts_per_s"]), 1)
    );
    if let Some(hists) = run["latency_ms"].as_object() {
        for (name, h) in hists {
            let _ = write!(
                line,
                "; {name} p50 {} p90 {} p99 {} max {} ms",
                num(f(&h["p50"]), 2),
                num(f(&h["p90"]), 2),
                num(f(&h["p99"]), 2),
                num(f(&h["max"]), 1)
            );
        }
    }
    let _ = write!(line, "; errors: {}", errors_text(&run["errors"]));
    if !run["cpu"].is_null() {
        let _ = write!(
            line,
            "; cores busy leasehold/PG/bench/irq/other {}",
            cpu_text(&run["cpu"])
        );
    }
    let e = &run["extra"];
    if let Some(fifo) = e.get("fifo") {
        let _ = write!(
            line,
            "; FIFO: tokens strictly increase {}, overtaken {} (slack {} ms) / {} (strict), max overtake lead {} ms, overlaps {}",
            fifo["tokens_strictly_increase"],
            fifo["overtaken"],
            fifo["slack_ms"],
            fifo["overtaken_strict"],
            num(f(&fifo["max_overtake_lead_ms"]), 2),
            fifo["overlaps"]
        );
    }
    if e.get("success_rate").is_some() {
        let _ = write!(
            line,
            "; success rate {:.3}, retry rate {:.3}, lost updates {}",
            f(&e["success_rate"]).unwrap_or(0.0),
            f(&e["retry_rate"]).unwrap_or(0.0),
            e["lost_updates"]
        );
    }
    line
}

/// Cores busy during the window: leasehold / PostgreSQL / load generator / interrupts /
/// anything else.
fn cpu_text(cpu: &Value) -> String {
    if cpu.is_null() {
        return "–".into();
    }
    let mut text = format!(
        "{} / {} / {} / {} / {}",
        num(f(&cpu["leasehold_cores"]), 2),
        num(f(&cpu["postgres_cores"]), 2),
        num(f(&cpu["bench_cores"]), 2),
        num(f(&cpu["irq_cores"]), 2),
        num(f(&cpu["other_cores"]), 2)
    );
    if f(&cpu["other_cores"]).is_some_and(|o| o >= 0.1)
        && let Some(top) = cpu["other_top_commands_cores"].as_object()
        && !top.is_empty()
    {
        let names: Vec<String> = top
            .iter()
            .map(|(k, v)| format!("{k} {}", num(f(v), 2)))
            .collect();
        let _ = write!(text, " ({})", names.join(", "));
    }
    text
}

/// The FIFO verdict as the client can give it.
fn fifo_text(fifo: &Value) -> String {
    if fifo["tokens_strictly_increase"] != true {
        return format!(
            "tokens NOT strictly increasing ({} duplicates, {} overlaps)",
            fifo["duplicate_tokens"], fifo["overlaps"]
        );
    }
    match fifo["fifo_ok"].as_bool() {
        Some(true) => format!(
            "FIFO held (tokens strictly increase; no grant overtaken by an acquire sent > {} ms later)",
            fifo["slack_ms"]
        ),
        Some(false) => format!(
            "FIFO not shown: {} of {} grants overtaken by an acquire sent up to {} ms later",
            fifo["overtaken"],
            fifo["judged_grants"],
            num(f(&fifo["max_overtake_lead_ms"]), 1)
        ),
        None => "FIFO unknown".into(),
    }
}

fn find<'a>(runs: &'a [Value], workload: &str, instances: u64, clients: u64) -> Option<&'a Value> {
    runs.iter().find(|r| {
        r["workload"] == workload
            && r["instances"].as_u64() == Some(instances)
            && r["clients"].as_u64() == Some(clients)
    })
}

fn ops(run: Option<&Value>) -> Option<f64> {
    run.and_then(|r| f(&r["ops_per_s"]))
}

fn target(name: &str, goal: &str, measured: String, met: Option<bool>, gap: String) -> Value {
    json!({"target": name, "goal": goal, "measured": measured, "met": met, "gap": gap})
}

fn met_text(met: &Value) -> &'static str {
    match met.as_bool() {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

pub fn run(args: &ReportArgs) -> Result<(), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .map_err(|e| format!("{}: {e}", args.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut runs = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let run: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        runs.push(run);
    }
    let mut machine = serde_json::Map::new();
    for fact in &args.facts {
        let (k, v) = fact.split_once('=').unwrap_or((fact, ""));
        machine.insert(k.to_string(), json!(v));
    }

    // leasehold / floor per C, with one and with two instances.
    let mut comparison = Vec::new();
    for (c, issue_floor) in ISSUE_FLOOR {
        let floor = ops(find(&runs, "floor", 0, c));
        let one = ops(find(&runs, "cycle", 1, c));
        let two = ops(find(&runs, "cycle", 2, c));
        let ratio = |x: Option<f64>| match (x, floor) {
            (Some(x), Some(fl)) if fl > 0.0 => Some(x / fl),
            _ => None,
        };
        comparison.push(json!({
            "clients": c,
            "floor_ops_per_s": floor,
            "leasehold_1_instance_ops_per_s": one,
            "leasehold_2_instances_ops_per_s": two,
            "ratio_1_instance": ratio(one),
            "ratio_2_instances": ratio(two),
            "issue_floor_ops_per_s": issue_floor,
        }));
    }

    // The issue's targets.
    let mut targets = Vec::new();
    {
        let r = comparison[2]["ratio_1_instance"].as_f64();
        targets.push(target(
            "workload 1 at C=64 vs the raw-SQL floor (1 instance)",
            "≥ 1.0× the floor",
            format!("{}×", num(r, 3)),
            r.map(|r| r >= 1.0),
            r.map_or("–".into(), |r| {
                format!("{:+.1}% of the floor", (r - 1.0) * 100.0)
            }),
        ));
        let r2 = comparison[2]["ratio_2_instances"].as_f64();
        if r2.is_some() {
            targets.push(target(
                "workload 1 at C=64 vs the raw-SQL floor (2 instances, for information)",
                "≥ 1.0× the floor",
                format!("{}×", num(r2, 3)),
                r2.map(|r| r >= 1.0),
                r2.map_or("–".into(), |r| {
                    format!("{:+.1}% of the floor", (r - 1.0) * 100.0)
                }),
            ));
        }
    }
    for instances in [1u64, 2] {
        let Some(hot) = find(&runs, "hot", instances, 64) else {
            continue;
        };
        let rate = f(&hot["ops_per_s"]);
        let fifo_ok = hot["extra"]["fifo"]["fifo_ok"].as_bool();
        let met = rate.map(|r| r >= TARGET_HOT_HANDOVERS && fifo_ok == Some(true));
        targets.push(target(
            &format!("workload 2: hand-overs/s at C=64, strict FIFO ({instances} instance(s))"),
            "≥ 1,000/s, FIFO",
            format!(
                "{}/s; {}; max wait {} ms",
                num(rate, 1),
                fifo_text(&hot["extra"]["fifo"]),
                num(f(&hot["latency_ms"]["wait"]["max"]), 1)
            ),
            met,
            rate.map_or("–".into(), |r| {
                if r >= TARGET_HOT_HANDOVERS {
                    format!("{:+.0}/s", r - TARGET_HOT_HANDOVERS)
                } else {
                    format!(
                        "{:+.0}/s ({:.1}× short)",
                        r - TARGET_HOT_HANDOVERS,
                        TARGET_HOT_HANDOVERS / r.max(0.001)
                    )
                }
            }),
        ));
    }
    {
        let p99 = find(&runs, "cycle", 1, 16).and_then(|r| f(&r["latency_ms"]["acquire"]["p99"]));
        targets.push(target(
            "p99 acquire at C=16, workload 1 (1 instance)",
            "≤ 10 ms",
            format!("{} ms", num(p99, 2)),
            p99.map(|p| p <= TARGET_P99_ACQUIRE_MS),
            p99.map_or("–".into(), |p| {
                format!("{:+.2} ms", p - TARGET_P99_ACQUIRE_MS)
            }),
        ));
    }
    // The worst of the memory runs (a fresh process, and one after the load).
    let idle = runs
        .iter()
        .filter(|r| r["workload"] == "idle")
        .max_by(|a, b| {
            let rss = |r: &Value| f(&r["extra"]["rss_mib"]).unwrap_or(f64::INFINITY);
            rss(a).total_cmp(&rss(b))
        });
    if let Some(idle) = idle {
        let e = &idle["extra"];
        let rss = f(&e["rss_mib"]);
        let complete = e["idle_open"] == e["connections"] && e["waiters_pending"] == e["waiters"];
        targets.push(target(
            "RSS with 1,000 idle keep-alive connections and 1,000 waiters (the worst run)",
            "≤ 64 MiB",
            format!(
                "{} MiB, {} ({} idle open, {} waiters pending, {} queued)",
                num(rss, 1),
                idle["label"].as_str().unwrap_or(""),
                e["idle_open"],
                e["waiters_pending"],
                e["waiters_queued"]
            ),
            rss.map(|r| r <= TARGET_RSS_MIB && complete),
            rss.map_or("–".into(), |r| format!("{:+.1} MiB", r - TARGET_RSS_MIB)),
        ));
    }

    let merged = json!({
        "machine": machine,
        "runs": runs,
        "comparison": comparison,
        "issue_reference": {
            "floor_ops_per_s": ISSUE_FLOOR.iter().map(|(c, v)| json!({"clients": c, "ops_per_s": v})).collect::<Vec<_>>(),
            "etcd_lock_64_ops_per_s": ISSUE_ETCD_LOCK_64,
            "hot_raw_sql_handovers_per_s": ISSUE_HOT_RAW,
            "hot_etcd_handovers_per_s": ISSUE_HOT_ETCD,
        },
        "targets": targets,
    });
    let text = serde_json::to_string_pretty(&merged).map_err(|e| e.to_string())?;
    write(&args.json, &(text + "\n"))?;
    write(&args.md, &markdown(&merged))?;
    print!("{}", markdown(&merged));
    Ok(())
}

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn markdown(merged: &Value) -> String {
    let mut md = String::new();
    let runs = merged["runs"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(md, "## Machine and settings\n");
    if let Some(machine) = merged["machine"].as_object() {
        for (k, v) in machine {
            let _ = writeln!(md, "- {k}: {}", v.as_str().unwrap_or(""));
        }
    }

    let _ = writeln!(
        md,
        "\n## Workload 1: lease cycle (acquire + release) vs the raw-SQL floor, same run, same PostgreSQL\n"
    );
    let _ = writeln!(
        md,
        "| C | floor cycles/s | floor p99 ms | floor PG CPU ms/cycle | leasehold 1 instance cycles/s | p50 / p99 cycle ms | p99 acquire ms | CPU ms/cycle PG / leasehold | **ratio** | leasehold 2 instances cycles/s | ratio | issue's floor (earlier run) |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in merged["comparison"].as_array().into_iter().flatten() {
        let c = row["clients"].as_u64().unwrap_or(0);
        let floor = find(&runs, "floor", 0, c);
        let one = find(&runs, "cycle", 1, c);
        let lat = |r: Option<&Value>, h: &str, q: &str| r.and_then(|r| f(&r["latency_ms"][h][q]));
        let cpu_ms = |r: Option<&Value>, who: &str| {
            r.and_then(|r| f(&r["cpu"][format!("{who}_cpu_ms_per_op")]))
        };
        let ratio = |k: &str| row[k].as_f64().map_or("–".into(), |r| format!("{r:.2}×"));
        let _ = writeln!(
            md,
            "| {c} | {} | {} | {} | {} | {} / {} | {} | {} / {} | **{}** | {} | {} | {} |",
            num(f(&row["floor_ops_per_s"]), 0),
            num(lat(floor, "cycle", "p99"), 2),
            num(cpu_ms(floor, "postgres"), 2),
            num(f(&row["leasehold_1_instance_ops_per_s"]), 0),
            num(lat(one, "cycle", "p50"), 2),
            num(lat(one, "cycle", "p99"), 2),
            num(lat(one, "acquire", "p99"), 2),
            num(cpu_ms(one, "postgres"), 2),
            num(cpu_ms(one, "leasehold"), 2),
            ratio("ratio_1_instance"),
            num(f(&row["leasehold_2_instances_ops_per_s"]), 0),
            ratio("ratio_2_instances"),
            num(f(&row["issue_floor_ops_per_s"]), 0),
        );
    }
    let _ = writeln!(
        md,
        "\nThe issue's other references (earlier runs, not this one): etcd 3.4 lock API ≈ {ISSUE_ETCD_LOCK_64}/s at C=64; hot key ≈ {ISSUE_HOT_RAW} hand-overs/s with raw SQL retrying, ≈ {ISSUE_HOT_ETCD} with etcd's lock."
    );

    let _ = writeln!(md, "\n## Every run\n");
    let _ = writeln!(
        md,
        "Latency of the whole operation (`primary`: a cycle; for `hot` the wait for the grant; for rmw a successful read-modify-write including retries), in ms.\n"
    );
    let _ = writeln!(
        md,
        "| workload | instances | C | ops/s | attempts/s | latency of | p50 | p90 | p99 | max | errors | cores busy: leasehold / PG / bench / irq / other |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|"
    );
    for run in runs.iter().filter(|r| r["workload"] != "idle") {
        let p = primary(run);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run["workload"].as_str().unwrap_or(""),
            if run["instances"] == 0 {
                "PG".to_string()
            } else {
                run["instances"].to_string()
            },
            run["clients"],
            num(f(&run["ops_per_s"]), 1),
            num(f(&run["attempts_per_s"]), 1),
            run["primary"].as_str().unwrap_or(""),
            num(f(&p["p50"]), 2),
            num(f(&p["p90"]), 2),
            num(f(&p["p99"]), 2),
            num(f(&p["max"]), 1),
            errors_text(&run["errors"]),
            cpu_text(&run["cpu"]),
        );
    }
    let _ = writeln!(
        md,
        "\n*cores busy*: average CPU cores used during the measured seconds (from /proc; out of the cores listed above); *irq* is interrupt time (loopback TCP is mostly softirq); *other* is everything else on the machine, with its busiest commands — when it is not near 0, something else was running and the run is disturbed."
    );

    let hot: Vec<&Value> = runs.iter().filter(|r| r["workload"] == "hot").collect();
    if !hot.is_empty() {
        let _ = writeln!(md, "\n## Workload 2: hot key, FIFO check\n");
        let _ = writeln!(
            md,
            "| instances | C | hand-overs/s | wait p50 / p99 / max ms | grants | tokens strictly increase | duplicate tokens | overlaps | overtaken (> slack) | overtaken (strict) | max overtake lead ms | same-client token distance min / mean / max |"
        );
        let _ = writeln!(
            md,
            "|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---|"
        );
        for run in hot {
            let fifo = &run["extra"]["fifo"];
            let w = &run["latency_ms"]["wait"];
            let d = &fifo["token_distance_same_client"];
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} / {} / {} | {} | {} | {} | {} | {} ({} ms) | {} | {} | {} / {} / {} |",
                run["instances"],
                run["clients"],
                num(f(&run["ops_per_s"]), 1),
                num(f(&w["p50"]), 1),
                num(f(&w["p99"]), 1),
                num(f(&w["max"]), 1),
                fifo["grants"],
                fifo["tokens_strictly_increase"],
                fifo["duplicate_tokens"],
                fifo["overlaps"],
                fifo["overtaken"],
                fifo["slack_ms"],
                fifo["overtaken_strict"],
                num(f(&fifo["max_overtake_lead_ms"]), 2),
                d["min"],
                num(f(&d["mean"]), 1),
                d["max"],
            );
        }
        let _ = writeln!(
            md,
            "\n*overtaken*: grants whose acquire was sent more than the slack before another acquire that got a smaller token (the client-side view of FIFO; with slack 0 it also counts requests that reached the server's queue in another order than they were sent); *max overtake lead*: the longest such head start that was overtaken, i.e. how far from send-order FIFO the grants were. *overlaps*: a lease's release was sent after the next token's grant arrived (must be 0)."
        );
    }

    let rmw: Vec<&Value> = runs
        .iter()
        .filter(|r| r["workload"].as_str().is_some_and(|w| w.starts_with("rmw")))
        .collect();
    if !rmw.is_empty() {
        let _ = writeln!(
            md,
            "\n## Workload 4: optimistic read-modify-write with If-Match\n"
        );
        let _ = writeln!(
            md,
            "| workload | instances | C | successful writes/s | PATCH attempts/s | success rate | retry rate (412) | lost updates |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for run in rmw {
            let e = &run["extra"];
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                run["workload"].as_str().unwrap_or(""),
                run["instances"],
                run["clients"],
                num(f(&run["ops_per_s"]), 1),
                num(f(&run["attempts_per_s"]), 1),
                num(f(&e["success_rate"]), 3),
                num(f(&e["retry_rate"]), 3),
                e["lost_updates"],
            );
        }
    }

    let idle: Vec<&Value> = runs.iter().filter(|r| r["workload"] == "idle").collect();
    if !idle.is_empty() {
        let _ = writeln!(
            md,
            "\n## Memory: idle keep-alive connections and waiters (1 instance)\n"
        );
        let _ = writeln!(
            md,
            "| when | idle connections (still open) | waiters (pending / queued) | RSS before | **RSS during** | HWM | threads |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        let kib = |v: &Value| {
            v.as_u64()
                .map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        };
        for run in idle {
            let e = &run["extra"];
            let _ = writeln!(
                md,
                "| {} | {} ({}) | {} ({} / {}) | {} | **{}** | {} | {} |",
                run["label"].as_str().unwrap_or(""),
                e["connections"],
                e["idle_open"],
                e["waiters"],
                e["waiters_pending"],
                e["waiters_queued"],
                kib(&e["before"]["vmrss_kib"]),
                kib(&e["during"]["vmrss_kib"]),
                kib(&e["during"]["vmhwm_kib"]),
                e["during"]["threads"],
            );
        }
    }

    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| target | goal | measured | | gap |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for t in merged["targets"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            t["target"].as_str().unwrap_or(""),
            t["goal"].as_str().unwrap_or(""),
            t["measured"].as_str().unwrap_or(""),
            met_text(&t["met"]),
            t["gap"].as_str().unwrap_or(""),
        );
    }
    md
}
