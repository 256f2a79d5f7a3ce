//! Who gets a contested name: S3 bucket names and NATS bucket names are global to the
//! cluster, access key ids global to the gateways. The first claimant keeps it; "first" is
//! the earliest `metadata.creationTimestamp`, ties broken by `metadata.uid`, so every
//! operator replica and every reconcile decides the same way. For buckets, one that already
//! holds its NATS bucket (`status.natsBucket`) comes before any that does not: creation
//! timestamps have one-second resolution, and a later S3Bucket must never take a name from
//! the one serving it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use jets3_crds::k8s::S3Bucket;
use kube::ResourceExt;

use super::key::ObjKey;

/// The order in which claims are honoured: oldest first, then by uid.
pub fn seniority<K: ResourceExt>(obj: &K) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (
        obj.creation_timestamp().map(|t| t.0),
        obj.uid().unwrap_or_default(),
    )
}

/// The objects in claim order.
pub fn in_claim_order<'a, K: ResourceExt + 'a>(
    objs: impl IntoIterator<Item = &'a K>,
) -> Vec<&'a K> {
    let mut v: Vec<&K> = objs.into_iter().collect();
    v.sort_by_cached_key(|o| seniority(*o));
    v
}

/// Why an S3Bucket does not hold its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The S3Bucket holding the contested name.
    pub holder: ObjKey,
    /// What is contested, for people: `S3 bucket name "x"` or `NATS bucket "y"`.
    pub what: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} is already claimed by S3Bucket {}, which claimed it first",
            self.what, self.holder
        )
    }
}

/// For every S3Bucket, whether it holds its S3 and NATS bucket names (`None`) or which
/// earlier S3Bucket holds one of them. A bucket that loses claims neither name, so a later
/// bucket is never blocked by one that is not served itself.
pub fn bucket_claims<'a>(
    buckets: impl IntoIterator<Item = &'a S3Bucket>,
) -> HashMap<ObjKey, Option<Conflict>> {
    let mut s3_names: HashMap<String, ObjKey> = HashMap::new();
    let mut nats_names: HashMap<String, ObjKey> = HashMap::new();
    let mut out = HashMap::new();
    let mut ordered: Vec<&S3Bucket> = buckets.into_iter().collect();
    ordered.sort_by_cached_key(|b| {
        let holds = b.status.as_ref().and_then(|s| s.nats_bucket.as_deref())
            == Some(b.nats_bucket_name().as_str());
        (!holds, seniority(*b))
    });
    for b in ordered {
        let key = ObjKey::of(b);
        let s3 = b.s3_bucket_name();
        let nats = b.nats_bucket_name();
        let conflict = if let Some(holder) = s3_names.get(&s3) {
            Some(Conflict {
                holder: holder.clone(),
                what: format!("S3 bucket name {s3:?}"),
            })
        } else {
            nats_names.get(&nats).map(|holder| Conflict {
                holder: holder.clone(),
                what: format!("NATS bucket {nats:?}"),
            })
        };
        if conflict.is_none() {
            s3_names.insert(s3, key.clone());
            nats_names.insert(nats, key.clone());
        }
        out.insert(key, conflict);
    }
    out
}

/// [`bucket_claims`] for one bucket: the same answer, computed over the buckets its names
/// connect it to (the only ones it depends on) instead of a map of every bucket. Each bucket
/// reconcile asks this; the whole map per reconcile made a cold start with 500 buckets
/// quadratic, and was half of the operator's peak memory.
pub fn bucket_claim<'a>(
    target: &ObjKey,
    buckets: impl IntoIterator<Item = &'a S3Bucket>,
) -> Option<Conflict> {
    let named: Vec<(&S3Bucket, String, String)> = buckets
        .into_iter()
        .map(|b| (b, b.s3_bucket_name(), b.nats_bucket_name()))
        .collect();
    let mut member: Vec<bool> = named
        .iter()
        .map(|(b, ..)| ObjKey::of(*b) == *target)
        .collect();
    let mut s3: HashSet<&str> = HashSet::new();
    let mut nats: HashSet<&str> = HashSet::new();
    let mut grew = true;
    while grew {
        grew = false;
        for (i, (_, s, n)) in named.iter().enumerate() {
            if !member[i] && (s3.contains(s.as_str()) || nats.contains(n.as_str())) {
                member[i] = true;
            }
            if member[i] && (s3.insert(s.as_str()) | nats.insert(n.as_str())) {
                grew = true;
            }
        }
    }
    let component = named
        .iter()
        .zip(&member)
        .filter(|(_, m)| **m)
        .map(|((b, ..), _)| *b);
    bucket_claims(component).remove(target).flatten()
}

/// Claims on plain string names (access key ids): the first claimant in `order` keeps a name,
/// later ones get the holder back.
#[derive(Debug, Default)]
pub struct NameClaims {
    held: HashMap<String, ObjKey>,
}

