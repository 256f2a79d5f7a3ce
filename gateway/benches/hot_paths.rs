//! Criterion micro-benchmarks of the gateway's per-request hot paths, so that a regression shows
//! here before it shows in the system benchmark (scripts/bench.sh):
//!
//! - SigV4 verification of an `Authorization` header (GET with UNSIGNED-PAYLOAD, PUT with a
//!   payload hash), as the AWS SDKs sign;
//! - `aws-chunked` decoding with every chunk signature checked (1 MiB in 64 KiB chunks, fed in
//!   16 KiB network reads);
//! - XML rendering of a 1000-key ListObjectsV2 page;
//! - the router: query parsing and endpoint selection for typical requests;
//! - the per-chunk hashing of the write path over 128 KiB chunks (the object-store chunk size):
//!   MD5 for the ETag and SHA-256 for the NATS digest, done for every byte written, and a
//!   CRC32 checksum as the SDKs ask for;
//! - bucket policy evaluation: an anonymous GetObject against a 20-statement policy whose
//!   last statement allows it (every statement is looked at), and its parsing.
//!
//! `cargo bench -p jets3-gateway --bench hot_paths` (add `-- --quick` for a short run).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign as aws_sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method};
use jets3_testkit::sigv4;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use jets3_crds::policy::{Context, Decision, Policy, Request};
use jets3_gateway::auth::{
    authenticate, decode_chunked, AuthSettings, Authenticated, Payload, RequestParts, SecretLookup,
};
use jets3_gateway::checksum::{Algo, Running};
use jets3_gateway::s3::endpoint::{parse, parse_query};
use jets3_gateway::xml::XmlWriter;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST: &str = "127.0.0.1:9000";
const REGION: &str = "us-east-1";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Keys;

impl SecretLookup for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == AK).then(|| SK.to_owned())
    }
}

/// A request as the gateway sees it.
struct Req {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Req {
    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
        }
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn settings(now: OffsetDateTime) -> AuthSettings<'static> {
    AuthSettings {
        region: REGION,
        now,
        max_skew: Duration::from_secs(15 * 60),
    }
}

/// Signs like the AWS SDKs do for S3 (single encoding, no path normalization).
fn sign(
    at: OffsetDateTime,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Req {
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "bench").into();
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Single;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("s3")
        .time(SystemTime::from(at))
        .settings(s)
        .build()
        .unwrap()
        .into();
    let uri = format!("http://{HOST}{path_and_query}");
    let signable = SignableRequest::new(
        method,
        uri.as_str(),
        headers.iter().copied(),
        SignableBody::Precomputed(payload.to_owned()),
    )
    .unwrap();
    let (instructions, _) = aws_sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder().method(method).uri(uri.as_str());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    let mut headers = request.headers().clone();
    headers.insert("host", HeaderValue::from_static(HOST));
    Req {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers,
    }
}

fn bench_sigv4(c: &mut Criterion) {
    let at = now();
    let get = sign(
        at,
        "GET",
        "/bucket/some/object/key-0001.bin",
        &[("user-agent", "aws-sdk-rust/1.0 os/linux lang/rust/1.89")],
        "UNSIGNED-PAYLOAD",
    );
    let put = sign(
        at,
        "PUT",
        "/bucket/some/object/key-0001.bin",
        &[
            ("content-length", "4096"),
            ("content-type", "application/octet-stream"),
            ("x-amz-meta-owner", "team-a"),
        ],
        &hex::encode(Sha256::digest(vec![7u8; 4096])),
    );
    let list = sign(
        at,
        "GET",
        "/bucket?list-type=2&max-keys=1000&prefix=some%2Fobject%2F&continuation-token=a2V5LTAwMDE",
        &[],
        EMPTY_SHA256,
    );
    let st = settings(at);
    let mut g = c.benchmark_group("sigv4_header");
    for (name, req) in [
        ("get_unsigned", &get),
        ("put_sha256", &put),
        ("list_query", &list),
    ] {
        assert!(matches!(
            authenticate(&req.parts(), &Keys, &st),
            Ok(Authenticated::Signed(_))
        ));
        g.bench_function(name, |b| {
            b.iter(|| authenticate(black_box(&req.parts()), &Keys, &st).unwrap())
        });
    }
    g.finish();
}

