//! Where a JWKS document may come from: https, or plain http to a loopback address; never
//! a link-local or cloud metadata address. A bucket's `jwksAllowInsecure` lifts both rules
//! (config files only: the Kubernetes `S3Bucket` has no such field). The gateway applies
//! [`jwks_address_refused`] again to every address a host name resolves to when it fetches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Link-local addresses (169.254.0.0/16, fe80::/10: where cloud metadata services answer)
/// and the other well-known metadata addresses (AWS's fd00:ec2::254, Alibaba's
/// 100.100.100.200).
pub fn metadata_address(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == Ipv4Addr::new(100, 100, 100, 200),
        IpAddr::V6(v6) => {
            v6.segments()[0] & 0xffc0 == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// Why a JWKS document may not be fetched from `ip` with this scheme, if it may not.
pub fn jwks_address_refused(ip: IpAddr, https: bool, allow_insecure: bool) -> Option<&'static str> {
    if allow_insecure {
        None
    } else if metadata_address(ip) {
        Some("a link-local or metadata address")
    } else if !https && !canonical(ip).is_loopback() {
        Some("plain http to an address that is not loopback")
    } else {
        None
    }
}

/// `url` as messages and logs name it: without user info or query, either of which may hold
/// a secret.
pub fn jwks_url_shown(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) => (r, "?…"),
        None => (rest, ""),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}{host}{path}{query}")
}

/// Checks a `jwksUrl`: `https://host[:port]/...`, or `http://` to `localhost` or a loopback
/// address; no user info; no link-local or metadata address literal.
pub fn check_jwks_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    let shown = jwks_url_shown(url);
    let not_url = || format!("{shown:?} is not an http(s) URL");
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(not_url()),
    };
    if rest.contains(char::is_whitespace) {
        return Err(not_url());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("{shown:?} must not carry user info"));
    }
    let (host, port, literal) = match authority.strip_prefix('[') {
        Some(r) => {
            let (h, p) = r.split_once(']').ok_or_else(not_url)?;
            // An IPv6 literal, maybe with a zone (`fe80::1%25eth0`).
            let addr = h.split('%').next().unwrap_or_default();
            let v6: Ipv6Addr = addr.parse().map_err(|_| not_url())?;
            (h, p.strip_prefix(':').unwrap_or(p), Some(IpAddr::V6(v6)))
        }
        None => {
            let (h, p) = authority.split_once(':').unwrap_or((authority, ""));
            (h, p, h.parse::<IpAddr>().ok())
        }
    };
    if host.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_url());
    }
    match literal.ok_or(()) {
        Ok(ip) => match jwks_address_refused(ip, https, allow_insecure) {
            Some(why) => Err(format!("{shown:?} names {why}")),
            None => Ok(()),
        },
        Err(_) if https || allow_insecure || host.eq_ignore_ascii_case("localhost") => Ok(()),
        Err(_) => Err(format!(
            "{shown:?}: plain http only to localhost or a loopback address (else https)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_loopback_http_and_never_metadata() {
        for ok in [
            "https://idp.example.com/realms/a/certs",
            "https://idp.example.com:8443/certs",
            "https://10.0.0.7/certs",
            "https://[2001:db8::1]:443/certs",
            "http://127.0.0.1:8080/certs",
            "http://localhost/certs",
            "http://[::1]:9/certs",
        ] {
            assert_eq!(check_jwks_url(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://idp/certs",
            "http://idp.example.com/certs",
            "http://10.0.0.7/certs",
            "https://169.254.169.254/latest/meta-data",
            "http://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/certs",
            "https://[fe80::1%25eth0]/certs",
            "https://[not-an-ip]/certs",
            "https://[::ffff:169.254.169.254]/x",
            "https://[fd00:ec2::254]/x",
            "https://100.100.100.200/x",
            "https://user:pw@idp.example.com/certs",
            "https://",
            "https://idp:x/certs",
            "https://idp/ certs",
        ] {
            assert!(check_jwks_url(bad, false).is_err(), "{bad}");
        }
        for opted in [
            "http://idp.example.com/certs",
            "http://169.254.169.254/x",
            "https://[fe80::1]/x",
        ] {
            assert_eq!(check_jwks_url(opted, true), Ok(()), "{opted}");
        }
        assert!(check_jwks_url("https://u@x/y", true).is_err());
        for (url, shown) in [
            ("https://idp.example/certs", "https://idp.example/certs"),
            (
                "https://u:pw@idp.example:8443/a/certs?token=t0k#f",
                "https://idp.example:8443/a/certs?…",
            ),
            ("http://[::1]:8080/k", "http://[::1]:8080/k"),
            ("https://u:p@idp.example", "https://idp.example"),
            ("u:p@idp/x", "idp/x"),
        ] {
            assert_eq!(jwks_url_shown(url), shown, "{url}");
        }
        // What is refused is named without its user info or query.
        for (bad, named) in [
            (
                "https://reader:s3cret@idp.example.com/certs",
                "https://idp.example.com/certs",
            ),
            (
                "http://10.0.0.7/certs?token=t0k3n",
                "http://10.0.0.7/certs?…",
            ),
            (
                "https://169.254.169.254/x?key=t0k3n",
                "https://169.254.169.254/x?…",
            ),
        ] {
            let why = check_jwks_url(bad, false).expect_err(bad);
            assert!(!why.contains("s3cret") && !why.contains("t0k3n"), "{why}");
            assert!(why.contains(named), "{why}");
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(jwks_address_refused(ip("169.254.1.1"), true, false).is_some());
        assert!(jwks_address_refused(ip("192.0.2.1"), false, false).is_some());
        assert!(jwks_address_refused(ip("::ffff:127.0.0.1"), false, false).is_none());
        assert!(jwks_address_refused(ip("192.0.2.1"), true, false).is_none());
    }
}
