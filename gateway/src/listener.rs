//! The S3 listener's connections: HTTP/1.1 with the header read timeout of the config in
//! force (which also bounds idle keep-alive), the peer address on every request, and a
//! graceful stop that lets open requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::server::Gateway;

/// The address a request's connection comes from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` until `stop`, then waits for open connections to finish.
pub fn serve<L>(
    mut listener: L,
    app: Router,
    gw: Arc<Gateway>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    L: Listener<Addr = SocketAddr>,
{
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let (io, peer) = tokio::select! {
                conn = listener.accept() => conn,
                _ = stop.wait_for(|s| *s) => break,
            };
            let header_timeout = gw
                .runtime()
                .map(|rt| rt.config.limits.timeouts.header_read_seconds)
                .unwrap_or(30);
            let app = app.clone();
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                app.clone().oneshot(req.map(Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(
                (header_timeout > 0).then(|| Duration::from_secs(header_timeout)),
            );
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    })
}
