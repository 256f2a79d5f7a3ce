//! SigV4 primitives: signing key, string to sign, dates, credential scopes, chunk signatures.

use std::num::NonZeroUsize;
use std::sync::{LazyLock, Mutex};

use hmac::{Hmac, Mac};
use lru::LruCache;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::ChunkSigner;
use crate::error::{S3Code, S3Error};

/// The only supported signing algorithm.
pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Hex SHA-256 of the empty string.
pub(super) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// HMAC-SHA256 over the concatenation of `parts`.
pub(super) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Lower-case hex SHA-256.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SigV4 signing key for a credential scope.
pub(super) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), &[date.as_bytes()]);
    let k_region = hmac_sha256(&k_date, &[region.as_bytes()]);
    let k_service = hmac_sha256(&k_region, &[service.as_bytes()]);
    hmac_sha256(&k_service, &[b"aws4_request"])
}

/// Compares two byte strings in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Decodes a 64-hex-digit signature.
pub(super) fn decode_signature(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Parses the ISO 8601 basic format S3 uses: `20130524T000000Z`.
pub(super) fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let hour = u8::try_from(digits(9..11)?).ok()?;
    let minute = u8::try_from(digits(11..13)?).ok()?;
    let second = u8::try_from(digits(13..15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let t = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// Formats a time in the ISO 8601 basic format (`20130524T000000Z`).
pub(super) fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Formats a time as S3 does in error bodies (`2013-05-24T00:00:00Z`).
pub(super) fn format_iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The SigV4 string to sign for a canonical request.
pub(super) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request)
    )
}

impl ChunkSigner {
    /// The signature of the request itself, which starts the chunk signature chain.
    pub(super) fn seed(&self) -> &str {
        &self.seed
    }

    /// The signature of a chunk whose data hashes to `data_sha256`.
    pub(super) fn chunk_signature(&self, previous: &str, data_sha256: &[u8]) -> [u8; 32] {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            hex::encode(data_sha256)
        );
        hmac_sha256(&self.key, &[sts.as_bytes()])
    }

    /// The signature of the trailer block (`name:value\n` lines).
    pub(super) fn trailer_signature(&self, previous: &str, canonical_trailers: &[u8]) -> [u8; 32] {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(canonical_trailers)
        );
        hmac_sha256(&self.key, &[sts.as_bytes()])
    }

    #[cfg(test)]
    pub(super) fn for_test(key: [u8; 32], seed: &str, amz_date: &str, scope: &str) -> Self {
        ChunkSigner {
            key,
            seed: seed.to_owned(),
            amz_date: amz_date.to_owned(),
            scope: scope.to_owned(),
        }
    }
}

/// InvalidRequest for SigV2 and any other scheme.
pub(super) fn unsupported_mechanism() -> S3Error {
    S3Error::invalid_request(
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )
}

/// SignatureDoesNotMatch without details.
pub(super) fn signature_mismatch() -> S3Error {
    S3Error::new(
        S3Code::SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. \
         Check your key and signing method.",
    )
}

/// InvalidAccessKeyId for `key`.
pub(super) fn invalid_access_key(key: &str) -> S3Error {
    S3Error::new(
        S3Code::InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records.",
    )
    .with("AWSAccessKeyId", key)
}

/// Where the credential came from; selects S3's error code and wording.
#[derive(Clone, Copy)]
pub(super) enum Style {
    /// The Authorization header (also used for POST policy fields).
    Header,
    /// The X-Amz-Credential query parameter.
    Query,
}

impl Style {
    /// The error S3 gives for a credential problem described by `detail`.
    pub(super) fn error(self, detail: &str) -> S3Error {
        match self {
            Style::Header => S3Error::new(
                S3Code::AuthorizationHeaderMalformed,
                format!("The authorization header is malformed; {detail}"),
            ),
            Style::Query => S3Error::new(
                S3Code::AuthorizationQueryParametersError,
                format!("Error parsing the X-Amz-Credential parameter; {detail}"),
            ),
        }
    }
}

/// A parsed credential: access key id and scope.
pub(super) struct Credential {
    pub(super) access_key_id: String,
    pub(super) date: String,
    pub(super) region: String,
    pub(super) service: String,
}

impl Credential {
    /// `date/region/service/aws4_request`.
    pub(super) fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }

    /// The signing key for this scope (see [`KEYS`]).
    pub(super) fn signing_key(&self, secret: &str) -> [u8; 32] {
        let id = format!("{}/{}/{}\n{secret}", self.date, self.region, self.service);
        let mut keys = KEYS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = keys.get(&id) {
            return *key;
        }
        let key = signing_key(secret, &self.date, &self.region, &self.service);
        keys.put(id, key);
        key
    }
}

/// Signing keys derived lately, by scope and secret. One key signs every request of its
/// credential, region and day, so its four HMACs need not run for each request; a rotated
/// secret is another entry.
static KEYS: LazyLock<Mutex<LruCache<String, [u8; 32]>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(KEYS_KEPT)));

