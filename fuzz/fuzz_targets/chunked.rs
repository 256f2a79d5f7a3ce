//! The aws-chunked body decoder: unsigned with trailers, signed, signed with trailers.
//!
//! First byte even: the rest is a raw body, decoded in every mode (no panic, client errors
//! only, never more bytes out than in, the same outcome however the body is split). Odd: an
//! encoding built from structured input (arbitrary) and signed with the known secret, which
//! must decode to exactly its chunks and trailers; with one byte changed, a signed body must
//! decode to the same or be refused.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method};
use jets3_fuzz::{client_error, Keys, ACCESS_KEY, REGION, SECRET_KEY};
use jets3_gateway::auth::{
    authenticate, decode_chunked, AuthSettings, Authenticated, Payload, RequestParts,
};
use jets3_gateway::error::S3Error;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const SIGNED_AT: i64 = 1_767_268_800;
const AMZ_DATE: &str = "20260101T120000Z";
const SCOPE: &str = "20260101/us-east-1/s3/aws4_request";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const TRAILERS: [&str; 4] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-sha256",
    "X-Amz-Checksum-CRC32C",
    "x-amz-meta-t",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    UnsignedTrailer,
    Signed,
    SignedTrailer,
}

const MODES: [Mode; 3] = [Mode::UnsignedTrailer, Mode::Signed, Mode::SignedTrailer];

/// A payload of each mode, with the seed signature of signed ones.
fn payload(mode: Mode) -> &'static (Payload, String) {
    static P: OnceLock<Vec<(Payload, String)>> = OnceLock::new();
    let all = P.get_or_init(|| MODES.iter().map(|m| signed_request(*m)).collect());
    &all[MODES.iter().position(|m| *m == mode).expect("a mode")]
}

/// Signs a PUT announcing `mode`'s body and authenticates it, for its Payload.
fn signed_request(mode: Mode) -> (Payload, String) {
    let sha = match mode {
        Mode::UnsignedTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        Mode::Signed => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        Mode::SignedTrailer => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    };
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "fuzz").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let now = OffsetDateTime::from_unix_timestamp(SIGNED_AT).expect("time");
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("s3")
        .time(SystemTime::from(now))
        .settings(settings)
        .build()
        .expect("params")
        .into();
    let uri = "http://localhost:9000/bucket/key";
    let signable = SignableRequest::new(
        "PUT",
        uri,
        [("content-encoding", "aws-chunked")].into_iter(),
        SignableBody::Precomputed(sha.to_string()),
    )
    .expect("signable");
    let (instructions, seed) = sign(signable, &params).expect("signs").into_parts();
    let mut request = http::Request::builder()
        .method("PUT")
        .uri(uri)
        .header("content-encoding", "aws-chunked")
        .body(())
        .expect("request");
    instructions.apply_to_request_http1x(&mut request);
    let mut headers: HeaderMap = request.headers().clone();
    headers.insert("host", HeaderValue::from_static("localhost:9000"));
    let parts = RequestParts {
        method: &Method::PUT,
        raw_path: "/bucket/key",
        raw_query: None,
        headers: &headers,
    };
    let settings = AuthSettings {
        region: REGION,
        now,
        max_skew: Duration::from_secs(900),
    };
    match authenticate(&parts, &Keys, &settings) {
        Ok(Authenticated::Signed(s)) => (s.payload, seed),
        other => panic!("the seed request does not verify: {other:?}"),
    }
}

fn signing_key() -> &'static [u8] {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    K.get_or_init(|| {
        let t = OffsetDateTime::from_unix_timestamp(SIGNED_AT).expect("time");
        v4::generate_signing_key(SECRET_KEY, SystemTime::from(t), REGION, "s3")
            .as_ref()
            .to_vec()
    })
}

fn hmac_hex(text: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_key()).expect("any key");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A decoded body: payload and trailers.
type Decoded = (Vec<u8>, Vec<(String, String)>);

/// Decodes `body` fed in pieces of the sizes in `cuts`.
fn decode(body: &[u8], cuts: &[usize], payload: &Payload) -> Result<Decoded, S3Error> {
    let mut pieces = Vec::new();
    let mut at: usize = 0;
    for &c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
        let end = at.saturating_add(c.max(1)).min(body.len());
        pieces.push(Ok::<Bytes, std::convert::Infallible>(
            Bytes::copy_from_slice(&body[at..end]),
        ));
        at = end;
        if at == body.len() {
            break;
        }
    }
    let (mut stream, slot) = decode_chunked(futures::stream::iter(pieces), payload);
    futures::executor::block_on(async {
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok((out, slot.get()))
    })
}

