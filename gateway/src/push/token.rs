//! Push tokens: short-lived ES256 JWTs the operator signs, checked against its public key.
//!
//! jsonwebtoken does the parsing and the claim checks; the signature check runs on ring
//! (the crypto library rustls already brings in) through the gateway's verify-only provider
//! ([`crate::auth::jwt::install_crypto`]), shared with bucket JWT authentication.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::reload::Reloading;
use crate::Error;

/// Longest lifetime (`exp - iat`) a token may have, in seconds.
pub const MAX_LIFETIME_SECONDS: u64 = 300;
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// The claims checked here; `iss`, `aud`, `exp` and `nbf` are checked by [`Validation`].
#[derive(Deserialize)]
struct Times {
    iat: u64,
    exp: u64,
}

/// Checks `Authorization: Bearer` tokens of pushes.
pub struct TokenVerifier {
    key: Arc<Reloading<DecodingKey>>,
    validation: Validation,
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
        Ok((TokenVerifier { key, validation }, task))
    }

    /// Checks an `Authorization` header value; the error says why (for the log only).
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), String> {
        let token = authorization
            .and_then(|v| {
                let (scheme, token) = v.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
            })
            .ok_or("no Bearer token")?;
        let times = jsonwebtoken::decode::<Times>(token, &self.key.get(), &self.validation)
            .map_err(|e| e.to_string())?
            .claims;
        if times.exp < times.iat || times.exp - times.iat > MAX_LIFETIME_SECONDS {
            return Err(format!(
                "lifetime exp - iat must be 0..={MAX_LIFETIME_SECONDS} s"
            ));
        }
        if times.iat > jsonwebtoken::get_current_timestamp() + LEEWAY_SECONDS {
            return Err("issued in the future".into());
        }
        Ok(())
    }
}

/// An uncompressed P-256 point: `04 || x || y`.
fn is_p256_point(bytes: &[u8]) -> bool {
    bytes.len() == 65 && bytes[0] == 4
}
