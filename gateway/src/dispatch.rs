//! The S3 request pipeline: addressing, routing, authentication, authorization, the
//! operation, then the common response headers, metrics and the access log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::HeaderValue;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::audit::Facts;
use crate::auth::{
    self, AuthSettings, Authenticated, Payload, Principal, RequestParts, SecretLookup,
};
use crate::breaker::Admit;
use crate::error::{S3Code, S3Error, S3Result};
use crate::listener::Peer;
use crate::request::Ctx;
use crate::router::{self, Endpoint, Need};
use crate::runtime::Runtime;
use crate::server::Gateway;
use crate::tail::{IdleBody, Tail};

/// The S3 listener's router: every request goes through [`handle`].
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new().fallback(handle).with_state(gw)
}

/// Longest header section accepted (S3 allows 8 KiB of user metadata within it).
const MAX_HEADER_BYTES: usize = 16 * 1024;

fn request_id() -> String {
    use rand::Rng;
    let v: u64 = rand::thread_rng().gen();
    format!("{v:016X}")
}

async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let request_id = request_id();
    let started = Instant::now();
    gw.metrics.in_flight.inc();
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let client_ip = gw.limits.client_ip(peer, req.headers());
    let rt = gw.runtime();
    let mut tail = Tail::default();
    if gw.audit.is_some() {
        let bytes_in = declared_length(req.headers()).unwrap_or(0);
        tail.facts = Some(Facts::new(client_ip, req.method().clone(), bytes_in));
    }
    let audit_reads = rt.as_ref().is_none_or(|rt| rt.config.audit.reads);
    let request_timeout = rt
        .as_ref()
        .map(|rt| rt.config.limits.timeouts.request_seconds)
        .unwrap_or(0);
    if request_timeout > 0 {
        tail.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(request_timeout));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A client that asked `Expect: 100-continue` for an empty body never gets the 100;
    // some (botocore before 1.44) then misread the next response on the same connection.
    // And while shutdown drains, so that keep-alive clients leave on a response.
    let close_after = gw.draining()
        || req
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
            && req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
    let deadline = tail.deadline;
    let span = crate::telemetry::request_span(&request_id, &method);
    let serving = serve(&gw, rt, req, &request_id, client_ip, &mut tail).instrument(span.clone());
    let (op, result) = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, serving).await {
            Ok(r) => r,
            Err(_) => {
                gw.metrics.timeouts.with_label_values(&["request"]).inc();
                // The error answer itself goes out whole.
                tail.deadline = None;
                ("Unknown", Err(request_timeout_error()))
            }
        },
        None => serving.await,
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if method == http::Method::HEAD {
                let mut r = e.into_response(&request_id);
                *r.body_mut() = Body::empty();
                r
            } else {
                e.into_response(&request_id)
            }
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amz-request-id", v.clone());
        h.insert("x-amz-id-2", v);
    }
    h.insert("server", HeaderValue::from_static("jets3"));
    if close_after {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16();
    span.record("operation", op);
    span.record("http.status_code", status);
    let elapsed = started.elapsed();
    gw.metrics.in_flight.dec();
    gw.metrics
        .requests
        .with_label_values(&[op, status_label(status)])
        .inc();
    gw.metrics
        .duration
        .with_label_values(&[op])
        .observe(elapsed.as_secs_f64());
    let _in_span = span.enter();
    tracing::info!(
        request_id = %request_id,
        operation = op,
        method = %method,
        path = %path,
        status,
        ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let (Some(audit), Some(facts)) = (&gw.audit, tail.facts.take()) {
        let code = resp
            .extensions()
            .get::<crate::error::ErrorCode>()
            .map(|c| c.0.as_str());
        if let Some(record) = facts.finish(request_id, op, status, code, audit_reads) {
            tail.on_end = Some(audit.on_end(record, started));
        }
    }
    tail.attach(resp)
}

/// S3's answer to a client that took too long.
pub fn request_timeout_error() -> S3Error {
    S3Error::new(
        S3Code::RequestTimeout,
        "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
    )
}

/// The payload length a request announces (aws-chunked: the decoded length).
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    ["x-amz-decoded-content-length", "content-length"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse().ok())
}

