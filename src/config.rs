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
    #[command(flatten)]
    pub client: crate::cli::ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Print the OpenAPI document.
    Openapi,
    /// Leases of a running leasehold (--url): list, show, revoke.
    #[command(subcommand)]
    Leases(crate::cli::LeasesCommand),
    /// A resource of a running leasehold (--url): show, history.
    #[command(subcommand)]
    Resource(crate::cli::ResourceCommand),
    /// Exit 0 when a path of a running leasehold (--url) answers 2xx, else 1 (health checks).
    Probe(crate::cli::ProbeArgs),
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

/// How callers authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Nobody: allowed only on loopback unless --insecure-no-auth.
    None,
    /// UAA-issued JWTs (RS256), verified against UAA's token keys.
    Uaa,
    /// Static bearer tokens from LEASEHOLD_AUTH_TOKENS_FILE.
    Tokens,
}

/// Whether /metrics is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsAuth {
    Open,
    Token,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on [default: 0.0.0.0:$PORT when PORT is set (Cloud Foundry), else
    /// 127.0.0.1:8080].
    #[arg(long, env = "LEASEHOLD_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,

    /// The database: postgres://user:pass@host/db (or postgresql://) for PostgreSQL, which
    /// several instances may share; sqlite:PATH for an embedded SQLite file. Unset: the
    /// embedded SQLite database leasehold.db in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Where the embedded SQLite database (leasehold.db, with its WAL and lock files) lives
    /// when DATABASE_URL is unset; created if missing.
    #[arg(long, env = "LEASEHOLD_DATA_DIR", default_value = ".", global = true)]
    pub data_dir: std::path::PathBuf,

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

    /// How callers authenticate: none (loopback only), uaa (UAA JWTs) or tokens (a file).
    #[arg(
        long,
        env = "LEASEHOLD_AUTH",
        value_enum,
        default_value = "none",
        global = true
    )]
    pub auth: AuthMode,

    /// Allow `--auth none` on a non-loopback address (warned about at every start).
    #[arg(long, env = "LEASEHOLD_INSECURE_NO_AUTH", global = true)]
    pub insecure_no_auth: bool,

    /// UAA's URL for `--auth uaa` (its /token_keys verify tokens); default: CC's root
    /// document's `links.uaa` when CF_API_URL is set.
    #[arg(long, env = "LEASEHOLD_UAA_URL", global = true)]
    pub uaa_url: Option<String>,

    /// Expected `iss` of UAA tokens [default: <uaa>/oauth/token].
    #[arg(long, env = "LEASEHOLD_AUTH_ISSUER", global = true)]
    pub auth_issuer: Option<String>,

    /// Expected `aud` of UAA tokens.
    #[arg(
        long,
        env = "LEASEHOLD_AUTH_AUDIENCE",
        default_value = "leasehold",
        global = true
    )]
    pub auth_audience: String,

    /// The static tokens file for `--auth tokens` (reloaded on SIGHUP).
    #[arg(long, env = "LEASEHOLD_AUTH_TOKENS_FILE", global = true)]
    pub auth_tokens_file: Option<std::path::PathBuf>,

    /// Serve only these resource types (comma-separated, e.g. routes,apps); default: all.
    /// Others answer 403: with a service account, leasehold's CC credentials are every
    /// caller's, so this bounds what callers can reach through it.
    #[arg(
        long,
        env = "LEASEHOLD_RESOURCE_TYPES",
        value_delimiter = ',',
        global = true
    )]
    pub resource_types: Vec<String>,

    /// Whether /metrics needs a token (with leasehold.read) when authentication is on.
    #[arg(
        long,
        env = "LEASEHOLD_METRICS_AUTH",
        value_enum,
        default_value = "open",
        global = true
    )]
    pub metrics_auth: MetricsAuth,

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

/// On Cloud Foundry the embedded default would put one SQLite file on each instance's
/// ephemeral disk: as many lease authorities as instances (split brain), all lost on restage.
const NO_DATABASE_ON_CLOUD_FOUNDRY: &str = "on Cloud Foundry leasehold needs PostgreSQL: bind a \
     PostgreSQL service or set DATABASE_URL (the embedded SQLite database would live on each \
     instance's ephemeral disk, one per instance; DATABASE_URL=sqlite:… insists on it)";

