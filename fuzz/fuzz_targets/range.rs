//! Range, x-amz-copy-source-range and the conditional headers of GET/HEAD.
//!
//! Input: lines `Range`, object size, `If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since` (each empty: absent), the object's ETag, its modification time
//! (Unix seconds), then `x-amz-copy-source-range`.
#![no_main]

use jets3_fuzz::{client_error, lines};
use jets3_gateway::error::S3Code;
use jets3_gateway::fuzzing::{etag_matches, evaluate_conditions, parse_copy_range, parse_range};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// 2026-01-01T12:00:00Z.
const NOW: i64 = 1_767_268_800;

fn ranges(header: &str, copy: &str, size: u64) {
    match parse_range(header, size) {
        Ok(Some(s)) => {
            assert!(
                s.start < s.end && s.end <= size,
                "Range {header:?} on {size} bytes gave {s:?}"
            );
            assert!(
                header.trim().starts_with("bytes="),
                "{header:?} is no byte range"
            );
        }
        Ok(None) => {}
        Err(e) => {
            assert_eq!(e.code, S3Code::InvalidRange, "{header:?}");
            client_error(&e, "Range");
        }
    }
    match parse_copy_range(copy, size) {
        Ok((start, end)) => assert!(
            start < end && end <= size,
            "x-amz-copy-source-range {copy:?} on {size} bytes gave {start}..{end}"
        ),
        Err(e) => client_error(&e, "x-amz-copy-source-range"),
    }
}

fn conditions(l: &[String], etag: &str, modified: OffsetDateTime) {
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("time");
    let header = |name: &str| {
        let i = match name {
            "if-match" => 2,
            "if-none-match" => 3,
            "if-modified-since" => 4,
            "if-unmodified-since" => 5,
            _ => return None,
        };
        Some(l[i].as_str()).filter(|v| !v.is_empty())
    };
    match evaluate_conditions(header, etag, modified, now) {
        Ok(()) => {
            if let Some(m) = header("if-match") {
                assert!(etag_matches(m, etag), "If-Match {m:?} passed for {etag:?}");
            }
            if let Some(m) = header("if-none-match") {
                assert!(
                    !etag_matches(m, etag),
                    "If-None-Match {m:?} passed for {etag:?}"
                );
            }
        }
        Err(e) => {
            assert!(
                matches!(e.code, S3Code::PreconditionFailed | S3Code::NotModified),
                "{:?}",
                e.code
            );
            if let (S3Code::PreconditionFailed, Some(m)) = (e.code, header("if-match")) {
                // If-Match that matches wins over If-Unmodified-Since.
                assert!(
                    !etag_matches(m, etag),
                    "412 although If-Match {m:?} matched"
                );
            }
        }
    }
    // Stored ETags are hex MD5s, with `-N` for multipart uploads.
    if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return;
    }
    let quoted = format!("\"{etag}\"");
    assert!(
        etag_matches(&quoted, etag),
        "the quoted ETag does not match itself"
    );
    assert!(etag_matches("*", etag));
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data, 9);
    let size = l[1].trim().parse::<u64>().unwrap_or(l[1].len() as u64);
    ranges(&l[0], &l[8], size);
    let modified = l[7]
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    conditions(&l, &l[6], modified);
});
