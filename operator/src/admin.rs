//! The operator's HTTP listeners.
//!
//! - `--metrics-listen` (the chart's Service and probes): `/metrics`, `/healthz`, `/readyz`.
//!   `/readyz` is 200 once the leader has built its first config, and always on a standby
//!   replica (it is healthy and ready to take over; a 503 there would stall rolling updates).
//! - `--debug-listen` (loopback by default; reach it with `kubectl port-forward`, which the
//!   apiserver authorizes): `/config`, the published config's generation, hash and content with
//!   every piece of key material (secret access keys, HMAC secrets, public key PEMs) replaced
//!   by `<redacted>`, the parts left out, and with the config push on, `gateways`: how many
//!   gateway pods there are and how many hold that config. It is a separate listener because
//!   it lists every access key id and grant, which the metrics port must not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jets3_crds::GatewayConfig;
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

/// Binds the metrics listener at `addr` (fails at once if it cannot) and serves until the
/// task is dropped.
pub async fn serve(
    addr: SocketAddr,
    admin: Arc<Admin>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(admin);
    listen(addr, app, "metrics and probes").await
}

/// Binds the debug listener at `addr` (`/config`); warns when it is not a loopback address.
pub async fn serve_debug(
    addr: SocketAddr,
    admin: Arc<Admin>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the debug listener (/config: access key ids and grants) is not on a loopback address; it has no authentication of its own");
    }
    let app = Router::new()
        .route("/config", get(config))
        .with_state(admin);
    listen(addr, app, "debug").await
}

async fn listen(
    addr: SocketAddr,
    app: Router,
    what: &'static str,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    Ok(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "{what} listener failed");
        }
    })
}

/// `config` without key material: secret access keys, HMAC secrets and public key PEMs
/// become `<redacted>`.
pub fn redacted(config: &GatewayConfig) -> GatewayConfig {
    const R: &str = "<redacted>";
    let mut config = config.clone();
    for c in &mut config.credentials {
        c.secret_access_key = R.into();
    }
    for k in config
        .buckets
        .iter_mut()
        .filter_map(|b| b.jwt.as_mut())
        .flat_map(|j| &mut j.keys)
    {
        for s in [&mut k.secret, &mut k.secret_base64, &mut k.public_key_pem]
            .into_iter()
            .flatten()
        {
            *s = R.into();
        }
    }
    config
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
    let config = redacted(&p.config);
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
                    crate::model::gateway_config::Part::Excluded { reason, message } => Some(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_of_key_material_is_redacted() {
        let config: GatewayConfig = serde_json::from_value(serde_json::json!({
            "buckets": [{"name": "bkt", "jwt": {"keys": [
                {"kid": "a", "algorithm": "HS256", "secret": "plain-hmac-secret-plain-hmac-secret"},
                {"kid": "b", "algorithm": "HS256", "secretBase64": "YmFzZTY0LWhtYWMtc2VjcmV0LWJhc2U2NC1obWFj"},
                {"kid": "c", "algorithm": "ES256", "publicKeyPem": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n"}
            ]}}],
            "credentials": [{"accessKeyId": "AKIAVISIBLE", "secretAccessKey": "secret-access-key",
                "grants": [{"bucket": "bkt", "permission": "read"}]}]
        }))
        .unwrap();
        let text = serde_json::to_string(&redacted(&config)).unwrap();
        for hidden in [
            "plain-hmac",
            "YmFzZTY0",
            "MHcCAQEE",
            "PRIVATE",
            "secret-access-key",
        ] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        assert_eq!(text.matches("<redacted>").count(), 4, "{text}");
        assert!(text.contains("AKIAVISIBLE") && text.contains("\"kid\":\"c\""));
    }
}
