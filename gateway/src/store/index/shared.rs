//! Where snapshots live: the KV bucket `jets3_index`, shared by every gateway.
//!
//! Keys of NATS bucket `B`: `B.head` (the current manifest's id and size), `B.m.<id>.<n>`
//! (the manifest, in parts of at most [`PART`] bytes), `B.p.<id>` (a page) and, while a
//! writer merges sorted runs, `B.r.<build>.<run>.<n>` (a page of a run).

use async_nats::jetstream::{kv, Context};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::super::internal::InternalReplicas;
use super::super::NatsError;
use super::snapshot::{Corrupt, Manifest, Page};

/// The KV bucket of snapshots.
pub const INDEX_KV: &str = "jets3_index";

/// The largest manifest part.
const PART: usize = 512 * 1024;

/// What the head names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub id: String,
    pub parts: usize,
    pub seq: u64,
}

/// Why a manifest did not become the head.
#[derive(Debug)]
pub enum CommitError {
    Nats(NatsError),
    /// Another writer moved the head since it was read.
    Conflict,
}

impl From<NatsError> for CommitError {
    fn from(e: NatsError) -> Self {
        CommitError::Nats(e)
    }
}

/// Why a snapshot could not be read.
#[derive(Debug)]
pub enum ReadError {
    Nats(NatsError),
    /// Missing or refused parts: the snapshot must not be used.
    Corrupt(Corrupt),
}

impl From<NatsError> for ReadError {
    fn from(e: NatsError) -> Self {
        ReadError::Nats(e)
    }
}

impl From<Corrupt> for ReadError {
    fn from(e: Corrupt) -> Self {
        ReadError::Corrupt(e)
    }
}

/// The snapshots of every bucket.
#[derive(Clone)]
pub struct Shared {
    kv: kv::Store,
}

fn kv_error(e: impl std::fmt::Display) -> NatsError {
    NatsError::Other(e.to_string())
}

impl Shared {
    /// Opens (or creates) the KV bucket.
    pub async fn open(js: &Context, replicas: &InternalReplicas) -> Result<Shared, NatsError> {
        let config = kv::Config {
            bucket: INDEX_KV.into(),
            description: "jets3: listing snapshots".into(),
            history: 1,
            ..Default::default()
        };
        let kv = replicas.open(js, config).await?;
        Ok(Shared { kv })
    }

    /// A read nothing answered is an election, or the KV deleted ([`NatsError::NoResponders`]).
    async fn get(&self, key: &str) -> Result<Option<Bytes>, NatsError> {
        self.kv.get(key).await.map_err(|e| NatsError::within(&e))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), NatsError> {
        self.kv
            .put(key, value.into())
            .await
            .map(|_| ())
            .map_err(kv_error)
    }