/// Upper bound of the body bytes a request holds in memory while it is served.
fn buffered_estimate(ep: Endpoint, headers: &http::HeaderMap) -> u64 {
    use Endpoint::*;
    let read = crate::store::READ_BUFFER_BYTES as u64;
    let write = crate::store::WRITE_BUFFER_BYTES as u64;
    let declared = declared_length(headers);
    let body = declared.map_or(write, |n| n.min(write));
    match ep {
        GetObject => read,
        CopyObject | UploadPartCopy | CompleteMultipartUpload => read + write,
        PutObject | UploadPart | PostObject => body,
        _ => declared.unwrap_or(0).min(write),
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        206 => "206",
        304 => "304",
        400 => "400",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        411 => "411",
        412 => "412",
        416 => "416",
        500 => "500",
        501 => "501",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

struct Lookup<'a>(&'a Runtime, OffsetDateTime);

impl SecretLookup for Lookup<'_> {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self.0.secret(access_key_id, self.1)
    }
}

/// Splits bucket and key from the Host header (virtual-hosted style) or the path.
fn address(rt: &Runtime, host: Option<&str>, raw_path: &str) -> (Option<String>, Option<String>) {
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let path = path.strip_prefix('/').unwrap_or(&path);
    let host = host.map(|h| {
        let h = h.trim();
        // Strip a port, keeping IPv6 literals whole.
        match h.rfind(':') {
            Some(i) if !h.ends_with(']') && !h[..i].contains(':') => &h[..i],
            _ => h,
        }
    });
    if let Some(host) = host {
        let host = host.to_ascii_lowercase();
        for domain in &rt.config.virtual_host_domains {
            if let Some(bucket) = host
                .strip_suffix(domain.as_str())
                .and_then(|b| b.strip_suffix('.'))
            {
                if !bucket.is_empty() {
                    let key = (!path.is_empty()).then(|| path.to_string());
                    return (Some(bucket.to_string()), key);
                }
            }
        }
    }
    if path.is_empty() {
        return (None, None);
    }
    match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (Some(b.to_string()), Some(k.to_string())),
        Some((b, _)) => (Some(b.to_string()), None),
        None => (Some(path.to_string()), None),
    }
}

