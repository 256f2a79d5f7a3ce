//! Multipart upload state in a JetStream KV bucket, and part data as chunk subjects in
//! the object bucket's own stream.
//!
//! Keys: `<bucket>.<uploadId>` holds the upload, `<bucket>.<uploadId>.<n>` part `n`.
//! Completing copies the parts' chunks, in order, into one normal object version, so
//! the result stays readable by native NATS clients.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use jets3_nats::names;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use time::OffsetDateTime;

use super::completion::{Claim, Completed, Completion};
use super::meta::{chunk_subject, ObjectMeta};
use super::objects::new_version_meta;
use super::objects::Committed;
use super::{Bucket, Expect, Finished, NatsError, Store, Written};
use super::{StoreError, StoreResult};

/// Chunks per Direct Get batch, and chunks read ahead, when assembling an upload.
const COPY_BATCH: usize = 32;
const COPY_AHEAD: usize = 64;

/// The KV bucket holding upload state.
pub const UPLOADS_KV: &str = "jets3_uploads";

/// An upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadInfo {
    pub key: String,
    /// Unix time in nanoseconds.
    pub initiated: i128,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub checksum_algorithm: Option<String>,
    /// The ACL the completed object gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<crate::access::acl::Acl>,
    /// `COMPOSITE` or `FULL_OBJECT`, with an algorithm (none: uploads of older gateways,
    /// which made full-object checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// Set by a Complete: its claim, then its result (the upload is then no longer in
    /// progress; see [`super::completion`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<Completion>,
}

impl UploadInfo {
    /// When the upload was created.
    pub fn initiated_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.initiated)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// A stored part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartInfo {
    pub nuid: String,
    pub size: u64,
    /// Hex MD5 of the part (its ETag).
    pub etag: String,
    pub modified: i128,
    #[serde(default)]
    pub seq: Option<(u64, u64)>,
    #[serde(default)]
    pub checksums: Vec<(String, String)>,
}

impl PartInfo {
    /// When the part was uploaded.
    pub fn modified_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.modified)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// A metadata view of the part, to read it like an object.
    fn as_object(&self) -> ObjectMeta {
        ObjectMeta {
            key: String::new(),
            size: self.size,
            etag: self.etag.clone(),
            modified: self.modified_at(),
            nuid: self.nuid.clone(),
            chunks: 0,
            digest: None,
            headers: Vec::new(),
            tags: Vec::new(),
            checksums: Vec::new(),
            checksum_type: None,
            parts: Vec::new(),
            part_checksums: Vec::new(),
            seq: self.seq,
            meta_seq: 0,
            is_link: false,
            version: None,
            stamp: 0,
            acl: None,
        }
    }
}

pub(super) fn kv_err(e: impl std::fmt::Display) -> StoreError {
    NatsError::Other(e.to_string()).on("")
}

impl Store {
    /// The upload-state KV bucket, created on first use.
    pub(super) async fn uploads(&self) -> StoreResult<kv::Store> {
        self.check_connected().await?;
        if let Some(s) = self.inner.uploads.get() {
            return Ok(s.clone());
        }
        let js = &self.inner.js;
        let store = match js.get_key_value(UPLOADS_KV).await {
            Ok(s) => s,
            Err(_) => {
                let created = js
                    .create_key_value(kv::Config {
                        bucket: UPLOADS_KV.into(),
                        description: "jets3 multipart uploads in progress".into(),
                        history: 1,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(s) => s,
                    // Another gateway created it first.
                    Err(_) => js.get_key_value(UPLOADS_KV).await.map_err(kv_err)?,
                }
            }
        };
        let _ = self.inner.uploads.set(store.clone());
        Ok(store)
    }

    /// Latest values of KV keys matching `filter` (below the bucket's prefix), skipping deletes.
    pub(super) async fn kv_scan(&self, filter: &str) -> StoreResult<Vec<(String, Bytes)>> {
        self.uploads().await?;
        let stream = names::kv_stream(UPLOADS_KV);
        let subject = names::kv_subject(UPLOADS_KV, filter);
        let msgs =
            super::scan::last_messages(&self.inner.js, &self.inner.client, &stream, &subject)
                .await
                .map_err(|e| e.on(""))?;
        let mut out = Vec::new();
        for msg in msgs {
            if matches!(msg.header("KV-Operation"), Some("DEL") | Some("PURGE")) {
                continue;
            }
            let key = msg
                .subject
                .strip_prefix(&names::kv_prefix(UPLOADS_KV))
                .unwrap_or(&msg.subject)
                .to_string();
            out.push((key, msg.payload));
        }
        Ok(out)
    }
}

impl Bucket {
    /// Starts an upload; returns its id.
    pub async fn create_upload(&self, info: &UploadInfo) -> StoreResult<String> {
        let kv = self.store.uploads().await?;
        let id = nuid::next().to_string();
        let value = serde_json::to_vec(info).map_err(StoreError::internal)?;
        kv.create(format!("{}.{id}", self.nats), value.into())
            .await
            .map_err(kv_err)?;
        Ok(id)
    }

