//! Building and running the service from a configuration and an already-bound listener,
//! so tests can bind port 0 and run several instances in one process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::auth::tokens::TokenFile;
use crate::auth::uaa::UaaVerifier;
use crate::config::{AuthMode, CfAuth, Config, MetricsAuth, UpstreamMode};
use crate::coordinator::{Coordinator, Rules};
use crate::domain::metadata::MetadataLimits;
use crate::http::{self, AppState};
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::sqlite::{self, SqliteStore};
use crate::upstream::Upstream;
use crate::upstream::cloud_controller::{CloudController, CredentialsConfig, Settings};

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadDatabaseUrl(#[source] sqlx::Error),
    #[error(
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (or be unset for the \
         embedded SQLite database in LEASEHOLD_DATA_DIR)"
    )]
    UnsupportedDatabaseUrl,
    #[error(transparent)]
    Sqlite(#[from] sqlite::OpenError),
    #[error("cannot prepare the SQLite database {database}: {source}")]
    SqliteMigrate {
        database: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("LEASEHOLD_UPSTREAM=cloud-controller needs {0}")]
    UpstreamConfig(&'static str),
    #[error("cannot build the Cloud Controller client: {0}")]
    UpstreamClient(#[source] reqwest::Error),
    #[error(
        "refusing to serve without authentication on {0}: set LEASEHOLD_AUTH=uaa or tokens, listen on loopback, or pass --insecure-no-auth"
    )]
    NoAuthOnNetwork(std::net::SocketAddr),
    #[error("LEASEHOLD_RESOURCE_TYPES: {0}")]
    ResourceTypes(String),
    #[error("authentication is misconfigured: {0}")]
    Auth(String),
    #[error("the platform's environment is not usable: {0}")]
    Platform(String),
    #[error("could not serve HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// The store, and what its backend needs besides the [`Store`] trait: PostgreSQL migrates
/// (retrying) and forwards `LISTEN` events in the background; SQLite migrates before serving.
enum Backend {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Backend {
    /// `DATABASE_URL` selects PostgreSQL (`postgres://`, `postgresql://`) or a SQLite file
    /// (`sqlite:`); unset, the embedded SQLite database in the data directory. Opening SQLite
    /// takes its single-process lock, so a second process on the same file stops here.
    fn open(config: &Config) -> Result<Self, StartError> {
        let max = config.db_max_connections;
        match config.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                PgStore::connect_lazy(url, max)
                    .map(Self::Postgres)
                    .map_err(StartError::BadDatabaseUrl)
            }
            Some(url) if url.starts_with("sqlite:") => Ok(Self::Sqlite(SqliteStore::open(
                sqlite::options_from_url(url)?,
                max,
            )?)),
            Some(_) => Err(StartError::UnsupportedDatabaseUrl),
            None => Ok(Self::Sqlite(SqliteStore::open(
                sqlite::options_in_dir(&config.data_dir),
                max,
            )?)),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Sqlite(store) => Arc::new(store.clone()),
        }
    }

    /// Starts the backend's background work; SQLite's schema is brought up to date first.
    async fn start(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        match self {
            Self::Postgres(store) => {
                let (migrate, events) = (store.clone(), store.clone());
                Ok(vec![
                    tokio::spawn(async move { migrate.migrate_until_ready().await }),
                    tokio::spawn(async move { events.listen_for_events().await }),
                ])
            }
            Self::Sqlite(store) => {
                let database = store.database().display().to_string();
                tracing::info!(%database, "using the embedded SQLite database");
                store
                    .migrate()
                    .await
                    .map_err(|source| StartError::SqliteMigrate { database, source })?;
                Ok(Vec::new())
            }
        }
    }

    async fn close(&self) {
        match self {
            Self::Postgres(store) => store.close().await,
            Self::Sqlite(store) => store.close().await,
        }
    }
}

/// A built service, ready to serve on a listener.
pub struct App {
    auth: Arc<Authenticator>,
    router: axum::Router,
    backend: Backend,
    coordinator: Arc<Coordinator>,
}

impl App {
    /// Builds the service. It does not wait for PostgreSQL: migrations run in the background,
    /// retrying, and `/readyz` answers 503 until they are done. An embedded SQLite database is
    /// locked for this process here, and migrated when serving starts.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        let backend = Backend::open(config)?;
        let rules = Rules {
            require_preconditions: config.require_preconditions,
            limits: MetadataLimits {
                max_labels: config.max_labels,
                max_annotations: config.max_annotations,
            },
        };
        let upstream = upstream(config)?;
        let coordinator = Arc::new(Coordinator::new(backend.store(), upstream, rules));
        let auth = Arc::new(authenticator(config)?);
        let router = http::app(
            AppState {
                coordinator: coordinator.clone(),
                auth: auth.clone(),
                metrics_open: config.metrics_auth == MetricsAuth::Open,
                resource_types: resource_types(config)?,
            },
            Duration::from_secs(config.request_timeout_seconds),
        );
        Ok(Self {
            router,
            backend,
            coordinator,
            auth,
        })
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let mut background = match self.backend.start().await {
            Ok(tasks) => tasks,
            Err(error) => {
                self.backend.close().await;
                return Err(error);
            }
        };
        background.extend(self.coordinator.start_background());
        if matches!(*self.auth, Authenticator::Tokens(_)) {
            background.push(tokio::spawn(reload_tokens_on_sighup(self.auth.clone())));
        }
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        for task in background {
            task.abort();
        }
        self.coordinator.retire().await;
        self.backend.close().await;
        Ok(())
    }
}

