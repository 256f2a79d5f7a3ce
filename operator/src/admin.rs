//! The operator's HTTP listener (`--metrics-listen`): `/metrics`, `/healthz`, `/readyz`, and
//! `/config` for debugging (the published config's generation, hash and content, with every
//! secret access key and HMAC JWT key replaced by `<redacted>`, and with the config push on, `gateways`: how
//! many gateway pods there are and how many hold that config).
//!
//! `/readyz` is 200 once the leader has built its first config, and always on a standby
//! replica (it is healthy and ready to take over; a 503 there would stall rolling updates).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::hub::Hub;
use crate::metrics::Metrics;

/// What the endpoints report on.
pub struct Admin {
    pub metrics: Metrics,
    pub hub: Arc<Hub>,
    /// Whether this replica leads (always true without leader election).
    pub leading: AtomicBool,
}

impl Admin {
    /// Marks this replica as leading or standing by.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
        self.metrics.leader.set(leading.into());
    }
}

/// Binds `addr` (fails at once if it cannot) and serves until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    admin: Arc<Admin>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and probes listening");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/config", get(config))
        .with_state(admin);
    Ok(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    })
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        admin.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    if !admin.leading.load(Ordering::Relaxed) {
        return (StatusCode::OK, "standby").into_response();
    }
    if admin.hub.build().is_some() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: no config built yet",
        )
            .into_response()
    }
}

async fn config(State(admin): State<Arc<Admin>>) -> Response {
    let published = admin.hub.published().borrow().clone();
    let Some(p) = published else {
        return (
            StatusCode::OK,
            Json(serde_json::json!({"generation": null, "hash": null, "config": null, "gateways": admin.hub.gateway_pods()})),
        )
            .into_response();
    };
    let mut config = (*p.config).clone();
    for c in &mut config.credentials {
        c.secret_access_key = "<redacted>".into();
    }
    for k in config
        .buckets
        .iter_mut()
        .filter_map(|b| b.jwt.as_mut())
        .flat_map(|j| &mut j.keys)
    {
        for s in [&mut k.secret, &mut k.secret_base64].into_iter().flatten() {
            *s = "<redacted>".into();
        }
    }
    let problems: Vec<serde_json::Value> = admin
        .hub
        .build()
        .map(|b| {
            let mut v: Vec<_> = b
                .buckets
                .iter()
                .map(|(k, v)| ("S3Bucket", k, &v.part))
                .chain(b.credentials.iter().map(|(k, v)| ("S3Credential", k, &v.part)))
                .filter_map(|(kind, key, part)| match part {
                    crate::gateway_config::Part::Excluded { reason, message } => Some(
                        serde_json::json!({"kind": kind, "object": key.to_string(), "reason": reason, "message": message}),
                    ),
                    _ => None,
                })
                .collect();
            v.sort_by_key(|p| p.to_string());
            v
        })
        .unwrap_or_default();
    Json(serde_json::json!({
        "generation": p.generation,
        "hash": p.hash,
        "config": config,
        "excluded": problems,
        "gateways": admin.hub.gateway_pods(),
    }))
    .into_response()
}
