//! Where the CPU went during the measurement window (Linux `/proc`): the whole host, the
//! leasehold processes (`--pid`), every `postgres` process, this load generator, and the
//! interrupts (loopback TCP is mostly softirq), and the rest ("other": anything else
//! running on the machine, e.g. a compiler — a sign that the figures of that run are
//! disturbed). In ticks of 1/100 s (USER_HZ on Linux).

use std::collections::BTreeMap;

use serde_json::{Value, json};

const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Default)]
pub struct Sample {
    host_busy: u64,
    host_irq: u64,
    watched: u64,
    postgres: BTreeMap<u32, u64>,
    own: u64,
    /// Every other process: pid -> (command name, ticks).
    others: BTreeMap<u32, (String, u64)>,
}

/// utime + stime of a process, in ticks.
fn process_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name may hold spaces: fields start after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, of which irq + softirq) ticks of the whole host. Interrupt time (loopback TCP
/// is mostly softirq) is not in any process's figures.
fn host_busy() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    (total.saturating_sub(at(3) + at(4)), at(5) + at(6))
}

/// Every process: pid -> (command name, ticks).
fn processes() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if let Some(t) = process_ticks(&format!("/proc/{pid}/stat")) {
            out.insert(pid, (comm.trim_end().to_string(), t));
        }
    }
    out
}

pub fn sample(pids: &[u32]) -> Sample {
    let own_pid = std::process::id();
    let mut postgres = BTreeMap::new();
    let mut others = BTreeMap::new();
    let mut watched = 0;
    for (pid, (comm, ticks)) in processes() {
        if pids.contains(&pid) {
            watched += ticks;
        } else if comm == "postgres" {
            postgres.insert(pid, ticks);
        } else if pid != own_pid {
            others.insert(pid, (comm, ticks));
        }
    }
    let (host_busy, host_irq) = host_busy();
    Sample {
        host_busy,
        host_irq,
        watched,
        postgres,
        own: process_ticks("/proc/self/stat").unwrap_or(0),
        others,
    }
}

/// Cores busy on average between two samples `seconds` apart, and CPU ms per operation.
pub fn between(a: &Sample, b: &Sample, seconds: f64, ops: u64) -> Value {
    let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds;
    let per_op =
        |ticks: u64| (ops > 0).then(|| ticks as f64 / TICKS_PER_SECOND * 1000.0 / ops as f64);
    // Backends that ended in between are lost; new ones count from zero.
    let postgres: u64 = b
        .postgres
        .iter()
        .map(|(pid, t)| t.saturating_sub(a.postgres.get(pid).copied().unwrap_or(0)))
        .sum();
    let host = b.host_busy.saturating_sub(a.host_busy);
    let leasehold = b.watched.saturating_sub(a.watched);
    let own = b.own.saturating_sub(a.own);
    let irq = b.host_irq.saturating_sub(a.host_irq);
    let other = host.saturating_sub(leasehold + postgres + own + irq);
    // The busiest other commands (processes that ended in between are not seen).
    let mut by_command: BTreeMap<&str, u64> = BTreeMap::new();
    for (pid, (comm, t)) in &b.others {
        let before = a.others.get(pid).map_or(0, |(_, t)| *t);
        *by_command.entry(comm).or_insert(0) += t.saturating_sub(before);
    }
    let mut top: Vec<(&str, u64)> = by_command.into_iter().filter(|(_, t)| *t > 0).collect();
    top.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let top: serde_json::Map<String, Value> = top
        .into_iter()
        .take(4)
        .map(|(comm, t)| (comm.to_string(), json!(cores(t))))
        .collect();
    json!({
        "host_busy_cores": cores(host),
        "leasehold_cores": cores(leasehold),
        "postgres_cores": cores(postgres),
        "bench_cores": cores(own),
        "irq_cores": cores(irq),
        "other_cores": cores(other),
        "other_top_commands_cores": top,
        "leasehold_cpu_ms_per_op": per_op(leasehold),
        "postgres_cpu_ms_per_op": per_op(postgres),
    })
}