/// Signing keys kept: one per credential and region each day, and the day before.
const KEYS_KEPT: NonZeroUsize = NonZeroUsize::new(1024).expect("not zero");

/// Parses `AK/YYYYMMDD/region/s3/aws4_request` and checks it against the request date and
/// the configured region.
pub(super) fn parse_credential(
    value: &str,
    style: Style,
    request_date: OffsetDateTime,
    region: &str,
) -> Result<Credential, S3Error> {
    let malformed = || {
        style.error(
            "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    };
    let mut parts = value.rsplitn(5, '/');
    let terminal = parts.next().ok_or_else(malformed)?;
    let service = parts.next().ok_or_else(malformed)?;
    let scope_region = parts.next().ok_or_else(malformed)?;
    let date = parts.next().ok_or_else(malformed)?;
    let key = parts.next().ok_or_else(malformed)?;
    if key.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if scope_region != region {
        return Err(style
            .error(&format!(
                "the region '{scope_region}' is wrong; expecting '{region}'"
            ))
            .with("Region", region));
    }
    if service != "s3" {
        return Err(style.error(&format!(
            "incorrect service \"{service}\". This endpoint belongs to \"s3\"."
        )));
    }
    if terminal != "aws4_request" {
        return Err(style.error(&format!(
            "incorrect terminal \"{terminal}\". This endpoint uses \"aws4_request\"."
        )));
    }
    let request_day = &format_amz_date(request_date)[..8];
    if date != request_day {
        return Err(style.error(&format!(
            "Invalid credential date \"{date}\". This date is not the same as X-Amz-Date: \"{request_day}\"."
        )));
    }
    Ok(Credential {
        access_key_id: key.to_owned(),
        date: date.to_owned(),
        region: scope_region.to_owned(),
        service: service.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn amz_date_round_trips_and_rejects_garbage() {
        let t = parse_amz_date("20130524T010203Z").unwrap();
        assert_eq!(format_amz_date(t), "20130524T010203Z");
        assert_eq!(format_iso(t), "2013-05-24T01:02:03Z");
        for bad in [
            "",
            "20130524T010203",
            "2013-05-24T01:02:03Z",
            "20131324T010203Z",
            "20130532T010203Z",
            "20130524T250203Z",
            "2013052aT010203Z",
            "+0130524T010203Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn signing_key_matches_aws_sigv4() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let ours = signing_key(secret, "20150830", "us-east-1", "iam");
        let theirs = aws_sigv4::sign::v4::generate_signing_key(
            secret,
            std::time::SystemTime::from(t),
            "us-east-1",
            "iam",
        );
        assert_eq!(ours.as_slice(), theirs.as_ref());
        // The AWS documentation's published value for this key.
        assert_eq!(
            hex::encode(ours),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn kept_signing_keys_follow_the_secret_and_the_scope() {
        let cred = |date: &str, region: &str| Credential {
            access_key_id: "AK".into(),
            date: date.into(),
            region: region.into(),
            service: "s3".into(),
        };
        for _ in 0..2 {
            for (date, region, secret) in [
                ("20150830", "us-east-1", "old-secret"),
                ("20150830", "us-east-1", "rotated-secret"),
                ("20150831", "us-east-1", "rotated-secret"),
                ("20150831", "eu-west-1", "rotated-secret"),
            ] {
                assert_eq!(
                    cred(date, region).signing_key(secret),
                    signing_key(secret, date, region, "s3"),
                    "{date} {region} {secret}"
                );
            }
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn credential_checks() {
        let date = parse_amz_date("20130524T000000Z").unwrap();
        let ok = parse_credential(
            "AK/20130524/us-east-1/s3/aws4_request",
            Style::Header,
            date,
            "us-east-1",
        )
        .unwrap();
        assert_eq!(ok.access_key_id, "AK");
        assert_eq!(ok.scope(), "20130524/us-east-1/s3/aws4_request");
        let err = |v: &str, style| parse_credential(v, style, date, "us-east-1").err().unwrap();
        let e = err("AK/20130524/eu-west-1/s3/aws4_request", Style::Header);
        assert_eq!(e.code, S3Code::AuthorizationHeaderMalformed);
        assert_eq!(
            e.message,
            "The authorization header is malformed; the region 'eu-west-1' is wrong; expecting 'us-east-1'"
        );
        assert_eq!(e.extra, vec![("Region", "us-east-1".to_owned())]);
        let e = err("AK/20130524/eu-west-1/s3/aws4_request", Style::Query);
        assert_eq!(e.code, S3Code::AuthorizationQueryParametersError);
        for bad in [
            "AK/20130525/us-east-1/s3/aws4_request",
            "AK/20130524/us-east-1/ec2/aws4_request",
            "AK/20130524/us-east-1/s3/aws4_reques",
            "/20130524/us-east-1/s3/aws4_request",
            "AK/2013052/us-east-1/s3/aws4_request",
            "20130524/us-east-1/s3/aws4_request",
            "AK",
        ] {
            assert_eq!(
                err(bad, Style::Header).code,
                S3Code::AuthorizationHeaderMalformed,
                "{bad}"
            );
        }
    }
}
