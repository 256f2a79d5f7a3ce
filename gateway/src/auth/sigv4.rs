//! SigV4 primitives (signing key, string to sign) and verification of the `Authorization`
//! header and of presigned query strings.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::canonical::{self, QueryPairs};
use super::{
    AuthSettings, Authenticated, ChunkSigner, Payload, RequestParts, SecretLookup, SignedRequest,
};
use crate::error::{S3Code, S3Error};

/// The only supported signing algorithm.
pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// Hex SHA-256 of the empty string.
pub(super) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The longest X-Amz-Expires S3 accepts (7 days).
const MAX_EXPIRES: i64 = 604_800;

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
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
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

fn spaced_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&hex::encode([*b]));
    }
    out
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
    fn error(self, detail: &str) -> S3Error {
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

    /// The signing key for this scope.
    pub(super) fn signing_key(&self, secret: &str) -> [u8; 32] {
        signing_key(secret, &self.date, &self.region, &self.service)
    }
}

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

/// The value of x-amz-content-sha256, classified.
enum PayloadKind {
    Unsigned,
    Sha256([u8; 32]),
    SignedChunks { trailer: bool },
    UnsignedTrailer,
}

impl PayloadKind {
    fn parse(value: &str) -> Result<Self, S3Error> {
        Ok(match value {
            UNSIGNED_PAYLOAD => PayloadKind::Unsigned,
            STREAMING_SIGNED => PayloadKind::SignedChunks { trailer: false },
            STREAMING_SIGNED_TRAILER => PayloadKind::SignedChunks { trailer: true },
            STREAMING_UNSIGNED_TRAILER => PayloadKind::UnsignedTrailer,
            hash => {
                let mut out = [0u8; 32];
                if hash.len() != 64 || hex::decode_to_slice(hash, &mut out).is_err() {
                    return Err(invalid_content_sha256(hash));
                }
                PayloadKind::Sha256(out)
            }
        })
    }

    fn into_payload(self, signer: ChunkSigner) -> Payload {
        match self {
            PayloadKind::Unsigned => Payload::Unsigned,
            PayloadKind::Sha256(hash) => Payload::Sha256(hash),
            PayloadKind::SignedChunks { trailer } => Payload::SignedChunks { signer, trailer },
            PayloadKind::UnsignedTrailer => Payload::UnsignedChunksWithTrailer,
        }
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<Result<&'h str, ()>> {
    headers.get(name).map(|v| v.to_str().map_err(|_| ()))
}

fn invalid_content_sha256(value: &str) -> S3Error {
    S3Error::invalid_argument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER \
         or a valid sha256 value.",
    )
    .with("ArgumentName", "x-amz-content-sha256")
    .with("ArgumentValue", value)
}

/// The request time from x-amz-date, else Date, with the x-amz-date form of it.
fn request_date(headers: &HeaderMap) -> Result<(OffsetDateTime, String), S3Error> {
    let bad = || {
        S3Error::new(
            S3Code::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        )
    };
    if let Some(v) = header_str(headers, "x-amz-date") {
        let raw = v.map_err(|_| bad())?;
        let t = parse_amz_date(raw).ok_or_else(bad)?;
        return Ok((t, raw.to_owned()));
    }
    let raw = header_str(headers, "date")
        .ok_or_else(bad)?
        .map_err(|_| bad())?;
    let t = OffsetDateTime::from(httpdate::parse_http_date(raw).map_err(|_| bad())?);
    Ok((t, format_amz_date(t)))
}

fn check_skew(date: OffsetDateTime, raw: &str, settings: &AuthSettings<'_>) -> Result<(), S3Error> {
    if (settings.now - date).unsigned_abs() > settings.max_skew {
        return Err(S3Error::new(
            S3Code::RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large.",
        )
        .with("RequestTime", raw)
        .with("ServerTime", format_iso(settings.now))
        .with(
            "MaxAllowedSkewMilliseconds",
            settings.max_skew.as_millis().to_string(),
        ));
    }
    Ok(())
}

