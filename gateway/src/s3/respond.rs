//! Building S3 responses: XML bodies, dates and ETags as S3 writes them.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use time::OffsetDateTime;

/// The owner shown in listings and ACLs (jets3 has one account).
pub const OWNER_ID: &str = "6a657473332d6f776e65722d6964656e74697479000000000000000000000000";
/// The owner's display name.
pub const OWNER_NAME: &str = "jets3";

/// A 200 response with an XML body.
pub fn xml(body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

/// An empty response with a status.
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// Sets a header, skipping values that are not valid header text.
pub fn set(resp: &mut Response, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        resp.headers_mut().insert(name, v);
    }
}

/// `"<etag>"`.
pub fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// ISO 8601 with milliseconds, as in XML bodies: `2026-01-02T03:04:05.000Z`.
pub fn iso8601(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 7231 date, as in `Last-Modified`. Times before 1970 (the zero `mtime` the Go NATS
/// client writes) show as the epoch: HTTP dates cannot hold them.
pub fn http_date(t: OffsetDateTime) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::from(
        t.max(OffsetDateTime::UNIX_EPOCH),
    ))
}

/// Parses an HTTP date header value.
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    httpdate::parse_http_date(s.trim())
        .ok()
        .map(OffsetDateTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).expect("t");
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT").map(|d| d.unix_timestamp()),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn http_dates_before_1970_do_not_panic() {
        // The Go NATS client stores a zero `mtime` (year 1) in the objects it writes.
        let record = crate::store::Record::decode(
            br#"{"name":"k","bucket":"b","nuid":"N","size":0,"chunks":0,"mtime":"0001-01-01T00:00:00Z","digest":"SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="}"#,
            Some("k"),
            1,
        );
        let t = record
            .ok()
            .and_then(|r| r.object())
            .expect("an object")
            .modified;
        assert_eq!(t.year(), 1);
        assert_eq!(http_date(t), "Thu, 01 Jan 1970 00:00:00 GMT");
        let before = OffsetDateTime::from_unix_timestamp(-5).expect("t");
        assert_eq!(http_date(before), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
