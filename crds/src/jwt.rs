//! Per-bucket JWT bearer authentication: where tokens come from, which keys sign them,
//! the standard claims checked, and claim rules.

use serde::{Deserialize, Serialize};

use crate::validate::Collector;
use crate::Permission;

/// JWT bearer authentication of a bucket. A request that carries a token in one of the
/// `sources` is authenticated by it alone; a bad token is refused, never treated as anonymous.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuth {
    /// Where a token is looked for, in order; the first one present is used.
    #[serde(default = "default_sources")]
    pub sources: Vec<TokenSource>,
    /// Required `iss`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When not empty, `aud` must name one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Static verification keys (the operator fills them from Secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKey>,
    /// A JWKS document (`https://.../jwks.json`), fetched, cached and refreshed. Plain
    /// http only to a loopback address; never a link-local or metadata address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Lifts the `jwksUrl` rules: plain http to any host, link-local and metadata
    /// addresses. For config files whose author controls the network; Kubernetes
    /// `S3Bucket`s cannot set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jwks_allow_insecure: bool,
    /// Seconds a fetched JWKS is used before it is fetched again.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Fewest seconds between two fetches caused by tokens naming an unknown `kid`.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_seconds: u64,
    /// When not empty, only these algorithms are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Rules on the token's claims; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimRule>,
    /// What a valid token may do on the bucket: `read`, `write` or `read-write`
    /// (writes still need a bucket that is not read-only).
    #[serde(default = "default_permission")]
    pub permission: Permission,
    /// The claim naming the caller in logs and the audit log.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

fn default_sources() -> Vec<TokenSource> {
    vec![TokenSource {
        kind: TokenSourceKind::Bearer,
        name: None,
    }]
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refresh() -> u64 {
    10
}
fn default_leeway() -> u64 {
    30
}
fn default_permission() -> Permission {
    Permission::Read
}
fn default_subject_claim() -> String {
    "sub".into()
}

impl Default for JwtAuth {
    fn default() -> Self {
        JwtAuth {
            sources: default_sources(),
            issuer: None,
            audiences: Vec::new(),
            keys: Vec::new(),
            jwks_url: None,
            jwks_allow_insecure: false,
            jwks_refresh_seconds: default_jwks_refresh(),
            jwks_min_refresh_seconds: default_jwks_min_refresh(),
            algorithms: Vec::new(),
            leeway_seconds: default_leeway(),
            claims: Vec::new(),
            permission: default_permission(),
            subject_claim: default_subject_claim(),
        }
    }
}

/// Where a token is carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSource {
    pub kind: TokenSourceKind,
    /// The query parameter or header name (`query`, `header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The kinds of [`TokenSource`].
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenSourceKind {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A query parameter.
    Query,
    /// A header holding the token (optionally prefixed with `Bearer `).
    Header,
}

/// A signature algorithm.
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    /// HMAC with a shared secret.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

/// A static verification key: a shared secret (HS*) or a public key PEM (the others).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtKey {
    /// Matched against the token's `kid`; a token without `kid` tries every key of its algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    pub algorithm: JwtAlgorithm,
    /// HMAC secret as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// HMAC secret, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_base64: Option<String>,
    /// `PUBLIC KEY` (or `RSA PUBLIC KEY`) PEM for RS*, PS*, ES* and EdDSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
}

/// A rule on one claim: `claim` is a dotted path into the claims (`realm.roles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRule {
    pub claim: String,
    pub op: ClaimOp,
    pub value: serde_json::Value,
}

/// How a claim is compared with a rule's value.
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimOp {
    /// The claim equals the value.
    Equals,
    /// The claim equals one of the values (an array).
    In,
    /// The claim (an array, or a string) contains the value.
    Contains,
    /// The claim is a number greater than the value.
    Gt,
    /// The claim is a number less than the value.
    Lt,
}

/// Shortest HMAC secret accepted, in bytes.
pub const MIN_HMAC_SECRET: usize = 32;
/// Largest leeway accepted, in seconds.
pub const MAX_LEEWAY: u64 = 300;

