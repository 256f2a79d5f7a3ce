//! Access key pairs and the Secrets that hold them.
//!
//! The Secret written for apps (`spec.secretName`, default the credential's name) is where a
//! credential's current key lives, so it survives operator restarts; its annotations record
//! when the key was made and which `jets3.io/rotate` request it answered. During a rotation
//! overlap the previous key lives in a second Secret, `jets3-previous-key-<credential uid>`,
//! with the time it stops working, so the app Secret holds only what apps load with `envFrom`.
//! Both are owned by the credential (Kubernetes deletes them with it).

use std::collections::BTreeMap;
use std::fmt;

use jets3_crds::k8s::{secret_keys, S3Credential, SecretKeyRef};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};
use rand::distributions::{Alphanumeric, Distribution, Uniform};
use rand::rngs::OsRng;

/// Label on every Secret the operator writes; the operator watches Secrets with it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "jets3-operator";
/// Label naming the credential a Secret belongs to.
pub const CREDENTIAL_LABEL: &str = "jets3.io/credential";
/// Annotation on the app Secret: when its key was made (RFC 3339).
pub const KEY_CREATED_ANNOTATION: &str = "jets3.io/key-created-at";
/// Annotation on the app Secret: the `jets3.io/rotate` value its key answered.
pub const ROTATE_HANDLED_ANNOTATION: &str = "jets3.io/rotate-handled";
/// Annotation on the previous-key Secret: when that key stops working (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "jets3.io/expires-at";

/// Prefix of generated access key ids.
const KEY_ID_PREFIX: &str = "JETS3";
const KEY_ID_LEN: usize = 20;
const SECRET_LEN: usize = 40;

/// An access key pair. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new pair from the operating system's CSPRNG, in AWS format: a 20-character id
    /// (`JETS3` and 15 of `A-Z0-9`) and a 40-character secret (`A-Za-z0-9`).
    pub fn generate() -> KeyPair {
        const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let pick = Uniform::from(0..ID_CHARS.len());
        let mut id = String::from(KEY_ID_PREFIX);
        id.extend(
            pick.sample_iter(OsRng)
                .take(KEY_ID_LEN - KEY_ID_PREFIX.len())
                .map(|i| ID_CHARS[i] as char),
        );
        let secret = Alphanumeric
            .sample_iter(OsRng)
            .take(SECRET_LEN)
            .map(char::from)
            .collect();
        KeyPair {
            access_key_id: id,
            secret_access_key: secret,
        }
    }

    /// The pair under keys `id_key` and `secret_key` of a Secret's data, if both are there
    /// and UTF-8.
    pub fn from_data(secret: &Secret, id_key: &str, secret_key: &str) -> Option<KeyPair> {
        let data = secret.data.as_ref()?;
        let get = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        Some(KeyPair {
            access_key_id: get(id_key)?,
            secret_access_key: get(secret_key)?,
        })
    }

    /// The pair a keySource Secret holds.
    pub fn from_source(secret: &Secret, r: &SecretKeyRef) -> Option<KeyPair> {
        KeyPair::from_data(secret, &r.access_key_id_key, &r.secret_access_key_key)
    }
}

/// The current key, as the app Secret records it.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentKey {
    pub pair: KeyPair,
    pub created_at: Option<Timestamp>,
    pub rotate_handled: Option<String>,
}

impl CurrentKey {
    /// Reads the key from an app Secret.
    pub fn read(secret: &Secret) -> Option<CurrentKey> {
        let pair = KeyPair::from_data(
            secret,
            secret_keys::ACCESS_KEY_ID,
            secret_keys::SECRET_ACCESS_KEY,
        )?;
        let a = secret.annotations();
        Some(CurrentKey {
            pair,
            created_at: a
                .get(KEY_CREATED_ANNOTATION)
                .and_then(|t| t.parse::<Timestamp>().ok()),
            rotate_handled: a.get(ROTATE_HANDLED_ANNOTATION).cloned(),
        })
    }
}

/// The previous key during a rotation overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousKey {
    pub pair: KeyPair,
    pub expires_at: Timestamp,
}

impl PreviousKey {
    /// Reads the key from a previous-key Secret.
    pub fn read(secret: &Secret) -> Option<PreviousKey> {
        let pair = KeyPair::from_data(
            secret,
            secret_keys::ACCESS_KEY_ID,
            secret_keys::SECRET_ACCESS_KEY,
        )?;
        let expires_at = secret
            .annotations()
            .get(EXPIRES_ANNOTATION)?
            .parse::<Timestamp>()
            .ok()?;
        Some(PreviousKey { pair, expires_at })
    }
}

/// The name of the Secret holding a credential's previous key.
pub fn previous_secret_name(cred: &S3Credential) -> String {
    format!("jets3-previous-key-{}", cred.uid().unwrap_or_default())
}

/// Whether `secret` is controlled by the object with `uid`.
pub fn controlled_by(secret: &Secret, uid: &str) -> bool {
    secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// What the app Secret carries besides the key.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSettings<'a> {
    pub endpoint: &'a str,
    pub region: &'a str,
    /// The S3 bucket name, when the credential grants exactly one bucket.
    pub bucket_name: Option<&'a str>,
}

