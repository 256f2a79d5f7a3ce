//! SigV4: Authorization header and presigned query parsing, canonical requests and
//! verification against a known secret.
//!
//! Two modes, by the first byte. Even: raw text (lines `METHOD`, `path[?query]`, then
//! `name: value` headers) through `authenticate`, which must refuse it with a client error
//! or accept it. Odd: a structured request (arbitrary) signed by the aws-sigv4 crate, which
//! must verify; then changed in what the gateway would serve (key, query, a signed header,
//! method), which must not.
#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jets3_fuzz::{
    client_error, encode_key, encode_query, lines, Keys, ACCESS_KEY, REGION, SECRET_KEY,
};
use jets3_gateway::auth::{authenticate, AuthSettings, Authenticated, RequestParts};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const HOST: &str = "localhost:9000";
/// 2026-01-01T12:00:00Z, the time every request is signed at.
const SIGNED_AT: i64 = 1_767_268_800;

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
const HEADERS: [&str; 10] = [
    "x-amz-meta-a",
    "x-amz-meta-b",
    "content-type",
    "content-md5",
    "x-amz-tagging",
    "x-amz-copy-source",
    "range",
    "if-match",
    "x-amz-checksum-crc32",
    "cache-control",
];
const PAYLOADS: [&str; 4] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "UNSIGNED-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
];

fn settings(now: OffsetDateTime) -> AuthSettings<'static> {
    AuthSettings {
        region: REGION,
        now,
        max_skew: Duration::from_secs(15 * 60),
    }
}

fn signed_at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(SIGNED_AT).expect("a valid time")
}

struct Req {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Req {
    fn auth(&self, now: OffsetDateTime) -> Result<Authenticated, jets3_gateway::error::S3Error> {
        let parts = RequestParts {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
        };
        authenticate(&parts, &Keys, &settings(now))
    }
}

fn raw(data: &[u8]) {
    let l = lines(data, 3);
    let Ok(method) = Method::from_bytes(l[0].as_bytes()) else {
        return;
    };
    let (path, query) = match l[1].split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (l[1].clone(), None),
    };
    let mut headers = HeaderMap::new();
    for line in l[2].lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim_start()),
        ) {
            headers.append(n, v);
        }
    }
    let req = Req {
        method,
        path,
        query,
        headers,
    };
    if let Err(e) = req.auth(signed_at()) {
        client_error(&e, "authenticate");
    }
}

#[derive(Arbitrary, Debug)]
struct Signed {
    method: u8,
    bucket: bool,
    key: String,
    query: Vec<(String, String)>,
    headers: Vec<(u8, String)>,
    presign: bool,
    payload: u8,
    skew: i16,
    change: u8,
}

/// A header value as clients send it: visible ASCII, spaces and tabs, no leading blank.
fn header_value(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ' || *c == '\t')
        .collect::<String>()
        .trim_start()
        .to_string()
}

fn sign_request(s: &Signed) -> Option<Req> {
    let method = METHODS[usize::from(s.method) % METHODS.len()];
    let bucket = if s.bucket { "bucket" } else { "my.bucket-1" };
    let mut path_and_query = format!("/{bucket}/{}", encode_key(&s.key));
    let query: Vec<String> = s
        .query
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !k.is_empty() && !k.starts_with("x-amz-") && k != "awsaccesskeyid" && k != "signature"
        })
        .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
        .collect();
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query.join("&"));
    }
    let headers: Vec<(&str, String)> = s
        .headers
        .iter()
        .map(|(n, v)| (HEADERS[usize::from(*n) % HEADERS.len()], header_value(v)))
        .collect();
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "fuzz").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    if s.presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(3600));
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("s3")
        .time(SystemTime::from(signed_at()))
        .settings(settings)
        .build()
        .ok()?
        .into();
    let uri = format!("http://{HOST}{path_and_query}");
    let body = if s.presign {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Precomputed(PAYLOADS[usize::from(s.payload) % PAYLOADS.len()].to_string())
    };
    let signable = SignableRequest::new(
        method,
        uri.as_str(),
        headers.iter().map(|(n, v)| (*n, v.as_str())),
        body,
    )
    .ok()?;
    let (instructions, _) = sign(signable, &params).ok()?.into_parts();
    let mut request = http::Request::builder().method(method).uri(uri.as_str());
    for (name, value) in &headers {
        request = request.header(*name, value.as_str());
    }
    let mut request = request.body(()).ok()?;
    instructions.apply_to_request_http1x(&mut request);
    let mut headers = request.headers().clone();
    if !headers.contains_key("host") {
        headers.insert("host", HeaderValue::from_static(HOST));
    }
    Some(Req {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers,
    })
}

fn signed(data: &[u8]) {
    let Ok(s) = Signed::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let Some(mut req) = sign_request(&s) else {
        return;
    };
    let now = signed_at() + time::Duration::seconds(i64::from(s.skew).clamp(-600, 600));
    match req.auth(now) {
        Ok(Authenticated::Signed(got)) => {
            assert_eq!(got.access_key_id, ACCESS_KEY);
            assert_eq!(got.presigned, s.presign);
        }
        other => panic!("a request signed by aws-sigv4 was refused: {other:?}\n{s:?}"),
    }
    // Change what the gateway would serve; the signature must no longer hold.
    match s.change % 4 {
        0 => req.path.push('x'),
        1 => {
            let q = req.query.get_or_insert_with(String::new);
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str("versionId=x");
        }
        2 => {
            let Some(name) = s
                .headers
                .first()
                .map(|(n, _)| HEADERS[usize::from(*n) % HEADERS.len()])
            else {
                return;
            };
            let old = req
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let new = HeaderValue::from_str(&format!("{old}x")).expect("visible ASCII");
            req.headers.insert(name, new);
        }
        _ => {
            req.method = if req.method == Method::GET {
                Method::HEAD
            } else {
                Method::GET
            }
        }
    }
    match req.auth(now) {
        Ok(Authenticated::Signed(_)) => {
            panic!(
                "a changed request kept its signature (change {}): {s:?}",
                s.change % 4
            )
        }
        Ok(Authenticated::Anonymous) => panic!("a signed request became anonymous"),
        Err(e) => client_error(&e, "changed request"),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => signed(rest),
        Some((_, rest)) => raw(rest),
        None => {}
    }
});
