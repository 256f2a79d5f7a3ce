//! The access fields of an `S3Bucket`: JWT bearer auth (keys from Secrets or a JWKS URL),
//! IP allowlist/blocklist, the object cache opt-in and a per-bucket rate limit. Each maps
//! onto the `GatewayConfig` bucket type of the same meaning (`crate::JwtAuth`, ...); JWT
//! keys are read from their Secrets by the operator.

use kube::KubeSchema;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::{GrantPermission, DNS_SUBDOMAIN_PATTERN, SECRET_DATA_KEY_PATTERN};
use crate::{
    BucketCache, ClaimOp, ClaimRule, IpFilter, JwtAlgorithm, JwtAuth, JwtKey, RateLimit,
    TokenSource, TokenSourceKind,
};

/// JWT bearer authentication of the bucket, besides S3Credentials and public-read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.keys) && size(self.keys) > 0) || has(self.jwksUrl)")
        .message("jwt needs keys (from Secrets) or a jwksUrl"),
    validation = Rule::new("!has(self.keys) || self.keys.all(k, !has(k.kid) || self.keys.exists_one(o, has(o.kid) && o.kid == k.kid))")
        .message("each key's kid must be unique"),
    validation = Rule::new("!has(self.jwksMinRefreshSeconds) || self.jwksMinRefreshSeconds <= (has(self.jwksRefreshSeconds) ? self.jwksRefreshSeconds : 300)")
        .message("jwksMinRefreshSeconds must not exceed jwksRefreshSeconds (default 300)"),
)]
#[serde(rename_all = "camelCase")]
pub struct BucketJwt {
    /// Where a token is looked for, in order; the first one present is used. Default: the
    /// Authorization header ('Bearer <token>'). A request carrying a token is judged by it
    /// alone: a bad token is refused, never treated as anonymous.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub sources: Vec<JwtTokenSource>,
    /// The required 'iss' claim, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,
    /// When not empty, the token's 'aud' must name one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 1024)))]
    pub audiences: Vec<String>,
    /// When not empty, only tokens signed with these algorithms are accepted: HS256, HS384,
    /// HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 12))]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Static verification keys, each read from a Secret in the bucket's namespace. When a
    /// Secret or its key is missing, the bucket is not served (Served=False, reason
    /// JwtKeyNotFound) until it appears; a change to the Secret reaches the gateways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub keys: Vec<JwtKeyRef>,
    /// A JWKS document URL the gateways fetch, cache and refresh: https (plain http only to
    /// a loopback address; never a link-local or metadata address); a token naming an
    /// unknown 'kid' triggers a refetch (at most every jwksMinRefreshSeconds). May be
    /// combined with keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(JWKS_URL_PATTERN))]
    pub jwks_url: Option<String>,
    /// Seconds a fetched JWKS is used before it is fetched again (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub jwks_refresh_seconds: Option<u32>,
    /// Fewest seconds between two fetches caused by unknown 'kid's (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub jwks_min_refresh_seconds: Option<u32>,
    /// Clock skew allowed on 'exp' and 'nbf', in seconds: 0 to 300 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 300))]
    pub leeway_seconds: Option<u32>,
    /// Rules on the token's claims; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub claims: Vec<JwtClaimRule>,
    /// What a valid token may do in the bucket: 'read' (default), 'write' or 'read-write'
    /// (writes still need a bucket that is not readOnly).
    #[serde(default = "default_permission")]
    pub permission: GrantPermission,
    /// The claim naming the caller in logs and the audit log (default 'sub').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub subject_claim: Option<String>,
}

/// An http(s) URL with a host.
const JWKS_URL_PATTERN: &str =
    r"^(https://[^/\s@]+|http://(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])(:[0-9]+)?)(/\S*)?$";

fn default_permission() -> GrantPermission {
    GrantPermission::Read
}