/// The Secret for apps, as the operator applies it.
pub fn app_secret(cred: &S3Credential, key: &CurrentKey, settings: &AppSettings) -> Secret {
    let mut data = BTreeMap::from([
        (secret_keys::ACCESS_KEY_ID, key.pair.access_key_id.as_str()),
        (
            secret_keys::SECRET_ACCESS_KEY,
            key.pair.secret_access_key.as_str(),
        ),
        (secret_keys::ENDPOINT_URL, settings.endpoint),
        (secret_keys::REGION, settings.region),
    ]);
    if let Some(b) = settings.bucket_name {
        data.insert(secret_keys::BUCKET_NAME, b);
    }
    let mut annotations = BTreeMap::new();
    if let Some(t) = key.created_at {
        annotations.insert(KEY_CREATED_ANNOTATION.to_string(), t.to_string());
    }
    if let Some(r) = &key.rotate_handled {
        annotations.insert(ROTATE_HANDLED_ANNOTATION.to_string(), r.clone());
    }
    owned_secret(cred, cred.secret_name(), data, annotations)
}

/// The Secret holding the previous key during the overlap.
pub fn previous_secret(cred: &S3Credential, key: &PreviousKey) -> Secret {
    let data = BTreeMap::from([
        (secret_keys::ACCESS_KEY_ID, key.pair.access_key_id.as_str()),
        (
            secret_keys::SECRET_ACCESS_KEY,
            key.pair.secret_access_key.as_str(),
        ),
    ]);
    let annotations =
        BTreeMap::from([(EXPIRES_ANNOTATION.to_string(), key.expires_at.to_string())]);
    owned_secret(cred, previous_secret_name(cred), data, annotations)
}

fn owned_secret(
    cred: &S3Credential,
    name: String,
    data: BTreeMap<&str, &str>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    let owner = OwnerReference {
        api_version: S3Credential::api_version(&()).into_owned(),
        kind: S3Credential::kind(&()).into_owned(),
        name: cred.name_any(),
        uid: cred.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cred.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (CREDENTIAL_LABEL.to_string(), cred.name_any()),
            ])),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jets3_crds::k8s::S3CredentialSpec;

    fn cred() -> S3Credential {
        let spec: S3CredentialSpec = serde_json::from_value(serde_json::json!({
            "grants": [{"bucket": "media", "permission": "read"}]
        }))
        .unwrap();
        let mut c = S3Credential::new("app", spec);
        c.metadata.namespace = Some("team-a".into());
        c.metadata.uid = Some("1234".into());
        c
    }

    #[test]
    fn generated_keys_have_the_aws_format_and_differ() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        let id = &a.access_key_id;
        assert_eq!(id.len(), 20, "{id}");
        assert!(id.starts_with("JETS3"), "{id}");
        assert!(
            id[5..]
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            "{id}"
        );
        assert_eq!(a.secret_access_key.len(), 40);
        assert!(a
            .secret_access_key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert!(!format!("{a:?}").contains(&a.secret_access_key));
    }

    #[test]
    fn app_secret_round_trips_and_is_owned() {
        let c = cred();
        let key = CurrentKey {
            pair: KeyPair::generate(),
            created_at: Some("2026-01-02T03:04:05Z".parse().unwrap()),
            rotate_handled: Some("now".into()),
        };
        let settings = AppSettings {
            endpoint: "http://gw:9000",
            region: "eu-west-1",
            bucket_name: Some("media.example"),
        };
        let s = app_secret(&c, &key, &settings);
        assert_eq!(s.metadata.name.as_deref(), Some("app"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
        assert!(controlled_by(&s, "1234"));
        assert!(!controlled_by(&s, "other"));
        let data = s.data.as_ref().unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_ENDPOINT_URL",
                "AWS_REGION",
                "AWS_SECRET_ACCESS_KEY",
                "BUCKET_NAME"
            ]
        );
        assert_eq!(data["BUCKET_NAME"].0, b"media.example");
        assert_eq!(data["AWS_REGION"].0, b"eu-west-1");
        assert_eq!(CurrentKey::read(&s), Some(key));
        let without = app_secret(
            &c,
            &CurrentKey::read(&s).unwrap(),
            &AppSettings {
                bucket_name: None,
                ..settings
            },
        );
        assert!(!without.data.unwrap().contains_key("BUCKET_NAME"));
    }

    #[test]
    fn previous_secret_round_trips() {
        let c = cred();
        let key = PreviousKey {
            pair: KeyPair::generate(),
            expires_at: "2026-01-02T03:04:05Z".parse().unwrap(),
        };
        let s = previous_secret(&c, &key);
        assert_eq!(s.metadata.name.as_deref(), Some("jets3-previous-key-1234"));
        assert_eq!(PreviousKey::read(&s), Some(key));
        assert_eq!(s.data.unwrap().len(), 2);
    }

    #[test]
    fn key_pairs_from_source_secrets_need_both_keys() {
        let mut s = Secret {
            data: Some(BTreeMap::from([
                ("id".to_string(), ByteString(b"AKIAEXAMPLE\n".to_vec())),
                ("secret".to_string(), ByteString(b"s3cr3ts3cr3t".to_vec())),
            ])),
            ..Default::default()
        };
        assert_eq!(
            KeyPair::from_data(&s, "id", "secret").map(|p| p.access_key_id),
            Some("AKIAEXAMPLE".to_string())
        );
        assert_eq!(KeyPair::from_data(&s, "id", "missing"), None);
        s.data = None;
        assert_eq!(KeyPair::from_data(&s, "id", "secret"), None);
    }
}