/// Where leasehold listens when neither `--listen` nor `PORT` says.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

impl Config {
    /// Fills what the flags left open from the platform's environment (`env` looks a
    /// variable up): on Cloud Foundry, `PORT` gives the listen address and a bound
    /// PostgreSQL service in `VCAP_SERVICES` the database. Explicit settings win.
    pub fn with_platform(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if self.listen.is_none() {
            self.listen = Some(match env("PORT") {
                Some(port) => crate::platform::listen_from_port(&port)?,
                None => DEFAULT_LISTEN,
            });
        }
        if self.database_url.is_none()
            && let Some(vcap) = env("VCAP_SERVICES")
        {
            self.database_url = crate::platform::database_url_from_vcap_services(&vcap)
                .map_err(|e| format!("VCAP_SERVICES: {e}"))?;
        }
        if self.database_url.is_none() && env("VCAP_APPLICATION").is_some() {
            return Err(NO_DATABASE_ON_CLOUD_FOUNDRY.to_owned());
        }
        Ok(self)
    }

    /// The address to listen on (after [`Config::with_platform`]).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or(DEFAULT_LISTEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration from `args` alone (the test process's own DATABASE_URL or
    /// LEASEHOLD_LISTEN, e.g. from scripts/test, must not leak in).
    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["leasehold"];
        all.extend_from_slice(args);
        let mut config = Cli::try_parse_from(all).expect("valid flags").config;
        if !args.contains(&"--database-url") {
            config.database_url = None;
        }
        if !args.contains(&"--listen") {
            config.listen = None;
        }
        config
    }

    const VCAP: &str = r#"{"user-provided": [{"name": "db", "label": "user-provided", "tags": [],
        "credentials": {"uri": "postgres://u:p@db.example.com:5432/leasehold"}}]}"#;

    #[test]
    fn cloud_foundry_port_and_bound_database_fill_what_the_flags_leave_open() {
        let env = |k: &str| match k {
            "PORT" => Some("61000".to_owned()),
            "VCAP_SERVICES" => Some(VCAP.to_owned()),
            _ => None,
        };
        let config = parse(&[]).with_platform(env).unwrap();
        assert_eq!(config.listen_addr().to_string(), "0.0.0.0:61000");
        assert_eq!(
            config.database_url.as_deref(),
            Some("postgres://u:p@db.example.com:5432/leasehold")
        );
    }

    #[test]
    fn explicit_settings_win_over_the_platform() {
        let env = |k: &str| match k {
            "PORT" => Some("61000".to_owned()),
            "VCAP_SERVICES" => Some(VCAP.to_owned()),
            _ => None,
        };
        let config = parse(&[
            "--listen",
            "127.0.0.1:9000",
            "--database-url",
            "postgres://x/y",
        ])
        .with_platform(env)
        .unwrap();
        assert_eq!(config.listen_addr().to_string(), "127.0.0.1:9000");
        assert_eq!(config.database_url.as_deref(), Some("postgres://x/y"));
    }

    #[test]
    fn on_cloud_foundry_without_a_database_the_embedded_store_is_refused() {
        let env = |k: &str| (k == "VCAP_APPLICATION").then(|| "{}".to_owned());
        let error = parse(&[]).with_platform(env).unwrap_err();
        assert!(error.contains("PostgreSQL"), "{error}");
        let config = parse(&["--database-url", "sqlite:/home/vcap/leasehold.db"])
            .with_platform(env)
            .unwrap();
        assert_eq!(
            config.database_url.as_deref(),
            Some("sqlite:/home/vcap/leasehold.db")
        );
    }

    #[test]
    fn without_a_platform_the_defaults_hold_and_bad_platform_values_are_refused() {
        let config = parse(&[]).with_platform(|_| None).unwrap();
        assert_eq!(config.listen_addr(), DEFAULT_LISTEN);
        assert!(
            parse(&[])
                .with_platform(|k| (k == "PORT").then(|| "nope".into()))
                .is_err()
        );
        assert!(
            parse(&[])
                .with_platform(|k| (k == "VCAP_SERVICES").then(|| "{".into()))
                .is_err()
        );
    }
}
