//! PostObject: the multipart/form-data parser, the policy signature and conditions, and
//! what the form decides (key, headers, tags, checksums, the answer).
//!
//! First byte even: raw input, lines `Content-Type` then the body. Odd: lines policy JSON,
//! key, file name, file Content-Type, file content, then `name=value` fields; the form is
//! built and its policy signed with the known secret, so the fuzzer reaches the conditions.
#![no_main]

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use jets3_fuzz::{client_error, lines, Keys, ACCESS_KEY, REGION, SECRET_KEY};
use jets3_gateway::auth::AuthSettings;
use jets3_gateway::fuzzing::{post_form, PostForm, PostLimits};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use time::OffsetDateTime;

const BUCKET: &str = "my.bucket-1";
const BOUNDARY: &str = "----fuzzboundary7MA4YWxkTrZu0gW";
const AMZ_DATE: &str = "20260101T120000Z";
const SIGNED_AT: i64 = 1_767_268_800;
const LIMITS: PostLimits = PostLimits {
    max_metadata: 2048,
    max_key: 1024,
};

fn settings() -> AuthSettings<'static> {
    AuthSettings {
        region: REGION,
        now: OffsetDateTime::from_unix_timestamp(SIGNED_AT).expect("time"),
        max_skew: Duration::from_secs(900),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn policy_signature(policy: &str) -> String {
    let k = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), b"20260101");
    let k = hmac(&k, REGION.as_bytes());
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    hex::encode(hmac(&k, policy.as_bytes()))
}

/// Cuts `body` into pieces of sizes taken from `seed`.
fn pieces(body: Vec<u8>, seed: &[u8]) -> Vec<Bytes> {
    let body = Bytes::from(body);
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = seed.iter().cycle();
    while at < body.len() {
        let n = sizes
            .next()
            .map_or(body.len(), |b| usize::from(*b).max(1) * 7);
        let end = (at + n).min(body.len());
        out.push(body.slice(at..end));
        at = end;
    }
    out
}

fn domains() -> Vec<String> {
    vec!["s3.example.com".to_string()]
}

fn raw(data: &[u8]) {
    let (ct, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let ct = String::from_utf8_lossy(ct);
    let result = post_form(
        Some(ct.as_ref()),
        pieces(body.to_vec(), &data[..data.len().min(4)]),
        BUCKET,
        &domains(),
        &Keys,
        &settings(),
        LIMITS,
    );
    match result {
        Ok(form) => check_form(&form, None),
        Err(e) => client_error(&e, "PostObject"),
    }
}

fn part(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .as_bytes(),
    );
}

fn signed(data: &[u8]) {
    let l = lines(data, 6);
    let policy = base64::engine::general_purpose::STANDARD.encode(l[0].as_bytes());
    let mut body = Vec::new();
    part(&mut body, "key", &l[1]);
    part(&mut body, "policy", &policy);
    part(&mut body, "x-amz-algorithm", "AWS4-HMAC-SHA256");
    let credential = format!("{ACCESS_KEY}/20260101/{REGION}/s3/aws4_request");
    part(&mut body, "x-amz-credential", &credential);
    part(&mut body, "x-amz-date", AMZ_DATE);
    part(&mut body, "x-amz-signature", &policy_signature(&policy));
    for field in l[5].lines() {
        if let Some((name, value)) = field.split_once('=') {
            if !name.contains(['"', '\r', '\n']) {
                part(&mut body, name, value);
            }
        }
    }
    let filename = l[2].replace(['"', '\r'], "");
    let file_type = l[3].replace('\r', "");
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(l[4].as_bytes());
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let result = post_form(
        Some(&ct),
        pieces(body, l[1].as_bytes()),
        BUCKET,
        &domains(),
        &Keys,
        &settings(),
        LIMITS,
    );
    match result {
        Ok(form) => check_form(&form, Some(l[4].len() as u64)),
        Err(e) => client_error(&e, "PostObject"),
    }
}

/// What an accepted form must hold.
fn check_form(form: &PostForm, size: Option<u64>) {
    assert!(!form.key.is_empty() && form.key.len() <= LIMITS.max_key);
    if let Some(size) = size {
        assert_eq!(form.size, size, "file size");
    }
    for (name, value) in &form.headers {
        assert!(
            http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && http::HeaderValue::from_str(value).is_ok(),
            "stored header {name:?}: {value:?}"
        );
    }
    if let Some(location) = &form.redirect {
        assert!(
            http::HeaderValue::from_str(location).is_ok(),
            "the redirect is no header value: {location:?}"
        );
    }
    assert!(form.tags.len() <= 10);
    // The 201 document must carry the key exactly (XML 1.0 cannot hold most control
    // characters, whatever the escaping; S3 sends them as character references too).
    if !form.key.chars().all(|c| c >= ' ' || c == '\t' || c == '\n') {
        return;
    }
    let mut reader = quick_xml::Reader::from_str(&form.document);
    let mut in_key = false;
    let mut key = String::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) => in_key = e.name().as_ref() == b"Key",
            Ok(quick_xml::events::Event::End(_)) => in_key = false,
            Ok(quick_xml::events::Event::Text(t)) if in_key => {
                key.push_str(&t.unescape().expect("escaped text"));
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("PostResponse is not XML ({e}): {}", form.document),
        }
    }
    assert_eq!(key, form.key, "PostResponse key: {}", form.document);
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((m, rest)) if m % 2 == 1 => signed(rest),
        Some((_, rest)) => raw(rest),
        None => {}
    }
});
