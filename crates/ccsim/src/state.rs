//! The state shared by every handler.
//!
//! This module owns [`AppState`] (configuration, base URL, store, tokens, faults, request log,
//! and the channel to the accept loop) and the locking discipline: every lock is a
//! `std::sync::Mutex` held only for synchronous work, never across an `.await`, and the store
//! is only reachable through [`AppState::store`], which settles due jobs first.

use crate::config::Config;
use crate::faults::Faults;
use crate::metadata::Limits;
use crate::reqlog::RequestLog;
use crate::store::Store;
use crate::token::TokenStore;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Requests from handlers to the accept loop.
#[derive(Debug)]
pub enum Control {
    /// Close the listening socket (and idle connections) for this long, then listen again.
    Refuse(Duration),
}

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The configuration ccsim started with.
    pub config: Config,
    /// Base URL for links and `Location` headers, without a trailing `/`.
    pub base_url: String,
    store: Mutex<Store>,
    /// Issued tokens.
    pub tokens: Mutex<TokenStore>,
    /// Fault configuration.
    pub faults: Mutex<Faults>,
    /// Request log.
    pub log: Mutex<RequestLog>,
    /// Channel to the accept loop.
    pub control: mpsc::UnboundedSender<Control>,
}

impl AppState {
    /// New state.
    pub fn new(config: Config, base_url: String, control: mpsc::UnboundedSender<Control>) -> Self {
        let tokens = TokenStore::new(config.token_ttl, format!("{base_url}/uaa/oauth/token"));
        Self {
            config,
            base_url,
            store: Mutex::new(Store::default()),
            tokens: Mutex::new(tokens),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog::default()),
            control,
        }
    }

    /// The store, with every due job settled.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        let mut store = lock(&self.store);
        store.settle(Instant::now());
        store
    }

    /// CC's per-resource metadata count limits.
    pub fn limits(&self) -> Limits {
        Limits {
            labels: self.config.max_labels,
            annotations: self.config.max_annotations,
        }
    }
}

/// Locks a mutex; a poisoned one (a panic while held) is used as it is.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