impl NameClaims {
    /// Claims every name in `names` for `who`, or none of them: the holder of the first name
    /// already taken by someone else.
    pub fn claim_all(&mut self, who: &ObjKey, names: &[&str]) -> Result<(), (String, ObjKey)> {
        let unique: HashSet<&str> = names.iter().copied().collect();
        for n in &unique {
            if let Some(holder) = self.held.get(*n) {
                if holder != who {
                    return Err((n.to_string(), holder.clone()));
                }
            }
        }
        for n in unique {
            self.held.insert(n.to_string(), who.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jets3_crds::k8s::S3BucketSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn bucket(ns: &str, name: &str, spec: serde_json::Value, ts: i64, uid: &str) -> S3Bucket {
        let mut b = S3Bucket::new(name, serde_json::from_value::<S3BucketSpec>(spec).unwrap());
        b.metadata.namespace = Some(ns.into());
        b.metadata.uid = Some(uid.into());
        b.metadata.creation_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::from_second(ts).unwrap()));
        b
    }

    #[test]
    fn the_oldest_keeps_the_name_whatever_the_listing_order() {
        let a = bucket("a", "logs", serde_json::json!({}), 100, "u-2");
        let b = bucket("b", "logs", serde_json::json!({}), 50, "u-9");
        let c = bucket("c", "logs", serde_json::json!({}), 50, "u-1");
        for order in [vec![&a, &b, &c], vec![&c, &b, &a], vec![&b, &a, &c]] {
            let claims = bucket_claims(order);
            assert_eq!(claims[&ObjKey::new("c", "logs")], None);
            for loser in ["a", "b"] {
                let conflict = claims[&ObjKey::new(loser, "logs")].clone().unwrap();
                assert_eq!(conflict.holder, ObjKey::new("c", "logs"));
                assert_eq!(conflict.what, "S3 bucket name \"logs\"");
            }
        }
    }

    #[test]
    fn nats_bucket_names_conflict_too_and_losers_block_nobody() {
        // a holds NATS bucket "shared"; b loses it and so does not block c's S3 name "y".
        let a = bucket(
            "a",
            "x",
            serde_json::json!({"natsBucket": "shared"}),
            1,
            "1",
        );
        let b = bucket(
            "b",
            "y",
            serde_json::json!({"natsBucket": "shared"}),
            2,
            "2",
        );
        let c = bucket("c", "y", serde_json::json!({}), 3, "3");
        let claims = bucket_claims([&a, &b, &c]);
        assert_eq!(claims[&ObjKey::of(&a)], None);
        let lost = claims[&ObjKey::of(&b)].clone().unwrap();
        assert_eq!(lost.what, "NATS bucket \"shared\"");
        assert_eq!(
            lost.to_string(),
            "the NATS bucket \"shared\" is already claimed by S3Bucket a/x, which claimed it first"
        );
        assert_eq!(claims[&ObjKey::of(&c)], None);
    }

    #[test]
    fn dotted_names_claim_their_mapped_nats_name() {
        let a = bucket(
            "a",
            "one",
            serde_json::json!({"bucketName": "my.logs"}),
            1,
            "1",
        );
        let b = bucket(
            "b",
            "two",
            serde_json::json!({"natsBucket": "my_logs"}),
            2,
            "2",
        );
        let claims = bucket_claims([&a, &b]);
        assert_eq!(claims[&ObjKey::of(&a)], None);
        assert!(claims[&ObjKey::of(&b)].is_some());
    }

    #[test]
    fn a_bucket_holding_its_nats_bucket_keeps_its_name_against_an_older_claim() {
        let mut serving = bucket("b", "logs", serde_json::json!({}), 50, "u-9");
        serving.status = Some(jets3_crds::k8s::S3BucketStatus {
            nats_bucket: Some("logs".into()),
            ..Default::default()
        });
        // Same second, smaller uid: would come first by seniority alone.
        let newcomer = bucket("a", "logs", serde_json::json!({}), 50, "u-1");
        let claims = bucket_claims([&newcomer, &serving]);
        assert_eq!(claims[&ObjKey::of(&serving)], None);
        assert_eq!(
            claims[&ObjKey::of(&newcomer)].clone().unwrap().holder,
            ObjKey::of(&serving)
        );
    }

    #[test]
    fn one_bucket_claim_agrees_with_the_whole_map() {
        // A chain through both kinds of names: a -(nats "shared")- b -(s3 "y")- c, and
        // unrelated buckets around it.
        let a = bucket(
            "a",
            "x",
            serde_json::json!({"natsBucket": "shared"}),
            1,
            "1",
        );
        let b = bucket(
            "b",
            "y",
            serde_json::json!({"natsBucket": "shared"}),
            2,
            "2",
        );
        let c = bucket("c", "y", serde_json::json!({}), 3, "3");
        let d = bucket("d", "z", serde_json::json!({}), 0, "4");
        let e = bucket("e", "z", serde_json::json!({}), 5, "5");
        let f = bucket("f", "w", serde_json::json!({"natsBucket": "y"}), 0, "6");
        let all = [&a, &b, &c, &d, &e, &f];
        let whole = bucket_claims(all);
        for x in all {
            let key = ObjKey::of(x);
            assert_eq!(bucket_claim(&key, all), whole[&key], "{key}");
        }
        assert!(bucket_claim(&ObjKey::new("nowhere", "x"), all).is_none());
    }

    #[test]
    fn name_claims_are_all_or_nothing() {
        let mut c = NameClaims::default();
        let a = ObjKey::new("n", "a");
        let b = ObjKey::new("n", "b");
        assert_eq!(c.claim_all(&a, &["K1", "K2"]), Ok(()));
        assert_eq!(c.claim_all(&a, &["K1"]), Ok(()));
        assert_eq!(
            c.claim_all(&b, &["K3", "K2"]),
            Err(("K2".into(), a.clone()))
        );
        // K3 was not taken by the failed claim.
        assert_eq!(c.claim_all(&ObjKey::new("n", "c"), &["K3"]), Ok(()));
    }
}
