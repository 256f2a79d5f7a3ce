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
use crate::auth::{self, AuthSettings, Authenticated, Payload, Principal, RequestParts};
use crate::bodies::{IdleBody, Tail};
use crate::breaker::Admit;
use crate::config::compiled::CompiledConfig;
use crate::error::{S3Code, S3Error, S3Result};
use crate::http::listener::Peer;
use crate::limits::ClientAddr;
use crate::s3::context::Ctx;
use crate::s3::endpoint::{self as router, Endpoint, Need};
use crate::state::AppState;

/// The S3 listener's router: every request goes through [`handle`].
pub fn router(gw: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(gw)
}

/// Longest header section accepted (S3 allows 8 KiB of user metadata within it).
const MAX_HEADER_BYTES: usize = 16 * 1024;

fn request_id() -> String {
    use rand::Rng;
    let v: u64 = rand::thread_rng().gen();
    format!("{v:016X}")
}

async fn handle(State(gw): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = request_id();
    let started = Instant::now();
    gw.metrics.in_flight.inc();
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let client = gw.limits.client(peer, req.headers());
    let compiled = gw.compiled();
    let mut tail = Tail::default();
    if gw.audit.is_some() {
        let bytes_in = declared_length(req.headers()).unwrap_or(0);
        tail.facts = Some(Facts::new(client.ip, req.method().clone(), bytes_in));
    }
    let audit_reads = compiled
        .as_ref()
        .is_none_or(|compiled| compiled.config.audit.reads);
    let request_timeout = compiled
        .as_ref()
        .map(|compiled| compiled.config.limits.timeouts.request_seconds)
        .unwrap_or(0);
    if request_timeout > 0 {
        tail.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(request_timeout));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A client that asked `Expect: 100-continue` for an empty body never gets the 100;
    // some (botocore before 1.44) then misread the next response on the same connection.
    let expects_continue = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // And while shutdown drains, so that keep-alive clients leave on a response.
    let close_after = gw.draining()
        || expects_continue
            && req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
    // A request answered before its body was read never sent it: hyper closes the
    // connection, and the answer says so, lest the client reuse it.
    let (req, body_read) = if expects_continue {
        let (parts, body) = req.into_parts();
        let (body, read) = crate::bodies::ReadBody::wrap(body);
        (Request::from_parts(parts, body), Some(read))
    } else {
        (req, None)
    };
    let deadline = tail.deadline;
    let span = crate::telemetry::request_span(&request_id, &method);
    let serving =
        serve(&gw, compiled, req, &request_id, client, &mut tail).instrument(span.clone());
    let (op, result) = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, serving).await {
            Ok(r) => r,
            Err(_) => {
                gw.metrics.timeouts.with_label_values(&["request"]).inc();
                // The error answer itself goes out whole.
                tail.deadline = None;
                ("Unknown", Err(S3Error::request_timeout()))
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
    let unread = body_read.is_some_and(|r| !r.load(std::sync::atomic::Ordering::Relaxed));
    if close_after || unread {
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

/// The payload length a request announces (aws-chunked: the decoded length).
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    ["x-amz-decoded-content-length", "content-length"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse().ok())
}

/// Upper bound of the body bytes a request holds in memory while it is served. Only
/// `Content-Length` bounds a body (HTTP enforces it); `x-amz-decoded-content-length` is the
/// client's word, so a chunked body without a length reserves the whole write window.
fn buffered_estimate(ep: Endpoint, headers: &http::HeaderMap) -> u64 {
    use Endpoint::*;
    let read = crate::store::READ_BUFFER_BYTES as u64;
    let write = crate::store::WRITE_BUFFER_BYTES as u64;
    let wire = match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()),
        None if headers.contains_key(http::header::TRANSFER_ENCODING) => None,
        None => Some(0),
    };
    let body = wire.map_or(write, |n| n.min(write));
    match ep {
        GetObject => read,
        CopyObject | UploadPartCopy | CompleteMultipartUpload => read + write,
        _ => body,
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

/// Bucket and key of a request.
pub(crate) type Address = (Option<String>, Option<String>);

/// Splits bucket and key from the Host header (virtual-hosted style) or the path. A path
/// that does not decode to UTF-8 is `InvalidURI` (never decoded lossily: two raw keys
/// must not name one stored key).
pub(crate) fn address(
    compiled: &CompiledConfig,
    host: Option<&str>,
    raw_path: &str,
) -> S3Result<Address> {
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| S3Error::new(S3Code::InvalidURI, "Couldn't parse the specified URI."))?;
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
        for domain in &compiled.config.virtual_host_domains {
            if let Some(bucket) = host
                .strip_suffix(domain.as_str())
                .and_then(|b| b.strip_suffix('.'))
            {
                if !bucket.is_empty() {
                    let key = (!path.is_empty()).then(|| path.to_string());
                    return Ok((Some(bucket.to_string()), key));
                }
            }
        }
    }
    if path.is_empty() {
        return Ok((None, None));
    }
    Ok(match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (Some(b.to_string()), Some(k.to_string())),
        Some((b, _)) => (Some(b.to_string()), None),
        None => (Some(path.to_string()), None),
    })
}

