//! `GatewayConfig::validate`: every problem at once, each with its field path.

use std::collections::HashSet;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{CorsRule, GatewayConfig};
use crate::jwt::validate_jwt;
use crate::problems::{Collector, ValidationErrors};
use crate::protection::{validate_cache, validate_ip_filter, validate_rate};
use crate::validate_s3_bucket_name;

const CORS_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

fn valid_nats_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn parse_time(c: &mut Collector, path: String, v: &Option<String>) -> Option<OffsetDateTime> {
    let v = v.as_ref()?;
    match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            c.err(path, format!("{v:?} is not an RFC 3339 time"));
            None
        }
    }
}

fn validate_cors(c: &mut Collector, path: &str, rules: &[CorsRule]) {
    if rules.len() > 100 {
        c.err(path, "at most 100 CORS rules");
    }
    for (i, r) in rules.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if r.allowed_origins.is_empty() {
            c.err(format!("{p}.allowedOrigins"), "at least one origin");
        }
        for o in &r.allowed_origins {
            if o.matches('*').count() > 1 {
                c.err(
                    format!("{p}.allowedOrigins"),
                    format!("{o:?} has more than one '*'"),
                );
            }
        }
        if r.allowed_methods.is_empty() {
            c.err(format!("{p}.allowedMethods"), "at least one method");
        }
        for m in &r.allowed_methods {
            if !CORS_METHODS.contains(&m.as_str()) {
                c.err(
                    format!("{p}.allowedMethods"),
                    format!("{m:?} is not one of GET, PUT, POST, DELETE, HEAD"),
                );
            }
        }
    }
}

