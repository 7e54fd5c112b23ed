//! The listener, the connections, and the in-process handle [`Sim`].
//!
//! This module owns the router (which URL goes to which handler), ccsim's own accept loop
//! (hyper's HTTP/1 connection driver over tokio, instead of `axum::serve`) so that ccsim can
//! misbehave at the connection level: close a connection without answering
//! (`drop_after_patch`, via the per-connection [`ConnKill`] handle in each request's
//! extensions), and close the listening socket for a while (`refuse_connections_ms`; open
//! connections are closed too, idle ones at once, busy ones after their response), then listen
//! again on the same address. It also owns [`spawn`], graceful shutdown, and [`Sim`]'s admin
//! helpers, which call the admin API in-process.

use crate::admin;
use crate::config::Config;
use crate::error::Error;
use crate::reqlog;
use crate::state::{AppState, Control};
use crate::uaa;
use crate::v3;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, header};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// Closes the connection a request arrived on, without a response (in request extensions).
#[derive(Clone, Debug)]
pub struct ConnKill(pub Arc<Notify>);

/// Every route ccsim serves; anything else is CC's 404 `Unknown request`.
pub fn router(app: Arc<AppState>) -> Router {
    let unknown = v3::unknown_request;
    Router::new()
        .route("/", get(v3::root))
        .route("/v3", get(v3::v3_root))
        .route("/v3/jobs/{guid}", get(v3::get_job).fallback(unknown))
        .route("/v3/{type}", get(v3::list).fallback(unknown))
        .route(
            "/v3/{type}/{guid}",
            get(v3::get_resource)
                .patch(v3::patch_resource)
                .delete(v3::delete_resource)
                .fallback(unknown),
        )
        .route("/uaa/oauth/token", post(uaa::token).fallback(unknown))
        .route("/uaa/token_keys", get(uaa::token_keys).fallback(unknown))
        .route("/admin/uaa/rotate-key", post(admin::rotate_key))
        .route("/admin/uaa/sign", post(admin::sign))
        .route("/admin/resources", post(admin::post_resource))
        .route(
            "/admin/resources/{type}/{guid}",
            get(admin::get_resource)
                .put(admin::put_resource)
                .delete(admin::delete_resource),
        )
        .route(
            "/admin/requests",
            get(admin::get_requests).delete(admin::delete_requests),
        )
        .route(
            "/admin/faults",
            get(admin::get_faults)
                .put(admin::put_faults)
                .delete(admin::delete_faults),
        )
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            reqlog::observe,
        ))
        .with_state(app)
}

/// A listening socket with `SO_REUSEADDR`, so the same port can be bound again after a
/// `refuse_connections_ms` pause.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Starts ccsim: binds `config.listen`, loads `config.seed_file`, and serves in a tokio task.
pub async fn spawn(config: Config) -> Result<Sim, Error> {
    let listener = bind(config.listen).map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let base_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{addr}"),
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let app = Arc::new(AppState::new(config.clone(), base_url.clone(), control_tx));
    if let Some(path) = &config.seed_file {
        let count = admin::seed_file(&app, path)?;
        tracing::info!(count, path = %path.display(), "seeded resources");
    }
    let router = router(app.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        addr,
        router.clone(),
        control_rx,
        shutdown_rx,
    ));
    tracing::info!(%addr, %base_url, "ccsim listening");
    Ok(Sim {
        addr,
        base_url,
        router,
        shutdown: shutdown_tx,
        task: Some(task),
    })
}

enum Step {
    Shutdown,
    Refuse(Duration),
    Accepted(TcpStream),
    Idle,
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (close_tx, _) = watch::channel(0u64);
    let mut connections = JoinSet::new();
    let mut listener = Some(listener);
    while let Some(current) = listener.as_ref() {
        while connections.try_join_next().is_some() {}
        let step = tokio::select! {
            _ = shutdown.changed() => Step::Shutdown,
            control = control.recv() => match control {
                Some(Control::Refuse(duration)) => Step::Refuse(duration),
                None => Step::Idle,
            },
            accepted = current.accept() => match accepted {
                Ok((stream, _)) => Step::Accepted(stream),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Step::Idle
                }
            },
        };
        match step {
            Step::Shutdown => break,
            Step::Idle => {}
            Step::Accepted(stream) => {
                connections.spawn(serve_connection(
                    stream,
                    router.clone(),
                    close_tx.subscribe(),
                ));
            }
            Step::Refuse(duration) => {
                listener = None;
                close_tx.send_modify(|epoch| *epoch += 1);
                tracing::info!(?duration, "refuse_connections: listener closed");
                tokio::select! {
                    _ = tokio::time::sleep(duration) => {}
                    _ = shutdown.changed() => break,
                }
                listener = rebind(addr, &mut shutdown).await;
                tracing::info!("refuse_connections: listening again");
            }
        }
    }
    drop(listener);
    close_tx.send_modify(|epoch| *epoch += 1);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Binds `addr` again, retrying while something else holds it; None on shutdown.