async fn serve(
    gw: &Arc<AppState>,
    compiled: Option<Arc<CompiledConfig>>,
    req: Request,
    request_id: &str,
    client: ClientAddr,
    tail: &mut Tail,
) -> (&'static str, S3Result<Response>) {
    let Some(compiled) = compiled else {
        return (
            "Unknown",
            Err(S3Error::new(
                S3Code::ServiceUnavailable,
                "The gateway has no configuration yet.",
            )
            .header("Retry-After", "1")),
        );
    };
    let limits = &compiled.config.limits;
    match gw.limits.admit(limits, client.ip, &gw.metrics) {
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
    let (bucket, key) = match address(&compiled, host.as_deref(), &raw_path) {
        Ok(a) => a,
        Err(e) => return ("Unknown", Err(e.resource(raw_path))),
    };
    let query = match router::parse_query(raw_query.as_deref()) {
        Ok(q) => q,
        Err(e) => return ("Unknown", Err(e.resource(raw_path))),
    };
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
            if k.len() > compiled.config.limits.max_key_bytes {
                return Err(
                    S3Error::new(S3Code::KeyTooLongError, "Your key is too long")
                        .with("MaxSizeAllowed", compiled.config.limits.max_key_bytes.to_string())
                        .with("Size", k.len().to_string()),
                );
            }
        }
        if let (Endpoint::CreateBucket, Some(b)) = (ep, bucket.as_deref()) {
            if compiled.alias_of(b).is_some() {
                return Err(S3Error::new(
                    S3Code::BucketAlreadyExists,
                    "The requested bucket name is not available.",
                )
                .with("BucketName", b));
            }
        }
        let bucket_ref = bucket.as_deref().map(|b| compiled.bucket(b)).transpose()?;
        let guards = bucket_ref.as_ref().and_then(|b| b.guards.as_ref());
        if let Some(f) = guards.and_then(|g| g.addresses.as_ref()) {
            if !f.admits(&client) {
                tracing::debug!(request_id, client_ip = %client.ip, "address not admitted by the bucket");
                return Err(S3Error::access_denied());
            }
        }
        let jwt = guards.and_then(|g| g.jwt.as_ref());
        let token = jwt.and_then(|j| j.token(&parts.headers, &query).map(str::to_string));
        // Preflight and PostObject carry no SigV4 header or query: they are handled
        // (and, for PostObject, authenticated by its policy) by their own code.
        let authenticated = if matches!(ep, Endpoint::Preflight | Endpoint::PostObject) {
            Ok((None, Payload::Unsigned))
        } else if let (Some(jwt), Some(token)) = (jwt, token) {
            match jwt.verify(&token).await {
                Ok(claims) => Ok((Some(Principal::Token(claims)), Payload::Unsigned)),
                Err(why) => {
                    tracing::debug!(request_id, reason = %why, "JWT refused");
                    Err(S3Error::access_denied())
                }
            }
        } else {
            let now = OffsetDateTime::now_utc();
            let settings = AuthSettings {
                region: &compiled.config.region,
                now,
                max_skew: std::time::Duration::from_secs(compiled.config.limits.max_clock_skew_seconds),
            };
            let request = RequestParts {
                method: &parts.method,
                raw_path: &raw_path,
                raw_query: raw_query.as_deref(),
                headers: &parts.headers,
            };
            auth::authenticate(&request, &crate::s3::common::Secrets(&compiled, now), &settings).map(|a| match a {
                Authenticated::Anonymous => (None, Payload::Unsigned),
                Authenticated::Signed(s) => {
                    (Some(Principal::AccessKey(s.access_key_id)), s.payload)
                }
            })
        };
        // PostObject is counted by its handler, once its policy is checked.
        if let (Some(b), false) = (&bucket_ref, ep == Endpoint::PostObject) {
            charge_bucket(gw, b, matches!(authenticated, Ok((Some(_), _))))?;
        }
        let (principal, payload) = authenticated?;
        if let Some(Principal::AccessKey(key)) = &principal {
            gw.limits.access_key(key, limits, &gw.metrics)?;
        }
        if let Some(f) = tail.facts.as_mut() {
            f.principal = principal.clone();
        }
        let subject = crate::access::Subject {
            ep,
            bucket: bucket_ref.as_ref(),
            key: key.as_deref(),
            principal: principal.as_ref(),
            headers: &parts.headers,
            query: &query,
            client: &client,
            presigned: raw_query
                .as_deref()
                .is_some_and(|q| q.contains("X-Amz-Signature=")),
        };
        // Authorization may read the bucket's policy and ACLs from NATS: behind the breaker.
        let breaker = &limits.circuit_breaker;
        if let Admit::Probe = gw.breaker.admit(breaker, &gw.metrics)? {
            let ok = gw.store.ping().await;
            gw.breaker.probed(ok, breaker, &gw.metrics)?;
        }
        if let Err(e) = crate::access::authorize(gw, &compiled, &subject).await {
            if e.nats_failure && gw.breaker.record(true, breaker) {
                let answered = gw.store.ping_after_reconnect().await;
                gw.breaker.confirm(answered, breaker, &gw.metrics);
            }
            return Err(e);
        }
        gw.limits.buffer(
            limits,
            buffered_estimate(ep, &parts.headers),
            &mut tail.permit,
            &gw.metrics,
        )?;
        let ctx = Ctx::new(
            gw.clone(),
            compiled.clone(),
            ep,
            request_id.to_string(),
            client,
            parts.method.clone(),
            parts.headers.clone(),
            query,
            bucket_ref,
            key,
            principal,
            payload,
            body,
        );
        let origin = ctx.header("origin").map(str::to_string);
        let cors_bucket = ctx.bucket.clone();
        let result = crate::s3::ops::call(ctx).await;
        let nats_failed = result.as_ref().err().is_some_and(|e| e.nats_failure);
        if gw.breaker.record(nats_failed, breaker) {
            let answered = gw.store.ping_after_reconnect().await;
            gw.breaker.confirm(answered, breaker, &gw.metrics);
        }
        let (Some(origin), Some(b)) = (origin, cors_bucket) else {
            return result;
        };
        match result {
            Ok(mut resp) => {
                crate::s3::ops::cors::decorate(gw, &b, &origin, &parts.method, &mut resp).await;
                Ok(resp)
            }
            Err(e) => {
                Err(crate::s3::ops::cors::decorate_error(gw, &b, &origin, &parts.method, e).await)
            }
        }
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

/// The checks a GET of `src` (`key`, at `version` if given) passes, for a request that
/// reads it besides the bucket it addresses (a copy source): the address filter, the
/// caller's right to read it (grants, policy and ACLs, as for a GET; a token counts only
/// for the bucket it was checked for) and the bucket's rate limit.
pub async fn admit_copy_source(
    ctx: &Ctx,
    src: &crate::config::compiled::BucketRef,
    key: &str,
    version: Option<&str>,
) -> S3Result<()> {
    if let Some(f) = src.guards.as_ref().and_then(|g| g.addresses.as_ref()) {
        if !f.admits(&ctx.client) {
            tracing::debug!(request_id = %ctx.request_id, client_ip = %ctx.client.ip, "address not admitted by the copy source's bucket");
            return Err(S3Error::access_denied());
        }
    }
    let own = ctx.bucket.as_ref().is_some_and(|b| b.s3 == src.s3);
    let principal = match &ctx.principal {
        Some(Principal::Token(_)) if !own => None,
        p => p.as_ref(),
    };
    let query: router::Query = version
        .map(|v| vec![("versionId".to_string(), v.to_string())])
        .unwrap_or_default();
    let subject = crate::access::Subject {
        ep: Endpoint::GetObject,
        bucket: Some(src),
        key: Some(key),
        principal,
        headers: &ctx.headers,
        query: &query,
        client: &ctx.client,
        presigned: ctx.query("X-Amz-Signature").is_some(),
    };
    crate::access::authorize(&ctx.gw, &ctx.compiled, &subject).await?;
    match own {
        // The request's own bucket was counted already.
        true => Ok(()),
        false => charge_bucket(&ctx.gw, src, principal.is_some()),
    }
}

/// Counts a request against its bucket's rate limit, after authentication: authenticated
/// requests have one budget, anonymous and failed-auth ones another, so that neither
/// kind can use up the other's.
pub fn charge_bucket(
    gw: &AppState,
    bucket: &crate::config::compiled::BucketRef,
    authenticated: bool,
) -> S3Result<()> {
    match bucket.config.as_ref().and_then(|c| c.rate_limit.as_ref()) {
        Some(limit) => gw
            .limits
            .bucket(&bucket.s3, authenticated, limit, &gw.metrics),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jets3_crds::GatewayConfig;

    fn compiled() -> CompiledConfig {
        CompiledConfig::new(GatewayConfig {
            virtual_host_domains: vec!["s3.example.com".into()],
            ..Default::default()
        })
        .expect("valid")
    }

    #[test]
    fn path_style_addressing() {
        let compiled = compiled();
        assert_eq!(
            address(&compiled, Some("localhost:9000"), "/").ok(),
            Some((None, None))
        );
        assert_eq!(
            address(&compiled, Some("localhost"), "/b").expect("utf-8"),
            (Some("b".into()), None)
        );
        assert_eq!(
            address(&compiled, Some("localhost"), "/b/").expect("utf-8"),
            (Some("b".into()), None)
        );
        assert_eq!(
            address(&compiled, Some("127.0.0.1:9000"), "/b/a%2Fb/..//c%20d").expect("utf-8"),
            (Some("b".into()), Some("a/b/..//c d".into()))
        );
    }

    #[test]
    fn virtual_hosted_addressing() {
        let compiled = compiled();
        assert_eq!(
            address(&compiled, Some("my.bucket.s3.example.com:443"), "/k/x").expect("utf-8"),
            (Some("my.bucket".into()), Some("k/x".into()))
        );
        assert_eq!(
            address(&compiled, Some("s3.example.com"), "/b/k").expect("utf-8"),
            (Some("b".into()), Some("k".into()))
        );
        assert_eq!(
            address(&compiled, Some("b.s3.example.com"), "/").expect("utf-8"),
            (Some("b".into()), None)
        );
    }

    #[test]
    fn paths_must_decode_to_utf8() {
        let compiled = compiled();
        for host in ["localhost", "b.s3.example.com"] {
            for path in ["/b/%FF", "/b/a%C3%28", "/%ED%A0%80"] {
                let e = address(&compiled, Some(host), path).expect_err(path);
                assert_eq!(e.code, S3Code::InvalidURI);
            }
        }
        assert_eq!(
            address(&compiled, Some("localhost"), "/b/%C3%A9").expect("utf-8"),
            (Some("b".into()), Some("é".into()))
        );
    }
}
