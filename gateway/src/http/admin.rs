//! The admin listener's endpoints: health, readiness, metrics and the cache purge.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::StatusCode;

use crate::state::AppState;

/// The admin API over the shared state.
pub fn router(gateway: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/cache/purge", axum::routing::post(purge_cache))
        .with_state(gateway)
}

async fn readyz(State(gw): State<Arc<AppState>>) -> Response {
    if gw.draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down\n").into_response();
    }
    if gw.compiled().is_none() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no config yet\n").into_response();
    }
    if !gw.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "NATS unreachable\n").into_response();
    }
    if gw.breaker.is_open() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "NATS circuit open: requests fail fast\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(gw): State<Arc<AppState>>) -> Response {
    gw.metrics.sync_store(gw.store.stats(), &gw.collector);
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
        .into_response()
}

/// `POST /cache/purge?bucket=<name>&prefix=<p>` or `&key=<k>` (no bucket: everything),
/// with `Authorization: Bearer <adminToken>`; off without an admin token.
async fn purge_cache(
    State(gw): State<Arc<AppState>>,
    headers: http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(token) = gw.admin_token.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "cache purge is off: set server.adminToken\n",
        )
            .into_response();
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::auth::ct_eq(given.as_bytes(), token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required\n",
        )
            .into_response();
    }
    let nats = match q.get("bucket") {
        Some(b) => match gw.compiled().map(|compiled| compiled.bucket(b)) {
            Some(Ok(r)) => Some(r.nats),
            _ => return (StatusCode::BAD_REQUEST, "invalid bucket name\n").into_response(),
        },
        None => None,
    };
    let purged = gw.cache.purge(
        nats.as_deref(),
        q.get("prefix").map(String::as_str),
        q.get("key").map(String::as_str),
    );
    tracing::info!(bucket = ?q.get("bucket"), prefix = ?q.get("prefix"), key = ?q.get("key"), purged, "cache purged");
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"purged\":{purged}}}\n"),
    )
        .into_response()
}