/// Requires `host` to be signed and every `x-amz-*` header present to be signed, as S3 does.
fn check_signed_headers(
    headers: &HeaderMap,
    signed: &[String],
    presigned: bool,
) -> Result<(), S3Error> {
    let is_signed = |name: &str| signed.iter().any(|s| s == name);
    let mut missing: Vec<&str> = Vec::new();
    if !is_signed("host") {
        missing.push("host");
    }
    for name in headers.keys() {
        let name = name.as_str();
        // Both are covered by the string to sign even when not listed.
        let exempt = matches!(name, "x-amz-content-sha256" | "x-amz-date")
            // Presigners leave these out of the signature on purpose.
            || (presigned && matches!(name, "x-amz-user-agent" | "x-amz-checksum-mode"));
        if name.starts_with("x-amz-") && !exempt && !is_signed(name) && !missing.contains(&name) {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(S3Error::new(
        S3Code::AccessDenied,
        "There were headers present in the request which were not signed",
    )
    .with("HeadersNotSigned", missing.join(", ")))
}

fn parse_signed_headers(value: &str) -> Option<Vec<String>> {
    let names: Vec<String> = value.split(';').map(str::to_ascii_lowercase).collect();
    if names.iter().any(String::is_empty) {
        return None;
    }
    Some(names)
}

/// Verifies the computed signature against `provided` and returns the chunk signer.
fn check_signature(
    secret: &str,
    credential: &Credential,
    amz_date: &str,
    canonical_request: &[u8],
    provided: &str,
) -> Result<ChunkSigner, S3Error> {
    let scope = credential.scope();
    let sts = string_to_sign(amz_date, &scope, canonical_request);
    let key = credential.signing_key(secret);
    let computed = hmac_sha256(&key, &[sts.as_bytes()]);
    match decode_signature(provided) {
        Some(p) if ct_eq(&p, &computed) => Ok(ChunkSigner {
            key,
            seed: hex::encode(computed),
            amz_date: amz_date.to_owned(),
            scope,
        }),
        _ => Err(signature_mismatch()
            .with("AWSAccessKeyId", credential.access_key_id.as_str())
            .with("StringToSign", sts.as_str())
            .with("SignatureProvided", provided)
            .with("StringToSignBytes", spaced_hex(sts.as_bytes()))
            .with(
                "CanonicalRequest",
                String::from_utf8_lossy(canonical_request).into_owned(),
            )
            .with("CanonicalRequestBytes", spaced_hex(canonical_request))),
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct HeaderAuth<'a> {
    credential: &'a str,
    signed_headers: Vec<String>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<HeaderAuth<'_>, S3Error> {
    let (scheme, rest) = value
        .trim()
        .split_once([' ', '\t'])
        .unwrap_or((value.trim(), ""));
    if scheme != ALGORITHM {
        return Err(unsupported_mechanism());
    }
    let components = || {
        Style::Header.error(
            "the authorization header requires three components: Credential, SignedHeaders, and Signature.",
        )
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=').ok_or_else(components)?;
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => {
                return Err(Style::Header.error(&format!(
                    "the authorization component \"{other}\" is malformed."
                )))
            }
        };
        if slot.replace(val.trim()).is_some() {
            return Err(components());
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(components());
    };
    let signed_headers = parse_signed_headers(signed).ok_or_else(|| {
        Style::Header.error("the authorization component \"SignedHeaders\" is malformed.")
    })?;
    Ok(HeaderAuth {
        credential,
        signed_headers,
        signature,
    })
}

/// Verifies a request signed with the `Authorization` header.
pub(super) fn verify_header(
    req: &RequestParts<'_>,
    value: &HeaderValue,
    query: &QueryPairs,
    lookup: &dyn SecretLookup,
    settings: &AuthSettings<'_>,
) -> Result<Authenticated, S3Error> {
    let value = value.to_str().map_err(|_| unsupported_mechanism())?;
    let auth = parse_authorization(value)?;
    let content_sha = header_str(req.headers, "x-amz-content-sha256")
        .ok_or_else(|| {
            S3Error::invalid_request(
                "Missing required header for this request: x-amz-content-sha256",
            )
        })?
        .map_err(|_| invalid_content_sha256(""))?;
    let kind = PayloadKind::parse(content_sha)?;
    let (date, amz_date) = request_date(req.headers)?;
    let credential = parse_credential(auth.credential, Style::Header, date, settings.region)?;
    check_skew(date, &amz_date, settings)?;
    check_signed_headers(req.headers, &auth.signed_headers, false)?;
    let secret = lookup
        .secret(&credential.access_key_id)
        .ok_or_else(|| invalid_access_key(&credential.access_key_id))?;
    let creq = canonical::canonical_request(
        req.method.as_str(),
        req.raw_path,
        &canonical::canonical_query(query, None),
        req.headers,
        &auth.signed_headers,
        content_sha,
    );
    let signer = check_signature(&secret, &credential, &amz_date, &creq, auth.signature)?;
    Ok(Authenticated::Signed(SignedRequest {
        access_key_id: credential.access_key_id,
        presigned: false,
        payload: kind.into_payload(signer),
    }))
}

fn query_error(message: &str) -> S3Error {
    S3Error::new(S3Code::AuthorizationQueryParametersError, message)
}

/// The single value of a presign parameter; None when absent.
fn query_param<'q>(query: &'q QueryPairs, name: &str) -> Result<Option<&'q str>, S3Error> {
    let mut values = query.iter().filter(|(n, _)| n == name.as_bytes());
    let Some((_, value)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(query_error(&format!(
            "The {name} parameter must be given only once."
        )));
    }
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| query_error(&format!("The {name} parameter is malformed.")))
}