/// An aws-chunked body of `size` bytes in `chunk` byte chunks, signed from `seed`.
fn chunked_body(at: OffsetDateTime, seed: &str, size: usize, chunk: usize) -> Vec<u8> {
    let amz_date = sigv4::amz_date(at);
    let date = &amz_date[..8];
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let key = sigv4::signing_key(SK, date, REGION, "s3");
    let data = vec![b'a'; size];
    let mut prev = seed.to_string();
    let mut out = Vec::with_capacity(size + size / chunk * 100 + 200);
    let pieces: Vec<&[u8]> = data.chunks(chunk).chain(std::iter::once(&[][..])).collect();
    for piece in pieces {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{EMPTY_SHA256}\n{}",
            hex::encode(Sha256::digest(piece))
        );
        let sig = hex::encode(sigv4::hmac(&key, to_sign.as_bytes()));
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
        prev = sig;
    }
    out
}

fn bench_chunked(c: &mut Criterion) {
    const SIZE: usize = 1 << 20;
    let at = now();
    let len = (SIZE + SIZE / 65536 * 100 + 100).to_string();
    let req = sign(
        at,
        "PUT",
        "/bucket/chunked-object",
        &[
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", &SIZE.to_string()),
            ("content-length", &len),
        ],
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    );
    let payload: Payload = match authenticate(&req.parts(), &Keys, &settings(at)) {
        Ok(Authenticated::Signed(s)) => s.payload,
        other => panic!("the streaming request did not authenticate: {other:?}"),
    };
    let auth = req.headers["authorization"].to_str().unwrap();
    let seed = auth.rsplit("Signature=").next().unwrap().to_string();
    let body = Bytes::from(chunked_body(at, &seed, SIZE, 65536));
    // Network-sized reads, as hyper hands them over.
    let reads: Vec<Bytes> = (0..body.len())
        .step_by(16 * 1024)
        .map(|i| body.slice(i..(i + 16 * 1024).min(body.len())))
        .collect();
    let decode = |reads: Vec<Bytes>| {
        let input = futures::stream::iter(reads.into_iter().map(Ok::<_, std::convert::Infallible>));
        let (decoded, _trailers) = decode_chunked(input, &payload);
        futures::executor::block_on(decoded.fold(0usize, |n, part| async move {
            n + part.expect("chunk verifies").len()
        }))
    };
    assert_eq!(decode(reads.clone()), SIZE);
    let mut g = c.benchmark_group("aws_chunked");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("signed_1mib_64k_chunks", |b| {
        b.iter_batched(|| reads.clone(), decode, BatchSize::SmallInput)
    });
    g.finish();
}

fn bench_xml(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("photos/2026/11/{i:06}-holiday & friends <raw>.jpg"))
        .collect();
    let render = |keys: &[String]| {
        let mut w = XmlWriter::new("ListBucketResult");
        w.elem("Name", "bucket")
            .elem("Prefix", "photos/")
            .elem("KeyCount", "1000")
            .elem("MaxKeys", "1000")
            .elem("IsTruncated", "true")
            .elem("NextContinuationToken", "cGhvdG9zLzIwMjYvMTEvMDAwOTk5");
        for k in keys {
            w.open("Contents")
                .elem("Key", k)
                .elem("LastModified", "2026-11-22T07:00:00.000Z")
                .elem("ETag", "\"9e107d9d372bb6826bd81d3542a419d6\"")
                .elem("Size", "1048576")
                .elem("StorageClass", "STANDARD")
                .close("Contents");
        }
        w.finish("ListBucketResult")
    };
    let doc = render(&keys);
    let mut g = c.benchmark_group("xml");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.bench_function("list_v2_1000_keys", |b| b.iter(|| render(black_box(&keys))));
    g.finish();
}

/// name, method, bucket, key, raw query, headers.
type RouteCase<'a> = (
    &'a str,
    Method,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a HeaderMap,
);

