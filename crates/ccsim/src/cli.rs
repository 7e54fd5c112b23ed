//! ccsim's command-line flags, each with an environment fallback.
//!
//! They live in the library (not in `main.rs`) so that other crates' tests can build the
//! same `clap` command — leasehold's `tests/deploy.rs` checks the flags that
//! `docker-compose.yml` passes to `ccsim` against it.

use crate::config::DEFAULT_CLIENTS;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Cloud Foundry Cloud Controller v3 API + UAA emulator with fault injection.
#[derive(Debug, Parser)]
#[command(name = "ccsim", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "CCSIM_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// JSON file with an array of {"type", "body"} to load at start.
    #[arg(long, env = "CCSIM_SEED")]
    pub seed: Option<PathBuf>,
    /// UAA clients, `id:secret:scope1,scope2`, several separated by `;` or spaces.
    #[arg(long, env = "CCSIM_CLIENTS", default_value = DEFAULT_CLIENTS)]
    pub clients: String,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "CCSIM_TOKEN_TTL_SECONDS", default_value_t = 3600)]
    pub token_ttl_seconds: u64,
    /// How long delete jobs stay PROCESSING, in milliseconds.
    #[arg(long, env = "CCSIM_JOB_DELAY_MS", default_value_t = 200)]
    pub job_delay_ms: u64,
    /// CC's max_labels_per_resource.
    #[arg(long, env = "CCSIM_MAX_LABELS", default_value_t = 50)]
    pub max_labels: usize,
    /// CC's max_annotations_per_resource.
    #[arg(long, env = "CCSIM_MAX_ANNOTATIONS", default_value_t = 200)]
    pub max_annotations: usize,
    /// Create unknown resources on first access (a testing aid; CC answers 404).
    #[arg(long, env = "CCSIM_AUTO_CREATE")]
    pub auto_create: bool,
    /// Base URL used in links and Location headers (e.g. http://ccsim:9090 behind Docker).
    #[arg(long, env = "CCSIM_PUBLIC_URL")]
    pub public_url: Option<String>,
}