/// Verifies a presigned (query string) request.
pub(super) fn verify_presigned(
    req: &RequestParts<'_>,
    query: &QueryPairs,
    lookup: &dyn SecretLookup,
    settings: &AuthSettings<'_>,
) -> Result<Authenticated, S3Error> {
    let missing = || {
        query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        )
    };
    let algorithm = query_param(query, "X-Amz-Algorithm")?.ok_or_else(missing)?;
    let credential = query_param(query, "X-Amz-Credential")?.ok_or_else(missing)?;
    let signature = query_param(query, "X-Amz-Signature")?.ok_or_else(missing)?;
    let amz_date = query_param(query, "X-Amz-Date")?.ok_or_else(missing)?;
    let signed = query_param(query, "X-Amz-SignedHeaders")?.ok_or_else(missing)?;
    let expires = query_param(query, "X-Amz-Expires")?.ok_or_else(missing)?;
    if algorithm != ALGORITHM {
        return Err(query_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let date = parse_amz_date(amz_date).ok_or_else(|| {
        query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    let credential = parse_credential(credential, Style::Query, date, settings.region)?;
    let expires_secs: i64 = expires
        .parse()
        .map_err(|_| query_error("X-Amz-Expires should be a number"))?;
    if expires_secs < 0 {
        return Err(query_error("X-Amz-Expires must be non-negative"));
    }
    if expires_secs == 0 {
        return Err(query_error("X-Amz-Expires must be greater than 0"));
    }
    if expires_secs > MAX_EXPIRES {
        return Err(query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    if date - settings.now > settings.max_skew {
        return Err(
            S3Error::new(S3Code::AccessDenied, "Request is not valid yet")
                .with("X-Amz-Date", amz_date)
                .with("ServerTime", format_iso(settings.now)),
        );
    }
    let expires_at = date + time::Duration::seconds(expires_secs);
    if settings.now > expires_at {
        return Err(S3Error::new(S3Code::AccessDenied, "Request has expired")
            .with("X-Amz-Expires", expires)
            .with("Expires", format_iso(expires_at))
            .with("ServerTime", format_iso(settings.now)));
    }
    let signed_headers = parse_signed_headers(signed)
        .ok_or_else(|| query_error("The X-Amz-SignedHeaders parameter is malformed."))?;
    check_signed_headers(req.headers, &signed_headers, true)?;
    let content_sha = match header_str(req.headers, "x-amz-content-sha256") {
        Some(v) => v.map_err(|_| invalid_content_sha256(""))?,
        None => UNSIGNED_PAYLOAD,
    };
    let kind = PayloadKind::parse(content_sha)?;
    let secret = lookup
        .secret(&credential.access_key_id)
        .ok_or_else(|| invalid_access_key(&credential.access_key_id))?;
    let creq = canonical::canonical_request(
        req.method.as_str(),
        req.raw_path,
        &canonical::canonical_query(query, Some("X-Amz-Signature")),
        req.headers,
        &signed_headers,
        content_sha,
    );
    let signer = check_signature(&secret, &credential, amz_date, &creq, signature)?;
    Ok(Authenticated::Signed(SignedRequest {
        access_key_id: credential.access_key_id,
        presigned: true,
        payload: kind.into_payload(signer),
    }))
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
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn authorization_header_parsing() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;X-Amz-Date,Signature=00",
        )
        .unwrap();
        assert_eq!(a.credential, "AK/20130524/us-east-1/s3/aws4_request");
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(a.signature, "00");
        let b = parse_authorization(
            "AWS4-HMAC-SHA256  Credential=AK/x , SignedHeaders=host,   Signature=11 ",
        )
        .unwrap();
        assert_eq!(b.credential, "AK/x");
        assert_eq!(b.signature, "11");

        let code = |v: &str| parse_authorization(v).err().map(|e| e.code);
        assert_eq!(code("AWS AK:sig"), Some(S3Code::InvalidRequest));
        assert_eq!(code("Bearer x"), Some(S3Code::InvalidRequest));
        assert_eq!(
            code("AWS4-HMAC-SHA256"),
            Some(S3Code::AuthorizationHeaderMalformed)
        );
        assert_eq!(
            code("AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host"),
            Some(S3Code::AuthorizationHeaderMalformed)
        );
        assert_eq!(
            code("AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host, Signature=1, Signature=2"),
            Some(S3Code::AuthorizationHeaderMalformed)
        );
        assert_eq!(
            code("AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host;;x, Signature=1"),
            Some(S3Code::AuthorizationHeaderMalformed)
        );
        assert_eq!(
            code("AWS4-HMAC-SHA256 Credential=a, Foo=b, SignedHeaders=host, Signature=1"),
            Some(S3Code::AuthorizationHeaderMalformed)
        );
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

    #[test]
    fn payload_kinds() {
        assert!(matches!(
            PayloadKind::parse("UNSIGNED-PAYLOAD"),
            Ok(PayloadKind::Unsigned)
        ));
        assert!(matches!(
            PayloadKind::parse(STREAMING_SIGNED_TRAILER),
            Ok(PayloadKind::SignedChunks { trailer: true })
        ));
        assert!(matches!(
            PayloadKind::parse(EMPTY_SHA256),
            Ok(PayloadKind::Sha256(h)) if hex::encode(h) == EMPTY_SHA256
        ));
        for bad in [
            "",
            "unsigned-payload",
            "abc",
            &EMPTY_SHA256[1..],
            "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        ] {
            let e = PayloadKind::parse(bad).err().unwrap();
            assert_eq!(e.code, S3Code::InvalidArgument, "{bad}");
        }
    }
}
