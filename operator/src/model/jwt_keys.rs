//! The JWT verification keys an `S3Bucket` takes from Secrets (`spec.jwt.keys[].secretRef` /
//! `publicKeyRef`).
//!
//! The Secrets are the user's, so the operator holds no watch on their data: like the
//! S3Credential keySource Secrets, they are watched by metadata only, and a change to one
//! makes the S3Buckets naming it reconcile again, which reads the values they name into
//! [`JwtSecrets`]. The config build then [`resolve`]s them into the bucket's keys; a missing
//! Secret or key leaves only that bucket out (reason `JwtKeyNotFound`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use jets3_crds::k8s::S3Bucket;
use jets3_crds::JwtKey;

use super::key::ObjKey;

/// The values an S3Bucket's JWT keys name, by (Secret name, key); absent ones are not in it.
pub type KeyValues = BTreeMap<(String, String), Vec<u8>>;

/// What the last reconcile of each S3Bucket read from its JWT key Secrets.
#[derive(Clone, Default)]
pub struct JwtSecrets(Arc<Mutex<HashMap<ObjKey, KeyValues>>>);

impl JwtSecrets {
    /// A copy of every bucket's values.
    pub fn snapshot(&self) -> HashMap<ObjKey, KeyValues> {
        self.lock().clone()
    }

    /// Records the values read for `bucket` (`None`: it names no Secret, or is gone);
    /// whether they changed.
    pub fn set(&self, bucket: &ObjKey, values: Option<KeyValues>) -> bool {
        let mut map = self.lock();
        match values {
            Some(v) => map.insert(bucket.clone(), v.clone()).as_ref() != Some(&v),
            None => map.remove(bucket).is_some(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjKey, KeyValues>> {
        // The map stays consistent whatever a panicking holder did: each change is one call.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The names of the Secrets `b`'s JWT keys are read from.
pub fn secret_names(b: &S3Bucket) -> BTreeSet<String> {
    b.spec
        .jwt
        .iter()
        .flat_map(|j| &j.keys)
        .filter_map(|k| k.source())
        .map(|r| r.name.clone())
        .collect()
}

/// `b`'s JWT keys from the values read, or which Secret key is missing.
pub fn resolve(b: &S3Bucket, values: Option<&KeyValues>) -> Result<Vec<JwtKey>, String> {
    let Some(jwt) = &b.spec.jwt else {
        return Ok(Vec::new());
    };
    jwt.keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.source().map(|r| (i, k, r)))
        .map(|(i, k, r)| {
            let value = values
                .and_then(|v| v.get(&(r.name.clone(), r.key.clone())))
                .ok_or_else(|| {
                    format!(
                        "spec.jwt.keys[{i}]: Secret {} does not exist or has no key {:?}",
                        r.name, r.key
                    )
                })?;
            k.resolve(value)
                .map_err(|e| format!("spec.jwt.keys[{i}]: Secret {} key {:?} {e}", r.name, r.key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bucket_config::tests::bucket;

    #[test]
    fn resolves_each_key_or_names_the_missing_one() {
        let b = bucket(serde_json::json!({"jwt": {"keys": [
            {"kid": "h", "algorithm": "HS256", "secretRef": {"name": "jwt", "key": "hmac"}},
            {"algorithm": "ES256", "publicKeyRef": {"name": "pub", "key": "pem"}}
        ]}}));
        assert_eq!(
            secret_names(&b),
            BTreeSet::from(["jwt".to_string(), "pub".to_string()])
        );
        let mut values = KeyValues::new();
        values.insert(("jwt".into(), "hmac".into()), b"k".repeat(32));
        let err = resolve(&b, Some(&values)).unwrap_err();
        assert!(err.contains("keys[1]: Secret pub does not exist"), "{err}");
        assert!(resolve(&b, None).unwrap_err().contains("keys[0]"));
        values.insert(
            ("pub".into(), "pem".into()),
            b"-----BEGIN PUBLIC KEY-----".to_vec(),
        );
        let keys = resolve(&b, Some(&values)).unwrap();
        assert_eq!(keys[0].kid.as_deref(), Some("h"));
        assert!(keys[0].secret_base64.is_some() && keys[0].public_key_pem.is_none());
        assert_eq!(
            keys[1].public_key_pem.as_deref(),
            Some("-----BEGIN PUBLIC KEY-----")
        );
        values.insert(("pub".into(), "pem".into()), vec![0xff, 0xfe]);
        assert!(resolve(&b, Some(&values))
            .unwrap_err()
            .contains("is not a PEM text"));
        assert_eq!(resolve(&bucket(serde_json::json!({})), None), Ok(vec![]));
    }

    #[test]
    fn set_reports_changes() {
        let s = JwtSecrets::default();
        let k = ObjKey::new("a", "b");
        assert!(!s.set(&k, None));
        assert!(s.set(&k, Some(KeyValues::new())));
        assert!(!s.set(&k, Some(KeyValues::new())));
        assert!(s.set(&k, None));
        assert!(s.snapshot().is_empty());
    }
}