async fn serve(
    gw: &Arc<Gateway>,
    rt: Option<Arc<Runtime>>,
    req: Request,
    request_id: &str,
    client_ip: IpAddr,
    tail: &mut Tail,
) -> (&'static str, S3Result<Response>) {
    let Some(rt) = rt else {
        return (
            "Unknown",
            Err(S3Error::new(
                S3Code::ServiceUnavailable,
                "The gateway has no configuration yet.",
            )
            .header("Retry-After", "1")),
        );
    };
    let limits = &rt.config.limits;
    match gw.limits.admit(limits, client_ip, &gw.metrics) {
        Ok(permit) => tail.permit = permit,
        Err(e) => return ("Unknown", Err(e)),
    }
    let (parts, body) = req.into_parts();
    let idle = limits.timeouts.idle_body_seconds;
    let body = if idle > 0 && !http_body::Body::is_end_stream(&body) {
        IdleBody::wrap(body, Duration::from_secs(idle))
    } else {
        body
    };
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return (
            "Unknown",
            Err(S3Error::new(
                S3Code::RequestHeaderSectionTooLarge,
                "Your request header section exceeds the maximum allowed size.",
            )
            .with("MaxSizeAllowed", MAX_HEADER_BYTES.to_string())),
        );
    }
    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.host().map(str::to_string));
    let (bucket, key) = address(&rt, host.as_deref(), &raw_path);
    let query = router::parse_query(raw_query.as_deref());
    let ep = match router::parse(
        &parts.method,
        bucket.as_deref(),
        key.as_deref(),
        &query,
        &parts.headers,
    ) {
        Ok(ep) => ep,
        Err(e) => return ("Unknown", Err(e)),
    };
    let op = ep.name();
    if let Some(f) = tail.facts.as_mut() {
        f.bucket = bucket.clone();
        f.key = key.clone();
        f.read = ep.need() == Need::Read;
    }
    let resource = raw_path.clone();
    let result = async {
        if let Endpoint::NotImplemented(name) = ep {
            return Err(S3Error::not_implemented(name));
        }
        if let Some(k) = &key {
            if k.len() > rt.config.limits.max_key_bytes {
                return Err(
                    S3Error::new(S3Code::KeyTooLongError, "Your key is too long")
                        .with("MaxSizeAllowed", rt.config.limits.max_key_bytes.to_string())
                        .with("Size", k.len().to_string()),
                );
            }
        }
        let bucket_ref = bucket.as_deref().map(|b| rt.bucket(b)).transpose()?;
        if let Some(b) = &bucket_ref {
            if let Some(limit) = b.config.as_ref().and_then(|c| c.rate_limit.as_ref()) {
                gw.limits.bucket(&b.s3, limit, &gw.metrics)?;
            }
        }
        let guards = bucket_ref.as_ref().and_then(|b| b.guards.as_ref());
        if let Some(f) = guards.and_then(|g| g.addresses.as_ref()) {
            if !f.admits(client_ip) {
                tracing::debug!(request_id, %client_ip, "address not admitted by the bucket");
                return Err(S3Error::access_denied());
            }
        }
        let jwt = guards.and_then(|g| g.jwt.as_ref());
        let token = jwt.and_then(|j| j.token(&parts.headers, &query).map(str::to_string));
        // Preflight and PostObject carry no SigV4 header or query: they are handled
        // (and, for PostObject, authenticated by its policy) by their own code.
        let (principal, payload) = if matches!(ep, Endpoint::Preflight | Endpoint::PostObject) {
            (None, Payload::Unsigned)
        } else if let (Some(jwt), Some(token)) = (jwt, token) {
            match jwt.verify(&token).await {
                Ok(claims) => (Some(Principal::Token(claims)), Payload::Unsigned),
                Err(why) => {
                    tracing::debug!(request_id, reason = %why, "JWT refused");
                    return Err(S3Error::access_denied());
                }
            }
        } else {
            let now = OffsetDateTime::now_utc();
            let settings = AuthSettings {
                region: &rt.config.region,
                now,
                max_skew: std::time::Duration::from_secs(rt.config.limits.max_clock_skew_seconds),
            };
            let request = RequestParts {
                method: &parts.method,
                raw_path: &raw_path,
                raw_query: raw_query.as_deref(),
                headers: &parts.headers,
            };
            match auth::authenticate(&request, &Lookup(&rt, now), &settings)? {
                Authenticated::Anonymous => (None, Payload::Unsigned),
                Authenticated::Signed(s) => {
                    (Some(Principal::AccessKey(s.access_key_id)), s.payload)
                }
            }
        };
        if let Some(Principal::AccessKey(key)) = &principal {
            gw.limits.access_key(key, limits, &gw.metrics)?;
        }
        if let Some(f) = tail.facts.as_mut() {
            f.principal = principal.clone();
        }
        authorize(&rt, ep, bucket_ref.as_ref(), principal.as_ref())?;
        gw.limits.buffer(
            limits,
            buffered_estimate(ep, &parts.headers),
            &mut tail.permit,
            &gw.metrics,
        )?;
        let ctx = Ctx::new(
            gw.clone(),
            rt.clone(),
            ep,
            request_id.to_string(),
            parts.method.clone(),
            parts.headers.clone(),
            query,
            bucket_ref,
            key,
            principal,
            payload,
            body,
        );
        let changes = match (ep, &ctx.bucket, &ctx.key) {
            (
                Endpoint::PutObject
                | Endpoint::CopyObject
                | Endpoint::DeleteObject
                | Endpoint::CompleteMultipartUpload
                | Endpoint::PutObjectTagging
                | Endpoint::DeleteObjectTagging,
                Some(b),
                Some(k),
            ) => Some((b.nats.clone(), Some(k.clone()))),
            (Endpoint::DeleteBucket, Some(b), _) => Some((b.nats.clone(), None)),
            _ => None,
        };
        let origin = ctx.header("origin").map(str::to_string);
        let cors_bucket = ctx.bucket.clone();
        let breaker = &limits.circuit_breaker;
        if let Admit::Probe = gw.breaker.admit(breaker, &gw.metrics)? {
            let ok = gw.store.ping().await;
            gw.breaker.probed(ok, breaker, &gw.metrics)?;
        }
        let result = crate::ops::call(ctx).await;
        let nats_failed = result.as_ref().err().is_some_and(|e| e.nats_failure);
        gw.breaker.record(nats_failed, breaker, &gw.metrics);
        // Written here: the cache must not serve the old version, not even until the
        // bucket's watch sees the change.
        match changes {
            Some((nats, Some(key))) if result.is_ok() => gw.cache.invalidate(&nats, &key),
            Some((nats, None)) if result.is_ok() => gw.cache.flush_bucket(&nats),
            _ => {}
        }
        let mut resp = result?;
        if let (Some(origin), Some(b)) = (origin, cors_bucket) {
            crate::cors::decorate(gw, &b, &origin, &parts.method, &mut resp).await;
        }
        Ok(resp)
    }
    .await;
    (
        op,
        result.map_err(|e| {
            if e.resource.is_none() {
                e.resource(resource)
            } else {
                e
            }
        }),
    )
}

