//! A CompleteMultipartUpload that can be retried, on any gateway, and never commits twice.
//!
//! - A Complete **claims** the upload: a compare-and-set on its record in `jets3_uploads`
//!   adds a [`Completion`] (the digest of its part list and the nuid of the version it
//!   writes), then a heartbeat rewrites the claim every quarter of the lease.
//! - A Complete that finds a claim for the same parts **waits** for its result and answers
//!   the same; for other parts the upload is gone (NoSuchUpload). When the claim has not
//!   changed for a whole lease, its gateway died: if its version was committed, the record
//!   is finished from it; otherwise this Complete takes the upload over.
//! - The claimant rewrites its claim once more right before its commit and does not commit
//!   if that fails, so a Complete that takes over (a lease later) can only meet a commit
//!   that was already published, which it finds by the nuid it records.
//! - After the commit the record keeps the **result** ([`Completed`]) for the window
//!   (`collector.completedUploadSeconds`) and the parts are retired; the collector removes
//!   results older than the window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;

use super::direct::{from_leader, kv_live};
use super::uploads::{kv_err, UploadInfo};
use super::{Bucket, ObjectMeta};
use super::{StoreError, StoreResult};

/// A Complete's claim on an upload, and then its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// SHA-256 (hex) of the part list the Complete named ([`parts_digest`]).
    pub parts: String,
    /// The chunks of the version the Complete writes.
    pub nuid: String,
    /// The committed version, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Completed>,
}

/// What a completed upload became: the answer to every repeat of its Complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    pub etag: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub checksums: Vec<(String, String)>,
    #[serde(default)]
    pub checksum_type: Option<String>,
    /// When it was committed (Unix nanoseconds).
    pub at: i128,
}

impl Completed {
    /// The result of committing `meta`.
    pub fn of(meta: &ObjectMeta) -> Completed {
        Completed {
            etag: meta.etag.clone(),
            version: meta.version.clone(),
            checksums: meta.checksums.clone(),
            checksum_type: meta.checksum_type.clone(),
            at: OffsetDateTime::now_utc().unix_timestamp_nanos(),
        }
    }

    /// How long ago it was committed.
    pub fn age(&self) -> std::time::Duration {
        let ns = OffsetDateTime::now_utc().unix_timestamp_nanos() - self.at;
        std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }
}

/// SHA-256 (hex) of a part list: a `<number> <etag>` line per part, ETags unquoted.
pub fn parts_digest<'a>(parts: impl IntoIterator<Item = (u32, &'a str)>) -> String {
    let mut h = sha2::Sha256::new();
    for (n, etag) in parts {
        let bare = etag
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or(etag);
        h.update(format!("{n} {bare}\n"));
    }
    hex::encode(h.finalize())
}

/// What a Complete finds when it looks at its upload.
pub enum UploadState {
    /// The upload may be completed by this request: claim it at `revision`. `lapsed` is the
    /// nuid of a dead Complete's claim this one takes over.
    Open {
        info: Box<UploadInfo>,
        revision: u64,
        lapsed: Option<String>,
    },
    /// Completed with these parts: the answer.
    Done(Completed),
}

/// A held claim: its heartbeat runs until it is confirmed, released or dropped.
pub struct Claim {
    kv: kv::Store,
    key: String,
    /// The record without the claim (to give it back).
    open: UploadInfo,
    /// The record with the claim, as written.
    value: Bytes,
    /// Revision of the last write of the claim (the heartbeat updates it).
    revision: Arc<Mutex<u64>>,
    lost: Arc<AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    /// The nuid of the version this Complete writes.
    pub nuid: String,
    /// The nuid of a dead Complete's claim this one took over.
    pub lapsed: Option<String>,
    pub digest: String,
}

