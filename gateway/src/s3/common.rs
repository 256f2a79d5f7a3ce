//! What the request pipeline and several operations read the same way: `Content-MD5`, the
//! `x-amz-checksum-<algo>` values sent, the secrets of the config in force.

use time::OffsetDateTime;

use crate::auth::SecretLookup;
use crate::checksum::{self, Algo};
use crate::config::compiled::CompiledConfig;
use crate::error::{S3Code, S3Error, S3Result};
use crate::store::Expect;

/// A `Content-MD5` value (header or form field), decoded.
pub fn content_md5(value: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    use base64::Engine;
    let Some(v) = value else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(Some)
        .ok_or_else(|| {
            S3Error::new(
                S3Code::InvalidDigest,
                "The Content-MD5 you specified was invalid.",
            )
        })
}

/// The `x-amz-checksum-<algo>` values sent (headers or form fields, looked up by name):
/// at most one, well formed, with the value to verify.
pub fn sent_checksums<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> S3Result<Vec<(Algo, Option<String>)>> {
    let mut wanted: Vec<(Algo, Option<String>)> = Vec::new();
    for algo in checksum::ALL {
        if let Some(v) = get(algo.header()) {
            if !checksum::well_formed(algo, v.trim()) {
                return Err(S3Error::invalid_request(format!(
                    "Value for {} header is invalid.",
                    algo.header()
                )));
            }
            wanted.push((algo, Some(v.trim().to_string())));
        }
    }
    if wanted.len() > 1 {
        return Err(S3Error::invalid_request(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ));
    }
    Ok(wanted)
}

/// The secrets of a compiled config, as they stand at an instant (keys rotate).
pub struct Secrets<'a>(pub &'a CompiledConfig, pub OffsetDateTime);

impl SecretLookup for Secrets<'_> {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self.0.secret(access_key_id, self.1)
    }
}

/// Compares an `If-Match`-style ETag (quoted or not, or `*`) with a stored one.
pub fn etag_matches(given: &str, stored: &str) -> bool {
    given
        .split(',')
        .map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|e| e == "*" || e == stored)
}

/// What an `If-Match` value (a list of ETags, quoted or not, weak or not, or `*`) asks of a
/// write: the object there, with one of these ETags.
pub fn if_match(value: &str) -> Expect {
    let tags: Vec<String> = value
        .split(',')
        .map(|e| {
            e.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
        .collect();
    if tags.iter().any(|t| t == "*") {
        Expect::Present
    } else {
        Expect::Etag(tags)
    }
}