async fn rebind(addr: SocketAddr, shutdown: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    loop {
        match bind(addr) {
            Ok(listener) => return Some(listener),
            Err(error) => tracing::warn!(%error, %addr, "cannot listen again yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router, mut close: watch::Receiver<u64>) {
    let kill = Arc::new(Notify::new());
    let request_kill = ConnKill(kill.clone());
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(request_kill.clone());
        router.clone().oneshot(request.map(Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            _ = kill.notified() => break,
            _ = close.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A running ccsim, for in-process tests. Dropping it stops the server (in the background);
/// [`Sim::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct Sim {
    /// The bound address.
    pub addr: SocketAddr,
    /// The base URL in links (`http://<addr>` unless `public_url` is set), no trailing `/`.
    pub base_url: String,
    router: Router,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Sim {
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let http = |e: &dyn std::fmt::Display| Error::Admin {
            status: 0,
            body: Value::String(e.to_string()),
        };
        let body = match body {
            Some(value) => Body::from(value.to_string()),
            None => Body::empty(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| http(&e))?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| http(&e))?;
        let status = response.status();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| http(&e))?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_client_error() || status.is_server_error() {
            return Err(Error::Admin {
                status: status.as_u16(),
                body: value,
            });
        }
        Ok(value)
    }

    /// `POST /admin/resources`: creates a resource of `ty` from `body` (CC's defaults filled
    /// in; `guid` optional) and returns the stored body.
    pub async fn seed(&self, ty: &str, body: Value) -> Result<Value, Error> {
        let request = serde_json::json!({"type": ty, "body": body});
        self.admin(Method::POST, "/admin/resources", Some(&request))
            .await
    }

    /// `PUT /admin/resources/{ty}/{guid}`: an out-of-band change merged over the stored body
    /// (`null` deletes a label or annotation), bumping `updated_at`; returns the new body.
    pub async fn replace(&self, ty: &str, guid: &str, body: Value) -> Result<Value, Error> {
        self.admin(
            Method::PUT,
            &format!("/admin/resources/{ty}/{guid}"),
            Some(&body),
        )
        .await
    }

    /// `GET /admin/resources/{ty}/{guid}`: the stored body, or None.
    pub async fn resource(&self, ty: &str, guid: &str) -> Result<Option<Value>, Error> {
        match self
            .admin(Method::GET, &format!("/admin/resources/{ty}/{guid}"), None)
            .await
        {
            Ok(value) => Ok(Some(value)),
            Err(Error::Admin { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `DELETE /admin/resources/{ty}/{guid}`.
    pub async fn remove(&self, ty: &str, guid: &str) -> Result<(), Error> {
        self.admin(
            Method::DELETE,
            &format!("/admin/resources/{ty}/{guid}"),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /admin/requests`: the request log, oldest first.
    pub async fn requests(&self) -> Result<Vec<Value>, Error> {
        match self.admin(Method::GET, "/admin/requests", None).await? {
            Value::Array(entries) => Ok(entries),
            other => Err(Error::Admin {
                status: 200,
                body: other,
            }),
        }
    }

    /// `DELETE /admin/requests`.
    pub async fn clear_requests(&self) -> Result<(), Error> {
        self.admin(Method::DELETE, "/admin/requests", None)
            .await
            .map(drop)
    }

    /// A token for `client` from this UAA (client credentials).
    pub async fn token(&self, client: &str, secret: &str) -> Result<String, Error> {
        let credentials = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{client}:{secret}"),
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri("/uaa/oauth/token")
            .header(header::AUTHORIZATION, format!("Basic {credentials}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=client_credentials"))
            .map_err(|e| Error::Admin {
                status: 0,
                body: Value::String(e.to_string()),
            })?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| Error::Admin {
                status: 0,
                body: Value::String(e.to_string()),
            })?;
        let status = response.status().as_u16();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(Error::Admin { status, body })
    }

    /// `POST /admin/uaa/rotate-key`.
    pub async fn rotate_key(&self) -> Result<Value, Error> {
        self.admin(Method::POST, "/admin/uaa/rotate-key", None)
            .await
    }

    /// `POST /admin/uaa/sign`: `claims` signed RS256 with the active key.
    pub async fn sign(&self, claims: Value) -> Result<String, Error> {
        let body = self
            .admin(
                Method::POST,
                "/admin/uaa/sign",
                Some(&serde_json::json!({"claims": claims})),
            )
            .await?;
        body.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(Error::Admin { status: 200, body })
    }

    /// `PUT /admin/faults`: replaces the fault configuration; returns it as stored.
    pub async fn set_faults(&self, faults: Value) -> Result<Value, Error> {
        self.admin(Method::PUT, "/admin/faults", Some(&faults))
            .await
    }

    /// `DELETE /admin/faults`.
    pub async fn reset_faults(&self) -> Result<(), Error> {
        self.admin(Method::DELETE, "/admin/faults", None)
            .await
            .map(drop)
    }

    /// Stops listening, lets open connections finish (up to 5 s), and waits for the server.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
