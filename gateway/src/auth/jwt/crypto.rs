//! jsonwebtoken's signature checks on ring, the crypto library rustls already brings in
//! (no second crypto stack): every JWS algorithm jets3 accepts, verify only.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self, RsaParameters, UnparsedPublicKey, VerificationAlgorithm};

/// The gateway's jsonwebtoken provider. [`install`] makes it the process default.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the provider (once per process; later calls change nothing).
pub fn install() {
    let _ = PROVIDER.install_default();
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(new_error(ErrorKind::InvalidAlgorithm))
}

fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let alg = *alg;
    if alg.family() != key.family() {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    let check = match (key.family(), key.kind()) {
        (AlgorithmFamily::Hmac, DecodingKeyKind::SecretOrDer(secret)) => {
            let h = match alg {
                Algorithm::HS256 => ring::hmac::HMAC_SHA256,
                Algorithm::HS384 => ring::hmac::HMAC_SHA384,
                _ => ring::hmac::HMAC_SHA512,
            };
            Check::Hmac(ring::hmac::Key::new(h, secret))
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            let params = rsa_params(alg).ok_or_else(|| new_error(ErrorKind::InvalidAlgorithm))?;
            Check::Public(params, der.clone())
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            let params = rsa_params(alg).ok_or_else(|| new_error(ErrorKind::InvalidAlgorithm))?;
            Check::RsaParts(params, n.clone(), e.clone())
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let a: &'static dyn VerificationAlgorithm = match alg {
                Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                _ => &signature::ECDSA_P384_SHA384_FIXED,
            };
            Check::Public(a, point.clone())
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(raw)) => {
            Check::Public(&signature::ED25519, raw.clone())
        }
        _ => return Err(new_error(ErrorKind::InvalidKeyFormat)),
    };
    Ok(Box::new(RingVerifier { alg, check }))
}

enum Check {
    Hmac(ring::hmac::Key),
    /// A public key in the form ring reads for the algorithm (PKCS#1 DER, EC point, raw Ed25519).
    Public(&'static dyn VerificationAlgorithm, Vec<u8>),
    RsaParts(&'static RsaParameters, Vec<u8>, Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    check: Check,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        let ok = match &self.check {
            Check::Hmac(key) => ring::hmac::verify(key, msg, sig).is_ok(),
            Check::Public(alg, key) => UnparsedPublicKey::new(*alg, key).verify(msg, sig).is_ok(),
            Check::RsaParts(params, n, e) => signature::RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(jsonwebtoken::signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}