fn valid_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn validate_jwt(c: &mut Collector, path: &str, j: &JwtAuth) {
    if j.sources.is_empty() {
        c.err(format!("{path}.sources"), "at least one token source");
    }
    for (i, s) in j.sources.iter().enumerate() {
        let p = format!("{path}.sources[{i}].name");
        match (s.kind, s.name.as_deref()) {
            (TokenSourceKind::Bearer, Some(_)) => c.err(p, "a bearer source takes no name"),
            (TokenSourceKind::Bearer, None) => {}
            (_, None) => c.err(p, "a query or header source needs a name"),
            (TokenSourceKind::Header, Some(n)) if !valid_header_name(n) => {
                c.err(p, format!("{n:?} is not a header name"))
            }
            (TokenSourceKind::Header, Some(n)) if n.eq_ignore_ascii_case("authorization") => {
                c.err(p, "use a bearer source for the Authorization header")
            }
            (TokenSourceKind::Query, Some(n)) if n.is_empty() || n.starts_with("X-Amz-") => {
                c.err(p, format!("{n:?} cannot be a token parameter"))
            }
            _ => {}
        }
    }
    if j.keys.is_empty() && j.jwks_url.is_none() {
        c.err(path.to_string(), "needs keys or a jwksUrl");
    }
    let mut kids = std::collections::HashSet::new();
    for (i, k) in j.keys.iter().enumerate() {
        let p = format!("{path}.keys[{i}]");
        if let Some(kid) = &k.kid {
            if !kids.insert(kid.as_str()) {
                c.err(format!("{p}.kid"), format!("{kid:?} is used twice"));
            }
        }
        let secret = k.secret.is_some() || k.secret_base64.is_some();
        if k.algorithm.is_hmac() {
            if k.public_key_pem.is_some() {
                c.err(format!("{p}.publicKeyPem"), "an HMAC key takes a secret");
            }
            match (&k.secret, &k.secret_base64) {
                (Some(_), Some(_)) => c.err(
                    format!("{p}.secretBase64"),
                    "give secret or secretBase64, not both",
                ),
                (None, None) => c.err(format!("{p}.secret"), "an HMAC key needs a secret"),
                (Some(s), None) if s.len() < MIN_HMAC_SECRET => c.err(
                    format!("{p}.secret"),
                    format!("must be at least {MIN_HMAC_SECRET} bytes"),
                ),
                (None, Some(s)) => {
                    use base64::Engine;
                    match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                        Ok(b) if b.len() >= MIN_HMAC_SECRET => {}
                        Ok(_) => c.err(
                            format!("{p}.secretBase64"),
                            format!("must decode to at least {MIN_HMAC_SECRET} bytes"),
                        ),
                        Err(_) => c.err(format!("{p}.secretBase64"), "is not base64"),
                    }
                }
                _ => {}
            }
        } else {
            if secret {
                c.err(format!("{p}.secret"), "only HMAC keys take a secret");
            }
            match &k.public_key_pem {
                Some(pem) if pem.trim_start().starts_with("-----BEGIN ") => {}
                Some(_) => c.err(format!("{p}.publicKeyPem"), "is not a PEM document"),
                None => c.err(format!("{p}.publicKeyPem"), "a public key PEM is required"),
            }
        }
    }
    if let Some(url) = &j.jwks_url {
        if let Err(why) = crate::check_jwks_url(url, j.jwks_allow_insecure) {
            c.err(format!("{path}.jwksUrl"), why);
        }
    }
    if j.jwks_refresh_seconds == 0 {
        c.err(format!("{path}.jwksRefreshSeconds"), "must be at least 1");
    }
    if j.jwks_min_refresh_seconds == 0 {
        c.err(
            format!("{path}.jwksMinRefreshSeconds"),
            "must be at least 1",
        );
    }
    if j.jwks_min_refresh_seconds > j.jwks_refresh_seconds {
        c.err(
            format!("{path}.jwksMinRefreshSeconds"),
            "must not exceed jwksRefreshSeconds",
        );
    }
    if j.leeway_seconds > MAX_LEEWAY {
        c.err(
            format!("{path}.leewaySeconds"),
            format!("must be at most {MAX_LEEWAY}"),
        );
    }
    for (i, r) in j.claims.iter().enumerate() {
        let p = format!("{path}.claims[{i}]");
        if r.claim.is_empty() || r.claim.split('.').any(str::is_empty) {
            c.err(
                format!("{p}.claim"),
                format!("{:?} is not a dotted claim path", r.claim),
            );
        }
        let ok = match r.op {
            ClaimOp::In => r.value.is_array(),
            ClaimOp::Gt | ClaimOp::Lt => r.value.is_number(),
            ClaimOp::Contains => !r.value.is_array() && !r.value.is_object(),
            ClaimOp::Equals => true,
        };
        if !ok {
            c.err(
                format!("{p}.value"),
                match r.op {
                    ClaimOp::In => "`in` needs an array",
                    ClaimOp::Gt | ClaimOp::Lt => "`gt` and `lt` need a number",
                    _ => "`contains` needs a string, number or boolean",
                },
            );
        }
    }
    if j.permission.can_admin() {
        c.err(
            format!("{path}.permission"),
            "must be read, write or read-write",
        );
    }
    if j.subject_claim.is_empty() {
        c.err(format!("{path}.subjectClaim"), "must not be empty");
    }
}
