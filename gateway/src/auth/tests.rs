//! Tests of [`authenticate`]: requests signed by the aws-sigv4 crate and the AWS
//! documentation's published examples.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign as aws_sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use time::OffsetDateTime;

use super::sigv4::{format_amz_date, parse_amz_date, EMPTY_SHA256};
use super::*;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST: &str = "localhost:9000";
/// What the SDKs leave unencoded in object keys.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

struct Keys;

impl SecretLookup for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == AK).then(|| SK.to_owned())
    }
}

fn at(s: &str) -> OffsetDateTime {
    parse_amz_date(s).unwrap()
}

fn now() -> OffsetDateTime {
    at("20260101T120000Z")
}

fn settings(now: OffsetDateTime) -> AuthSettings<'static> {
    AuthSettings {
        region: "us-east-1",
        now,
        max_skew: Duration::from_secs(15 * 60),
    }
}

#[derive(Clone, Debug)]
struct Req {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Req {
    fn new(method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (path_and_query, None),
        };
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Req {
            method: method.parse().unwrap(),
            path: path.to_owned(),
            query,
            headers: map,
        }
    }

    fn auth_at(&self, now: OffsetDateTime) -> Result<Authenticated, S3Error> {
        let parts = RequestParts {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
        };
        authenticate(&parts, &Keys, &settings(now))
    }

    fn auth(&self) -> Result<Authenticated, S3Error> {
        self.auth_at(now())
    }

    fn signed(&self) -> SignedRequest {
        match self.auth() {
            Ok(Authenticated::Signed(s)) => s,
            other => panic!("{} {:?}: {other:?}", self.method, self.path),
        }
    }

    fn code(&self) -> S3Code {
        self.code_at(now())
    }

    fn code_at(&self, now: OffsetDateTime) -> S3Code {
        match self.auth_at(now) {
            Err(e) => e.code,
            Ok(a) => panic!("expected an error, got {a:?}"),
        }
    }

    fn set(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }
}

/// How to sign with aws-sigv4.
struct Signer<'a> {
    access_key: &'a str,
    secret: &'a str,
    region: &'a str,
    time: OffsetDateTime,
    presign: Option<u64>,
    payload: &'a str,
    excluded: Vec<&'static str>,
}

impl Default for Signer<'_> {
    fn default() -> Self {
        Signer {
            access_key: AK,
            secret: SK,
            region: "us-east-1",
            time: now(),
            presign: None,
            payload: EMPTY_SHA256,
            excluded: Vec::new(),
        }
    }
}

