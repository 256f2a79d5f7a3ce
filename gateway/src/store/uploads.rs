//! Multipart upload state in a JetStream KV bucket, and part data as chunk subjects in
//! the object bucket's own stream.
//!
//! Keys: `<bucket>.<uploadId>` holds the upload, `<bucket>.<uploadId>.<n>` part `n`.
//! Completing splices the parts into a version that names their chunks (see
//! `compaction`: the collector later copies it into the native layout), or, when a
//! checksum must be computed over the bytes (its parts' values do not combine), copies
//! them into one new version at once.
//! A part's chunks are referenced by its record until a committed version names them;
//! a part retired with its upload names the upload's key, so the collector keeps it if a
//! version of the key uses it.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::Stream;
use jets3_nats::names;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use time::OffsetDateTime;

use super::collector::COMPACT;
use super::completion::{Claim, Completed, Completion};
use super::lifecycle::Retired;
use super::meta::{chunk_subject, ObjectMeta, Segment};
use super::objects::new_version_meta;
use super::objects::Committed;
use super::scan::Reach;
use super::{Bucket, Expect, Finished, NatsError, Store, Written};
use super::{StoreError, StoreResult};

/// Bytes a segment takes in a spliced version's metadata besides its nuid and checksum
/// (its sequences and its size in `jets3.parts`), and the most a part list may take: more
/// parts are copied instead (NATS's default message limit is 1 MiB).
const SEGMENT_BYTES: usize = 48;
const MAX_SEGMENTS_BYTES: usize = 512 * 1024;

/// Whether a spliced version can name `parts` in a metadata message NATS takes (at most
/// `max_payload` bytes, 0 when unknown): half of it at most, the rest is for the other
/// metadata.
fn names_fit(parts: &[PartInfo], max_payload: usize) -> bool {
    let max = match max_payload {
        0 => MAX_SEGMENTS_BYTES,
        n => (n / 2).min(MAX_SEGMENTS_BYTES),
    };
    let named: usize = parts
        .iter()
        .map(|p| {
            let sums: usize = p.checksums.iter().map(|(_, v)| v.len() + 1).sum();
            p.nuid.len() + SEGMENT_BYTES + sums
        })
        .sum();
    named <= max
}

/// The metadata of a version spliced from `parts` (its version id and stamp are set when
/// it is committed).
fn spliced_meta(
    obj: super::NewObject,
    nuid: String,
    parts: &[PartInfo],
    finished: Finished,
) -> ObjectMeta {
    let layout = Written {
        size: parts.iter().map(|p| p.size).sum(),
        chunks: 0,
        seq: None,
        md5: [0; 16],
        sha256: [0; 32],
        last_write: Instant::now(),
        held: None,
    };
    let mut meta = new_version_meta(obj, nuid, &layout, finished);
    meta.digest = None;
    meta.segments = parts.iter().map(PartInfo::segment).collect();
    meta
}

/// What sees each byte of an upload copied at Complete.
pub type Observer<'a> = dyn FnMut(&[u8]) + Send + 'a;

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
    /// The key of the part's upload: a part record that outlives its upload's (which
    /// should not happen) still says which key's versions may use its chunks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

impl PartInfo {
    /// When the part was uploaded.
    pub fn modified_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.modified)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Where the part's bytes are, as a segment of a spliced version.
    pub fn segment(&self) -> Segment {
        Segment {
            nuid: self.nuid.clone(),
            size: self.size,
            seq: self.seq,
        }
    }

    /// A metadata view of the part, to read it like an object.
    fn as_object(&self) -> ObjectMeta {
        self.segment().as_object()
    }
}

/// A failed request to the uploads' KV as a store error: "no responders" and timeouts read
/// as everywhere else (see [`NatsError::within`]).
pub(super) fn kv_err(e: impl std::error::Error + 'static) -> StoreError {
    NatsError::within(&e).on("")
}

impl Store {
    /// The upload-state KV bucket, created on first use.
    pub(super) async fn uploads(&self) -> StoreResult<kv::Store> {
        self.check_connected().await?;
        if let Some(s) = self.inner.uploads.get() {
            return Ok(s.clone());
        }
        let config = kv::Config {
            bucket: UPLOADS_KV.into(),
            description: "jets3 multipart uploads in progress".into(),
            history: 1,
            ..Default::default()
        };
        let store = self
            .inner
            .internal_replicas
            .open(&self.inner.js, config)
            .await
            .map_err(|e| e.on(""))?;
        let _ = self.inner.uploads.set(store.clone());
        Ok(store)
    }

