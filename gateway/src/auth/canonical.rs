//! The SigV4 canonical request as S3 computes it: decoded path and query re-encoded with the
//! SigV4 URI encoding, signed headers with trimmed values.

use http::HeaderMap;
use percent_encoding::percent_decode;

/// Decoded query parameters (name, value) in request order.
pub(super) type QueryPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits and decodes a raw query string (`+` is a space, as form decoding does).
pub(super) fn parse_query(raw: &str) -> QueryPairs {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (decode_query_component(name), decode_query_component(value))
        })
        .collect()
}

fn decode_query_component(s: &str) -> Vec<u8> {
    let spaced: Vec<u8> = s
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).collect()
}

/// Appends `bytes` with SigV4 URI encoding: `A-Za-z0-9-._~` kept, `/` kept when `keep_slash`,
/// everything else as uppercase `%XX`.
pub(super) fn uri_encode_into(bytes: &[u8], keep_slash: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    uri_encode_into(bytes, keep_slash, &mut out);
    out
}

/// The canonical URI: the percent-decoded path re-encoded, without any normalization.
pub(super) fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    let decoded: Vec<u8> = percent_decode(raw_path.as_bytes()).collect();
    uri_encode(&decoded, true)
}

/// The canonical query string, leaving out parameters named `skip`.
pub(super) fn canonical_query(pairs: &QueryPairs, skip: Option<&str>) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| skip.is_none_or(|s| name.as_slice() != s.as_bytes()))
        .map(|(name, value)| (uri_encode(name, false), uri_encode(value, false)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (name, value)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Appends a header value with leading/trailing spaces removed and space runs collapsed.
fn push_trimmed(value: &[u8], out: &mut Vec<u8>) {
    let mut prev_space = false;
    let start = out.len();
    for &b in value {
        if b == b' ' {
            if !prev_space && out.len() > start {
                out.push(b' ');
            }
            prev_space = true;
        } else {
            out.push(b);
            prev_space = false;
        }
    }
    if out.len() > start && out.last() == Some(&b' ') {
        out.pop();
    }
}

/// Builds the canonical request. `signed` holds the lower-case SignedHeaders names in order.
pub(super) fn canonical_request(
    method: &str,
    raw_path: &str,
    canonical_query: &str,
    headers: &HeaderMap,
    signed: &[String],
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(raw_path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query.as_bytes());
    out.push(b'\n');
    for name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(value.as_bytes(), &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_keeps_unreserved_and_slashes_only() {
        assert_eq!(canonical_uri("/b/a-z_A.Z~0/9"), "/b/a-z_A.Z~0/9");
        assert_eq!(canonical_uri("/b/a b+c"), "/b/a%20b%2Bc");
        assert_eq!(canonical_uri("/b/%e2%9c%93"), "/b/%E2%9C%93");
        assert_eq!(canonical_uri("/b/✓"), "/b/%E2%9C%93");
        assert_eq!(canonical_uri("/b/%61%2Fc"), "/b/a/c");
        assert_eq!(canonical_uri("/b/%252F"), "/b/%252F");
        assert_eq!(
            canonical_uri("/b/!*'();:@&=$,?#[]"),
            "/b/%21%2A%27%28%29%3B%3A%40%26%3D%24%2C%3F%23%5B%5D"
        );
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn uri_is_not_normalized() {
        assert_eq!(canonical_uri("/b/a//c"), "/b/a//c");
        assert_eq!(canonical_uri("/b/../x"), "/b/../x");
        assert_eq!(canonical_uri("/b/./x/"), "/b/./x/");
    }

    #[test]
    fn invalid_percent_sequences_are_kept_literally() {
        assert_eq!(canonical_uri("/b/%zz%4"), "/b/%25zz%254");
    }

    #[test]
    fn query_is_decoded_sorted_and_reencoded() {
        let q = parse_query("prefix=a%20b&delimiter=/&acl&b=2&b=1&a+b=c%2bd&empty=&&x=%7E~");
        assert_eq!(
            canonical_query(&q, None),
            "a%20b=c%2Bd&acl=&b=1&b=2&delimiter=%2F&empty=&prefix=a%20b&x=~~"
        );
    }

    #[test]
    fn query_skip_drops_exactly_that_name() {
        let q = parse_query("X-Amz-Signature=abc&x-amz-signature=keep&a=1");
        assert_eq!(
            canonical_query(&q, Some("X-Amz-Signature")),
            "a=1&x-amz-signature=keep"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let mut out = Vec::new();
        push_trimmed(b"  a   b  c ", &mut out);
        assert_eq!(out, b"a b c");
        let mut headers = HeaderMap::new();
        headers.append("x-amz-meta-a", "  one  two ".parse().unwrap());
        headers.append("x-amz-meta-a", "three".parse().unwrap());
        headers.insert("host", "h".parse().unwrap());
        let creq = canonical_request(
            "GET",
            "/b/k",
            "",
            &headers,
            &[
                "host".to_owned(),
                "x-amz-meta-a".to_owned(),
                "x-missing".to_owned(),
            ],
            "UNSIGNED-PAYLOAD",
        );
        assert_eq!(
            String::from_utf8(creq).unwrap(),
            "GET\n/b/k\n\nhost:h\nx-amz-meta-a:one two,three\nx-missing:\n\nhost;x-amz-meta-a;x-missing\nUNSIGNED-PAYLOAD"
        );
    }
}
