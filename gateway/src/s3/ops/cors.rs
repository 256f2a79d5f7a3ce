//! CORS: bucket rules (config or PutBucketCors), preflight and response headers.

use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};
use jets3_crds::CorsRule;
use serde::Deserialize;

use crate::config::compiled::BucketRef;
use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond;
use crate::state::AppState;
use crate::xml::{self, XmlWriter};

/// Stream metadata key holding rules set with PutBucketCors (JSON).
const BUCKET_CORS: &str = "jets3.cors";

/// The rules in force for a bucket: the config's, else those set through the API.
async fn rules(gw: &AppState, b: &BucketRef) -> S3Result<Option<Vec<CorsRule>>> {
    if let Some(c) = &b.config {
        if !c.cors.is_empty() {
            return Ok(Some(c.cors.clone()));
        }
    }
    let info = gw
        .store
        .bucket_info(&b.nats)
        .await?
        .ok_or_else(|| S3Error::no_such_bucket(&b.s3))?;
    Ok(info
        .metadata
        .get(BUCKET_CORS)
        .and_then(|j| serde_json::from_str(j).ok()))
}

fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(value),
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len()
                && value[..pre.len()].eq_ignore_ascii_case(pre)
                && value[value.len() - post.len()..].eq_ignore_ascii_case(post)
        }
    }
}

/// The first rule allowing this origin, method and request headers.
pub(crate) fn find<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[&str],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard_match(o, origin))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|a| wildcard_match(a, h)))
    })
}

fn allow_headers(resp: &mut Response, rule: &CorsRule, origin: &str) {
    for (name, value) in allowed(rule, origin) {
        if name == "vary" {
            resp.headers_mut().append(
                http::header::VARY,
                HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Origin")),
            );
        } else {
            respond::set(resp, name, value);
        }
    }
}

/// The headers that let `origin` read a response under `rule`.
fn allowed(rule: &CorsRule, origin: &str) -> Vec<(&'static str, String)> {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    let mut out = vec![(
        "access-control-allow-origin",
        if any { "*" } else { origin }.to_string(),
    )];
    if !any {
        out.push(("access-control-allow-credentials", "true".into()));
    }
    out.push((
        "access-control-allow-methods",
        rule.allowed_methods.join(", "),
    ));
    if !rule.expose_headers.is_empty() {
        out.push((
            "access-control-expose-headers",
            rule.expose_headers.join(", "),
        ));
    }
    if let Some(age) = rule.max_age_seconds {
        out.push(("access-control-max-age", age.to_string()));
    }
    out.push((
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
    ));
    out
}

fn forbidden(msg: &str) -> S3Error {
    S3Error::new(S3Code::AccessForbidden, format!("CORSResponse: {msg}"))
}

/// OPTIONS preflight (no authentication, as browsers send it).
pub async fn preflight(ctx: &Ctx) -> S3Result<Response> {
    let origin = ctx.header("origin").ok_or_else(|| {
        S3Error::invalid_request("Insufficient information. Origin request header needed.")
    })?;
    let method = ctx
        .header("access-control-request-method")
        .ok_or_else(|| S3Error::invalid_request("Invalid Access-Control-Request-Method: null"))?;
    let b = ctx.bucket_ref()?;
    let requested: Vec<&str> = ctx
        .header("access-control-request-headers")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let rules = rules(&ctx.gw, b)
        .await?
        .ok_or_else(|| forbidden("CORS is not enabled for this bucket."))?;
    let rule = find(&rules, origin, method, &requested).ok_or_else(|| {
        forbidden("This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
    })?;
    let mut resp = respond::empty(StatusCode::OK);
    allow_headers(&mut resp, rule, origin);
    if !requested.is_empty() {
        respond::set(
            &mut resp,
            "access-control-allow-headers",
            requested.join(", "),
        );
    }
    Ok(resp)
}

/// Adds CORS headers to an actual (non-preflight) response when a rule allows it.
pub async fn decorate(
    gw: &AppState,
    b: &BucketRef,
    origin: &str,
    method: &Method,
    resp: &mut Response,
) {
    let Ok(Some(rules)) = rules(gw, b).await else {
        return;
    };
    if let Some(rule) = find(&rules, origin, method.as_str(), &[]) {
        allow_headers(resp, rule, origin);
    }
}

/// An error answered to a request a rule allows, with the CORS headers of that rule: a
/// browser script then reads the error (a 404, a 412) instead of a network failure.
pub async fn decorate_error(
    gw: &AppState,
    b: &BucketRef,
    origin: &str,
    method: &Method,
    mut e: S3Error,
) -> S3Error {
    if let Ok(Some(rules)) = rules(gw, b).await {
        if let Some(rule) = find(&rules, origin, method.as_str(), &[]) {
            e.headers.extend(allowed(rule, origin));
        }
    }
    e
}

#[derive(Deserialize)]
struct CorsConfiguration {
    #[serde(rename = "CORSRule", default)]
    rules: Vec<CorsRuleXml>,
}

#[derive(Deserialize)]
struct CorsRuleXml {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "AllowedOrigin", default)]
    origins: Vec<String>,
    #[serde(rename = "AllowedMethod", default)]
    methods: Vec<String>,
    #[serde(rename = "AllowedHeader", default)]
    headers: Vec<String>,
    #[serde(rename = "ExposeHeader", default)]
    expose: Vec<String>,
    #[serde(rename = "MaxAgeSeconds", default)]
    max_age: Option<u32>,
}

