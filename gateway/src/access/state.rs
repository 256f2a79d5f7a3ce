//! A bucket's ACL, policy and Block Public Access as set over S3: kept in the bucket
//! stream's metadata (so every gateway reads the same), cached per gateway.
//!
//! A gateway forgets a bucket's entry when JetStream announces that the bucket's stream
//! changed (the `$JS.EVENT.ADVISORY.STREAM.<event>.<stream>` advisories: updated, created,
//! deleted, ..., which every gateway watches), and in any case after [`TTL`], the bound
//! should an advisory be missed (a reconnect, a NATS user not allowed to subscribe to
//! advisories).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jets3_crds::policy::Policy;
use jets3_crds::PublicAccessBlock;

use super::acl::Acl;
use crate::error::S3Result;
use crate::store::Store;

/// Stream metadata key of the bucket ACL (JSON).
pub const ACL_KEY: &str = "jets3.acl";
/// Stream metadata key of the bucket policy (the document as given).
pub const POLICY_KEY: &str = "jets3.policy";
/// Stream metadata key of the Block Public Access settings (JSON).
pub const PAB_KEY: &str = "jets3.pab";

/// How long a gateway trusts a state it read when no advisory says it changed.
pub const TTL: Duration = Duration::from_secs(2);

/// JetStream's stream advisories: `<event>.<stream>` follow.
const ADVISORIES: &str = "$JS.EVENT.ADVISORY.STREAM.*.*";

/// What S3 calls set on a bucket.
#[derive(Debug, Default)]
pub struct Stored {
    pub acl: Option<Acl>,
    /// The document and its compiled form.
    pub policy: Option<(String, Arc<Policy>)>,
    pub pab: Option<PublicAccessBlock>,
    /// Whether the bucket's stream exists.
    pub exists: bool,
}

impl Stored {
    /// Reads the state from stream metadata (untrusted: what does not parse is left out,
    /// which for an ACL means private and for a policy no grant).
    fn from_metadata(bucket: &str, md: &HashMap<String, String>) -> Stored {
        Stored {
            acl: md.get(ACL_KEY).and_then(|t| Acl::decode(t)),
            policy: md.get(POLICY_KEY).and_then(|t| {
                Policy::parse(t, bucket)
                    .ok()
                    .map(|p| (t.clone(), Arc::new(p)))
            }),
            pab: md.get(PAB_KEY).and_then(|t| serde_json::from_str(t).ok()),
            exists: true,
        }
    }
}

/// Per-gateway cache of [`Stored`] by NATS bucket.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (Instant, Arc<Stored>)>>,
}

impl Cache {
    /// The state of bucket `nats` (S3 name `s3`); an empty state for a bucket that does
    /// not exist (the operation then answers NoSuchBucket).
    pub async fn get(&self, store: &Store, s3: &str, nats: &str) -> S3Result<Arc<Stored>> {
        if let Some(s) = self.cached(nats) {
            return Ok(s);
        }
        let stored = match store.bucket_info(nats).await? {
            Some(info) => Arc::new(Stored::from_metadata(s3, &info.metadata)),
            None => Arc::new(Stored::default()),
        };
        self.lock()
            .insert(nats.to_string(), (Instant::now(), stored.clone()));
        Ok(stored)
    }

    fn cached(&self, nats: &str) -> Option<Arc<Stored>> {
        self.lock()
            .get(nats)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, s)| s.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Stored>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a bucket's entry (its stream changed).
    pub fn forget(&self, nats: &str) {
        self.lock().remove(nats);
    }

    /// Forgets the entry of every stream JetStream reports an event of, until the
    /// connection is closed.
    pub async fn watch(self: Arc<Self>, store: Store) {
        let mut sub = match store.subscribe(ADVISORIES.to_string()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch stream updates: bucket ACLs and policies set through another gateway apply here within the cache TTL");
                return;
            }
        };
        while let Some(msg) = sub.next().await {
            if let Some(nats) = msg
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .and_then(jets3_nats::names::bucket_of_stream)
            {
                self.forget(nats);
            }
        }
    }
}
