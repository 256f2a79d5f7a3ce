//! Verification of the `Authorization` header and of presigned query strings.

use http::{HeaderMap, HeaderValue};
use time::OffsetDateTime;

use super::canonical::{self, QueryPairs};
use super::sigv4::{
    ct_eq, decode_signature, format_amz_date, format_iso, hmac_sha256, invalid_access_key,
    parse_amz_date, parse_credential, signature_mismatch, string_to_sign, unsupported_mechanism,
    Credential, Style, ALGORITHM,
};
use super::{
    AuthSettings, Authenticated, ChunkSigner, Payload, RequestParts, SecretLookup, SignedRequest,
};
use crate::error::{S3Code, S3Error};

const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// The longest X-Amz-Expires S3 accepts (7 days).
const MAX_EXPIRES: i64 = 604_800;

/// Bytes as space-separated hex pairs, as in S3's `StringToSignBytes`.
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

/// The first value of a header: None when absent, Some(None) when not visible ASCII.
fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<Option<&'h str>> {
    headers.get(name).map(|v| v.to_str().ok())
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
        let raw = v.ok_or_else(bad)?;
        let t = parse_amz_date(raw).ok_or_else(bad)?;
        return Ok((t, raw.to_owned()));
    }
    let raw = header_str(headers, "date").flatten().ok_or_else(bad)?;
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
        .ok_or_else(|| invalid_content_sha256(""))?;
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
    let lifetime = time::Duration::seconds(expires_secs);
    if settings.now - date > lifetime {
        let expires_at = date.checked_add(lifetime).map(format_iso);
        return Err(S3Error::new(S3Code::AccessDenied, "Request has expired")
            .with("X-Amz-Expires", expires)
            .with("Expires", expires_at.unwrap_or_default())
            .with("ServerTime", format_iso(settings.now)));
    }
    let signed_headers = parse_signed_headers(signed)
        .ok_or_else(|| query_error("The X-Amz-SignedHeaders parameter is malformed."))?;
    check_signed_headers(req.headers, &signed_headers, true)?;
    let content_sha = match header_str(req.headers, "x-amz-content-sha256") {
        Some(v) => v.ok_or_else(|| invalid_content_sha256(""))?,
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
    use super::super::sigv4::EMPTY_SHA256;
    use super::*;

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
