//! `leasehold-bench`: drives a running leasehold over HTTP/1.1 keep-alive with a fixed
//! number of concurrent clients for a fixed time (after a warm-up), or measures the
//! raw-SQL floor against PostgreSQL, and prints per workload: operations/s, attempts/s,
//! latency percentiles (HDR histogram) and errors by status. `report` merges the JSON of
//! several runs into one JSON document and a Markdown table. `scripts/bench` runs it all.

mod cpu;
mod http;
mod idle;
mod report;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "leasehold-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Merge the JSON of several runs into results.json and a Markdown table.
    Report(report::ReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Acquire + release, each client on its own resource.
    Cycle,
    /// Every client on ONE resource, acquiring with wait_seconds 60, releasing at once.
    Hot,
    /// Acquire, PATCH metadata with the fencing token, release; distinct resources.
    Fenced,
    /// GET + PATCH with If-Match (again on 412), each client on its own resource.
    RmwDistinct,
    /// GET + PATCH with If-Match (again on 412), every client on ONE resource.
    RmwHot,
    /// The raw-SQL floor of `cycle`: INSERT … ON CONFLICT … DO UPDATE … WHERE expired
    /// RETURNING, then UPDATE; distinct keys.
    Floor,
    /// The raw-SQL floor on ONE key, every client retrying at once.
    FloorHot,
    /// Idle keep-alive connections and waiters; leasehold's RSS.
    Idle,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// leasehold base URL; repeat for several instances (clients go round-robin).
    #[arg(
        long = "url",
        env = "LEASEHOLD_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    urls: Vec<String>,
    #[arg(long, value_enum, default_value = "cycle")]
    workload: Workload,
    /// Concurrent clients, each with its own keep-alive connection (or DB connection).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// PostgreSQL URL of a scratch database for the floor (its table is created there).
    #[arg(long, env = "BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Free-form label stored with the result (e.g. "1 instance").
    #[arg(long)]
    label: Option<String>,
    /// Hot key: acquires sent this many ms apart still count as simultaneous for FIFO
    /// (the client cannot see when the server queued them: an enqueue is itself a
    /// transaction that waits for the resource's lock).
    #[arg(long, default_value_t = 20.0)]
    fifo_slack_ms: f64,
    /// leasehold's process ids (repeatable): their CPU time is reported, and idle reads the
    /// first one's /proc/<pid>/status for its RSS.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// idle: keep-alive connections that make one request, then sit idle.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// idle: acquires waiting on held resources.
    #[arg(long, default_value_t = 1000)]
    waiters: usize,
    /// idle: resources the waiters are spread over (each held by a holder meanwhile).
    #[arg(long, default_value_t = 100)]
    idle_resources: usize,
    /// idle: longest wait for every waiter to be queued, in seconds.
    #[arg(long, default_value_t = 20.0)]
    settle: f64,
    /// idle: leasehold's database, to count the queued waiters (optional).
    #[arg(long, hide_env_values = true)]
    leasehold_database_url: Option<String>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

async fn run(args: RunArgs) -> Result<Value, String> {
    for url in &args.urls {
        if !url.starts_with("http://127.0.0.1") && !url.starts_with("http://localhost") {
            return Err(format!("only loopback URLs are benchmarked, got {url}"));
        }
    }
    if let Some(db) = &args.database_url
        && !db.contains("@127.0.0.1")
        && !db.contains("@localhost")
    {
        return Err("only a loopback PostgreSQL is benchmarked (--database-url)".into());
    }
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let ctx = workloads::Ctx {
        urls: args.urls.clone(),
        clients: args.clients,
        warmup: secs(args.warmup),
        duration: secs(args.duration),
        run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        fifo_slack: secs(args.fifo_slack_ms / 1000.0),
        pids: args.pids.clone(),
    };
    let database_url = || {
        args.database_url
            .clone()
            .ok_or_else(|| "this workload needs --database-url".to_string())
    };
    let body = match args.workload {
        Workload::Cycle => workloads::lease_cycle(&ctx, false).await,
        Workload::Fenced => workloads::lease_cycle(&ctx, true).await,
        Workload::Hot => workloads::hot(&ctx).await,
        Workload::RmwDistinct => workloads::rmw(&ctx, false).await,
        Workload::RmwHot => workloads::rmw(&ctx, true).await,
        Workload::Floor => workloads::floor(&ctx, &database_url()?, false).await?,
        Workload::FloorHot => workloads::floor(&ctx, &database_url()?, true).await?,
        Workload::Idle => {
            idle::run(idle::IdleArgs {
                url: ctx.url(0),
                pid: args.pids.first().copied(),
                connections: args.connections,
                waiters: args.waiters,
                resources: args.idle_resources,
                settle: secs(args.settle),
                leasehold_database_url: args.leasehold_database_url.clone(),
                run_id: ctx.run_id.clone(),
            })
            .await?
        }
    };
    let workload = args
        .workload
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let floor = matches!(args.workload, Workload::Floor | Workload::FloorHot);
    let mut out = json!({
        "workload": workload,
        "label": args.label,
        "instances": if floor { 0 } else { args.urls.len() },
        "clients": if args.workload == Workload::Idle { args.connections } else { args.clients },
        "warmup_s": args.warmup,
        "duration_s": args.duration,
    });
    if let (Value::Object(out), Value::Object(body)) = (&mut out, body) {
        out.extend(body);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(args)) => report::run(&args),
        None => {
            let json_path = cli.run.json.clone();
            match run(cli.run).await {
                Ok(result) => {
                    println!("{}", report::one_line(&result));
                    match json_path {
                        Some(path) => write_json(&path, &result),
                        None => Ok(()),
                    }
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_json(path: &std::path::Path, value: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}