impl Signer<'_> {
    /// Signs like the AWS SDK does for S3 (no double encoding, no path normalization).
    fn sign(&self, method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Req {
        let identity = aws_credential_types::Credentials::new(
            self.access_key,
            self.secret,
            None,
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        if let Some(excluded) = settings.excluded_headers.as_mut() {
            excluded.extend(self.excluded.iter().map(|h| (*h).into()));
        }
        if let Some(secs) = self.presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(secs));
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name("s3")
            .time(SystemTime::from(self.time))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let uri = format!("http://{HOST}{path_and_query}");
        let body = if self.presign.is_some() {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Precomputed(self.payload.to_owned())
        };
        let signable =
            SignableRequest::new(method, uri.as_str(), headers.iter().copied(), body).unwrap();
        let (instructions, _) = aws_sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::builder().method(method).uri(uri.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        let mut headers = request.headers().clone();
        if !headers.contains_key("host") {
            headers.insert("host", HeaderValue::from_static(HOST));
        }
        Req {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            headers,
        }
    }
}

fn sign(method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Req {
    Signer::default().sign(method, path_and_query, headers)
}

fn presign(method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Req {
    Signer {
        presign: Some(3600),
        ..Signer::default()
    }
    .sign(method, path_and_query, headers)
}

fn key_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", utf8_percent_encode(key, KEY_SET))
}

const KEYS: &[&str] = &[
    "plain.txt",
    "a b",
    "ünïcödé/✓/😀",
    "a+b",
    "a%2Fb",
    "a//b",
    "../x",
    "./x/../y/",
    "sp ace/+plus/=eq&amp;semi:colon,comma@at!bang*star'q(p)$d",
    "~tilde-dash_under.dot",
    "[brackets]{braces}|pipe^caret`tick\"quote<lt>gt#hash?q%pct\\bs",
];

const QUERIES: &[&str] = &[
    "",
    "?acl",
    "?list-type=2&prefix=a%20b%2Fc&delimiter=%2F",
    "?prefix=a+b&marker=%E2%9C%93&max-keys=10",
    "?continuation-token=abc%2B%3D%3D&start-after=%2F%2F&encoding-type=url",
    "?z=1&a=2&a=1&m=&tagging",
    "?x=%21%27%28%29%2A%7E-_.&y=%25%26%3D",
];

#[test]
fn header_signed_requests_authenticate() {
    for key in KEYS {
        for query in QUERIES {
            let req = sign("GET", &format!("{}{query}", key_path("bucket", key)), &[]);
            let signed = req.signed();
            assert_eq!(signed.access_key_id, AK);
            assert!(!signed.presigned);
            assert!(matches!(signed.payload, Payload::Sha256(h) if hex::encode(h) == EMPTY_SHA256));
        }
    }
}

#[test]
fn presigned_requests_authenticate() {
    for key in KEYS {
        for query in QUERIES {
            let req = presign("GET", &format!("{}{query}", key_path("bucket", key)), &[]);
            let signed = req.signed();
            assert_eq!(signed.access_key_id, AK);
            assert!(signed.presigned);
            assert!(matches!(signed.payload, Payload::Unsigned));
        }
    }
}

#[test]
fn other_methods_headers_and_bucket_paths_authenticate() {
    let headers = [
        ("content-type", "text/plain"),
        ("x-amz-meta-Mixed", "  padded   value  "),
        ("x-amz-meta-multi", "one"),
        ("x-amz-meta-multi", "two"),
        ("range", "bytes=0-9"),
    ];
    for method in ["GET", "PUT", "POST", "DELETE", "HEAD"] {
        for path in ["/", "/bucket", "/bucket/", "/bucket/key"] {
            sign(method, path, &headers).signed();
            presign(method, path, &headers).signed();
        }
    }
}

#[test]
fn equivalent_wire_encodings_authenticate() {
    // S3 decodes the path before canonicalizing, so any encoding of the same bytes works.
    let req = sign("GET", "/bucket/a/b~c%E2%9C%93?prefix=x%2Fy", &[]);
    for wire in [
        "/bucket/%61%2Fb%7ec%e2%9c%93",
        "/bucket/a%2Fb~c%E2%9C%93",
        "/%62ucket/a/b%7Ec%E2%9C%93",
    ] {
        let mut r = req.clone();
        r.path = wire.to_owned();
        r.signed();
    }
    let mut r = req.clone();
    r.query = Some("prefix=x/y".to_owned());
    r.signed();
    let mut r = req.clone();
    r.path = "/bucket/a/b~d%E2%9C%93".to_owned();
    assert_eq!(r.code(), S3Code::SignatureDoesNotMatch);
}

#[test]
fn tampering_is_detected() {
    let headers = [("x-amz-meta-a", "1"), ("range", "bytes=0-9")];
    let base = sign("GET", "/bucket/key?prefix=a&max-keys=2", &headers);
    base.signed();
    let mut cases: Vec<(&str, Req)> = Vec::new();
    let mut r = base.clone();
    r.method = Method::HEAD;
    cases.push(("method", r));
    let mut r = base.clone();
    r.path = "/bucket/kez".to_owned();
    cases.push(("path", r));
    let mut r = base.clone();
    r.path = "/bucket//key".to_owned();
    cases.push(("path slashes", r));
    let mut r = base.clone();
    r.query = Some("prefix=b&max-keys=2".to_owned());
    cases.push(("query value", r));
    let mut r = base.clone();
    r.query = Some("prefix=a&max-keys=2&acl".to_owned());
    cases.push(("query added", r));
    let mut r = base.clone();
    r.query = Some("prefix=a".to_owned());
    cases.push(("query removed", r));
    let mut r = base.clone();
    r.query = None;
    cases.push(("query dropped", r));
    let mut r = base.clone();
    r.set("x-amz-meta-a", "2");
    cases.push(("signed header", r));
    let mut r = base.clone();
    r.set("range", "bytes=0-10");
    cases.push(("range", r));
    let mut r = base.clone();
    r.set("host", "evil:9000");
    cases.push(("host", r));
    let mut r = base.clone();
    r.set("x-amz-content-sha256", &"0".repeat(64));
    cases.push(("payload hash", r));
    let mut r = base.clone();
    r.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    cases.push(("unsigned payload", r));
    let mut r = base.clone();
    let date = format_amz_date(now() + time::Duration::seconds(1));
    r.set("x-amz-date", &date);
    cases.push(("date", r));
    let mut r = base.clone();
    let auth = r.headers["authorization"].to_str().unwrap().to_owned();
    let last = auth.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    r.set(
        "authorization",
        &format!("{}{flipped}", &auth[..auth.len() - 1]),
    );
    cases.push(("signature", r));
    let mut r = base.clone();
    r.set("authorization", &auth.replace("Signature=", "Signature=00"));
    cases.push(("signature length", r));
    for (what, req) in cases {
        let err = req
            .auth()
            .err()
            .unwrap_or_else(|| panic!("{what} accepted"));
        assert_eq!(err.code, S3Code::SignatureDoesNotMatch, "{what}: {err}");
    }
}

#[test]
fn signature_mismatch_reports_details() {
    let mut r = sign("GET", "/bucket/key", &[]);
    r.path = "/bucket/other".to_owned();
    let err = r.auth().err().unwrap();
    let names: Vec<&str> = err.extra.iter().map(|(n, _)| *n).collect();
    for name in [
        "AWSAccessKeyId",
        "StringToSign",
        "SignatureProvided",
        "CanonicalRequest",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let creq = &err
        .extra
        .iter()
        .find(|(n, _)| *n == "CanonicalRequest")
        .unwrap()
        .1;
    assert!(creq.starts_with("GET\n/bucket/other\n\n"), "{creq}");
}

#[test]
fn presigned_tampering_is_detected() {
    let base = presign("PUT", "/bucket/key?partNumber=1&uploadId=abc", &[]);
    base.signed();
    let q = base.query.clone().unwrap();
    let mut cases = Vec::new();
    for (from, to) in [
        ("partNumber=1", "partNumber=2"),
        ("X-Amz-Expires=3600", "X-Amz-Expires=3601"),
        (
            "X-Amz-SignedHeaders=host",
            "X-Amz-SignedHeaders=host%3Bx-amz-meta-a",
        ),
    ] {
        let mut r = base.clone();
        assert!(q.contains(from), "{q}");
        r.query = Some(q.replace(from, to));
        if to.contains("x-amz-meta-a") {
            r.set("x-amz-meta-a", "1");
        }
        cases.push(r);
    }
    let mut r = base.clone();
    r.query = Some(format!("{q}&extra=1"));
    cases.push(r);
    let mut r = base.clone();
    r.method = Method::GET;
    cases.push(r);
    let mut r = base.clone();
    r.path = "/bucket/key2".to_owned();
    cases.push(r);
    let mut r = base.clone();
    r.set("x-amz-content-sha256", EMPTY_SHA256);
    cases.push(r);
    let mut r = base.clone();
    let sig_at = q.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut bytes = q.clone().into_bytes();
    bytes[sig_at] = if bytes[sig_at] == b'a' { b'b' } else { b'a' };
    r.query = Some(String::from_utf8(bytes).unwrap());
    cases.push(r);
    for (i, req) in cases.into_iter().enumerate() {
        assert_eq!(req.code(), S3Code::SignatureDoesNotMatch, "case {i}");
    }
}

#[test]
fn unsigned_amz_headers_are_refused() {
    let mut r = sign("PUT", "/bucket/key", &[]);
    r.set("x-amz-acl", "public-read");
    let err = r.auth().err().unwrap();
    assert_eq!(err.code, S3Code::AccessDenied);
    assert_eq!(
        err.extra,
        vec![("HeadersNotSigned", "x-amz-acl".to_owned())]
    );

    let mut r = presign("PUT", "/bucket/key", &[]);
    r.set("x-amz-meta-a", "1");
    assert_eq!(r.code(), S3Code::AccessDenied);

    // Other unsigned headers are fine, as are presigners' deliberate omissions.
    let mut r = sign("PUT", "/bucket/key", &[]);
    r.set("user-agent", "x").set("content-type", "a/b");
    r.signed();
    let mut r = presign("GET", "/bucket/key", &[]);
    r.set("x-amz-user-agent", "x")
        .set("x-amz-checksum-mode", "ENABLED");
    r.signed();
}

#[test]
fn host_must_be_signed() {
    let r = Signer {
        excluded: vec!["host"],
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    let auth = r.headers["authorization"].to_str().unwrap();
    assert!(!auth.contains("host"), "{auth}");
    let err = r.auth().err().unwrap();
    assert_eq!(err.code, S3Code::AccessDenied);
    assert_eq!(err.extra, vec![("HeadersNotSigned", "host".to_owned())]);
}

#[test]
fn wrong_region_is_malformed() {
    let signer = Signer {
        region: "eu-west-1",
        ..Signer::default()
    };
    let err = signer.sign("GET", "/bucket/key", &[]).auth().err().unwrap();
    assert_eq!(err.code, S3Code::AuthorizationHeaderMalformed);
    assert_eq!(
        err.message,
        "The authorization header is malformed; the region 'eu-west-1' is wrong; expecting 'us-east-1'"
    );
    assert_eq!(err.extra, vec![("Region", "us-east-1".to_owned())]);

    let presigner = Signer {
        presign: Some(60),
        ..signer
    };
    let err = presigner
        .sign("GET", "/bucket/key", &[])
        .auth()
        .err()
        .unwrap();
    assert_eq!(err.code, S3Code::AuthorizationQueryParametersError);
    assert_eq!(err.extra, vec![("Region", "us-east-1".to_owned())]);
}

#[test]
fn clock_skew_is_limited() {
    for (offset, ok) in [
        (-16 * 60, false),
        (-14 * 60, true),
        (14 * 60, true),
        (16 * 60, false),
    ] {
        let signer = Signer {
            time: now() + time::Duration::seconds(offset),
            ..Signer::default()
        };
        let req = signer.sign("GET", "/bucket/key", &[]);
        if ok {
            req.signed();
            continue;
        }
        let err = req.auth().err().unwrap();
        assert_eq!(err.code, S3Code::RequestTimeTooSkewed, "{offset}");
        let extra: Vec<(&str, &str)> = err.extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            extra,
            vec![
                (
                    "RequestTime",
                    format_amz_date(now() + time::Duration::seconds(offset)).as_str()
                ),
                ("ServerTime", "2026-01-01T12:00:00Z"),
                ("MaxAllowedSkewMilliseconds", "900000"),
            ]
        );
    }
}

#[test]
fn presigned_expiry_is_exact_and_independent_of_skew() {
    let signer = Signer {
        presign: Some(60),
        ..Signer::default()
    };
    let req = signer.sign("GET", "/bucket/key", &[]);
    req.signed();
    assert!(req.auth_at(now() + time::Duration::seconds(60)).is_ok());
    let err = req
        .auth_at(now() + time::Duration::seconds(61))
        .err()
        .unwrap();
    assert_eq!(err.code, S3Code::AccessDenied);
    assert_eq!(err.message, "Request has expired");

    let week = Signer {
        presign: Some(604_800),
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    assert!(week.auth_at(now() + time::Duration::days(6)).is_ok());
    assert!(week
        .auth_at(now() + time::Duration::seconds(604_800))
        .is_ok());
    assert_eq!(
        week.code_at(now() + time::Duration::seconds(604_801)),
        S3Code::AccessDenied
    );

    // Signed in the future: fine within the skew, refused beyond it.
    assert!(req.auth_at(now() - time::Duration::minutes(14)).is_ok());
    let err = req
        .auth_at(now() - time::Duration::minutes(16))
        .err()
        .unwrap();
    assert_eq!(err.code, S3Code::AccessDenied);
}

#[test]
fn presign_parameters_are_validated() {
    let too_long = Signer {
        presign: Some(604_801),
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    let err = too_long.auth().err().unwrap();
    assert_eq!(err.code, S3Code::AuthorizationQueryParametersError);
    assert_eq!(
        err.message,
        "X-Amz-Expires must be less than a week (in seconds) that is 604800"
    );

    let base = presign("GET", "/bucket/key", &[]);
    let q = base.query.clone().unwrap();
    let with = |from: &str, to: &str| {
        let mut r = base.clone();
        assert!(q.contains(from), "{q}");
        r.query = Some(q.replace(from, to));
        r
    };
    for (from, to) in [
        ("X-Amz-Expires=3600", "X-Amz-Expires=0"),
        ("X-Amz-Expires=3600", "X-Amz-Expires=-1"),
        ("X-Amz-Expires=3600", "X-Amz-Expires=abc"),
        (
            "X-Amz-Expires=3600",
            "X-Amz-Expires=3600&X-Amz-Expires=3600",
        ),
        ("X-Amz-Expires=3600", ""),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm=AWS4-HMAC-SHA1",
        ),
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256", ""),
        ("X-Amz-Date=", "X-Amz-Date=x"),
        ("X-Amz-SignedHeaders=host", ""),
        (
            "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F",
            "X-Amz-Credential=",
        ),
        ("%2Fs3%2F", "%2Fsqs%2F"),
        ("X-Amz-Signature=", "X-Amz-Sig="),
    ] {
        assert_eq!(
            with(from, to).code(),
            S3Code::AuthorizationQueryParametersError,
            "{from} -> {to}"
        );
    }
}

#[test]
fn unknown_key_and_wrong_secret() {
    let r = Signer {
        access_key: "AKIDUNKNOWN",
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    let err = r.auth().err().unwrap();
    assert_eq!(err.code, S3Code::InvalidAccessKeyId);
    assert_eq!(
        err.extra,
        vec![("AWSAccessKeyId", "AKIDUNKNOWN".to_owned())]
    );
    let r = Signer {
        access_key: "AKIDUNKNOWN",
        presign: Some(60),
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    assert_eq!(r.code(), S3Code::InvalidAccessKeyId);

    let r = Signer {
        secret: "wrong",
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    assert_eq!(r.code(), S3Code::SignatureDoesNotMatch);
}

#[test]
fn anonymous_and_mechanism_errors() {
    assert!(matches!(
        Req::new("GET", "/bucket/key?prefix=a", &[("host", HOST)]).auth(),
        Ok(Authenticated::Anonymous)
    ));
    let v2 = Req::new(
        "GET",
        "/bucket/key",
        &[("authorization", "AWS AKID:c2lnbmF0dXJl")],
    );
    let err = v2.auth().err().unwrap();
    assert_eq!(err.code, S3Code::InvalidRequest);
    assert!(err.message.contains("AWS4-HMAC-SHA256"), "{}", err.message);
    let v2q = Req::new(
        "GET",
        "/bucket/key?AWSAccessKeyId=AKID&Expires=1&Signature=abc",
        &[],
    );
    assert_eq!(v2q.code(), S3Code::InvalidRequest);

    let mut both = sign("GET", "/bucket/key", &[]);
    both.query = presign("GET", "/bucket/key", &[]).query;
    assert_eq!(both.code(), S3Code::InvalidArgument);
}

#[test]
fn content_sha256_header_rules() {
    let mut r = sign("GET", "/bucket/key", &[]);
    r.headers.remove("x-amz-content-sha256");
    let err = r.auth().err().unwrap();
    assert_eq!(err.code, S3Code::InvalidRequest);
    assert_eq!(
        err.message,
        "Missing required header for this request: x-amz-content-sha256"
    );
    let invalid = Signer {
        payload: "not-a-hash",
        ..Signer::default()
    }
    .sign("PUT", "/bucket/key", &[]);
    assert_eq!(invalid.code(), S3Code::InvalidArgument);

    let hash = hex::encode([7u8; 32]);
    for (value, check) in [
        (
            "UNSIGNED-PAYLOAD",
            (|p: &Payload| matches!(p, Payload::Unsigned)) as fn(&Payload) -> bool,
        ),
        (
            hash.as_str(),
            |p| matches!(p, Payload::Sha256(h) if *h == [7u8; 32]),
        ),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", |p| {
            matches!(p, Payload::SignedChunks { trailer: false, .. })
        }),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", |p| {
            matches!(p, Payload::SignedChunks { trailer: true, .. })
        }),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", |p| {
            matches!(p, Payload::UnsignedChunksWithTrailer)
        }),
    ] {
        let signed = Signer {
            payload: value,
            ..Signer::default()
        }
        .sign("PUT", "/bucket/key", &[])
        .signed();
        assert!(check(&signed.payload), "{value}: {:?}", signed.payload);
    }

    // Presigned: UNSIGNED-PAYLOAD unless the header says otherwise.
    let mut r = presign("PUT", "/bucket/key", &[]);
    r.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    assert!(matches!(r.signed().payload, Payload::Unsigned));
    r.set("x-amz-content-sha256", "bogus");
    assert_eq!(r.code(), S3Code::InvalidArgument);
}

#[test]
fn date_header_can_replace_x_amz_date() {
    let mut r = Signer {
        excluded: vec!["x-amz-date"],
        ..Signer::default()
    }
    .sign("GET", "/bucket/key", &[]);
    r.headers.remove("x-amz-date");
    assert_eq!(r.code(), S3Code::AccessDenied);
    let date = httpdate::fmt_http_date(SystemTime::from(now()));
    r.set("date", &date);
    r.signed();
    r.set("date", "yesterday");
    assert_eq!(r.code(), S3Code::AccessDenied);
}

#[test]
fn malformed_authorization_headers() {
    let base = sign("GET", "/bucket/key", &[]);
    let auth = base.headers["authorization"].to_str().unwrap().to_owned();
    for (from, to) in [
        ("Credential=", "Cred="),
        ("/us-east-1/", "/us-west-2/"),
        ("/s3/", "/ec2/"),
        ("aws4_request", "aws5_request"),
        ("/20260101/", "/20260102/"),
        ("SignedHeaders=", "SignedHeader="),
    ] {
        let mut r = base.clone();
        r.set("authorization", &auth.replace(from, to));
        assert_eq!(
            r.code(),
            S3Code::AuthorizationHeaderMalformed,
            "{from} -> {to}"
        );
    }
    // Spacing after commas does not matter.
    let mut r = base.clone();
    r.set("authorization", &auth.replace(", ", ","));
    r.signed();
    let mut r = base.clone();
    r.set("authorization", &auth.replace(", ", " ,  "));
    r.signed();
}

// The AWS documentation's published examples (AmazonS3/latest/API/sig-v4-header-based-auth.html,
// sigv4-query-string-auth.html, sigv4-streaming.html).

fn doc_time() -> OffsetDateTime {
    at("20130524T000000Z")
}

fn doc_auth(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
    )
}

