//! Building and running the service from a configuration and an already-bound listener,
//! so tests can bind port 0 and run several instances in one process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{CfAuth, Config, UpstreamMode};
use crate::coordinator::{Coordinator, Rules};
use crate::domain::metadata::MetadataLimits;
use crate::http::{self, AppState};
use crate::store::postgres::PgStore;
use crate::upstream::Upstream;
use crate::upstream::cloud_controller::{CloudController, CredentialsConfig, Settings};

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL is required: leasehold keeps leases, versions and history in PostgreSQL")]
    NoDatabase,
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadDatabaseUrl(#[source] sqlx::Error),
    #[error("LEASEHOLD_UPSTREAM=cloud-controller needs {0}")]
    UpstreamConfig(&'static str),
    #[error("cannot build the Cloud Controller client: {0}")]
    UpstreamClient(#[source] reqwest::Error),
    #[error("the platform's environment is not usable: {0}")]
    Platform(String),
    #[error("could not serve HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// A built service, ready to serve on a listener.
pub struct App {
    router: axum::Router,
    store: PgStore,
    coordinator: Arc<Coordinator>,
}

impl App {
    /// Builds the service. It does not wait for the database: migrations run in the
    /// background, retrying, and `/readyz` answers 503 until they are done.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        let url = config
            .database_url
            .as_deref()
            .ok_or(StartError::NoDatabase)?;
        let store = PgStore::connect_lazy(url, config.db_max_connections)
            .map_err(StartError::BadDatabaseUrl)?;
        let rules = Rules {
            require_preconditions: config.require_preconditions,
            limits: MetadataLimits {
                max_labels: config.max_labels,
                max_annotations: config.max_annotations,
            },
        };
        let upstream = upstream(config)?;
        let coordinator = Arc::new(Coordinator::new(Arc::new(store.clone()), upstream, rules));
        let router = http::app(
            AppState {
                coordinator: coordinator.clone(),
            },
            Duration::from_secs(config.request_timeout_seconds),
        );
        Ok(Self {
            router,
            store,
            coordinator,
        })
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let mut background = {
            let store = self.store.clone();
            let events = self.store.clone();
            vec![
                tokio::spawn(async move { store.migrate_until_ready().await }),
                tokio::spawn(async move { events.listen_for_events().await }),
            ]
        };
        background.extend(self.coordinator.start_background());
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        for task in background {
            task.abort();
        }
        self.coordinator.retire().await;
        self.store.close().await;
        Ok(())
    }
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
