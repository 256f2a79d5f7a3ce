//! Push tokens: short-lived ES256 JWTs the operator signs for one request to one pod,
//! checked against its public key.
//!
//! Besides `iss`, `aud`, `iat`, `exp` (at most [`MAX_LIFETIME_SECONDS`]) and an optional
//! `nbf`, a token names the pod it is for (`pod`: the IP the operator dials, compared with the
//! address the connection came in on), the request (`req`: `"PUT /v1/config"`), the SHA-256 of
//! the body (`body_sha256`, hex; checked by the handler once the body is read) and a unique
//! `jti`: a token is taken once, whatever the outcome, so a token seen on one pod, in a log or
//! on the wire is good for nothing else. [`Replays`] remembers spent `jti`s until they expire.
//!
//! jsonwebtoken does the parsing and the standard claim checks; the signature check runs on
//! ring (the crypto library rustls already brings in) through the gateway's verify-only
//! provider ([`crate::auth::jwt::install_crypto`]), shared with bucket JWT authentication.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::reload::Reloading;
use crate::Error;

/// Longest lifetime (`exp - iat`) a token may have, in seconds.
pub const MAX_LIFETIME_SECONDS: u64 = 60;
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 10;
/// Spent `jti`s remembered at most (each until its token expires); while full, new tokens
/// are turned away (503) rather than forgetting one that could then be replayed.
pub const MAX_REMEMBERED: usize = 4096;

/// The claims checked here; `iss`, `aud`, `exp` and `nbf` are checked by [`Validation`].
#[derive(Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    jti: String,
    pod: String,
    req: String,
    body_sha256: String,
}

/// Why a request's token was not taken; the text is for the log (it never quotes the token).
#[derive(Debug)]
pub enum Refusal {
    Unauthorized(String),
    /// Too many tokens in flight to remember another one.
    Busy,
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Refusal::Unauthorized(why)
    }
}

impl From<&str> for Refusal {
    fn from(why: &str) -> Self {
        Refusal::Unauthorized(why.into())
    }
}

/// A request as the token must name it.
pub struct Request<'a> {
    /// The address the connection came in on (the pod IP).
    pub pod: IpAddr,
    pub method: &'a str,
    pub path: &'a str,
}

/// Checks `Authorization: Bearer` tokens of pushes.
pub struct TokenVerifier {
    key: Arc<Reloading<DecodingKey>>,
    validation: Validation,
    replays: Replays,
}

impl TokenVerifier {
    /// Loads the public key (a `PUBLIC KEY` or a `CERTIFICATE` PEM) and watches the file
    /// for changes until `stop`.
    pub fn new(
        key_file: PathBuf,
        issuer: &str,
        audience: &str,
        stop: watch::Receiver<bool>,
    ) -> Result<(TokenVerifier, JoinHandle<()>), Error> {
        crate::auth::jwt::install_crypto();
        let key = Reloading::new("push verify key", vec![key_file], |paths| {
            let path = &paths[0];
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            let key = DecodingKey::from_ec_pem(&pem).map_err(|e| {
                Error::Config(format!(
                    "{}: not an EC PUBLIC KEY or CERTIFICATE PEM: {e}",
                    path.display()
                ))
            })?;
            match key.try_get_as_bytes() {
                Ok(point) if is_p256_point(point) => Ok(key),
                _ => Err(Error::Config(format!(
                    "{}: the key is not a P-256 (ES256) key",
                    path.display()
                ))),
            }
        })?;
        let task = key.watch(stop);
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let replays = Replays::default();
        Ok((
            TokenVerifier {
                key,
                validation,
                replays,
            },
            task,
        ))
    }

    /// Checks an `Authorization` header value against the request and spends the token;
    /// the body's SHA-256 (hex) the token was signed for.
    pub fn check(&self, authorization: Option<&[u8]>, req: &Request) -> Result<String, Refusal> {
        let token = authorization
            .and_then(|v| {
                let (scheme, token) = v.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
            })
            .ok_or("no Bearer token")?;
        let c = jsonwebtoken::decode::<Claims>(token, &self.key.get(), &self.validation)
            .map_err(|e| e.to_string())?
            .claims;
        if c.exp < c.iat || c.exp - c.iat > MAX_LIFETIME_SECONDS {
            return Err(format!("lifetime exp - iat must be 0..={MAX_LIFETIME_SECONDS} s").into());
        }
        let now = jsonwebtoken::get_current_timestamp();
        if c.iat > now + LEEWAY_SECONDS {
            return Err("issued in the future".into());
        }
        if c.pod.parse::<IpAddr>().map(|ip| ip.to_canonical()) != Ok(req.pod.to_canonical()) {
            return Err(format!("for pod {:?}, not this one ({})", c.pod, req.pod).into());
        }
        if c.req != format!("{} {}", req.method, req.path) {
            return Err(format!("for {:?}, not {} {}", c.req, req.method, req.path).into());
        }
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if c.body_sha256.len() != 64 || !hex(&c.body_sha256) {
            return Err("body_sha256 is not a lowercase hex SHA-256".into());
        }
        let id_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if !(16..=128).contains(&c.jti.len()) || !c.jti.bytes().all(id_char) {
            return Err("jti must be 16 to 128 characters of [A-Za-z0-9_-]".into());
        }
        self.replays.spend(c.jti, c.exp + LEEWAY_SECONDS, now)?;
        Ok(c.body_sha256)
    }
}

/// The `jti`s of tokens taken, each until its token expires (bounded by [`MAX_REMEMBERED`]).
#[derive(Default)]
struct Replays(Mutex<HashMap<String, u64>>);

impl Replays {
    /// Records `jti` (valid until `until`, Unix seconds); refuses one seen before.
    fn spend(&self, jti: String, until: u64, now: u64) -> Result<(), Refusal> {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains_key(&jti) {
            return Err("replayed (jti already used)".into());
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, t| *t >= now);
            if seen.len() >= MAX_REMEMBERED {
                return Err(Refusal::Busy);
            }
        }
        seen.insert(jti, until);
        Ok(())
    }
}

/// An uncompressed P-256 point: `04 || x || y`.
fn is_p256_point(bytes: &[u8]) -> bool {
    bytes.len() == 65 && bytes[0] == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_refused_and_memory_stays_bounded() {
        let r = Replays::default();
        assert!(r.spend("a".into(), 100, 50).is_ok());
        assert!(matches!(
            r.spend("a".into(), 100, 60),
            Err(Refusal::Unauthorized(_))
        ));
        for i in 1..MAX_REMEMBERED {
            r.spend(format!("t{i}"), 100, 50).unwrap();
        }
        assert!(matches!(r.spend("x".into(), 200, 60), Err(Refusal::Busy)));
        // Once the remembered tokens have expired, their room is reused.
        r.spend("late".into(), 500, 101).unwrap();
        assert_eq!(r.0.lock().unwrap().len(), 1);
        assert!(matches!(
            r.spend("late".into(), 500, 102),
            Err(Refusal::Unauthorized(_))
        ));
    }
}
