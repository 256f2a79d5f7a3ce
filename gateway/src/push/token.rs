//! Push tokens: short-lived ES256 JWTs the operator signs, checked against its public key.
//!
//! jsonwebtoken does the parsing and the claim checks; the signature check runs on ring
//! (the crypto library rustls already brings in) through a verify-only [`CryptoProvider`].

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Validation};
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
        // Fails only if a provider is already installed, which then serves as well.
        let _ = PROVIDER.install_default();
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

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: es256_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn no_signer(_: &Algorithm, _: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(new_error(ErrorKind::InvalidAlgorithm))
}

fn es256_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::ES256 || key.family() != AlgorithmFamily::Ec {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    Ok(Box::new(Es256(key.try_get_as_bytes()?.to_vec())))
}

/// An ES256 public key (uncompressed P-256 point).
struct Es256(Vec<u8>);

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Es256 {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(msg, signature)
            .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for Es256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}