    /// The head of `bucket`'s snapshot, if it has one.
    pub async fn head(&self, bucket: &str) -> Result<Option<Head>, ReadError> {
        match self.get(&format!("{bucket}.head")).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| ReadError::Corrupt(Corrupt(format!("head of {bucket}: {e}")))),
        }
    }

    /// The head's KV revision (0: there is none), for a compare-and-set on it.
    pub async fn head_revision(&self, bucket: &str) -> Result<u64, NatsError> {
        let entry = self
            .kv
            .entry(format!("{bucket}.head"))
            .await
            .map_err(kv_error)?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => e.revision,
            _ => 0,
        })
    }

    /// The manifest a head names.
    pub async fn manifest(&self, bucket: &str, head: &Head) -> Result<Manifest, ReadError> {
        let mut bytes = Vec::new();
        for n in 0..head.parts {
            match self.get(&format!("{bucket}.m.{}.{n}", head.id)).await? {
                Some(b) => bytes.extend_from_slice(&b),
                None => return Err(Corrupt(format!("manifest {} lost part {n}", head.id)).into()),
            }
        }
        let m = Manifest::decode(bucket, &head.id, &bytes)?;
        if m.seq != head.seq {
            return Err(Corrupt(format!(
                "manifest {} is not at the head's sequence",
                head.id
            ))
            .into());
        }
        Ok(m)
    }

    /// Page `id` of `bucket`.
    pub async fn page(&self, bucket: &str, id: &str) -> Result<Page, ReadError> {
        match self.get(&format!("{bucket}.p.{id}")).await? {
            Some(b) => Ok(Page::decode(id, &b)?),
            None => Err(Corrupt(format!("page {id} is gone")).into()),
        }
    }

    /// Stores a page under its id.
    pub async fn put_page(&self, bucket: &str, id: &str, bytes: Vec<u8>) -> Result<(), NatsError> {
        self.put(&format!("{bucket}.p.{id}"), bytes).await
    }

    /// Stores a manifest, then makes it the head if the head is still at `revision` (0:
    /// there was none).
    pub async fn put_manifest(
        &self,
        bucket: &str,
        m: &Manifest,
        revision: u64,
    ) -> Result<Head, CommitError> {
        let (id, bytes) = m.encode().map_err(kv_error)?;
        let parts = bytes.chunks(PART).count().max(1);
        for (n, part) in bytes.chunks(PART).enumerate() {
            self.put(&format!("{bucket}.m.{id}.{n}"), part.to_vec())
                .await?;
        }
        let head = Head {
            id,
            parts,
            seq: m.seq,
        };
        let value = serde_json::to_vec(&head).map_err(kv_error)?;
        let key = format!("{bucket}.head");
        let set = match revision {
            0 => self.kv.create(&key, value.into()).await.map_err(|e| {
                matches!(e.kind(), kv::CreateErrorKind::AlreadyExists)
                    .then_some(CommitError::Conflict)
                    .unwrap_or_else(|| CommitError::Nats(kv_error(e)))
            }),
            rev => self.kv.update(&key, value.into(), rev).await.map_err(|e| {
                matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision)
                    .then_some(CommitError::Conflict)
                    .unwrap_or_else(|| CommitError::Nats(kv_error(e)))
            }),
        };
        if let Err(e) = set {
            // Nothing names this manifest.
            let _ = self.remove(bucket, &format!("m.{}.{parts}", head.id)).await;
            return Err(e);
        }
        Ok(head)
    }

    /// Stores page `n` of run `run` of merge `build`.
    pub async fn put_run_page(
        &self,
        bucket: &str,
        build: &str,
        run: usize,
        n: usize,
        bytes: Vec<u8>,
    ) -> Result<(), NatsError> {
        self.put(&format!("{bucket}.r.{build}.{run}.{n}"), bytes)
            .await
    }

    /// Page `n` of run `run` of merge `build`.
    pub async fn run_page(
        &self,
        bucket: &str,
        build: &str,
        run: usize,
        n: usize,
    ) -> Result<Bytes, ReadError> {
        match self.get(&format!("{bucket}.r.{build}.{run}.{n}")).await? {
            Some(b) => Ok(b),
            None => Err(Corrupt(format!("run {run} of merge {build} lost page {n}")).into()),
        }
    }

    /// Removes the runs of merge `build`.
    pub async fn forget_runs(
        &self,
        js: &Context,
        bucket: &str,
        build: &str,
    ) -> Result<(), NatsError> {
        super::super::forget_key(js, INDEX_KV, &format!("{bucket}.r.{build}.>")).await
    }

    /// Drops the head: the next pass writes a snapshot from nothing.
    pub async fn forget_head(&self, bucket: &str) -> Result<(), NatsError> {
        self.kv
            .purge(format!("{bucket}.head"))
            .await
            .map_err(kv_error)
    }

    /// Removes a retired page (`p.<id>`) or manifest (`m.<id>.<parts>`).
    pub async fn remove(&self, bucket: &str, retired: &str) -> Result<(), NatsError> {
        match retired.strip_prefix("m.").and_then(|r| r.rsplit_once('.')) {
            Some((id, parts)) => {
                let parts: usize = parts.parse().unwrap_or(1);
                for n in 0..parts {
                    self.kv
                        .purge(format!("{bucket}.m.{id}.{n}"))
                        .await
                        .map_err(kv_error)?;
                }
                Ok(())
            }
            None => self
                .kv
                .purge(format!("{bucket}.{retired}"))
                .await
                .map_err(kv_error),
        }
    }

    /// Forgets every snapshot of a bucket (it is being deleted).
    pub async fn forget(&self, js: &Context, bucket: &str) -> Result<(), NatsError> {
        super::super::forget_key(js, INDEX_KV, &format!("{bucket}.>")).await
    }
}
