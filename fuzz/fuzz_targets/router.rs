//! The router: method + Host + path + query -> bucket, key and Endpoint.
//!
//! Input: lines `METHOD`, `Host` (empty: none), `path[?query]`, `copy` (any text: an
//! x-amz-copy-source header), then a bucket name and a key for the addressing round trip.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, Method};
use jets3_crds::GatewayConfig;
use jets3_fuzz::{client_error, encode_key, encode_query, lines};
use jets3_gateway::config::compiled::CompiledConfig;
use jets3_gateway::fuzzing::address;
use jets3_gateway::s3::endpoint::{self as router, Endpoint, Need};
use libfuzzer_sys::fuzz_target;

const DOMAIN: &str = "s3.example.com";

fn compiled() -> &'static CompiledConfig {
    static COMPILED: OnceLock<CompiledConfig> = OnceLock::new();
    COMPILED.get_or_init(|| {
        CompiledConfig::new(GatewayConfig {
            virtual_host_domains: vec![DOMAIN.into()],
            ..Default::default()
        })
        .expect("a valid config")
    })
}

/// Operations on an object (the path names a key).
fn object_op(ep: Endpoint) -> bool {
    use Endpoint::*;
    matches!(
        ep,
        GetObject
            | HeadObject
            | PutObject
            | CopyObject
            | DeleteObject
            | GetObjectTagging
            | PutObjectTagging
            | DeleteObjectTagging
            | GetObjectAcl
            | PutObjectAcl
            | GetObjectAttributes
            | CreateMultipartUpload
            | UploadPart
            | UploadPartCopy
            | CompleteMultipartUpload
            | AbortMultipartUpload
            | ListParts
    )
}

/// Operations that name no object and no bucket-level sub-resource check.
fn neutral(ep: Endpoint) -> bool {
    matches!(ep, Endpoint::Preflight | Endpoint::NotImplemented(_))
}

fn route(method: &Method, host: Option<&str>, raw_path: &str, raw_query: Option<&str>, copy: bool) {
    let compiled = compiled();
    let (bucket, key) = match address(compiled, host, raw_path) {
        Ok(a) => a,
        Err(e) => return client_error(&e, "address"),
    };
    assert!(
        bucket.is_some() || key.is_none(),
        "a key without a bucket: {key:?}"
    );
    let query = match router::parse_query(raw_query) {
        Ok(q) => q,
        Err(e) => return client_error(&e, "query"),
    };
    let mut headers = HeaderMap::new();
    if copy {
        headers.insert("x-amz-copy-source", HeaderValue::from_static("/src/key"));
    }
    let ep = match router::parse(method, bucket.as_deref(), key.as_deref(), &query, &headers) {
        Ok(ep) => ep,
        Err(e) => return client_error(&e, "router"),
    };
    match (&bucket, &key) {
        (_, Some(k)) => assert!(
            object_op(ep) || neutral(ep),
            "{method} on key {k:?} routed to {ep:?}"
        ),
        (Some(b), None) => assert!(
            !object_op(ep) && ep != Endpoint::ListBuckets,
            "{method} on bucket {b:?} without a key routed to {ep:?}"
        ),
        (None, None) => assert!(
            matches!(ep, Endpoint::ListBuckets) || neutral(ep),
            "{method} without a bucket routed to {ep:?}"
        ),
    }
    if ep.public_read() {
        assert_eq!(ep.need(), Need::Read, "{ep:?} is public but not a read");
    }
    if matches!(ep.need(), Need::Write | Need::Admin) {
        assert!(!ep.public_read(), "{ep:?} writes but is public");
    }
}

/// A key written path style and virtual-hosted style must come back unchanged.
fn round_trip(bucket: &str, key: &str) {
    if jets3_crds::validate_s3_bucket_name(bucket).is_err() {
        return;
    }
    let compiled = compiled();
    let want_key = (!key.is_empty()).then(|| key.to_string());
    let path = format!("/{bucket}/{}", encode_key(key));
    let got = address(compiled, Some("localhost:9000"), &path).expect("an encoded UTF-8 path");
    assert_eq!(
        got,
        (Some(bucket.to_string()), want_key.clone()),
        "path style {path:?}"
    );
    let host = format!("{bucket}.{DOMAIN}");
    let path = format!("/{}", encode_key(key));
    let got = address(compiled, Some(&host), &path).expect("an encoded UTF-8 path");
    assert_eq!(
        got,
        (Some(bucket.to_string()), want_key),
        "virtual-hosted {host} {path:?}"
    );
}

/// Query pairs encoded as the SDKs do decode to themselves.
fn query_round_trip(pairs: &router::Query) {
    let raw: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
        .collect();
    let again = router::parse_query(Some(&raw.join("&"))).expect("an encoded UTF-8 query");
    let kept: router::Query = pairs
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .cloned()
        .collect();
    let again: router::Query = again.into_iter().filter(|(k, _)| !k.is_empty()).collect();
    assert_eq!(again, kept, "query round trip of {raw:?}");
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data, 6);
    let method = Method::from_bytes(l[0].trim_end_matches('\r').as_bytes()).unwrap_or(Method::GET);
    let host = Some(l[1].as_str()).filter(|h| !h.is_empty());
    let (path, query) = match l[2].split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (l[2].as_str(), None),
    };
    route(&method, host, path, query, !l[3].is_empty());
    round_trip(&l[4], &l[5]);
    if let Ok(pairs) = router::parse_query(query) {
        query_round_trip(&pairs);
    }
});
