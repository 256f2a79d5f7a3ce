//! Protection settings: rate limits, timeouts, the NATS circuit breaker, IP filters,
//! the object cache opt-in and what the audit log records.

use serde::{Deserialize, Serialize};

use crate::problems::Collector;

/// A token bucket: `requestsPerSecond` on average, bursts of up to `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_second: f64,
    /// Largest burst; defaults to one second's worth (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The bucket's capacity.
    pub fn capacity(&self) -> f64 {
        match self.burst {
            Some(b) => b as f64,
            None => self.requests_per_second.ceil().max(1.0),
        }
    }
}

/// Gateway-wide rate limits; each is off when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RateLimits {
    /// All requests together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<RateLimit>,
    /// Each client address (behind trusted proxies: the forwarded one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_client_ip: Option<RateLimit>,
    /// Each access key (after its signature is checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_access_key: Option<RateLimit>,
}

impl RateLimits {
    /// No limit is set.
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.per_client_ip.is_none() && self.per_access_key.is_none()
    }
}

/// How long a client may take; 0 turns a timeout off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Timeouts {
    /// To send a request's headers; also how long an idle keep-alive connection stays open.
    pub header_read_seconds: u64,
    /// Longest pause while sending a request body.
    pub idle_body_seconds: u64,
    /// A whole request, from its headers to the last byte of the response.
    pub request_seconds: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read_seconds: 30,
            idle_body_seconds: 30,
            request_seconds: 3600,
        }
    }
}

/// The circuit breaker around NATS: after `failureThreshold` requests in a row fail on
/// NATS, requests fail at once for `cooldownSeconds`, then a probe decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Consecutive NATS failures (errors or timeouts) that open the circuit; 0 turns it off.
    pub failure_threshold: u32,
    /// Seconds the circuit stays open before a probe.
    pub cooldown_seconds: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            failure_threshold: 5,
            cooldown_seconds: 5,
        }
    }
}

/// Client addresses a bucket accepts (CIDRs). `deny` wins; when `allow` is not empty,
/// only addresses in it are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IpFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The in-memory object cache, for one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BucketCache {
    pub enabled: bool,
    /// Largest object cached, in bytes (the gateway's own limit applies too).
    pub max_object_bytes: u64,
}

impl Default for BucketCache {
    fn default() -> Self {
        BucketCache {
            enabled: true,
            max_object_bytes: 1 << 20,
        }
    }
}

/// What the audit log records (where it goes is a process setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Record reads (GET, HEAD, listings) too; writes and refusals are always recorded.
    pub reads: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { reads: true }
    }
}

/// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a single host).
pub fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
}

pub(crate) fn validate_rate(c: &mut Collector, path: &str, r: &Option<RateLimit>) {
    let Some(r) = r else { return };
    if !(r.requests_per_second.is_finite() && r.requests_per_second > 0.0) {
        c.err(
            format!("{path}.requestsPerSecond"),
            "must be a number above 0",
        );
    }
    if r.burst == Some(0) {
        c.err(format!("{path}.burst"), "must be at least 1");
    }
}

pub(crate) fn validate_ip_filter(c: &mut Collector, path: &str, f: &IpFilter) {
    for (name, list) in [("allow", &f.allow), ("deny", &f.deny)] {
        for (i, cidr) in list.iter().enumerate() {
            if let Err(e) = parse_cidr(cidr) {
                c.err(format!("{path}.{name}[{i}]"), e);
            }
        }
    }
}

pub(crate) fn validate_cache(c: &mut Collector, path: &str, b: &BucketCache) {
    if b.max_object_bytes == 0 {
        c.err(format!("{path}.maxObjectBytes"), "must be at least 1");
    }
}

#[cfg(test)]
mod tests {
    use crate::{GatewayConfig, Permission};

    fn paths(cfg: &GatewayConfig) -> Vec<String> {
        match cfg.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|f| f.path).collect(),
        }
    }

    const GOOD: &str = r#"
