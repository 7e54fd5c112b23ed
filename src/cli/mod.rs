//! The operator CLI: `leasehold leases list|show|revoke`, `leasehold resource show|history`
//! and `leasehold probe`, talking to a running leasehold over HTTP.
//!
//! It reads the server's answers into the server's own wire types
//! ([`crate::http::wire`]), so the CLI and the API cannot drift apart. Tables by default;
//! `--json` prints the server's JSON as sent (pretty). Problems from the server print as
//! `error: <title> (<status>): <detail>` on stderr and exit 1.

mod client;
mod leases;
mod probe;
mod resources;
mod table;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

pub use client::CliError;

/// Where the server is and how to print its answers (every client subcommand).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Client options (leases, resource, probe)")]
pub struct ClientOptions {
    /// URL of a running leasehold.
    #[arg(
        long,
        env = "LEASEHOLD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    /// Bearer token when the server authenticates (a UAA token, or a static token).
    #[arg(long, env = "LEASEHOLD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// Print the server's JSON (pretty) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `leasehold leases …`
#[derive(Debug, Subcommand)]
pub enum LeasesCommand {
    /// List leases, newest first (GET /v1/leases).
    List(LeaseListArgs),
    /// One lease, active or ended (GET /v1/leases/{id}).
    Show {
        /// The lease id.
        id: String,
    },
    /// End a lease at once as `revoked` (POST /v1/leases/{id}/revoke).
    Revoke {
        /// The lease id.
        id: String,
    },
}

/// Filters and paging of `leases list`.
#[derive(Debug, Args)]
pub struct LeaseListArgs {
    /// Only leases on resources of this type, e.g. `routes`.
    #[arg(long = "type", value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Only leases on this resource GUID.
    #[arg(long)]
    pub guid: Option<String>,
    /// Only leases of this holder.
    #[arg(long)]
    pub holder: Option<String>,
    /// Which leases (the server's default: active).
    #[arg(long, value_enum)]
    pub state: Option<LeaseStateFilter>,
    /// Page size, 1..=1000 (the server's default: 100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Follow `next_cursor` through every page.
    #[arg(long)]
    pub all: bool,
}

/// The `state` filter of the lease listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaseStateFilter {
    Active,
    Ended,
    All,
}

impl LeaseStateFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
            Self::All => "all",
        }
    }
}

/// `leasehold resource …`
#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Version (ETag), fence, lease, labels and annotations (GET /v1/resources/{type}/{guid}).
    Show {
        /// CF v3 resource collection, e.g. `routes`.
        #[arg(value_name = "TYPE")]
        resource_type: String,
        /// The resource's GUID.
        guid: String,
    },
    /// History, newest first (GET /v1/resources/{type}/{guid}/history).
    History {
        /// CF v3 resource collection, e.g. `routes`.
        #[arg(value_name = "TYPE")]
        resource_type: String,
        /// The resource's GUID.
        guid: String,
        /// Page size, 1..=1000 (the server's default: 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Follow `next_cursor` through every page.
        #[arg(long)]
        all: bool,
    },
}

/// `leasehold probe`
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The path to GET.
    #[arg(long, default_value = "/readyz")]
    pub path: String,
}

/// A client subcommand, as dispatched by `main`.
#[derive(Debug)]
pub enum Operation {
    Leases(LeasesCommand),
    Resource(ResourceCommand),
    Probe(ProbeArgs),
}

/// Runs one client subcommand: its output on stdout, an error on stderr with exit code 1.
pub async fn run(options: &ClientOptions, operation: Operation) -> ExitCode {
    let outcome = async {
        let api = client::Api::new(&options.url, options.token.as_deref())?;
        match operation {
            Operation::Leases(command) => leases::run(&api, options.json, command).await,
            Operation::Resource(command) => resources::run(&api, options.json, command).await,
            Operation::Probe(args) => probe::run(&api, &args).await,
        }
    }
    .await;
    match outcome {
        Ok(output) => print(&output),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What a subcommand prints: stdout, and a note for stderr (e.g. "more pages").
#[derive(Debug, Default)]
struct Output {
    stdout: String,
    note: Option<String>,
}

impl Output {
    fn text(stdout: String) -> Self {
        Self { stdout, note: None }
    }
}

/// Writes the output; a closed pipe (`| head`) is not an error.
fn print(output: &Output) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(output.stdout.as_bytes())
        .and_then(|()| stdout.flush());
    if let Some(note) = &output.note {
        eprintln!("{note}");
    }
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the output: {error}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The server's JSON as sent, pretty, with a final newline.
fn pretty(body: &serde_json::Value) -> Result<Output, CliError> {
    let mut text = serde_json::to_string_pretty(body)
        .map_err(|e| CliError::Unexpected(format!("cannot print JSON: {e}")))?;
    text.push('\n');
    Ok(Output::text(text))
}