#[test]
fn aws_documentation_header_examples() {
    let get_object = Req::new(
        "GET",
        "/test.txt",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            (
                "authorization",
                &doc_auth(
                    "host;range;x-amz-content-sha256;x-amz-date",
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                ),
            ),
        ],
    );
    let put_object = Req::new(
        "PUT",
        "/test%24file.text",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
            (
                "authorization",
                &doc_auth(
                    "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                ),
            ),
        ],
    );
    let lifecycle = Req::new(
        "GET",
        "/?lifecycle",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            (
                "authorization",
                &doc_auth(
                    "host;x-amz-content-sha256;x-amz-date",
                    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
                ),
            ),
        ],
    );
    let list = Req::new(
        "GET",
        "/?max-keys=2&prefix=J",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            (
                "authorization",
                &doc_auth(
                    "host;x-amz-content-sha256;x-amz-date",
                    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
                ),
            ),
        ],
    );
    for (name, req) in [
        ("get", get_object),
        ("put", put_object),
        ("lifecycle", lifecycle),
        ("list", list),
    ] {
        match req.auth_at(doc_time()) {
            Ok(Authenticated::Signed(s)) => assert_eq!(s.access_key_id, AK),
            other => panic!("{name}: {other:?}"),
        }
        let mut tampered = req.clone();
        tampered.method = Method::POST;
        assert_eq!(
            tampered.code_at(doc_time()),
            S3Code::SignatureDoesNotMatch,
            "{name}"
        );
    }
}

