//! The config push API (Kubernetes mode), on a listener of its own so that a NetworkPolicy
//! can open it to the operator alone: TLS unless `insecure`, a push token on every request,
//! made for this pod, this request and its body, good once ([`token`]).
//!
//! - `PUT /v1/config`: body = the `GatewayConfig` JSON, header [`HASH_HEADER`] = its
//!   `content_hash()`. 200 applied or unchanged, 409 stale, 422 invalid or a generation more
//!   than [`jets3_crds::MAX_GENERATION_STEP`] ahead, 400 malformed, 401 a token that is not
//!   for this pod, request or body (or spent, expired ...), 413 over [`MAX_BODY_BYTES`], 503
//!   while too many tokens are in flight to remember another.
//! - `GET /v1/config`: the generation and hash held (`null` before the first config).

mod token;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener as _;
use axum::Router;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jets3_crds::GatewayConfig;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::settings::{ConnectionLimits, PushSettings};
use crate::http::listener::{CappedTcp, Local};
use crate::http::tls::{self, TlsListener};
use crate::state::{AppState, PushRefused, Pushed};
use crate::Error;
use token::{Refusal, TokenVerifier};

/// The header carrying the pushed config's `content_hash()`.
pub const HASH_HEADER: &str = "x-jets3-config-hash";
/// Largest config body accepted.
pub const MAX_BODY_BYTES: usize = 64 << 20;

struct Push {
    gw: Arc<AppState>,
    tokens: TokenVerifier,
}

/// Loads the verify key (and the TLS certificate), binds the push listener and serves it
/// until `stop`. Returns its address and the tasks to wait for at shutdown.
pub async fn listen(
    settings: &PushSettings,
    conns: &ConnectionLimits,
    gw: Arc<AppState>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, Vec<JoinHandle<()>>), Error> {
    let tls_files = settings.tls_files()?;
    let (tokens, key_watch) = TokenVerifier::new(
        settings.verify_key_file.clone(),
        &settings.issuer,
        &settings.audience,
        stop.clone(),
    )?;
    let mut tasks = vec![key_watch];
    let app = router(Arc::new(Push { gw, tokens }));
    let listener = CappedTcp::new(TcpListener::bind(settings.listen).await?, conns.push);
    let addr = listener.local_addr()?;
    let timeout = crate::http::listener::seconds(conns.header_read_seconds);
    match tls_files {
        Some((cert, key)) => {
            let (cert, cert_watch) = tls::serving_cert(cert, key, stop.clone())?;
            tasks.push(cert_watch);
            let listener = TlsListener::new(listener, tls::server_config(cert, None)?)?;
            tasks.push(crate::http::listener::serve(
                listener,
                app,
                move || timeout,
                stop,
            ));
        }
        None => {
            tracing::warn!(%addr, "config push listener without TLS (--push-insecure)");
            tasks.push(crate::http::listener::serve(
                listener,
                app,
                move || timeout,
                stop,
            ));
        }
    }
    Ok((addr, tasks))
}

/// The body's SHA-256 the request's token was signed for (set by [`authenticate`]).
#[derive(Clone)]
struct SignedBody(String);

fn router(push: Arc<Push>) -> Router {
    Router::new()
        .route("/v1/config", get(held).put(put_config))
        .fallback(|| async { reply(StatusCode::NOT_FOUND, json!({"error": "not found"})) })
        .layer(middleware::from_fn_with_state(push.clone(), authenticate))
        .with_state(push)
}

