//! JWT bearer authentication per bucket: the token from a header, `Authorization: Bearer`
//! or a query parameter; static keys or a JWKS URL; `iss`, `aud`, `exp`, `nbf` with leeway;
//! claim rules. Every failure is the same `AccessDenied`; the reason goes to the debug log.

mod claims;
mod crypto;
mod fetch;
mod jwks;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use jets3_crds::{FieldError, JwtAlgorithm, JwtAuth, Permission, TokenSourceKind};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::s3::endpoint::{query_get, Query};

pub use crypto::install as install_crypto;

/// A verification key and the algorithm it is for (`None`: any of its family).
pub struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

enum Source {
    Bearer,
    Query(String),
    Header(HeaderName),
}

/// A bucket's compiled JWT settings.
pub struct JwtVerifier {
    sources: Vec<Source>,
    keys: Vec<Key>,
    jwks: Option<Arc<jwks::Jwks>>,
    allowed: Vec<Algorithm>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    rules: Vec<claims::Rule>,
    permission: Permission,
    subject: Vec<String>,
}

/// Who a valid token speaks for, and what it may do.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    pub subject: String,
    pub permission: Permission,
}

fn alg(a: JwtAlgorithm) -> Algorithm {
    a.jsonwebtoken()
}

impl JwtVerifier {
    /// Compiles a bucket's settings (`path` names them in errors); keys that do not parse
    /// are reported.
    pub fn compile(cfg: &JwtAuth, path: &str) -> Result<JwtVerifier, Vec<FieldError>> {
        install_crypto();
        let mut errors = Vec::new();
        let mut keys = Vec::new();
        for (i, k) in cfg.keys.iter().enumerate() {
            match k.decoding_key() {
                Ok(key) => keys.push(Key {
                    kid: k.kid.clone(),
                    alg: Some(alg(k.algorithm)),
                    key,
                }),
                Err(message) => errors.push(FieldError {
                    path: format!(
                        "{path}.keys[{i}].{}",
                        if k.algorithm.is_hmac() {
                            "secret"
                        } else {
                            "publicKeyPem"
                        }
                    ),
                    message,
                }),
            }
        }
        let mut sources = Vec::new();
        for (i, s) in cfg.sources.iter().enumerate() {
            let name = s.name.clone().unwrap_or_default();
            sources.push(match s.kind {
                TokenSourceKind::Bearer => Source::Bearer,
                TokenSourceKind::Query => Source::Query(name),
                TokenSourceKind::Header => match HeaderName::try_from(name.as_str()) {
                    Ok(h) => Source::Header(h),
                    Err(_) => {
                        errors.push(FieldError {
                            path: format!("{path}.sources[{i}].name"),
                            message: format!("{name:?} is not a header name"),
                        });
                        continue;
                    }
                },
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let jwks = cfg.jwks_url.as_deref().map(|url| {
            let j = jwks::Jwks::shared(
                url,
                Duration::from_secs(cfg.jwks_refresh_seconds),
                Duration::from_secs(cfg.jwks_min_refresh_seconds),
                cfg.jwks_allow_insecure,
            );
            // Warm the cache so that the first token does not wait for the fetch.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let j = j.clone();
                rt.spawn(async move { j.keys(None).await });
            }
            j
        });
        Ok(JwtVerifier {
            sources,
            keys,
            jwks,
            allowed: cfg.algorithms.iter().map(|a| alg(*a)).collect(),
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            leeway: cfg.leeway_seconds,
            rules: cfg.claims.iter().map(claims::Rule::from).collect(),
            permission: cfg.permission,
            subject: cfg.subject_claim.split('.').map(str::to_string).collect(),
        })
    }

    /// The token the request carries in one of the bucket's sources, if any.
    pub fn token<'r>(&self, headers: &'r HeaderMap, query: &'r Query) -> Option<&'r str> {
        let strip = |v: &'r str| {
            let v = v.trim();
            match v.get(..7) {
                Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim(),
                _ => v,
            }
        };
        self.sources.iter().find_map(|s| match s {
            Source::Bearer => headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .filter(|v| {
                    v.get(..7)
                        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
                })
                .map(strip),
            Source::Query(name) => query_get(query, name).map(str::trim),
            Source::Header(name) => headers.get(name).and_then(|v| v.to_str().ok()).map(strip),
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
        }
        v
    }

    /// Checks a token: signature, standard claims, claim rules. The error is for the log.
    pub async fn verify(&self, token: &str) -> Result<TokenClaims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        if !self.allowed.is_empty() && !self.allowed.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not allowed", header.alg));
        }
        let kid = header.kid.as_deref();
        let fits = |k: &Key| {
            kid.is_none_or(|want| k.kid.as_deref() == Some(want))
                && k.alg.unwrap_or(header.alg) == header.alg
                && k.key.family() == header.alg.family()
        };
        let fetched;
        let mut candidates: Vec<&Key> = self.keys.iter().filter(|k| fits(k)).collect();
        if candidates.is_empty() {
            if let Some(j) = &self.jwks {
                fetched = j.keys(kid).await;
                candidates = fetched.iter().filter(|k| fits(k)).collect();
            }
        }
        if candidates.is_empty() {
            return Err(format!("no key for kid {kid:?} and {:?}", header.alg));
        }
        let validation = self.validation(header.alg);
        let mut last = String::new();
        let mut claims = None;
        for k in candidates {
            match jsonwebtoken::decode::<Value>(token, &k.key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let claims = claims.ok_or(last)?;
        if let Some(i) = self.rules.iter().position(|r| !r.holds(&claims)) {
            return Err(format!("claim rule {i} does not hold"));
        }
        let subject = match claims::lookup(&claims, &self.subject) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            _ => String::new(),
        };
        Ok(TokenClaims {
            subject,
            permission: self.permission,
        })
    }
}
