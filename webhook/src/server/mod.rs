//! The HTTPS admission server: the admission routes (`/mutate`, health, metrics) on the
//! [`transport`] (rustls, connection limit, timeouts, graceful drain).
//!
//! Every decision comes from [`crate::review::review`]; every number goes through
//! [`crate::metrics::Metrics`].

pub mod tls;
pub mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::review::{review_in, Outcome};
use buildbot_policy::{PodSecurityLevel, Policy};
use tls::{CertReloader, TlsError};

/// The API server's own limit on a request body.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub policy: Policy,
    /// How often the certificate files are checked for a rotation.
    pub cert_reload_interval: Duration,
    /// Connections beyond this are closed at once (the API server retries).
    pub max_connections: usize,
    /// Time allowed for the TLS handshake and for each request's headers and body.
    pub read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl ServerConfig {
    /// Sensible defaults around the three things that must be given.
    pub fn new(listen: SocketAddr, tls_cert: PathBuf, tls_key: PathBuf) -> Self {
        Self {
            listen,
            tls_cert,
            tls_key,
            policy: Policy::default(),
            cert_reload_interval: Duration::from_secs(5),
            max_connections: 1024,
            read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct AppState {
    policy: Policy,
    metrics: Arc<Metrics>,
    read_timeout: Duration,
    ready: AtomicBool,
}

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    certs: Arc<CertReloader>,
    state: Arc<AppState>,
    config: ServerConfig,
}

impl Server {
    /// Loads the certificate and binds the port; fails early with a clear error.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(CertReloader::load(
            &config.tls_cert,
            &config.tls_key,
            provider.clone(),
        )?);
        let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(certs.clone(), provider)));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let state = Arc::new(AppState {
            policy: config.policy.clone(),
            metrics: Arc::new(Metrics::default()),
            read_timeout: config.read_timeout,
            ready: AtomicBool::new(true),
        });
        Ok(Self {
            listener,
            acceptor,
            certs,
            state,
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The metrics this server records.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests
    /// (bounded by the drain timeout) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            acceptor,
            certs,
            state,
            config,
        } = self;
        let reloader = tokio::spawn(watch_certificate(
            certs,
            state.metrics.clone(),
            config.cert_reload_interval,
        ));
        let limits = transport::Limits {
            max_connections: config.max_connections,
            read_timeout: config.read_timeout,
            drain_timeout: config.drain_timeout,
        };
        let draining = state.clone();
        let shutdown = async move {
            shutdown.await;
            draining.ready.store(false, Ordering::SeqCst);
        };
        transport::serve(
            listener,
            acceptor,
            router(state.clone()),
            limits,
            state.metrics.clone(),
            shutdown,
        )
        .await;
        reloader.abort();
    }
}

/// Polls the certificate files every `every` (5 s by default) instead of watching them with
/// inotify (the `notify` crate), on purpose: the kubelet updates a Secret volume by writing a
/// new `..2026_11_26_...` directory and swapping the `..data` symlink to it, so `tls.crt`
/// itself is never written, and a watch on the file (or on a directory the swap replaces)
/// misses the change or goes stale after the first rotation. A stat of two small files every
/// few seconds costs nothing and sees every rotation, however the volume is updated.
async fn watch_certificate(certs: Arc<CertReloader>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let certs = certs.clone();
        match tokio::task::spawn_blocking(move || certs.reload()).await {
            Ok(Ok(true)) => {
                metrics.cert_reload(true);
                tracing::info!("serving certificate reloaded");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                metrics.cert_reload(false);
                tracing::warn!(error = %e, "serving certificate not reloaded; keeping the previous one");
            }
            Err(e) => tracing::warn!(error = %e, "certificate reload task failed"),
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/mutate/{level}", post(mutate_at))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    serve_review(&state, PodSecurityLevel::Privileged, request).await
}

/// `/mutate/baseline` and `/mutate/restricted`: the chart's webhooks for namespaces whose
/// `pod-security.kubernetes.io/enforce` label says so (the API server matches the label).
async fn mutate_at(
    State(state): State<Arc<AppState>>,
    Path(level): Path<String>,
    request: Request,
) -> Response {
    match level.parse() {
        Ok(level) => serve_review(&state, level, request).await,
        Err(e) => plain(StatusCode::NOT_FOUND, format!("/mutate/{level}: {e}")),
    }
}

async fn serve_review(state: &AppState, level: PodSecurityLevel, request: Request) -> Response {
    let started = Instant::now();
    let body: Body = request.into_body();
    let bytes: Bytes = match tokio::time::timeout(
        state.read_timeout,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            state.metrics.bad_request(started.elapsed());
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("AdmissionReview larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(_) => {
            state.metrics.bad_request(started.elapsed());
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time".into(),
            );
        }
    };
    match review_in(&bytes, &state.policy, level) {
        Ok(reviewed) => {
            let took = started.elapsed();
            state
                .metrics
                .review(reviewed.outcome, reviewed.operations(), took);
            if reviewed.outcome != Outcome::Skipped {
                // Per review at debug: the API server's audit log (our audit annotations) and
                // /metrics are the record; a line per pod creation is a syscall on the hot path.
                tracing::debug!(
                    uid = reviewed.response.uid.as_str(),
                    outcome = reviewed.outcome.name(),
                    role = reviewed.role.map(|r| r.component()).unwrap_or("-"),
                    injected = reviewed.injected.as_str(),
                    micros = took.as_micros() as u64,
                    "reviewed pod"
                );
            }
            (
                [(header::CONTENT_TYPE, "application/json")],
                reviewed.into_json(),
            )
                .into_response()
        }
        Err(e) => {
            state.metrics.bad_request(started.elapsed());
            tracing::warn!(error = %e, "rejected a request that is not an AdmissionReview v1");
            plain(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}