fn bench_router(c: &mut Criterion) {
    let empty = HeaderMap::new();
    let mut copy = HeaderMap::new();
    copy.insert("x-amz-copy-source", HeaderValue::from_static("/src/key"));
    let cases: [RouteCase; 5] = [
        ("get_object", Method::GET, Some("bucket"), Some("a/b/c.bin"), None, &empty),
        ("put_object", Method::PUT, Some("bucket"), Some("a/b/c.bin"), None, &empty),
        (
            "list_objects_v2",
            Method::GET,
            Some("bucket"),
            None,
            Some("list-type=2&max-keys=1000&prefix=a%2Fb%2F&delimiter=%2F&continuation-token=YS9iL2M"),
            &empty,
        ),
        (
            "upload_part",
            Method::PUT,
            Some("bucket"),
            Some("big.bin"),
            Some("partNumber=17&uploadId=3c4e1f0a9b8d7c6e5f4a3b2c1d0e9f8a"),
            &empty,
        ),
        ("copy_object", Method::PUT, Some("bucket"), Some("dst"), None, &copy),
    ];
    let mut g = c.benchmark_group("router");
    for (name, method, bucket, key, query, headers) in &cases {
        let q = parse_query(*query).expect("UTF-8");
        assert!(parse(method, *bucket, *key, &q, headers).is_ok());
        g.bench_function(*name, |b| {
            b.iter(|| {
                let q = parse_query(black_box(*query)).ok()?;
                parse(method, *bucket, *key, &q, headers).ok()
            })
        });
    }
    g.finish();
}

fn bench_chunk_hashing(c: &mut Criterion) {
    let chunk = vec![0x5au8; 128 * 1024];
    let mut g = c.benchmark_group("write_path_hashing");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("md5_128k_chunk", |b| {
        b.iter(|| {
            let mut h = md5_many::Md5State::new();
            h.update(black_box(&chunk));
            h.finalize()
        })
    });
    g.bench_function("sha256_128k_chunk", |b| {
        b.iter(|| Sha256::digest(black_box(&chunk)))
    });
    g.bench_function("running_crc32_128k_chunk", |b| {
        b.iter_batched(
            || Running::new(&[Algo::Crc32]),
            |r| {
                r.update(black_box(&chunk));
                r.finish()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Request keys as a policy reads them.
struct ConditionKeys;

impl Context for ConditionKeys {
    fn value(&self, key: &str) -> Option<std::borrow::Cow<'_, str>> {
        match key {
            "aws:sourceip" => Some("192.0.2.10".into()),
            "aws:securetransport" => Some("false".into()),
            _ => None,
        }
    }
}

/// 19 statements that do not apply to an anonymous GET of `b/obj-1`, then one that allows it.
fn twenty_statements() -> String {
    let mut s: Vec<String> = (0..19)
        .map(|i| match i % 4 {
            0 => format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::jets3:user/AKIAOTHER{i:08}"}},"Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::b/team{i}/*"}}"#
            ),
            1 => r#"{"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::b/*"}"#.into(),
            2 => format!(
                r#"{{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/private{i}/*","Condition":{{"NotIpAddress":{{"aws:SourceIp":"10.0.0.0/8"}}}}}}"#
            ),
            _ => format!(
                r#"{{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{{"StringLike":{{"s3:prefix":["shared{i}/*"]}}}}}}"#
            ),
        })
        .collect();
    s.push(r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/obj-*"}"#.into());
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        s.join(",")
    )
}

fn bench_policy(c: &mut Criterion) {
    let text = twenty_statements();
    let policy = Policy::parse(&text, "b").expect("valid policy");
    let req = Request {
        principal: None,
        action: "s3:GetObject",
        resource: "arn:aws:s3:::b/obj-000123",
        context: &ConditionKeys,
    };
    assert_eq!(policy.evaluate(&req), Decision::Allow);
    let mut g = c.benchmark_group("bucket_policy");
    g.bench_function("evaluate_20_statements_get", |b| {
        b.iter(|| black_box(&policy).evaluate(black_box(&req)))
    });
    g.bench_function("parse_20_statements", |b| {
        b.iter(|| Policy::parse(black_box(&text), "b").is_ok())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_sigv4, bench_chunked, bench_xml, bench_router, bench_chunk_hashing,
        bench_policy
}
criterion_main!(benches);