fn reply(status: StatusCode, body: impl Serialize) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// Every request, whatever its path or method, needs a valid push token first, made for
/// this pod and this request; it is spent here. A request without a body (GET) must have been
/// signed for the empty body; a PUT's body is checked once read ([`put_config`]).
async fn authenticate(State(push): State<Arc<Push>>, mut req: Request, next: Next) -> Response {
    // The address the connection came in on: the pod IP the operator dialled. One that
    // cannot be read matches no token.
    let pod = req
        .extensions()
        .get::<Local>()
        .map_or(Ipv4Addr::UNSPECIFIED.into(), |l| l.0.ip().to_canonical());
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let request = token::Request {
        pod,
        method: req.method().as_str(),
        path: req.uri().path(),
    };
    let checked = push.tokens.check(auth, &request).and_then(|body| {
        if req.method() == http::Method::PUT || body == hex::encode(Sha256::digest(b"")) {
            Ok(body)
        } else {
            Err(Refusal::Unauthorized("signed for a body, sent none".into()))
        }
    });
    match checked {
        Ok(body) => {
            req.extensions_mut().insert(SignedBody(body));
            next.run(req).await
        }
        Err(Refusal::Unauthorized(why)) => unauthorized(&push, &why),
        Err(Refusal::Busy) => {
            push.gw.metrics.count_push("busy");
            tracing::warn!("config push refused: too many push tokens in flight");
            let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "busy"}));
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
            r
        }
    }
}

/// 401, counted and logged with why (never the token).
fn unauthorized(push: &Push, why: &str) -> Response {
    push.gw.metrics.count_push("unauthorized");
    tracing::warn!(reason = %why, "config push refused: unauthorized");
    reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
}

/// The generation and hash of a config (both `null` when none is held).
#[derive(Serialize)]
struct Held {
    generation: Option<u64>,
    hash: Option<String>,
}

async fn held(State(push): State<Arc<Push>>) -> Response {
    let compiled = push.gw.compiled();
    reply(
        StatusCode::OK,
        Held {
            generation: compiled.as_ref().map(|r| r.config.generation),
            hash: compiled.map(|r| r.hash.clone()),
        },
    )
}

async fn put_config(
    State(push): State<Arc<Push>>,
    axum::Extension(SignedBody(signed)): axum::Extension<SignedBody>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let gw = &push.gw;
    let malformed = |status: StatusCode, error: String| {
        gw.metrics.count_push("malformed");
        tracing::warn!(%error, "config push refused");
        reply(status, json!({ "error": error }))
    };
    let Some(hash) = headers.get(HASH_HEADER).and_then(|v| v.to_str().ok()) else {
        return malformed(
            StatusCode::BAD_REQUEST,
            "missing X-Jets3-Config-Hash header".into(),
        );
    };
    let hash = hash.to_string();
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return malformed(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(e) => return malformed(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
    };
    if hex::encode(Sha256::digest(&bytes)) != signed {
        return unauthorized(&push, "the body is not the one the token was signed for");
    }
    let config: GatewayConfig = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            return malformed(
                StatusCode::BAD_REQUEST,
                format!("body is not a GatewayConfig: {e}"),
            )
        }
    };
    if config.content_hash() != hash {
        return malformed(StatusCode::BAD_REQUEST, "hash mismatch".into());
    }
    let generation = config.generation;
    match gw.push_config(config, &hash) {
        Ok(outcome) => {
            gw.metrics.count_push(match outcome {
                Pushed::Applied => "applied",
                Pushed::Unchanged => "unchanged",
            });
            reply(
                StatusCode::OK,
                Held {
                    generation: Some(generation),
                    hash: Some(hash),
                },
            )
        }
        Err(PushRefused::Stale { generation, hash }) => {
            gw.metrics.count_push("stale");
            tracing::warn!(held = generation, "config push refused: stale");
            reply(
                StatusCode::CONFLICT,
                json!({"error": "stale", "generation": generation, "hash": hash}),
            )
        }
        Err(PushRefused::OutOfRange { held, max }) => {
            gw.metrics.count_push("invalid");
            tracing::warn!(
                pushed = generation,
                held,
                max,
                "config push refused: generation out of range"
            );
            reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "generation out of range", "generation": held, "max": max}),
            )
        }
        Err(PushRefused::Invalid(errors)) => {
            gw.metrics.count_push("invalid");
            tracing::warn!(%errors, "config push refused: invalid");
            let problems: Vec<String> = errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect();
            reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "problems": problems}),
            )
        }
    }
}
