//! HTTPS transport for any axum router: a plain tokio accept loop over rustls and hyper's
//! HTTP/1.1, with the limits explicit: a connection cap (refused beyond it), a deadline for
//! the TLS handshake and each request's headers, keep-alive, and a graceful drain.
//!
//! The admission server runs on it; so does the benchmark's null server, so that the two are
//! compared on exactly the same stack.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

/// The transport's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections beyond this are closed at once (the API server retries).
    pub max_connections: usize,
    /// Deadline for the TLS handshake and for each request's headers.
    pub read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (bounded by `limits.drain_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connection_rejected();
            continue; // dropping the socket closes it
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, watcher, metrics) = (
            acceptor.clone(),
            app.clone(),
            graceful.watcher(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.read_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            metrics.connection_opened();
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout)
                .keep_alive(true);
            let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics.connection_closed();
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
}