/// How callers authenticate. No authentication is refused off loopback unless the operator
/// insists (and is warned at every start).
fn authenticator(config: &Config) -> Result<Authenticator, StartError> {
    match config.auth {
        AuthMode::None => {
            let listen = config.listen_addr();
            if !listen.ip().is_loopback() {
                if !config.insecure_no_auth {
                    return Err(StartError::NoAuthOnNetwork(listen));
                }
                tracing::warn!(%listen, "serving WITHOUT authentication on a network address (--insecure-no-auth): anyone who can reach it can release anyone's lease and write any resource");
            }
            Ok(Authenticator::None)
        }
        AuthMode::Uaa => {
            let uaa = config.uaa_url.as_deref().ok_or_else(|| {
                StartError::Auth("LEASEHOLD_AUTH=uaa needs LEASEHOLD_UAA_URL".into())
            })?;
            let http = reqwest::Client::builder()
                .connect_timeout(CF_CONNECT_TIMEOUT)
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| StartError::Auth(e.to_string()))?;
            Ok(Authenticator::Uaa(UaaVerifier::new(
                http,
                uaa,
                config.auth_issuer.clone(),
                config.auth_audience.clone(),
            )))
        }
        AuthMode::Tokens => {
            let path = config.auth_tokens_file.clone().ok_or_else(|| {
                StartError::Auth("LEASEHOLD_AUTH=tokens needs LEASEHOLD_AUTH_TOKENS_FILE".into())
            })?;
            Ok(Authenticator::Tokens(
                TokenFile::open(path).map_err(StartError::Auth)?,
            ))
        }
    }
}

/// The resource types this instance serves (`None`: all of them).
#[allow(clippy::type_complexity)]
fn resource_types(
    config: &Config,
) -> Result<
    Option<Arc<std::collections::BTreeSet<crate::domain::resource::ResourceType>>>,
    StartError,
> {
    if config.resource_types.is_empty() {
        return Ok(None);
    }
    let types = config
        .resource_types
        .iter()
        .map(|t| {
            t.trim()
                .parse()
                .map_err(|e: crate::domain::resource::UnknownResourceType| {
                    StartError::ResourceTypes(e.to_string())
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Arc::new(types)))
}

/// Reloads the static tokens file on every SIGHUP.
async fn reload_tokens_on_sighup(auth: Arc<Authenticator>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            if let Authenticator::Tokens(file) = &*auth {
                match file.reload() {
                    Ok(n) => tracing::info!(tokens = n, "reloaded the tokens file"),
                    Err(error) => {
                        tracing::error!(%error, "could not reload the tokens file; the previous tokens stay in force")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = auth;
}

/// The upstream of record, if it is not leasehold's own store.
fn upstream(config: &Config) -> Result<Option<Arc<dyn Upstream>>, StartError> {
    if config.upstream == UpstreamMode::Local {
        return Ok(None);
    }
    let api_url = config
        .cf_api_url
        .clone()
        .ok_or(StartError::UpstreamConfig("CF_API_URL"))?;
    let credentials = match config.cf_auth {
        CfAuth::Passthrough => CredentialsConfig::Passthrough,
        CfAuth::ServiceAccount => CredentialsConfig::ServiceAccount {
            client_id: config
                .cf_client_id
                .clone()
                .ok_or(StartError::UpstreamConfig(
                    "CF_CLIENT_ID (or LEASEHOLD_CF_AUTH=passthrough)",
                ))?,
            client_secret: config
                .cf_client_secret
                .clone()
                .ok_or(StartError::UpstreamConfig("CF_CLIENT_SECRET"))?,
        },
    };
    let client = CloudController::new(Settings {
        api_url,
        credentials,
        connect_timeout: CF_CONNECT_TIMEOUT,
        request_timeout: Duration::from_secs(config.cf_timeout_seconds),
        delete_wait: Duration::from_secs(config.cf_delete_wait_seconds),
    })
    .map_err(StartError::UpstreamClient)?;
    Ok(Some(Arc::new(client)))
}

/// How long connecting to Cloud Controller may take.
const CF_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