/// Where a token is carried.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.kind == 'bearer' ? !has(self.name) : has(self.name)")
        .message("a bearer source takes no name; a query or header source needs one"),
    validation = Rule::new("self.kind != 'header' || self.name.lowerAscii() != 'authorization'")
        .message("use a bearer source for the Authorization header"),
    validation = Rule::new("self.kind != 'query' || !self.name.startsWith('X-Amz-')")
        .message("a token query parameter cannot start with X-Amz-"),
)]
#[serde(rename_all = "camelCase")]
pub struct JwtTokenSource {
    /// 'bearer' (the Authorization header), 'query' (a query parameter) or 'header' (a named
    /// header, optionally with a 'Bearer ' prefix).
    pub kind: TokenSourceKind,
    /// The query parameter or header name, for kind query or header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"))]
    pub name: Option<String>,
}

/// A static verification key: an HMAC secret (HS*) or a public key PEM (the others), read
/// from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.algorithm.startsWith('HS') ? (has(self.secretRef) && !has(self.publicKeyRef)) : (has(self.publicKeyRef) && !has(self.secretRef))")
        .message("HS256/HS384/HS512 keys need secretRef (and no publicKeyRef); RS*, PS*, ES* and EdDSA keys need publicKeyRef (and no secretRef)")
)]
#[serde(rename_all = "camelCase")]
pub struct JwtKeyRef {
    /// Matched against the token's 'kid'; a token without 'kid' tries every key of its
    /// algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub kid: Option<String>,
    /// The key's algorithm.
    pub algorithm: JwtAlgorithm,
    /// For HS*: the Secret key holding the shared secret (its raw bytes, at least 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<JwtSecretKeyRef>,
    /// For RS*, PS*, ES* and EdDSA: the Secret key holding the public key as PEM
    /// ('-----BEGIN PUBLIC KEY-----').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_ref: Option<JwtSecretKeyRef>,
}

/// One key of a Secret in the bucket's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The key in the Secret's data.
    #[schemars(length(min = 1, max = 253), pattern(SECRET_DATA_KEY_PATTERN))]
    pub key: String,
}

/// A rule on one claim of the token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtClaimRule {
    /// A dotted path into the claims ('realm.roles').
    #[schemars(length(min = 1, max = 256), pattern(r"^[^.]+(\.[^.]+)*$"))]
    pub claim: String,
    /// 'equals', 'in' (value is a list the claim must be in), 'contains' (the claim, a list
    /// or a string, contains value), 'gt' or 'lt' (numbers).
    pub op: ClaimOp,
    /// The value compared with the claim: any JSON value (a list for 'in', a number for
    /// 'gt' and 'lt', a scalar for 'contains').
    #[schemars(schema_with = "any_value")]
    pub value: serde_json::Value,
}

fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The value compared with the claim: any JSON value (a list for 'in', a number for 'gt' and 'lt', a scalar for 'contains').",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Client addresses the bucket accepts, as CIDRs ('10.0.0.0/8', 'fd00::/8') or single
/// addresses. A match in deny is refused; when allow is not empty, only addresses in it are
/// accepted. Behind a proxy listed in the gateway's trusted proxies, the forwarded address
/// counts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketIpFilter {
    /// Addresses accepted; empty: every address not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    #[x_kube(
        validation = Rule::new("self.all(c, isCIDR(c) || isIP(c))")
            .message("each entry must be a CIDR or an IP address")
    )]
    pub allow: Vec<String>,
    /// Addresses refused, even when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    #[x_kube(
        validation = Rule::new("self.all(c, isCIDR(c) || isIP(c))")
            .message("each entry must be a CIDR or an IP address")
    )]
    pub deny: Vec<String>,
}

/// Keep the bucket's small hot objects in the gateways' memory, coherent across replicas.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketCacheSpec {
    /// Cache this bucket's objects (default true when cache is set).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Largest object cached, in bytes (default 1048576); the gateway's own cache limits
    /// (total size and entries) apply too.
    #[serde(default = "default_cache_object_bytes")]
    #[schemars(range(min = 1))]
    pub max_object_bytes: i64,
}