#[test]
fn aws_documentation_presigned_example() {
    let req = Req::new(
        "GET",
        "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        &[("host", "examplebucket.s3.amazonaws.com")],
    );
    match req.auth_at(doc_time() + time::Duration::hours(23)) {
        Ok(Authenticated::Signed(s)) => {
            assert!(s.presigned);
            assert!(matches!(s.payload, Payload::Unsigned));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        req.code_at(doc_time() + time::Duration::seconds(86_401)),
        S3Code::AccessDenied
    );
}

/// The sigv4-streaming.html example request: 66560 bytes of 'a' in 64 KiB + 1 KiB chunks.
fn doc_streaming_request() -> Req {
    Req::new(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
            (
                "authorization",
                &doc_auth(
                    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
                    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
                ),
            ),
        ],
    )
}

/// The example's aws-chunked body.
pub(super) fn doc_streaming_body() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
    );
    body.extend_from_slice(&[b'a'; 65536]);
    body.extend_from_slice(
        b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n",
    );
    body.extend_from_slice(&[b'a'; 1024]);
    body.extend_from_slice(
        b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n",
    );
    body
}

#[test]
fn aws_documentation_streaming_example_end_to_end() {
    let req = doc_streaming_request();
    let payload = match req.auth_at(doc_time()) {
        Ok(Authenticated::Signed(s)) => s.payload,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        payload,
        Payload::SignedChunks { trailer: false, .. }
    ));
    let body = doc_streaming_body();
    assert_eq!(body.len(), 66824);
    let input = futures::stream::iter(
        body.chunks(1000)
            .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let (decoded, trailers) = decode_chunked(input, &payload);
    let parts: Vec<Result<bytes::Bytes, S3Error>> = futures::executor::block_on(decoded.collect());
    let mut data = Vec::new();
    for part in parts {
        data.extend_from_slice(&part.unwrap());
    }
    assert_eq!(data, vec![b'a'; 66560]);
    assert!(trailers.get().is_empty());

    let mut wrong = req.clone();
    wrong.set("x-amz-decoded-content-length", "66561");
    assert_eq!(wrong.code_at(doc_time()), S3Code::SignatureDoesNotMatch);
}