fn raw(data: &[u8]) {
    let cuts: Vec<usize> = data.iter().take(8).map(|b| usize::from(*b)).collect();
    for mode in MODES {
        let payload = &payload(mode).0;
        let whole = decode(data, &[usize::MAX], payload);
        let split = decode(data, &cuts, payload);
        match (&whole, &split) {
            (Ok((out, _)), Ok(_)) => assert!(out.len() <= data.len(), "more bytes out than in"),
            (Err(e), Err(_)) => client_error(e, "aws-chunked"),
            _ => panic!(
                "{mode:?}: the outcome depends on how the body is split: {whole:?} / {split:?}"
            ),
        }
        if let (Ok(a), Ok(b)) = (&whole, &split) {
            assert_eq!(a, b, "{mode:?}: split changes the output");
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Body {
    mode: u8,
    chunks: Vec<Vec<u8>>,
    trailers: Vec<(u8, String)>,
    cuts: Vec<u16>,
    flip: Option<(u16, u8)>,
}

/// A trailer value as clients send it: visible ASCII and inner spaces.
fn trailer_value(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect::<String>()
        .trim()
        .to_string()
}

fn encode(b: &Body, mode: Mode, seed: &str) -> (Vec<u8>, Vec<u8>, Vec<(String, String)>) {
    let mut body = Vec::new();
    let mut payload = Vec::new();
    let mut previous = seed.to_string();
    let chunks = b.chunks.iter().filter(|c| !c.is_empty()).map(Vec::as_slice);
    for chunk in chunks.chain(std::iter::once(&[][..])) {
        payload.extend_from_slice(chunk);
        body.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
        if mode != Mode::UnsignedTrailer {
            let sts = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{AMZ_DATE}\n{SCOPE}\n{previous}\n{EMPTY_SHA256}\n{}",
                hex::encode(Sha256::digest(chunk))
            );
            previous = hmac_hex(&sts);
            body.extend_from_slice(format!(";chunk-signature={previous}").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if !chunk.is_empty() {
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
    }
    let mut trailers: Vec<(String, String)> = Vec::new();
    if mode != Mode::Signed {
        // Within the decoder's limits: 4 KiB a line, 16 KiB of trailers.
        let mut room: i64 = 12 * 1024;
        for (n, v) in &b.trailers {
            let name = TRAILERS[usize::from(*n) % TRAILERS.len()];
            let mut value = trailer_value(v);
            value.truncate(1024);
            let value = value.trim().to_string();
            room -= (name.len() + value.len() + 2) as i64;
            if room < 0 {
                break;
            }
            body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            trailers.push((name.to_ascii_lowercase(), value));
        }
    }
    if mode == Mode::SignedTrailer && !trailers.is_empty() {
        let mut sorted = trailers.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let canonical: String = sorted.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{AMZ_DATE}\n{SCOPE}\n{previous}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        body.extend_from_slice(
            format!("x-amz-trailer-signature:{}\r\n", hmac_hex(&sts)).as_bytes(),
        );
    }
    body.extend_from_slice(b"\r\n");
    (body, payload, trailers)
}

fn structured(data: &[u8]) {
    let Ok(b) = Body::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let mode = MODES[usize::from(b.mode) % MODES.len()];
    let (payload_kind, seed) = payload(mode);
    let (mut body, payload, trailers) = encode(&b, mode, seed);
    let cuts: Vec<usize> = b.cuts.iter().map(|c| usize::from(*c)).collect();
    let Some((at, xor)) = b.flip.filter(|(_, x)| *x != 0) else {
        let got = decode(&body, &cuts, payload_kind);
        match got {
            Ok((out, got_trailers)) => {
                assert!(out == payload, "{mode:?}: decoded payload differs");
                assert_eq!(got_trailers, trailers, "{mode:?}: trailers differ");
            }
            Err(e) => panic!("{mode:?}: a well-formed body was refused: {e:?}"),
        }
        return;
    };
    let at = usize::from(at) % body.len();
    body[at] ^= xor;
    match decode(&body, &cuts, payload_kind) {
        Ok((out, got_trailers)) if mode != Mode::UnsignedTrailer => {
            assert!(
                out == payload,
                "{mode:?}: a changed signed body decoded to other bytes"
            );
            assert_eq!(
                got_trailers, trailers,
                "{mode:?}: a changed signed body gave other trailers"
            );
        }
        Ok(_) => {}
        Err(e) => client_error(&e, "changed aws-chunked body"),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((m, rest)) if m % 2 == 1 => structured(rest),
        Some((_, rest)) => raw(rest),
        None => {}
    }
});