fn yes() -> bool {
    true
}

fn default_cache_object_bytes() -> i64 {
    1 << 20
}

/// A token bucket on all requests to the bucket; over it, requests get 503 SlowDown with
/// Retry-After.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BucketRateLimit {
    /// Requests per second on average (may be fractional, for example 0.5).
    #[x_kube(validation = Rule::new("self > 0.0").message("requestsPerSecond must be above 0"))]
    pub requests_per_second: f64,
    /// Largest burst, in requests; default one second's worth (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<u32>,
}

impl BucketJwt {
    /// The gateway's JWT settings, with `keys` the resolved [`JwtKeyRef`]s.
    pub fn to_gateway(&self, keys: Vec<JwtKey>) -> JwtAuth {
        let defaults = JwtAuth::default();
        JwtAuth {
            sources: if self.sources.is_empty() {
                defaults.sources
            } else {
                self.sources
                    .iter()
                    .map(|s| TokenSource {
                        kind: s.kind,
                        name: s.name.clone(),
                    })
                    .collect()
            },
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            keys,
            jwks_url: self.jwks_url.clone(),
            // Never from an S3Bucket: its author does not own the gateways' network.
            jwks_allow_insecure: false,
            jwks_refresh_seconds: self
                .jwks_refresh_seconds
                .map_or(defaults.jwks_refresh_seconds, u64::from),
            jwks_min_refresh_seconds: self
                .jwks_min_refresh_seconds
                .map_or(defaults.jwks_min_refresh_seconds, u64::from),
            algorithms: self.algorithms.clone(),
            leeway_seconds: self
                .leeway_seconds
                .map_or(defaults.leeway_seconds, u64::from),
            claims: self
                .claims
                .iter()
                .map(|r| ClaimRule {
                    claim: r.claim.clone(),
                    op: r.op,
                    value: r.value.clone(),
                })
                .collect(),
            permission: self.permission.into(),
            subject_claim: self.subject_claim.clone().unwrap_or(defaults.subject_claim),
        }
    }
}

impl JwtKeyRef {
    /// The Secret key this key is read from.
    pub fn source(&self) -> Option<&JwtSecretKeyRef> {
        self.secret_ref.as_ref().or(self.public_key_ref.as_ref())
    }

    /// The gateway key from the Secret value `value`: an HMAC secret (sent base64, so any
    /// bytes work) or a PEM text.
    pub fn resolve(&self, value: &[u8]) -> Result<JwtKey, String> {
        use base64::Engine;
        let mut key = JwtKey {
            kid: self.kid.clone(),
            algorithm: self.algorithm,
            secret: None,
            secret_base64: None,
            public_key_pem: None,
        };
        if self.algorithm.is_hmac() {
            key.secret_base64 = Some(base64::engine::general_purpose::STANDARD.encode(value));
        } else {
            let pem = std::str::from_utf8(value).map_err(|_| "is not a PEM text".to_string())?;
            key.public_key_pem = Some(pem.to_string());
        }
        Ok(key)
    }
}

impl From<&BucketIpFilter> for IpFilter {
    fn from(f: &BucketIpFilter) -> Self {
        IpFilter {
            allow: f.allow.clone(),
            deny: f.deny.clone(),
        }
    }
}

impl From<&BucketCacheSpec> for BucketCache {
    fn from(c: &BucketCacheSpec) -> Self {
        BucketCache {
            enabled: c.enabled,
            max_object_bytes: u64::try_from(c.max_object_bytes).unwrap_or(1),
        }
    }
}

impl From<&BucketRateLimit> for RateLimit {
    fn from(r: &BucketRateLimit) -> Self {
        RateLimit {
            requests_per_second: r.requests_per_second,
            burst: r.burst,
        }
    }
}
