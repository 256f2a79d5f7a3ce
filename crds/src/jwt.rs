//! Per-bucket JWT bearer authentication: where tokens come from, which keys sign them,
//! the standard claims checked, and claim rules.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::permission::Permission;
use crate::problems::Collector;

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

    /// The jsonwebtoken algorithm.
    pub fn jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::RS384 => Algorithm::RS384,
            JwtAlgorithm::RS512 => Algorithm::RS512,
            JwtAlgorithm::PS256 => Algorithm::PS256,
            JwtAlgorithm::PS384 => Algorithm::PS384,
            JwtAlgorithm::PS512 => Algorithm::PS512,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::ES384 => Algorithm::ES384,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl JwtKey {
    /// The key as the gateway verifies tokens with it; the error says why it is unusable
    /// (never quoting the key). `validate()` refuses a config holding a key this refuses, so
    /// the operator, which validates what it pushes, never sends one a gateway cannot use.
    pub fn decoding_key(&self) -> Result<DecodingKey, String> {
        use base64::Engine;
        let a = self.algorithm.jsonwebtoken();
        if self.algorithm.is_hmac() {
            let raw = match (&self.secret, &self.secret_base64) {
                (Some(s), _) => s.as_bytes().to_vec(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|_| "is not base64".to_string())?,
                (None, None) => return Err("an HMAC key needs a secret".into()),
            };
            return DecodingKey::from_secret(&raw)
                .map_err(|e| format!("is not a usable {a:?} secret: {e}"));
        }
        let pem = self
            .public_key_pem
            .as_deref()
            .ok_or("a public key PEM is required")?
            .as_bytes();
        let (key, point_len) = match a {
            Algorithm::ES256 => (DecodingKey::from_ec_pem(pem), Some(65)),
            Algorithm::ES384 => (DecodingKey::from_ec_pem(pem), Some(97)),
            Algorithm::EdDSA => (DecodingKey::from_ed_pem(pem), Some(32)),
            _ => (DecodingKey::from_rsa_pem(pem), None),
        };
        let unusable = |e: &dyn std::fmt::Display| format!("is not a usable {a:?} public key: {e}");
        let key = key.map_err(|e| unusable(&e))?;
        if let Some(n) = point_len {
            let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
            if len != n {
                return Err(unusable(&format!("a {len}-byte key, {a:?} takes {n}")));
            }
        }
        Ok(key)
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
            if let Err(e) = k.decoding_key() {
                c.err(format!("{p}.publicKeyPem"), e);
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

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEieNzD13m8T7M91XyaJQfbMo5DoXm
szg03GY8pruQZuwfJsdIvxXCEnHRUULDb49t85OW4ROIDEeRDPl077Bpfw==
-----END PUBLIC KEY-----
";
    const P384: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEDTJM1BOYlUDtir7oanBQwHeCjmNGBpG5
BXr14sgE0g8bDOWSfm62IRejPX07Z0OlRA9QreE5GqRomICZ1kXzuEbCoPB0AemY
0Px1C2pPDdijZ2CpoYDX+77UCOzpiWZT
-----END PUBLIC KEY-----
";
    const ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAvpjMn2aROfsSPJkfvZTaZfPa29wwA5FeS47gIT9iiNM=
-----END PUBLIC KEY-----
";
    const RSA: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA472UF5kjBaO1Ag1wACfg
vavE9FrVNlg8N09NrIbY10dfGXP8WwELzVHXYwvp+MWz+J4BlsSbi6huZ/FcDjiA
RT9AtffXbS5TMfzsSK48k+RvxOzSD0QOP6k+HKBpL0JzwAIpw5MnaLxVI967S0ce
wVtlLv58q3c+SWHqY07oM3+gdHOpGOrgIneaVDaw6eWyw0GyxGGetIJRana257pc
bOrECZbZ9BSE0UksoJ7JMQk9xt/XVafKBCo/frf8cSqUlyP91BPGBrZj13d40u8e
dPsnW5wVxhwTO53AjKq1uXR6duYgfrth2ndODevKpxgW3BTzY2T/DNurL93dnpbh
ZwIDAQAB
-----END PUBLIC KEY-----
";
    /// A throwaway key made for this test: a private key where a public one belongs.
    const P256_PRIVATE: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIH90DuZz4UUL1FPdrEMUWfO5dfI0kcyKpbFuI2c/4PE9oAoGCCqGSM49
AwEHoUQDQgAEieNzD13m8T7M91XyaJQfbMo5DoXmszg03GY8pruQZuwfJsdIvxXC
EnHRUULDb49t85OW4ROIDEeRDPl077Bpfw==
-----END EC PRIVATE KEY-----
";

    fn key(algorithm: JwtAlgorithm, pem: &str) -> Result<DecodingKey, String> {
        JwtKey {
            kid: None,
            algorithm,
            secret: None,
            secret_base64: None,
            public_key_pem: Some(pem.into()),
        }
        .decoding_key()
    }

    #[test]
    fn public_keys_parse_as_the_gateway_uses_them() {
        use JwtAlgorithm::*;
        for (alg, pem) in [
            (ES256, P256),
            (ES384, P384),
            (EdDSA, ED25519),
            (RS256, RSA),
            (PS512, RSA),
        ] {
            assert!(key(alg, pem).is_ok(), "{alg:?}");
        }
        for (alg, pem, why) in [
            (
                ES256,
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "no key in it",
            ),
            (ES256, "-----BEGIN PUBLIC KEY-----", "cut off"),
            (ES256, "not a pem", "no PEM"),
            (ES256, P384, "another curve"),
            (ES384, P256, "another curve"),
            (ES256, RSA, "another family"),
            (RS256, P256, "another family"),
            (EdDSA, P256, "another family"),
            (ES256, P256_PRIVATE, "a private key"),
        ] {
            let e = key(alg, pem)
                .err()
                .unwrap_or_else(|| panic!("{alg:?} {why}"));
            assert!(e.starts_with("is not a usable"), "{why}: {e}");
            assert!(!e.contains("MHcCAQEE"), "never quotes the key: {e}");
        }
    }

    #[test]
    fn validation_refuses_what_the_gateway_cannot_use() {
        let mut keys = serde_json::json!([{"algorithm": "ES256", "publicKeyPem": P256}]);
        let config = |keys: &serde_json::Value| {
            serde_json::from_value::<crate::GatewayConfig>(serde_json::json!({
                "buckets": [{"name": "bkt", "jwt": {"keys": keys}}]
            }))
            .unwrap()
        };
        assert_eq!(config(&keys).validate(), Ok(()));
        keys[0]["publicKeyPem"] = P384.into();
        let errors = config(&keys).validate().unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "buckets[0].jwt.keys[0].publicKeyPem");
    }
}
