//! The client's address: the peer, or behind trusted proxies the last untrusted address
//! of `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` item: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_item(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

impl TrustedProxies {
    /// Parses CIDRs (or single addresses).
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        list.iter()
            .map(|s| jets3_crds::parse_cidr(s))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut ip = canonical(peer);
        if self.0.is_empty() || !self.trusts(ip) {
            return ip;
        }
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for item in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            match parse_item(item) {
                Some(next) => ip = next,
                None => return ip,
            }
            if !self.trusts(ip) {
                return ip;
            }
        }
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "fd00::1".into()]).unwrap();
        let h = headers(&["203.0.113.9, 10.1.1.1"]);
        assert_eq!(t.client_ip(ip("10.2.2.2"), &h), ip("203.0.113.9"));
        assert_eq!(
            t.client_ip(ip("192.0.2.1"), &h),
            ip("192.0.2.1"),
            "untrusted peer"
        );
        // A client cannot hide behind a forged first item: the last untrusted one counts.
        let h = headers(&["1.1.1.1", "198.51.100.7:4711, 10.0.0.5"]);
        assert_eq!(t.client_ip(ip("fd00::1"), &h), ip("198.51.100.7"));
        assert_eq!(t.client_ip(ip("10.0.0.1"), &headers(&[])), ip("10.0.0.1"));
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &headers(&["garbage, 10.0.0.2"])),
            ip("10.0.0.2"),
            "stops at an unreadable item"
        );
        assert_eq!(
            t.client_ip(ip("::ffff:10.0.0.1"), &headers(&["[2001:db8::5]:80"])),
            ip("2001:db8::5")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.2.2.2"), &headers(&["1.2.3.4"])),
            ip("10.2.2.2")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/99".into()]).is_err());
    }
}
