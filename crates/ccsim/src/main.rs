//! The `ccsim` command: a thin command-line shim over [`ccsim::spawn`].
//!
//! This file owns the flags (each with an environment fallback), logging setup
//! (`RUST_LOG`, default `info`), and graceful shutdown on SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use ccsim::config::{DEFAULT_CLIENTS, parse_clients};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Cloud Foundry Cloud Controller v3 API + UAA emulator with fault injection.
#[derive(Debug, Parser)]
#[command(name = "ccsim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "CCSIM_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// JSON file with an array of {"type", "body"} to load at start.
    #[arg(long, env = "CCSIM_SEED")]
    seed: Option<PathBuf>,
    /// UAA clients, `id:secret:scope1,scope2`, several separated by `;` or spaces.
    #[arg(long, env = "CCSIM_CLIENTS", default_value = DEFAULT_CLIENTS)]
    clients: String,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "CCSIM_TOKEN_TTL_SECONDS", default_value_t = 3600)]
    token_ttl_seconds: u64,
    /// How long delete jobs stay PROCESSING, in milliseconds.
    #[arg(long, env = "CCSIM_JOB_DELAY_MS", default_value_t = 200)]
    job_delay_ms: u64,
    /// CC's max_labels_per_resource.
    #[arg(long, env = "CCSIM_MAX_LABELS", default_value_t = 50)]
    max_labels: usize,
    /// CC's max_annotations_per_resource.
    #[arg(long, env = "CCSIM_MAX_ANNOTATIONS", default_value_t = 200)]
    max_annotations: usize,
    /// Create unknown resources on first access (a testing aid; CC answers 404).
    #[arg(long, env = "CCSIM_AUTO_CREATE")]
    auto_create: bool,
    /// Base URL used in links and Location headers (e.g. http://ccsim:9090 behind Docker).
    #[arg(long, env = "CCSIM_PUBLIC_URL")]
    public_url: Option<String>,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops ccsim");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let clients = match parse_clients(&args.clients) {
        Ok(clients) => clients,
        Err(error) => {
            eprintln!("ccsim: {error}");
            return ExitCode::from(2);
        }
    };
    let config = ccsim::Config {
        listen: args.listen,
        public_url: args.public_url,
        clients,
        token_ttl: Duration::from_secs(args.token_ttl_seconds),
        job_delay: Duration::from_millis(args.job_delay_ms),
        max_labels: args.max_labels,
        max_annotations: args.max_annotations,
        seed_file: args.seed,
        auto_create: args.auto_create,
    };
    let sim = match ccsim::spawn(config).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("ccsim: {error}");
            return ExitCode::FAILURE;
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    ExitCode::SUCCESS
}
