//! Building and running the service from a configuration and an already-bound listener,
//! so tests can bind port 0 and run several instances in one process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, UpstreamMode};
use crate::coordinator::{Coordinator, Rules};
use crate::domain::metadata::MetadataLimits;
use crate::http::{self, AppState};
use crate::store::postgres::PgStore;

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL is required: leasehold keeps leases, versions and history in PostgreSQL")]
    NoDatabase,
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadDatabaseUrl(#[source] sqlx::Error),
    #[error(
        "LEASEHOLD_UPSTREAM=cloud-controller is not available in this version; use local (the default)"
    )]
    UpstreamUnavailable,
    #[error("could not serve HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// A built service, ready to serve on a listener.
pub struct App {
    router: axum::Router,
    store: PgStore,
}

impl App {
    /// Builds the service. It does not wait for the database: migrations run in the
    /// background, retrying, and `/readyz` answers 503 until they are done.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        if config.upstream == UpstreamMode::CloudController {
            return Err(StartError::UpstreamUnavailable);
        }
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
        let coordinator = Arc::new(Coordinator::new(Arc::new(store.clone()), rules));
        let router = http::app(
            AppState { coordinator },
            Duration::from_secs(config.request_timeout_seconds),
        );
        Ok(Self { router, store })
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let migrate = {
            let store = self.store.clone();
            tokio::spawn(async move { store.migrate_until_ready().await })
        };
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        migrate.abort();
        self.store.close().await;
        Ok(())
    }
}

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