limits:
  maxInFlightRequests: 512
  maxBufferedBytes: 1073741824
  timeouts: {headerReadSeconds: 10, idleBodySeconds: 20, requestSeconds: 600}
  rateLimits:
    global: {requestsPerSecond: 1000, burst: 2000}
    perClientIp: {requestsPerSecond: 50}
    perAccessKey: {requestsPerSecond: 0.5, burst: 3}
  circuitBreaker: {failureThreshold: 3, cooldownSeconds: 2}
audit: {reads: false}
buckets:
  - name: media
    ipFilter: {allow: [10.0.0.0/8, "fd00::/8", 192.168.1.7], deny: [10.9.0.0/16]}
    rateLimit: {requestsPerSecond: 100}
    cache: {enabled: true, maxObjectBytes: 65536}
    jwt:
      sources: [{kind: bearer}, {kind: query, name: access_token}, {kind: header, name: X-Token}]
      issuer: https://idp.example.com/realms/apps
      audiences: [jets3]
      jwksUrl: https://idp.example.com/realms/apps/certs
      keys:
        - {kid: shared, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}
        - {kid: pem, algorithm: ES256, publicKeyPem: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEieNzD13m8T7M91XyaJQfbMo5DoXm\nszg03GY8pruQZuwfJsdIvxXCEnHRUULDb49t85OW4ROIDEeRDPl077Bpfw==\n-----END PUBLIC KEY-----\n"}
      claims:
        - {claim: realm.roles, op: contains, value: s3-writer}
        - {claim: tier, op: in, value: [gold, silver]}
        - {claim: level, op: gt, value: 2}
      permission: read-write
"#;

    #[test]
    fn a_full_protection_config_parses_and_validates() {
        let cfg = GatewayConfig::from_yaml(GOOD).expect("parses");
        assert_eq!(cfg.validate(), Ok(()));
        let b = &cfg.buckets[0];
        let jwt = b.jwt.as_ref().expect("jwt");
        assert_eq!(jwt.permission, Permission::ReadWrite);
        assert_eq!(jwt.leeway_seconds, 30, "default leeway");
        assert_eq!(jwt.sources.len(), 3);
        assert_eq!(
            cfg.limits.rate_limits.per_client_ip.unwrap().capacity(),
            50.0
        );
        assert_eq!(
            cfg.limits.rate_limits.per_access_key.unwrap().capacity(),
            3.0
        );
        assert!(!cfg.audit.reads);
        // Defaults when absent.
        let plain = GatewayConfig::default();
        assert_eq!(plain.limits.timeouts.header_read_seconds, 30);
        assert_eq!(plain.limits.circuit_breaker.failure_threshold, 5);
        assert!(plain.audit.reads);
        // Round trip through JSON (the push wire format).
        let json = serde_json::to_string(&cfg).expect("json");
        let back: GatewayConfig = serde_json::from_str(&json).expect("back");
        assert_eq!(back, cfg);
    }

    #[test]
    fn every_protection_problem_has_its_path() {
        let bad = GOOD
            .replace("10.9.0.0/16", "10.9.0.0/40")
            .replace("requestsPerSecond: 100}", "requestsPerSecond: 0}")
            .replace("burst: 3", "burst: 0")
            .replace("maxObjectBytes: 65536", "maxObjectBytes: 0")
            .replace("name: access_token", "name: X-Amz-Signature")
            .replace("name: X-Token", "name: 'bad header'")
            .replace("https://idp.example.com/realms/apps/certs", "ftp://x")
            .replace("0123456789abcdef0123456789abcdef", "short")
            .replace("-----BEGIN PUBLIC KEY-----\\nMFkw", "MFkw")
            .replace("value: [gold, silver]", "value: gold")
            .replace("value: 2}", "value: two}")
            .replace("claim: realm.roles", "claim: realm..roles")
            .replace("permission: read-write", "permission: admin")
            .replace("cooldownSeconds: 2", "cooldownSeconds: 0");
        let cfg = GatewayConfig::from_yaml(&bad).expect("parses");
        let p = paths(&cfg);
        let j = "buckets[0].jwt";
        for want in [
            "buckets[0].ipFilter.deny[0]".to_string(),
            "buckets[0].rateLimit.requestsPerSecond".into(),
            "buckets[0].cache.maxObjectBytes".into(),
            "limits.rateLimits.perAccessKey.burst".into(),
            "limits.circuitBreaker.cooldownSeconds".into(),
            format!("{j}.sources[1].name"),
            format!("{j}.sources[2].name"),
            format!("{j}.jwksUrl"),
            format!("{j}.keys[0].secret"),
            format!("{j}.keys[1].publicKeyPem"),
            format!("{j}.claims[0].claim"),
            format!("{j}.claims[1].value"),
            format!("{j}.claims[2].value"),
            format!("{j}.permission"),
        ] {
            assert!(p.contains(&want), "missing {want} in {p:?}");
        }
        assert_eq!(p.len(), 14, "{p:?}");
    }

    #[test]
    fn jwt_needs_a_key_source_and_consistent_keys() {
        let cfg = GatewayConfig::from_yaml(
            "buckets:\n  - name: bkt\n    jwt:\n      sources: [{kind: bearer, name: x}, {kind: query}]\n      keys:\n        - {kid: a, algorithm: RS256, secret: '0123456789abcdef0123456789abcdef'}\n        - {kid: a, algorithm: HS512, publicKeyPem: '-----BEGIN PUBLIC KEY-----'}\n        - {algorithm: HS384, secretBase64: '!!'}\n      jwksRefreshSeconds: 5\n      jwksMinRefreshSeconds: 60\n      leewaySeconds: 301\n",
        )
        .expect("parses");
        let p = paths(&cfg);
        let j = "buckets[0].jwt";
        for want in [
            "sources[0].name",
            "sources[1].name",
            "keys[0].secret",
            "keys[0].publicKeyPem",
            "keys[1].kid",
            "keys[1].publicKeyPem",
            "keys[1].secret",
            "keys[2].secretBase64",
            "jwksMinRefreshSeconds",
            "leewaySeconds",
        ] {
            let want = format!("{j}.{want}");
            assert!(p.contains(&want), "missing {want} in {p:?}");
        }
        let none =
            GatewayConfig::from_yaml("buckets:\n  - name: bkt\n    jwt: {}\n").expect("parses");
        assert_eq!(paths(&none), vec!["buckets[0].jwt".to_string()]);
    }

    #[test]
    fn jwks_urls_need_https_and_never_reach_metadata_addresses() {
        let cfg = |url: &str, min: u64, extra: &str| {
            GatewayConfig::from_yaml(&format!(
                "buckets:\n  - name: bkt\n    jwt: {{jwksUrl: '{url}', jwksMinRefreshSeconds: {min}{extra}}}\n"
            ))
            .expect("parses")
        };
        let j = "buckets[0].jwt";
        for bad in [
            "http://idp.example.com/certs",
            "http://10.1.2.3/certs",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fe80::1%25eth0]/certs",
            "https://[fe80::1]/certs",
        ] {
            assert_eq!(
                paths(&cfg(bad, 10, "")),
                vec![format!("{j}.jwksUrl")],
                "{bad}"
            );
        }
        assert_eq!(
            paths(&cfg("https://idp.example.com/certs", 0, "")),
            vec![format!("{j}.jwksMinRefreshSeconds")]
        );
        assert!(paths(&cfg("http://127.0.0.1:8080/certs", 1, "")).is_empty());
        assert!(paths(&cfg("https://idp.example.com/certs", 10, "")).is_empty());
        // The opt-in of a config file's author.
        let insecure = ", jwksAllowInsecure: true";
        assert!(paths(&cfg("http://10.1.2.3/certs", 10, insecure)).is_empty());
        assert!(paths(&cfg("http://169.254.169.254/x", 10, insecure)).is_empty());
    }
}
