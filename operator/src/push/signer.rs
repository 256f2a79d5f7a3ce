//! Push tokens: ES256 JWTs (`iss`, `aud`, `iat`, `exp`), signed with ring.
//!
//! The key is a P-256 private key PEM: `EC PRIVATE KEY` (SEC1, what the chart's Helm
//! `genPrivateKey "ecdsa"` makes) or `PRIVATE KEY` (PKCS#8). ring reads PKCS#8 only, so a
//! SEC1 key is wrapped into a PKCS#8 `PrivateKeyInfo` first. A token lives [`LIFETIME`] and is
//! reused until half of it has passed; the key file is read again when it changes (a rotated
//! Secret), and a broken new file keeps the last good key.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

use super::watched::Watched;
use crate::{Error, Result};

/// How long a token is valid (`exp - iat`; the gateway accepts at most 300 s).
pub const LIFETIME: Duration = Duration::from_secs(60);

/// Signs push tokens.
pub struct Signer {
    key: Watched<EcdsaKeyPair>,
    issuer: String,
    audience: String,
    cached: Mutex<Option<(u64, String)>>,
}

impl Signer {
    /// Loads the key; fails when the file is missing or not a P-256 private key.
    pub fn new(key_file: PathBuf, issuer: &str, audience: &str) -> Result<Signer> {
        Ok(Signer {
            key: Watched::new("push signing key", key_file, key_pair)?,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            cached: Mutex::new(None),
        })
    }

    /// A valid token: the cached one while it is younger than half its lifetime.
    pub fn token(&self) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| Error::Config(e.to_string()))?
            .as_secs();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let (key, reloaded) = self.key.get();
        if let Some((iat, token)) = cached.as_ref() {
            if !reloaded && now < iat + LIFETIME.as_secs() / 2 {
                return Ok(token.clone());
            }
        }
        let token = sign(&key, &self.issuer, &self.audience, now)?;
        *cached = Some((now, token.clone()));
        Ok(token)
    }
}

/// The compact JWS of the claims, signed with `key`.
fn sign(key: &EcdsaKeyPair, issuer: &str, audience: &str, now: u64) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + LIFETIME.as_secs(),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{claims}");
    let signature = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .map_err(|_| Error::Config("ES256 signing failed".into()))?;
    Ok(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

/// Parses a P-256 private key PEM (SEC1 or PKCS#8).
fn key_pair(pem: &[u8]) -> std::result::Result<EcdsaKeyPair, String> {
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a private key PEM: {e}"))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der()),
        _ => return Err("an RSA key; the push needs a P-256 (ES256) key".into()),
    };
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|e| format!("not a P-256 (ES256) private key: {e}"))
}

/// `PrivateKeyInfo { version 0, AlgorithmIdentifier { id-ecPublicKey, prime256v1 },
/// OCTET STRING sec1 }` (RFC 5208, RFC 5480), DER.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, // INTEGER 0
        0x30, 0x13, // SEQUENCE
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // 1.2.840.10045.2.1
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // 1.2.840.10045.3.1.7
    ];
    let mut body = VERSION_AND_ALGORITHM.to_vec();
    body.push(0x04);
    der_length(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    /// `openssl ecparam -genkey -name prime256v1 -noout`: SEC1 with parameters and public key,
    /// the layout of Go's `x509.MarshalECPrivateKey` (Helm's `genPrivateKey "ecdsa"`).
    const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIBpHrWT6ywTjF7NPtug9sdhAq0ROxjk4A1xb7r2hfBHWoAoGCCqGSM49
AwEHoUQDQgAExmkCFF90lt3BKu9W7760w+rughQb9aCa2GGENGFWNsQ8iuftg9kP
Wt85akv+Cgzk+IgEON5xSkslXyOgNuVcGQ==
-----END EC PRIVATE KEY-----
";

    fn verify(key: &EcdsaKeyPair, token: &str) -> serde_json::Value {
        let (input, sig) = token.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        let (header, claims) = input.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
    }

    #[test]
    fn sec1_and_pkcs8_keys_sign_verifiable_tokens() {
        let sec1 = key_pair(SEC1.as_bytes()).unwrap();
        let claims = verify(&sec1, &sign(&sec1, "iss-x", "aud-y", 1000).unwrap());
        assert_eq!(
            claims,
            serde_json::json!({"iss": "iss-x", "aud": "aud-y", "iat": 1000, "exp": 1060})
        );
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = key_pair(generated.serialize_pem().as_bytes()).unwrap();
        verify(&pkcs8, &sign(&pkcs8, "a", "b", 5).unwrap());
    }

    #[test]
    fn long_der_lengths_and_bad_keys() {
        let mut out = Vec::new();
        der_length(&mut out, 300);
        assert_eq!(out, [0x82, 0x01, 0x2c]);
        assert!(key_pair(b"not a pem").is_err());
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(key_pair(p384.serialize_pem().as_bytes())
            .unwrap_err()
            .contains("P-256"));
    }

    #[test]
    fn tokens_are_cached_and_a_rotated_key_is_used_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, SEC1).unwrap();
        let signer = Signer::new(path.clone(), "i", "a").unwrap();
        let first = signer.token().unwrap();
        assert_eq!(signer.token().unwrap(), first);
        let next = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, next.serialize_pem()).unwrap();
        let rotated = signer.token().unwrap();
        assert_ne!(rotated, first);
        let next = key_pair(next.serialize_pem().as_bytes()).unwrap();
        verify(&next, &rotated);
        // A broken file keeps the last good key.
        std::fs::write(&path, "garbage").unwrap();
        verify(&next, &signer.token().unwrap());
    }
}
