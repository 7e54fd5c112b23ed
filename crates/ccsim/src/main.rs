//! The `ccsim` command: a thin command-line shim over [`ccsim::spawn`].
//!
//! This file owns logging setup (`RUST_LOG`, default `info`) and graceful shutdown on
//! SIGTERM or SIGINT; the flags (each with an environment fallback) are [`ccsim::cli::Args`].
#![forbid(unsafe_code)]

use ccsim::cli::Args;
use ccsim::config::parse_clients;
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

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
