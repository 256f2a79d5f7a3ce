//! What protects each bucket beyond its grants, compiled once per config: its JWT settings
//! and its client address filter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jets3_crds::{FieldError, GatewayConfig, IpFilter, ValidationErrors};

use crate::auth::jwt::JwtVerifier;
use crate::limits::ClientAddr;

/// One bucket's compiled protection settings.
pub struct BucketGuards {
    pub jwt: Option<JwtVerifier>,
    pub addresses: Option<AddressFilter>,
}

/// Client addresses a bucket accepts: not in `deny`, and in `allow` when it is not empty.
pub struct AddressFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl AddressFilter {
    fn compile(f: &IpFilter) -> AddressFilter {
        // Validation has parsed every entry already.
        let parse = |l: &[String]| {
            l.iter()
                .filter_map(|c| jets3_crds::parse_cidr(c).ok())
                .collect()
        };
        AddressFilter {
            allow: parse(&f.allow),
            deny: parse(&f.deny),
        }
    }

    /// Whether a request from `client` may use the bucket: no address on its path is
    /// denied (the proxies too: a client inside a trusted range must not escape a deny
    /// rule by naming another address), and the client is allowed.
    pub fn admits(&self, client: &ClientAddr) -> bool {
        let denied = |ip: IpAddr| self.deny.iter().any(|n| n.contains(&ip));
        !client.path().any(denied)
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client.ip)))
    }
}

impl std::fmt::Debug for BucketGuards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketGuards")
            .field("jwt", &self.jwt.is_some())
            .field("addresses", &self.addresses.is_some())
            .finish_non_exhaustive()
    }
}

/// Compiles the guards of every bucket that has any, reporting keys that do not parse.
pub fn compile(
    config: &GatewayConfig,
) -> Result<HashMap<String, Arc<BucketGuards>>, ValidationErrors> {
    let mut out = HashMap::new();
    let mut errors: Vec<FieldError> = Vec::new();
    for (i, b) in config.buckets.iter().enumerate() {
        let jwt = match &b.jwt {
            Some(j) => match JwtVerifier::compile(j, &format!("buckets[{i}].jwt")) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        let addresses = b.ip_filter.as_ref().map(AddressFilter::compile);
        if jwt.is_some() || addresses.is_some() {
            out.insert(b.name.clone(), Arc::new(BucketGuards { jwt, addresses }));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ValidationErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_allow_restricts() {
        let f = AddressFilter::compile(&IpFilter {
            allow: vec![
                "10.0.0.0/8".into(),
                "2001:db8::/32".into(),
                "192.0.2.7".into(),
            ],
            deny: vec!["10.66.0.0/16".into()],
        });
        let ip = |s: &str| ClientAddr {
            ip: s.parse().unwrap(),
            proxies: vec![],
        };
        assert!(f.admits(&ip("10.1.2.3")));
        assert!(f.admits(&ip("192.0.2.7")));
        assert!(f.admits(&ip("2001:db8::1")));
        assert!(!f.admits(&ip("10.66.1.1")), "deny wins");
        assert!(!f.admits(&ip("192.0.2.8")), "not allowed");
        let deny_only = AddressFilter::compile(&IpFilter {
            allow: vec![],
            deny: vec!["203.0.113.0/24".into()],
        });
        assert!(deny_only.admits(&ip("198.51.100.1")));
        assert!(!deny_only.admits(&ip("203.0.113.9")));
        let via = |client: &str, proxy: &str| ClientAddr {
            ip: client.parse().unwrap(),
            proxies: vec![proxy.parse().unwrap()],
        };
        assert!(
            !deny_only.admits(&via("198.51.100.1", "203.0.113.9")),
            "a denied proxy"
        );
        assert!(!f.admits(&via("10.1.2.3", "10.66.0.1")));
        assert!(
            f.admits(&via("10.1.2.3", "192.0.2.99")),
            "allow looks at the client"
        );
    }
}
