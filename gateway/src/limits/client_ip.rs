//! The client's address: the peer, or behind trusted proxies the first untrusted address
//! of `X-Forwarded-For` counted from the right; and the proxies the request came through.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// Where a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client: the peer, or the address the trusted proxies name.
    pub ip: IpAddr,
    /// The trusted proxies between the gateway and `ip`, the peer first; empty when the
    /// peer is the client. A client inside a trusted range is one of them, so address
    /// deny rules look at these too.
    pub proxies: Vec<IpAddr>,
}

impl ClientAddr {
    /// Every address on the path: the proxies, then the client.
    pub fn path(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.proxies.iter().copied().chain(std::iter::once(self.ip))
    }
}

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

    /// The client of a request from `peer`: walking `X-Forwarded-For` from the right,
    /// trusted proxies are skipped and the first untrusted address is the client (when all
    /// are trusted, the leftmost; an unreadable item stops the walk at the hop before it).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let mut ip = canonical(peer);
        let mut proxies = Vec::new();
        if self.0.is_empty() || !self.trusts(ip) {
            return ClientAddr { ip, proxies };
        }
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for item in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(next) = parse_item(item) else { break };
            proxies.push(ip);
            ip = next;
            if !self.trusts(ip) {
                break;
            }
        }
        ClientAddr { ip, proxies }
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
        let client = |peer: &str, xff: &[&str]| t.client(ip(peer), &headers(xff));
        let h = ["203.0.113.9, 10.1.1.1"];
        assert_eq!(
            client("10.2.2.2", &h),
            ClientAddr {
                ip: ip("203.0.113.9"),
                proxies: vec![ip("10.2.2.2"), ip("10.1.1.1")]
            }
        );
        assert_eq!(
            client("192.0.2.1", &h),
            ClientAddr {
                ip: ip("192.0.2.1"),
                proxies: vec![]
            },
            "untrusted peer"
        );
        // A client cannot hide behind a forged first item: the last untrusted one counts.
        let c = client("fd00::1", &["1.1.1.1", "198.51.100.7:4711, 10.0.0.5"]);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(c.proxies, vec![ip("fd00::1"), ip("10.0.0.5")]);
        assert_eq!(client("10.0.0.1", &[]).ip, ip("10.0.0.1"));
        let c = client("10.0.0.1", &["garbage, 10.0.0.2"]);
        assert_eq!(c.ip, ip("10.0.0.2"), "stops at an unreadable item");
        assert_eq!(
            c.path().collect::<Vec<_>>(),
            vec![ip("10.0.0.1"), ip("10.0.0.2")]
        );
        // Every hop trusted: the leftmost is the client, the others are on its path.
        let c = client("10.0.0.1", &["10.66.1.1, 10.0.0.3"]);
        assert_eq!(c.ip, ip("10.66.1.1"));
        assert_eq!(c.proxies, vec![ip("10.0.0.1"), ip("10.0.0.3")]);
        assert_eq!(
            client("::ffff:10.0.0.1", &["[2001:db8::5]:80"]).ip,
            ip("2001:db8::5")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.2.2.2"), &headers(&["1.2.3.4"])).ip,
            ip("10.2.2.2")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/99".into()]).is_err());
    }
}