/// Checks the caller's grant (or the bucket's public access) for the operation.
fn authorize(
    rt: &Runtime,
    ep: Endpoint,
    bucket: Option<&crate::runtime::BucketRef>,
    principal: Option<&Principal>,
) -> S3Result<()> {
    let need = ep.need();
    match need {
        Need::Nothing => return Ok(()),
        Need::Authenticated => {
            return principal.map(|_| ()).ok_or_else(S3Error::access_denied);
        }
        _ => {}
    }
    let Some(bucket) = bucket else {
        return Err(S3Error::access_denied());
    };
    if matches!(need, Need::Write | Need::Admin) && bucket.read_only() {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            "Access Denied: the bucket is read-only",
        ));
    }
    let Some(principal) = principal else {
        if ep.public_read() && bucket.public_read() {
            return Ok(());
        }
        return Err(S3Error::access_denied());
    };
    let permission = match principal {
        Principal::AccessKey(key) => rt.permission(key, &bucket.s3),
        // A token is only ever checked against the bucket it addresses.
        Principal::Token(t) => Some(t.permission),
    };
    let allowed = match permission {
        None => false,
        Some(p) => match need {
            Need::Read => p.can_read(),
            Need::Write => p.can_write(),
            Need::Admin => p.can_admin(),
            Need::Authenticated | Need::Nothing => true,
        },
    };
    if allowed || (ep.public_read() && bucket.public_read()) {
        Ok(())
    } else {
        Err(S3Error::access_denied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jets3_crds::GatewayConfig;

    fn rt() -> Runtime {
        Runtime::new(GatewayConfig {
            virtual_host_domains: vec!["s3.example.com".into()],
            ..Default::default()
        })
        .expect("valid")
    }

    #[test]
    fn path_style_addressing() {
        let rt = rt();
        assert_eq!(address(&rt, Some("localhost:9000"), "/"), (None, None));
        assert_eq!(
            address(&rt, Some("localhost"), "/b"),
            (Some("b".into()), None)
        );
        assert_eq!(
            address(&rt, Some("localhost"), "/b/"),
            (Some("b".into()), None)
        );
        assert_eq!(
            address(&rt, Some("127.0.0.1:9000"), "/b/a%2Fb/..//c%20d"),
            (Some("b".into()), Some("a/b/..//c d".into()))
        );
    }

    #[test]
    fn virtual_hosted_addressing() {
        let rt = rt();
        assert_eq!(
            address(&rt, Some("my.bucket.s3.example.com:443"), "/k/x"),
            (Some("my.bucket".into()), Some("k/x".into()))
        );
        assert_eq!(
            address(&rt, Some("s3.example.com"), "/b/k"),
            (Some("b".into()), Some("k".into()))
        );
        assert_eq!(
            address(&rt, Some("b.s3.example.com"), "/"),
            (Some("b".into()), None)
        );
    }
}