    /// An upload of this bucket in progress, or NoSuchUpload (also once a Complete has it).
    pub async fn upload(&self, id: &str) -> StoreResult<UploadInfo> {
        match self.upload_entry(id).await? {
            (info, _) if info.completion.is_none() => Ok(info),
            _ => Err(StoreError::NoSuchUpload(id.to_string())),
        }
    }

    /// Uploads in progress in this bucket, by id.
    pub async fn uploads(&self) -> StoreResult<Vec<(String, UploadInfo)>> {
        Ok(self
            .store
            .kv_scan(&format!("{}.*", self.nats))
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let id = k.rsplit('.').next()?.to_string();
                let info: UploadInfo = serde_json::from_slice(&v).ok()?;
                info.completion.is_none().then_some((id, info))
            })
            .collect())
    }

    /// The stored parts of an upload, by number.
    pub async fn parts(&self, id: &str) -> StoreResult<BTreeMap<u32, PartInfo>> {
        Ok(self
            .store
            .kv_scan(&format!("{}.{id}.*", self.nats))
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let n = k.rsplit('.').next()?.parse().ok()?;
                Some((n, serde_json::from_slice(&v).ok()?))
            })
            .collect())
    }

    /// Stores part `n` from a body; a part uploaded again replaces the earlier one.
    pub async fn put_part<S, E>(
        &self,
        id: &str,
        n: u32,
        body: S,
        max: u64,
        finish: impl FnOnce(&Written) -> StoreResult<Vec<(String, String)>>,
    ) -> StoreResult<PartInfo>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<StoreError>,
    {
        self.upload(id).await?;
        let (nuid, written, guard) = self.write_chunks(body, max).await?;
        let checksums = finish(&written)?;
        let part = PartInfo {
            nuid,
            size: written.size,
            etag: hex::encode(written.md5),
            modified: OffsetDateTime::now_utc().unix_timestamp_nanos(),
            seq: written.seq,
            checksums,
        };
        // Past this the collector may take the part's chunks for an orphan's.
        let until = written.last_write + self.lifecycle().timing.write_pause();
        if Instant::now() > until {
            return Err(StoreError::TooSlow("The upload took too long to complete."));
        }
        let kv = self.store.uploads().await?;
        let key = format!("{}.{id}.{n}", self.nats);
        let previous = kv.get(key.clone()).await.map_err(kv_err)?;
        let value = serde_json::to_vec(&part).map_err(StoreError::internal)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.err(NatsError::TimedOut));
        }
        // The part record is the commit point: from here on only the collector removes
        // the chunks.
        guard.disarm();
        match tokio::time::timeout(left, kv.put(key.clone(), value.into())).await {
            Ok(put) => put.map_err(kv_err)?,
            // It may still land: its chunks are then the part's, else an orphan's.
            Err(_) => return Err(self.err(NatsError::TimedOut)),
        };
        // The upload may have been aborted or completed meanwhile: then drop this part.
        if self.upload(id).await.is_err() {
            let _ = super::forget_key(&self.store.inner.js, UPLOADS_KV, &key).await;
            self.retire_part(&part).await;
            return Err(StoreError::NoSuchUpload(id.to_string()));
        }
        if let Some(prev) = previous.and_then(|v| serde_json::from_slice::<PartInfo>(&v).ok()) {
            if prev.nuid != part.nuid {
                self.retire_part(&prev).await;
            }
        }
        Ok(part)
    }

    /// Retires a part's chunks (a Complete may still be reading them).
    async fn retire_part(&self, part: &PartInfo) {
        self.retire(&part.nuid, part.size, "", "part").await;
    }

    /// Reads bytes `[start, end)` of a stored part.
    pub fn read_part(
        &self,
        part: &PartInfo,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = StoreResult<Bytes>> + Send + 'static {
        self.read(&part.as_object(), start, end)
    }

    /// Assembles the chosen parts, in order, into the object `obj` under `claim`: the
    /// parts' chunks are streamed into one new version (never held whole), committed, and
    /// the result recorded; then the parts are retired. `finish` also gives each part's
    /// checksum (composite checksums).
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_upload(
        &self,
        id: &str,
        mut claim: Claim,
        obj: super::NewObject,
        parts: &[PartInfo],
        expect: Expect,
        finish: impl FnOnce(&Written) -> StoreResult<(Finished, Vec<String>)>,
        observe: &mut (dyn FnMut(&[u8]) + Send),
    ) -> StoreResult<ObjectMeta> {
        let _done = self.writing(&obj.key);
        let assembled = self.assemble(&claim.nuid, parts, observe).await;
        let (guard, written) = match assembled {
            Ok(a) => a,
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        let (finished, part_checksums) = match finish(&written) {
            Ok(f) => f,
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        let key = obj.key.clone();
        let mut meta = new_version_meta(obj, claim.nuid.clone(), &written, finished);
        meta.part_checksums = part_checksums;
        if let Some(old) = claim.lapsed.clone() {
            // The dead Complete this one took over may have committed after all.
            if let Some(theirs) = self.version_with_chunks(&key, &old).await? {
                drop(guard);
                claim.finish(Completed::of(&theirs)).await?;
                self.retire_parts(id).await?;
                return Ok(theirs);
            }
        }
        let found = self.lookup(&key).await?;
        claim.confirm(id).await?;
        match self
            .commit_version(&key, meta, &expect, found, guard, &written)
            .await
        {
            Ok(stored) => {
                if let Err(e) = claim.finish(Completed::of(&stored)).await {
                    // A retry finds the version by its nuid once the claim lapses.
                    tracing::warn!(upload_id = id, error = %e, "completion not recorded");
                }
                self.retire_parts(id).await?;
                Ok(stored)
            }
            Err(Committed::No(e)) => {
                claim.release().await;
                Err(e)
            }
            // Maybe published: the claim stays, a retry resolves it once it lapses.
            Err(Committed::Unknown(e)) => Err(e),
        }
    }

    /// Copies the parts' chunks, in order, into the new version `nuid`.
    async fn assemble(
        &self,
        nuid: &str,
        parts: &[PartInfo],
        observe: &mut (dyn FnMut(&[u8]) + Send),
    ) -> StoreResult<(super::objects::PurgeGuard, Written)> {
        let subject = chunk_subject(&self.nats, nuid);
        let (guard, mut writer) = self.new_version(subject);
        writer.skip_md5();
        // Read ahead in a task while this one writes: the copy runs at the speed of the
        // slower side instead of the sum of both.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<StoreResult<Bytes>>(COPY_AHEAD);
        let reader = self.clone();
        let sources: Vec<PartInfo> = parts.to_vec();
        tokio::spawn(async move {
            for part in sources {
                let mut stream =
                    Box::pin(reader.read_batched(&part.as_object(), 0, part.size, COPY_BATCH));
                while let Some(piece) = stream.next().await {
                    let failed = piece.is_err();
                    if tx.send(piece).await.is_err() || failed {
                        return;
                    }
                }
            }
        });
        let mut copied = 0u64;
        while let Some(piece) = rx.recv().await {
            let piece = piece?;
            copied += piece.len() as u64;
            observe(&piece);
            writer.write(piece).await.map_err(|e| self.err(e))?;
        }
        if copied != parts.iter().map(|p| p.size).sum::<u64>() {
            return Err(StoreError::internal("multipart assembly ended early"));
        }
        let written = writer.finish().await.map_err(|e| self.err(e))?;
        Ok((guard, written))
    }

    /// AbortMultipartUpload: removes an upload in progress and every stored part (their
    /// chunks are retired). One a Complete holds is NoSuchUpload.
    pub async fn abort_upload(&self, id: &str) -> StoreResult<()> {
        let kv = self.store.uploads().await?;
        let key = format!("{}.{id}", self.nats);
        loop {
            let (info, revision) = self.upload_entry(id).await?;
            if info.completion.is_some() {
                return Err(StoreError::NoSuchUpload(id.to_string()));
            }
            match kv.purge_expect_revision(key.clone(), Some(revision)).await {
                Ok(()) => break,
                // Changed meanwhile (a claim, a part): look again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(kv_err(e)),
            }
        }
        // The compare-and-set purge leaves a marker; drop it so aborted uploads leave nothing.
        let _ = super::forget_key(&self.store.inner.js, UPLOADS_KV, &key).await;
        self.retire_parts(id).await
    }

    /// Removes an upload's record whatever it holds, and its parts (expiry, the window of a
    /// completed upload).
    pub(super) async fn forget_upload(&self, id: &str) -> StoreResult<()> {
        self.store.uploads().await?;
        super::forget_key(
            &self.store.inner.js,
            UPLOADS_KV,
            &format!("{}.{id}", self.nats),
        )
        .await
        .map_err(|e| e.on(&self.nats))?;
        self.retire_parts(id).await
    }

    /// Removes the part records of an upload and retires their chunks.
    pub(super) async fn retire_parts(&self, id: &str) -> StoreResult<()> {
        for (n, part) in self.parts(id).await? {
            let _ = super::forget_key(
                &self.store.inner.js,
                UPLOADS_KV,
                &format!("{}.{id}.{n}", self.nats),
            )
            .await;
            self.retire_part(&part).await;
        }
        Ok(())
    }
}