fn managed_by_config(b: &BucketRef) -> bool {
    b.config.as_ref().is_some_and(|c| !c.cors.is_empty())
}

/// GetBucketCors.
pub async fn get_cors(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    let rules = rules(&ctx.gw, b)
        .await?
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            S3Error::new(
                S3Code::NoSuchCORSConfiguration,
                "The CORS configuration does not exist",
            )
            .with("BucketName", &b.s3)
        })?;
    let mut w = XmlWriter::new("CORSConfiguration");
    for r in &rules {
        w.open("CORSRule");
        w.opt("ID", r.id.as_deref());
        for o in &r.allowed_origins {
            w.elem("AllowedOrigin", o);
        }
        for m in &r.allowed_methods {
            w.elem("AllowedMethod", m);
        }
        for h in &r.allowed_headers {
            w.elem("AllowedHeader", h);
        }
        for h in &r.expose_headers {
            w.elem("ExposeHeader", h);
        }
        w.opt("MaxAgeSeconds", r.max_age_seconds.map(|a| a.to_string()));
        w.close("CORSRule");
    }
    Ok(respond::xml(w.finish("CORSConfiguration")))
}

/// PutBucketCors: validated like config rules, stored in the bucket stream's metadata.
pub async fn put_cors(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    if managed_by_config(&b) {
        return Err(crate::s3::ops::common::set_by_config(&b.s3, "CORS", "cors"));
    }
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    let rules = parse_cors(&body, &b.s3, &b.nats)?;
    crate::s3::ops::common::require_bucket(&ctx).await?;
    let json = serde_json::to_string(&rules).map_err(S3Error::internal)?;
    ctx.gw
        .store
        .set_bucket_metadata(&b.nats, BUCKET_CORS, Some(json))
        .await?;
    Ok(respond::empty(StatusCode::OK))
}

/// The rules of a PutBucketCors body for bucket `s3` (NATS bucket `nats`), validated like
/// config rules.
pub fn parse_cors(body: &[u8], s3: &str, nats: &str) -> S3Result<Vec<CorsRule>> {
    let cfg: CorsConfiguration = xml::parse(body)?;
    let rules: Vec<CorsRule> = cfg
        .rules
        .into_iter()
        .map(|r| CorsRule {
            id: r.id,
            allowed_origins: r.origins,
            allowed_methods: r.methods,
            allowed_headers: r.headers,
            expose_headers: r.expose,
            max_age_seconds: r.max_age,
        })
        .collect();
    if rules.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    let check = jets3_crds::GatewayConfig {
        buckets: vec![jets3_crds::BucketConfig {
            name: s3.to_string(),
            nats_bucket: Some(nats.to_string()),
            access: Default::default(),
            read_only: false,
            create: false,
            storage: Default::default(),
            replicas: 1,
            cors: rules.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    if let Err(e) = check.validate() {
        let msg =
            e.0.iter()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
        return Err(S3Error::invalid_request(msg));
    }
    Ok(rules)
}

/// DeleteBucketCors.
pub async fn delete_cors(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    if managed_by_config(b) {
        return Err(crate::s3::ops::common::set_by_config(&b.s3, "CORS", "cors"));
    }
    crate::s3::ops::common::require_bucket(ctx).await?;
    ctx.gw
        .store
        .set_bucket_metadata(&b.nats, BUCKET_CORS, None)
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_origins_methods_and_headers() {
        let rules = vec![CorsRule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec!["x-amz-*".into(), "content-type".into()],
            ..Default::default()
        }];
        assert!(find(&rules, "https://app.example.com", "GET", &[]).is_some());
        assert!(find(
            &rules,
            "https://app.example.com",
            "PUT",
            &["Content-Type", "x-amz-date"]
        )
        .is_some());
        assert!(find(&rules, "https://evil.com", "GET", &[]).is_none());
        assert!(find(&rules, "https://app.example.com", "DELETE", &[]).is_none());
        assert!(find(&rules, "https://app.example.com", "PUT", &["authorization"]).is_none());
    }
}
