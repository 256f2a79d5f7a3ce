//! Spliced multipart versions, and their compaction into the native layout.
//!
//! A CompleteMultipartUpload that needs nothing computed over the object's bytes commits a
//! **spliced** version: its metadata lists the parts' chunk subjects in order
//! (`jets3.segments`) and nothing is copied, so Complete takes the same time for any size.
//! The gateway reads it part after part at once. Native NATS clients see a link to a
//! whole bucket, which they refuse to read.
//!
//! The collector's leader then **compacts** it: it copies the segments into one new chunk
//! subject (the object store's own layout, with its SHA-256 digest) and swaps the metadata
//! in place by compare-and-set on the key, same version id, ETag and time. The segments are
//! then retired with the spliced version as their owner, so a read that began on it keeps
//! them. A compare-and-set that fails (the key changed meanwhile) purges the copy; one
//! whose outcome is unknown leaves it to the orphan scan. A spliced version that stops
//! being current is not compacted: only S3 reads noncurrent versions.

use futures::StreamExt;

use super::meta::{chunk_subject, digest_string, meta_subject, ObjectMeta, Record, Segment};
use super::writer::ChunkWriter;
use super::{Bucket, NatsError, StoreError, StoreResult};

/// Chunks per Direct Get batch, and chunks read ahead, when copying chunks.
const COPY_BATCH: usize = 32;
const COPY_AHEAD: usize = 64;

/// What a compaction did.
pub enum Compacted {
    /// The version is in the native layout now (bytes copied).
    Done(u64),
    /// Nothing to do: the version is not current, or not spliced, any more.
    Gone,
    /// The key changed meanwhile, or NATS did not answer: look again later.
    Later,
}

impl Bucket {
    /// Copies `sources`, in order, into `writer`; `observe` sees every byte. The bytes
    /// copied.
    pub(super) async fn copy_into(
        &self,
        writer: &mut ChunkWriter,
        sources: Vec<ObjectMeta>,
        observe: &mut (dyn FnMut(&[u8]) + Send),
    ) -> StoreResult<u64> {
        let expected: u64 = sources.iter().map(|s| s.size).sum();
        // Read ahead in a task while this one writes: the copy runs at the speed of the
        // slower side instead of the sum of both.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<StoreResult<bytes::Bytes>>(COPY_AHEAD);
        let reader = self.clone();
        tokio::spawn(async move {
            for source in sources {
                let mut stream = Box::pin(reader.read_batched(&source, 0, source.size, COPY_BATCH));
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
        if copied != expected {
            return Err(StoreError::internal("a copy of chunks ended early"));
        }
        Ok(copied)
    }

    /// Compacts key `key`'s current version if it is still the spliced version `nuid`.
    pub(super) async fn compact(&self, key: &str, nuid: &str) -> StoreResult<Compacted> {
        // "Gone" forgets the job: decided on what the stream leader holds.
        let found = match self.settled_lookup(key).await {
            Ok(found) => found,
            // The bucket is gone, and the version with it.
            Err(e) if e.not_found() => return Ok(Compacted::Gone),
            Err(e) => return Err(e),
        };
        let spliced = match &found.current {
            Record::Object(m) if m.nuid == nuid && !m.segments.is_empty() => m,
            _ => return Ok(Compacted::Gone),
        };
        let started = std::time::Instant::now();
        let new = nuid::next().to_string();
        let (guard, mut writer) = self.new_version(chunk_subject(&self.nats, &new));
        writer.skip_md5();
        let sources = spliced.segments.iter().map(Segment::as_object).collect();
        let copied = self.copy_into(&mut writer, sources, &mut |_| {}).await?;
        let written = writer.finish().await.map_err(|e| self.err(e))?;
        let mut native = spliced.as_ref().clone();
        native.nuid = new;
        native.chunks = written.chunks;
        native.seq = written.seq;
        native.digest = Some(digest_string(&written.sha256));
        native.segments = Vec::new();
        native.spliced = Some(nuid.to_string());
        let payload =
            serde_json::to_vec(&native.to_info(&self.nats)).map_err(StoreError::internal)?;
        let until = written.last_write + self.lifecycle().timing.write_pause();
        let published = self
            .publish_raw(
                &meta_subject(&self.nats, key),
                payload.into(),
                Some(found.last_seq),
                Some(until),
            )
            .await;
        match published {
            Ok(_) => {
                guard.disarm();
                self.retire_version(&found.current, key, "compacted").await;
                let millis = started.elapsed().as_millis() as u64;
                tracing::info!(bucket = %self.nats, key, bytes = copied, millis, "compacted a spliced version");
                Ok(Compacted::Done(copied))
            }
            // Refused: the copy is nobody's (the guard purges it).
            Err(
                NatsError::WrongLastSequence
                | NatsError::Closing
                | NatsError::NoStream
                | NatsError::StorageFull(..),
            ) => Ok(Compacted::Later),
            Err(e) => {
                // It may have landed: the next look finds out, the orphan scan takes the
                // copy if it did not.
                guard.disarm();
                tracing::debug!(bucket = %self.nats, key, error = ?e, "compaction not confirmed");
                Ok(Compacted::Later)
            }
        }
    }
}