impl GatewayConfig {
    /// Checks every rule and reports all broken ones with their field paths.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Collector::default();
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            c.err("region", "must be lowercase letters, digits and '-'");
        }
        for (i, d) in self.virtual_host_domains.iter().enumerate() {
            if !valid_domain(d) {
                c.err(
                    format!("virtualHostDomains[{i}]"),
                    format!("{d:?} is not a DNS name"),
                );
            }
        }
        let mut names = HashSet::new();
        let mut nats_names = HashSet::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let p = format!("buckets[{i}]");
            if let Err(e) = validate_s3_bucket_name(&b.name) {
                c.err(format!("{p}.name"), format!("{:?} {e}", b.name));
            }
            if !names.insert(b.name.as_str()) {
                c.err(
                    format!("{p}.name"),
                    format!("{:?} is declared twice", b.name),
                );
            }
            let nats = b.nats_name();
            if !valid_nats_name(&nats) {
                c.err(
                    format!("{p}.natsBucket"),
                    format!("{nats:?} may contain only letters, digits, '_' and '-'"),
                );
            } else if !nats_names.insert(nats.clone()) {
                c.err(
                    format!("{p}.natsBucket"),
                    format!("NATS bucket {nats:?} is used by two buckets"),
                );
            }
            if !(1..=5).contains(&b.replicas) {
                c.err(format!("{p}.replicas"), "must be between 1 and 5");
            }
            if b.max_object_size == Some(0) {
                c.err(format!("{p}.maxObjectSize"), "must be at least 1");
            }
            validate_cors(&mut c, &format!("{p}.cors"), &b.cors);
            if let Some(policy) = &b.policy {
                if let Err(e) = crate::policy::Policy::parse(policy, &b.name) {
                    c.err(format!("{p}.policy"), e.0);
                }
            }
            if let Some(j) = &b.jwt {
                validate_jwt(&mut c, &format!("{p}.jwt"), j);
            }
            if let Some(f) = &b.ip_filter {
                validate_ip_filter(&mut c, &format!("{p}.ipFilter"), f);
            }
            validate_rate(&mut c, &format!("{p}.rateLimit"), &b.rate_limit);
            if let Some(cache) = &b.cache {
                validate_cache(&mut c, &format!("{p}.cache"), cache);
            }
        }
        let mut keys = HashSet::new();
        for (i, cred) in self.credentials.iter().enumerate() {
            let p = format!("credentials[{i}]");
            let id = &cred.access_key_id;
            if !(3..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                c.err(
                    format!("{p}.accessKeyId"),
                    "must be 3 to 128 letters and digits",
                );
            }
            if !keys.insert(id.as_str()) {
                c.err(format!("{p}.accessKeyId"), format!("{id:?} is used twice"));
            }
            let secret = &cred.secret_access_key;
            if secret.len() < 8
                || secret.len() > 128
                || !secret.bytes().all(|b| b.is_ascii_graphic())
            {
                c.err(
                    format!("{p}.secretAccessKey"),
                    "must be 8 to 128 printable characters",
                );
            }
            for (j, g) in cred.grants.iter().enumerate() {
                let pattern = g.bucket.strip_suffix('*').unwrap_or(&g.bucket);
                let ok = if g.bucket.ends_with('*') {
                    pattern.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                    })
                } else {
                    validate_s3_bucket_name(pattern).is_ok()
                };
                if !ok {
                    c.err(
                        format!("{p}.grants[{j}].bucket"),
                        format!(
                            "{:?} is neither a bucket name nor a prefix ending in '*'",
                            g.bucket
                        ),
                    );
                }
            }
            let nb = parse_time(&mut c, format!("{p}.notBefore"), &cred.not_before);
            let na = parse_time(&mut c, format!("{p}.notAfter"), &cred.not_after);
            if let (Some(nb), Some(na)) = (nb, na) {
                if na <= nb {
                    c.err(format!("{p}.notAfter"), "must be later than notBefore");
                }
            }
        }
        let l = &self.limits;
        if l.max_key_bytes == 0 || l.max_key_bytes > 1024 {
            c.err("limits.maxKeyBytes", "must be between 1 and 1024");
        }
        if l.max_parts == 0 || l.max_parts > 10_000 {
            c.err("limits.maxParts", "must be between 1 and 10000");
        }
        if l.min_part_size == 0 || l.min_part_size > l.max_part_size {
            c.err(
                "limits.minPartSize",
                "must be at least 1 and at most maxPartSize",
            );
        }
        if l.max_object_size == 0 {
            c.err("limits.maxObjectSize", "must be at least 1");
        }
        if l.multipart_expiry_seconds == 0 {
            c.err("limits.multipartExpirySeconds", "must be at least 1");
        }
        if l.max_xml_body_bytes < 1024 {
            c.err("limits.maxXmlBodyBytes", "must be at least 1024");
        }
        let r = &l.rate_limits;
        validate_rate(&mut c, "limits.rateLimits.global", &r.global);
        validate_rate(&mut c, "limits.rateLimits.perClientIp", &r.per_client_ip);
        validate_rate(&mut c, "limits.rateLimits.perAccessKey", &r.per_access_key);
        if l.circuit_breaker.failure_threshold > 0 && l.circuit_breaker.cooldown_seconds == 0 {
            c.err(
                "limits.circuitBreaker.cooldownSeconds",
                "must be at least 1",
            );
        }
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BucketConfig, Credential, Grant, Permission};

    fn bucket(name: &str) -> BucketConfig {
        BucketConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    fn cred(id: &str) -> Credential {
        Credential {
            access_key_id: id.into(),
            secret_access_key: "secretsecret".into(),
            grants: vec![Grant {
                bucket: "demo".into(),
                permission: Permission::ReadWrite,
            }],
            not_before: None,
            not_after: None,
            description: None,
        }
    }

    fn paths(cfg: &GatewayConfig) -> Vec<String> {
        match cfg.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|f| f.path).collect(),
        }
    }

    #[test]
    fn a_good_config_passes() {
        let cfg = GatewayConfig {
            buckets: vec![bucket("demo"), bucket("my.logs")],
            credentials: vec![cred("AKIA0001")],
            ..Default::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let mut bad = cred("AKIA0001");
        bad.secret_access_key = "short".into();
        bad.grants[0].bucket = "Bad_Name".into();
        bad.not_before = Some("2026-01-02T00:00:00Z".into());
        bad.not_after = Some("2026-01-01T00:00:00Z".into());
        let mut b2 = bucket("demo");
        b2.replicas = 7;
        b2.max_object_size = Some(0);
        b2.cors = vec![CorsRule {
            allowed_origins: vec![],
            allowed_methods: vec!["PATCH".into()],
            ..Default::default()
        }];
        let mut cfg = GatewayConfig {
            region: "US_EAST".into(),
            virtual_host_domains: vec!["bad domain".into()],
            buckets: vec![bucket("demo"), b2, bucket("a_b")],
            credentials: vec![bad, cred("AKIA0001"), cred("x!")],
            ..Default::default()
        };
        cfg.limits.max_parts = 0;
        cfg.limits.max_key_bytes = 2000;
        cfg.limits.min_part_size = u64::MAX;
        let p = paths(&cfg);
        for want in [
            "region",
            "virtualHostDomains[0]",
            "buckets[1].name",
            "buckets[1].natsBucket",
            "buckets[1].replicas",
            "buckets[1].maxObjectSize",
            "buckets[1].cors[0].allowedOrigins",
            "buckets[1].cors[0].allowedMethods",
            "buckets[2].name",
            "credentials[0].secretAccessKey",
            "credentials[0].grants[0].bucket",
            "credentials[0].notAfter",
            "credentials[1].accessKeyId",
            "credentials[2].accessKeyId",
            "limits.maxParts",
            "limits.maxKeyBytes",
            "limits.minPartSize",
        ] {
            assert!(p.contains(&want.to_string()), "missing {want} in {p:?}");
        }
    }

    #[test]
    fn grant_patterns() {
        let g = Grant {
            bucket: "team-*".into(),
            permission: Permission::Read,
        };
        assert!(g.matches("team-a"));
        assert!(!g.matches("other"));
        let all = Grant {
            bucket: "*".into(),
            permission: Permission::Admin,
        };
        assert!(all.matches("anything"));
        let mut cfg = GatewayConfig {
            credentials: vec![cred("AKIA0001")],
            ..Default::default()
        };
        cfg.credentials[0].grants = vec![g, all];
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn unparsable_time_is_reported() {
        let mut c = cred("AKIA0001");
        c.not_after = Some("tomorrow".into());
        let cfg = GatewayConfig {
            credentials: vec![c],
            ..Default::default()
        };
        assert_eq!(paths(&cfg), vec!["credentials[0].notAfter".to_string()]);
    }

    #[test]
    fn hash_ignores_generation_and_tracks_content() {
        let mut a = GatewayConfig::default();
        let h = a.content_hash();
        a.generation = 9;
        assert_eq!(a.content_hash(), h);
        a.region = "eu-west-1".into();
        assert_ne!(a.content_hash(), h);
    }

    #[test]
    fn parses_yaml_and_refuses_unknown_fields() {
        let cfg = GatewayConfig::from_yaml(
            "region: eu-central-1\nbuckets:\n  - name: demo\n    access: public-read\ncredentials:\n  - accessKeyId: AKIA0001\n    secretAccessKey: secretsecret\n    grants: [{bucket: '*', permission: admin}]\n",
        )
        .expect("parses");
        assert_eq!(cfg.region, "eu-central-1");
        assert_eq!(cfg.buckets[0].access, crate::Access::PublicRead);
        assert!(GatewayConfig::from_yaml("bogus: 1\n").is_err());
    }
}