impl Claim {
    fn revision(&self) -> u64 {
        *self.revision.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the heartbeat (letting a rewrite in flight finish).
    async fn stop_heartbeat(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.heartbeat.take() {
            let _ = task.await;
        }
    }

    /// Stops the heartbeat and rewrites the claim once more, right before the commit:
    /// fails when the claim is not this Complete's any more (aborted, or taken over).
    pub async fn confirm(&mut self, id: &str) -> StoreResult<()> {
        self.stop_heartbeat().await;
        if self.lost.load(Ordering::Relaxed) {
            return Err(StoreError::NoSuchUpload(id.to_string()));
        }
        match update(&self.kv, &self.key, self.value.clone(), self.revision()).await {
            Ok(rev) => {
                *self.revision.lock().unwrap_or_else(|p| p.into_inner()) = rev;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(StoreError::NoSuchUpload(id.to_string()))
            }
            Err(e) => Err(kv_err(e)),
        }
    }

    /// Records the result of the commit in the upload's record.
    pub async fn finish(&mut self, done: Completed) -> StoreResult<()> {
        self.stop_heartbeat().await;
        let mut record = self.open.clone();
        record.completion = Some(Completion {
            parts: self.digest.clone(),
            nuid: self.nuid.clone(),
            done: Some(done),
        });
        let value = serde_json::to_vec(&record).map_err(StoreError::internal)?;
        update(&self.kv, &self.key, value.into(), self.revision())
            .await
            .map_err(kv_err)?;
        Ok(())
    }

    /// Gives the upload back: a Complete that failed before its commit.
    pub async fn release(mut self) {
        self.stop_heartbeat().await;
        let Ok(value) = serde_json::to_vec(&self.open) else {
            return;
        };
        if let Err(e) = self
            .kv
            .update(&self.key, value.into(), self.revision())
            .await
        {
            tracing::debug!(key = %self.key, error = %e, "claim not released");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }
}

impl Bucket {
    /// The record of an upload of this bucket, completion included, and its revision. Its
    /// absence is confirmed by the KV stream's leader before it is believed.
    pub(super) async fn upload_entry(&self, id: &str) -> StoreResult<(UploadInfo, u64)> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StoreError::NoSuchUpload(id.to_string()));
        }
        let kv = self.store.uploads().await?;
        let key = format!("{}.{id}", self.nats);
        let entry = self
            .store
            .on_uploads(|| kv.entry(key.as_str()))
            .await
            .map_err(kv_err)?
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (e.value, e.revision));
        let (value, revision) = match entry {
            Some(found) => found,
            // "No such upload" from a replica that is behind (one that has not yet applied
            // an upload created a moment ago) would refuse its parts: the leader decides.
            None => leader_entry(&kv, &key)
                .await?
                .ok_or_else(|| StoreError::NoSuchUpload(id.to_string()))?,
        };
        let info = serde_json::from_slice(&value).map_err(StoreError::internal)?;
        Ok((info, revision))
    }

    /// Looks at upload `id` for a Complete of `key` with the parts of `digest`: waits while
    /// another Complete holds it, and tells whether this one may complete it or what it
    /// became. NoSuchUpload when it is gone, belongs to another key, was completed with
    /// other parts or longer ago than the window.
    pub async fn complete_state(
        &self,
        id: &str,
        key: &str,
        digest: &str,
    ) -> StoreResult<UploadState> {
        let timing = self.lifecycle().timing;
        let lease = timing.claim_lease();
        let poll = (lease / 8).min(std::time::Duration::from_millis(250));
        let mut watched: Option<(u64, Instant)> = None;
        loop {
            let (info, revision) = self.upload_entry(id).await?;
            if info.key != key {
                return Err(StoreError::NoSuchUpload(id.to_string()));
            }
            let Some(c) = info.completion.clone() else {
                return Ok(UploadState::Open {
                    info: Box::new(info),
                    revision,
                    lapsed: None,
                });
            };
            if c.parts != digest {
                return Err(StoreError::NoSuchUpload(id.to_string()));
            }
            if let Some(done) = c.done {
                if done.age() > timing.completed {
                    return Err(StoreError::NoSuchUpload(id.to_string()));
                }
                return Ok(UploadState::Done(done));
            }
            let since = match watched {
                Some((r, t)) if r == revision => t,
                _ => watched.insert((revision, Instant::now())).1,
            };
            if since.elapsed() < lease {
                tokio::time::sleep(poll).await;
                continue;
            }
            // No heartbeat for a whole lease: that Complete's gateway is gone. It may have
            // committed before it died.
            let mut open = info;
            open.completion = None;
            if let Some(meta) = self.version_with_chunks(key, &c.nuid).await? {
                let done = Completed::of(&meta);
                let mut record = open.clone();
                record.completion = Some(Completion {
                    done: Some(done.clone()),
                    ..c
                });
                let value = serde_json::to_vec(&record).map_err(StoreError::internal)?;
                let kv = self.store.uploads().await?;
                match update(&kv, &format!("{}.{id}", self.nats), value.into(), revision).await {
                    Ok(_) => {
                        self.retire_parts(id, key, Some(&meta)).await?;
                        return Ok(UploadState::Done(done));
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(kv_err(e)),
                }
            }
            return Ok(UploadState::Open {
                info: Box::new(open),
                revision,
                lapsed: Some(c.nuid),
            });
        }
    }

    /// Claims upload `id` (as found at `revision`) for a Complete of the parts of `digest`;
    /// `None` when the record changed meanwhile (look again).
    pub async fn claim_upload(
        &self,
        id: &str,
        open: UploadInfo,
        revision: u64,
        digest: &str,
        lapsed: Option<String>,
    ) -> StoreResult<Option<Claim>> {
        let kv = self.store.uploads().await?;
        let key = format!("{}.{id}", self.nats);
        let nuid = nuid::next().to_string();
        let mut record = open.clone();
        record.completion = Some(Completion {
            parts: digest.to_string(),
            nuid: nuid.clone(),
            done: None,
        });
        let value: Bytes = serde_json::to_vec(&record)
            .map_err(StoreError::internal)?
            .into();
        let rev = match update(&kv, &key, value.clone(), revision).await {
            Ok(rev) => rev,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return Ok(None),
            Err(e) => return Err(kv_err(e)),
        };
        let revision = Arc::new(Mutex::new(rev));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let every = self.lifecycle().timing.claim_lease() / 4;
        let heartbeat = {
            let (kv, key, value) = (kv.clone(), key.clone(), value.clone());
            let (revision, lost) = (revision.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let last = *revision.lock().unwrap_or_else(|p| p.into_inner());
                    match kv.update(&key, value.clone(), last).await {
                        Ok(rev) => *revision.lock().unwrap_or_else(|p| p.into_inner()) = rev,
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => tracing::warn!(key, error = %e, "claim heartbeat failed"),
                    }
                }
            })
        };
        Ok(Some(Claim {
            kv,
            key,
            open,
            value,
            revision,
            lost,
            stop,
            heartbeat: Some(heartbeat),
            nuid,
            lapsed,
            digest: digest.to_string(),
        }))
    }
}

/// `kv.update`, tried again while nothing answers it (see [`super::until_answered`]).
async fn update(
    kv: &kv::Store,
    key: &str,
    value: Bytes,
    revision: u64,
) -> Result<u64, kv::UpdateError> {
    super::until_answered(None, || kv.update(key, value.clone(), revision)).await
}

/// KV `kv`'s live value of `key` and its revision as the leader of the KV's stream holds it
/// (the JetStream API, not a Direct Get), asked again while no leader answers; `None` when
/// it is absent, deleted or purged.
async fn leader_entry(kv: &kv::Store, key: &str) -> StoreResult<Option<(Bytes, u64)>> {
    let subject = format!("{}{key}", kv.prefix);
    let ask = || from_leader(kv.stream.raw_message_builder().last_by_subject(&subject));
    let m = super::until_answered(None, ask).await.map_err(kv_err)?;
    Ok(m.filter(kv_live).map(|m| (m.payload, m.sequence)))
}
