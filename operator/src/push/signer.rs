//! Push tokens: ES256 JWTs signed with ring, one per request: `iss`, `aud`, `iat`, `exp`
//! ([`LIFETIME`]), a random `jti` (a gateway takes a token once), the pod it is for (`pod`: the
//! IP dialled), the request (`req`: `"PUT /v1/config"`) and the SHA-256 of the body
//! (`body_sha256`, hex). So a token seen anywhere is good for nothing but that one request to
//! that one pod, for a few seconds.
//!
//! The key is a P-256 private key PEM: `EC PRIVATE KEY` (SEC1, what the chart's Helm
//! `genPrivateKey "ecdsa"` makes) or `PRIVATE KEY` (PKCS#8). ring reads PKCS#8 only, so a
//! SEC1 key is wrapped into a PKCS#8 `PrivateKeyInfo` first. The key file is read again when
//! it changes (a rotated Secret), and a broken new file keeps the last good key.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

use super::watched::Watched;
use crate::{Error, Result};

/// How long a token is valid (`exp - iat`; the gateway accepts at most 60 s). A request
/// (connection included) takes at most `client::REQUEST_TIMEOUT`, 10 s.
pub const LIFETIME: Duration = Duration::from_secs(30);

/// Signs push tokens.
pub struct Signer {
    key: Watched<EcdsaKeyPair>,
    issuer: String,
    audience: String,
}

/// What a token is for: one request to one pod.
pub struct Target<'a> {
    /// The pod IP the request goes to.
    pub pod: IpAddr,
    /// `"<METHOD> <path>"`.
    pub req: &'a str,
    pub body: &'a [u8],
}

impl Signer {
    /// Loads the key; fails when the file is missing or not a P-256 private key.
    pub fn new(key_file: PathBuf, issuer: &str, audience: &str) -> Result<Signer> {
        Ok(Signer {
            key: Watched::new("push signing key", key_file, key_pair)?,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
        })
    }

    /// A fresh token for `target`.
    pub fn token(&self, target: &Target) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| Error::Config(e.to_string()))?
            .as_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| Error::Config("no random bytes for a token id".into()))?;
        let claims = serde_json::json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + LIFETIME.as_secs(),
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "pod": target.pod.to_string(),
            "req": target.req,
            "body_sha256": hex::encode(ring::digest::digest(&ring::digest::SHA256, target.body)),
        });
        sign(&self.key.get().0, &claims)
    }
}

/// The compact JWS of `claims`, signed with `key`.
fn sign(key: &EcdsaKeyPair, claims: &serde_json::Value) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
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

    fn signer(dir: &tempfile::TempDir, pem: &str) -> (Signer, PathBuf) {
        let path = dir.path().join("key.pem");
        std::fs::write(&path, pem).unwrap();
        (Signer::new(path.clone(), "iss-x", "aud-y").unwrap(), path)
    }

    const TARGET: Target = Target {
        pod: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)),
        req: "PUT /v1/config",
        body: b"{}",
    };

    #[test]
    fn sec1_and_pkcs8_keys_sign_tokens_for_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let (sec1, _) = signer(&dir, SEC1);
        let claims = verify(
            &key_pair(SEC1.as_bytes()).unwrap(),
            &sec1.token(&TARGET).unwrap(),
        );
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 30);
        assert_eq!(
            (
                &claims["iss"],
                &claims["aud"],
                &claims["pod"],
                &claims["req"]
            ),
            (
                &serde_json::json!("iss-x"),
                &serde_json::json!("aud-y"),
                &serde_json::json!("10.0.0.7"),
                &serde_json::json!("PUT /v1/config")
            )
        );
        // sha256("{}")
        assert_eq!(
            claims["body_sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (pkcs8, _) = signer(&dir, &generated.serialize_pem());
        verify(
            &key_pair(generated.serialize_pem().as_bytes()).unwrap(),
            &pkcs8.token(&TARGET).unwrap(),
        );
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
    fn every_token_is_new_and_a_rotated_key_is_used_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, path) = signer(&dir, SEC1);
        let first = signer.token(&TARGET).unwrap();
        let again = signer.token(&TARGET).unwrap();
        let sec1 = key_pair(SEC1.as_bytes()).unwrap();
        assert_ne!(verify(&sec1, &first)["jti"], verify(&sec1, &again)["jti"]);
        let next = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, next.serialize_pem()).unwrap();
        let next = key_pair(next.serialize_pem().as_bytes()).unwrap();
        verify(&next, &signer.token(&TARGET).unwrap());
        // A broken file keeps the last good key.
        std::fs::write(&path, "garbage").unwrap();
        verify(&next, &signer.token(&TARGET).unwrap());
    }
}
