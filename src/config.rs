//! Configuration: flags, each with a same-named environment variable (API.md §5).

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// leasehold: fenced leases and versioned metadata for Cloud Foundry resources.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Print the OpenAPI document.
    Openapi,
}

/// Where a resource's metadata of record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamMode {
    /// leasehold stores the metadata itself.
    Local,
    /// A Cloud Foundry Cloud Controller (v3 API).
    CloudController,
}

/// Whose credentials leasehold presents to Cloud Controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CfAuth {
    /// leasehold's own UAA client (CF_CLIENT_ID / CF_CLIENT_SECRET, client_credentials).
    ServiceAccount,
    /// The caller's own `Authorization: bearer …`, so CC's roles decide.
    Passthrough,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "LEASEHOLD_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// PostgreSQL URL, e.g. postgres://user:pass@host/db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Where metadata of record lives.
    #[arg(
        long,
        env = "LEASEHOLD_UPSTREAM",
        value_enum,
        default_value = "local",
        global = true
    )]
    pub upstream: UpstreamMode,

    /// Cloud Controller API URL (cloud-controller upstream).
    #[arg(long, env = "CF_API_URL", global = true)]
    pub cf_api_url: Option<String>,

    /// UAA client id (cloud-controller upstream).
    #[arg(long, env = "CF_CLIENT_ID", global = true)]
    pub cf_client_id: Option<String>,

    /// UAA client secret (cloud-controller upstream).
    #[arg(long, env = "CF_CLIENT_SECRET", hide_env_values = true, global = true)]
    pub cf_client_secret: Option<String>,

    /// How leasehold authenticates to Cloud Controller.
    #[arg(
        long,
        env = "LEASEHOLD_CF_AUTH",
        value_enum,
        default_value = "service-account",
        global = true
    )]
    pub cf_auth: CfAuth,

    /// Longest a Cloud Controller request may take.
    #[arg(
        long,
        env = "LEASEHOLD_CF_TIMEOUT_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub cf_timeout_seconds: u64,

    /// How long a DELETE follows Cloud Controller's job before answering 202.
    #[arg(
        long,
        env = "LEASEHOLD_CF_DELETE_WAIT_SECONDS",
        default_value_t = 20,
        global = true
    )]
    pub cf_delete_wait_seconds: u64,

    /// Refuse writes that carry neither If-Match nor Fencing-Token (428).
    #[arg(long, env = "LEASEHOLD_REQUIRE_PRECONDITIONS", global = true)]
    pub require_preconditions: bool,

    /// Labels per resource (Cloud Controller's max_labels_per_resource).
    #[arg(
        long,
        env = "LEASEHOLD_MAX_LABELS",
        default_value_t = 50,
        global = true
    )]
    pub max_labels: usize,

    /// Annotations per resource (Cloud Controller's max_annotations_per_resource).
    #[arg(
        long,
        env = "LEASEHOLD_MAX_ANNOTATIONS",
        default_value_t = 200,
        global = true
    )]
    pub max_annotations: usize,

    /// Database connections per instance.
    #[arg(
        long,
        env = "LEASEHOLD_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// Longest a request may take before it is answered 503.
    #[arg(
        long,
        env = "LEASEHOLD_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout_seconds: u64,

    /// Log format.
    #[arg(
        long,
        env = "LEASEHOLD_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}