    /// [`super::until_answered`] for a request that starts a multipart operation: the first
    /// time nothing answers, jets3's KV buckets found deleted are made again (empty: the
    /// uploads the deleted one held went with it) before the request is tried again.
    pub(super) async fn on_uploads<T, E, F, Fut>(&self, mut request: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: super::Unanswered,
    {
        let checked = std::sync::atomic::AtomicBool::new(false);
        super::until_answered(None, || {
            let attempt = request();
            let checked = &checked;
            async move {
                let result = attempt.await;
                let unanswered = matches!(&result, Err(e) if e.unanswered());
                if unanswered && !checked.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    self.restore_internal_kvs().await;
                }
                result
            }
        })
        .await
    }

    /// Latest values of KV keys matching `filter` (below the bucket's prefix), skipping
    /// deletes, at least as far as the KV stream's leader holds them: a replica behind would
    /// miss an upload or a part recorded a moment ago (a Complete would then refuse a part
    /// its client uploaded through another gateway).
    pub(super) async fn kv_scan(&self, filter: &str) -> StoreResult<Vec<(String, Bytes)>> {
        self.uploads().await?;
        let stream = names::kv_stream(UPLOADS_KV);
        let subject = names::kv_subject(UPLOADS_KV, filter);
        let (js, client) = (&self.inner.js, &self.inner.client);
        let scan = || super::scan::last_messages(js, client, &stream, &subject, Reach::Leader);
        let msgs = match self.on_uploads(scan).await {
            // The KV's stream was deleted: the JetStream API says so, no Direct Get is asked.
            Err(NatsError::NoStream) => {
                self.restore_internal_kvs().await;
                self.on_uploads(scan).await
            }
            scanned => scanned,
        }
        .map_err(|e| match e {
            // Not made again (yet): the bucket is there, jets3's own KV is not.
            NatsError::NoStream => NatsError::NoResponders.on(""),
            e => e.on(""),
        })?;
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
        let value = Bytes::from(serde_json::to_vec(info).map_err(StoreError::internal)?);
        let key = format!("{}.{id}", self.nats);
        let create = || async {
            match kv.create(&key, value.clone()).await {
                Ok(_) => Ok(()),
                // The id is new: a record under it is this one (a write that timed out
                // and landed after all, found by the lookup with which `create` ends).
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        };
        self.store.on_uploads(create).await.map_err(kv_err)?;
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
        let upload = self.upload(id).await?;
        let (nuid, written, guard) = self.write_chunks(body, max, false).await?;
        let checksums = finish(&written)?;
        let part = PartInfo {
            nuid,
            size: written.size,
            etag: hex::encode(written.md5),
            modified: OffsetDateTime::now_utc().unix_timestamp_nanos(),
            seq: written.seq,
            checksums,
            key: upload.key.clone(),
        };
        // Past this the collector may take the part's chunks for an orphan's.
        let until = written.last_write + self.lifecycle().timing.write_pause();
        if Instant::now() > until {
            return Err(StoreError::TooSlow("The upload took too long to complete."));
        }
        let kv = self.store.uploads().await?;
        let key = format!("{}.{id}.{n}", self.nats);
        let previous = super::until_answered(Some(until), || kv.get(key.clone()))
            .await
            .map_err(kv_err)?;
        let value = serde_json::to_vec(&part).map_err(StoreError::internal)?;
        if Instant::now() >= until {
            return Err(self.err(NatsError::TimedOut));
        }
        // The part record is the commit point: from here on only the collector removes
        // the chunks.
        guard.disarm();
        // A put that timed out may still land: its chunks are then the part's, else an
        // orphan's. It is not put again (by then another UploadPart of this number may
        // have replaced it and retired its chunks), nor acknowledged past `until`.
        let value = Bytes::from(value);
        let put = super::until_answered(Some(until), || kv.put(&key, value.clone()));
        match tokio::time::timeout_at(until.into(), put).await {
            Ok(put) => put.map_err(|e| self.err(NatsError::within(&e)))?,
            Err(_) => return Err(self.err(NatsError::TimedOut)),
        };
        // The upload may have been aborted or completed meanwhile: then drop this part.
        if self.upload(id).await.is_err() {
            let _ = super::forget_key(&self.store.inner.js, UPLOADS_KV, &key).await;
            self.retire_part(&part, &upload.key).await;
            return Err(StoreError::NoSuchUpload(id.to_string()));
        }
        if let Some(prev) = previous.and_then(|v| serde_json::from_slice::<PartInfo>(&v).ok()) {
            if prev.nuid != part.nuid {
                self.retire_part(&prev, &upload.key).await;
            }
        }
        Ok(part)
    }

    /// Retires a part's chunks (a Complete may still be reading them) of an upload of key
    /// `key`.
    async fn retire_part(&self, part: &PartInfo, key: &str) {
        self.retire(&part.nuid, part.size, key, "part").await;
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

    /// Completes upload `id` into the object `obj` from the chosen parts, under `claim`.
    /// Without `observe` (nothing to compute over the bytes) the parts are **spliced**: the
    /// new version names their chunks, nothing is copied, and the collector compacts it
    /// later (see `compaction`). With it (or a part list too long to name in one metadata
    /// message) their chunks are streamed into one new version, each byte seen by
    /// `observe`. Then the version is committed, the result recorded and the parts it
    /// does not use retired. `finish` gives the checksums and each part's checksum.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_upload(
        &self,
        id: &str,
        mut claim: Claim,
        obj: super::NewObject,
        parts: &[PartInfo],
        expect: Expect,
        finish: impl FnOnce() -> StoreResult<(Finished, Vec<String>)>,
        observe: Option<&mut Observer<'_>>,
    ) -> StoreResult<ObjectMeta> {
        let _done = self.writing(&obj.key);
        let splice = match observe {
            None => self.can_splice(id, &obj.key, parts).await,
            Some(_) => Ok(false),
        };
        let assembled = match (splice, observe) {
            (Ok(true), _) => Ok(None),
            (Ok(false), observe) => {
                let mut nothing = |_: &[u8]| {};
                self.assemble(&claim.nuid, parts, observe.unwrap_or(&mut nothing))
                    .await
                    .map(Some)
            }
            (Err(e), _) => Err(e),
        };
        let assembled = match assembled {
            Ok(a) => a,
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        let (finished, part_checksums) = match finish() {
            Ok(f) => f,
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        let key = obj.key.clone();
        let mut meta = match &assembled {
            Some((_, written)) => new_version_meta(obj, claim.nuid.clone(), written, finished),
            None => spliced_meta(obj, claim.nuid.clone(), parts, finished),
        };
        meta.part_checksums = part_checksums;
        if let Some(old) = claim.lapsed.clone() {
            // The dead Complete this one took over may have committed after all.
            if let Some(theirs) = self.version_with_chunks(&key, &old).await? {
                drop(assembled);
                claim.finish(Completed::of(&theirs)).await?;
                self.retire_parts(id, &key, Some(&theirs)).await?;
                return Ok(theirs);
            }
        }
        let found = self.lookup(&key).await?;
        claim.confirm(id).await?;
        let committed = match assembled {
            Some((guard, written)) => {
                self.commit_version(&key, meta, &expect, found, guard, &written)
                    .await
            }
            // The parts' records keep their chunks until the commit names them.
            None => self.commit_new(&key, meta, &expect, found).await,
        };
        match committed {
            Ok(stored) => {
                if let Err(e) = claim.finish(Completed::of(&stored)).await {
                    // A retry finds the version by its nuid once the claim lapses.
                    tracing::warn!(upload_id = id, error = %e, "completion not recorded");
                }
                if !stored.segments.is_empty() {
                    self.mark_for_compaction(&stored).await;
                }
                if let Err(e) = self.retire_parts(id, &key, Some(&stored)).await {
                    // Removed with the upload's record at the end of its window.
                    tracing::warn!(upload_id = id, error = %e, "part records not removed");
                }
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

    /// Whether a Complete (holding its claim) may splice `parts`: each is still its part
    /// number's record (a part uploaded again before the claim would otherwise lose its
    /// chunks to the retirement of the old one), and the part list fits one metadata
    /// message.
    async fn can_splice(&self, id: &str, key: &str, parts: &[PartInfo]) -> StoreResult<bool> {
        if !names_fit(parts, self.store.inner.client.server_info().max_payload) {
            return Ok(false);
        }
        let stored: HashSet<String> = self
            .parts(id)
            .await?
            .into_values()
            .map(|p| p.nuid)
            .collect();
        let unchanged = parts.iter().all(|p| stored.contains(&p.nuid));
        if !unchanged {
            tracing::debug!(
                upload_id = id,
                key,
                "parts replaced during Complete: copied"
            );
        }
        Ok(unchanged)
    }

    /// Records that spliced version `meta` is to be compacted (the collector's scan finds
    /// it too if this record is lost).
    async fn mark_for_compaction(&self, meta: &ObjectMeta) {
        let record = Retired {
            key: meta.key.clone(),
            size: meta.size,
            why: COMPACT.into(),
            owner: None,
        };
        if let Err(e) = self
            .lifecycle()
            .retire(&self.nats, &meta.nuid, record)
            .await
        {
            tracing::debug!(bucket = %self.nats, key = %meta.key, error = ?e, "compaction not recorded: the scan finds it");
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
        let sources = parts.iter().map(PartInfo::as_object).collect();
        self.copy_into(&mut writer, sources, observe).await?;
        let written = writer.finish().await.map_err(|e| self.err(e))?;
        Ok((guard, written))
    }

    /// AbortMultipartUpload: removes an upload in progress and every stored part (their
    /// chunks are retired). One a Complete holds is NoSuchUpload.
    pub async fn abort_upload(&self, id: &str) -> StoreResult<()> {
        let kv = self.store.uploads().await?;
        let key = format!("{}.{id}", self.nats);
        let upload_key = loop {
            let (info, revision) = self.upload_entry(id).await?;
            if info.completion.is_some() {
                return Err(StoreError::NoSuchUpload(id.to_string()));
            }
            let purge = || kv.purge_expect_revision(key.clone(), Some(revision));
            match super::until_answered(None, purge).await {
                Ok(()) => break info.key,
                // Changed meanwhile (a claim, a part): look again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(kv_err(e)),
            }
        };
        // The compare-and-set purge leaves a marker; drop it so aborted uploads leave nothing.
        let _ = super::forget_key(&self.store.inner.js, UPLOADS_KV, &key).await;
        self.retire_parts(id, &upload_key, None).await
    }

    /// Removes an upload's record whatever it holds, and its parts (expiry, the window of a
    /// completed upload). The parts go first: a part record never outlives its upload's,
    /// which names the key a spliced version of them would be under.
    pub(super) async fn forget_upload(&self, id: &str) -> StoreResult<()> {
        let key = match self.upload_entry(id).await {
            Ok((info, _)) => info.key,
            Err(StoreError::NoSuchUpload(_)) => String::new(),
            Err(e) => return Err(e),
        };
        self.retire_parts(id, &key, None).await?;
        super::forget_key(
            &self.store.inner.js,
            UPLOADS_KV,
            &format!("{}.{id}", self.nats),
        )
        .await
        .map_err(|e| e.on(&self.nats))
    }

    /// Removes the part records of upload `id` (of key `key`) and retires the chunks that
    /// version `kept` does not use. A retired part names the key, so the collector keeps
    /// it if a version of the key uses it after all.
    pub(super) async fn retire_parts(
        &self,
        id: &str,
        key: &str,
        kept: Option<&ObjectMeta>,
    ) -> StoreResult<()> {
        for (n, part) in self.parts(id).await? {
            super::forget_key(
                &self.store.inner.js,
                UPLOADS_KV,
                &format!("{}.{id}.{n}", self.nats),
            )
            .await
            .map_err(|e| e.on(&self.nats))?;
            if !kept.is_some_and(|m| m.uses(&part.nuid)) {
                self.retire_part(&part, key).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: usize, sum: &str) -> Vec<PartInfo> {
        (0..n)
            .map(|i| PartInfo {
                nuid: format!("{i:0>22}"),
                size: 5 << 20,
                etag: String::new(),
                modified: 0,
                seq: Some((1_000_000_000, 1_000_000_040)),
                checksums: vec![("SHA256".into(), sum.into())],
                key: "k".into(),
            })
            .collect()
    }

    /// Every part list a splice takes encodes into metadata NATS accepts.
    #[test]
    fn a_spliced_version_names_only_what_one_message_holds() {
        let sha = "x".repeat(44);
        for (payload, n, fits) in [
            (1 << 20, 100, true),
            (1 << 20, 4_000, true),
            (1 << 20, 8_000, false),
            (0, 4_000, true),
            (256 << 10, 1_000, true),
            (256 << 10, 3_000, false),
        ] {
            let list = parts(n, &sha);
            assert_eq!(names_fit(&list, payload), fits, "{n} parts, max {payload}");
            if fits {
                let meta = spliced_meta(
                    crate::store::NewObject {
                        key: "k".repeat(1024),
                        headers: Vec::new(),
                        tags: Vec::new(),
                        parts: list.iter().map(|p| p.size).collect(),
                        acl: None,
                    },
                    "N".repeat(22),
                    &list,
                    Finished {
                        checksums: vec![("SHA256".into(), format!("{sha}-{n}"))],
                        checksum_type: Some("COMPOSITE".into()),
                        etag: Some(format!("{}-{n}", "e".repeat(32))),
                    },
                );
                let mut meta = meta;
                meta.part_checksums = vec![sha.clone(); n];
                let bytes = serde_json::to_vec(&meta.to_info("bucket"))
                    .expect("json")
                    .len();
                let max = if payload == 0 { 1 << 20 } else { payload };
                assert!(bytes < max, "{n} parts: {bytes} bytes, max {max}");
            }
        }
    }
}
