//! Writes an object's chunks to its chunk subject with a window of pipelined acks.

use super::{StoreError, StoreResult};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::md5_lanes::Md5;
use super::meta::CHUNK_SIZE;
use super::NatsError;

/// Chunks published but not yet acknowledged, at most.
pub(super) const ACK_WINDOW: usize = 32;

/// Header on every chunk jets3 writes: the byte offset of the chunk in the object.
/// Native readers ignore it; ranged reads use it to find the chunk a range starts in.
pub const OFFSET_HEADER: &str = "Jets3-Off";

/// What was written: size, chunk sequences and the content digests.
#[derive(Debug, Clone)]
pub struct Written {
    pub size: u64,
    pub chunks: u64,
    pub seq: Option<(u64, u64)>,
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
    /// When the last chunk was sent.
    pub last_write: Instant,
    /// The object's one chunk, not published yet: it goes with the metadata as one atomic
    /// batch (see [`ChunkWriter::hold_single_chunk`]).
    pub held: Option<Bytes>,
}

/// Publishes sent but not yet acknowledged, shared with the purge guard so that an
/// abandoned upload waits for them before purging (else a late chunk would survive).
pub type Pending = Arc<Mutex<VecDeque<PublishAckFuture>>>;

/// Cuts a byte stream into chunks and publishes them in order.
pub struct ChunkWriter {
    js: Context,
    subject: String,
    /// Pieces of the next chunk, fewer than `CHUNK_SIZE` bytes in all.
    next: Vec<Bytes>,
    next_len: usize,
    pending: Pending,
    offset: u64,
    chunks: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    md5: Option<Md5>,
    sha256: Sha256,
    last_write: Instant,
    /// The longest pause allowed between two chunks.
    max_pause: Duration,
    /// Keep an object of one chunk instead of publishing it.
    hold_single: bool,
}

impl ChunkWriter {
    /// A writer for the chunk subject `subject` that refuses to go on after a pause longer
    /// than `max_pause` (its chunks might then be taken for an orphan's).
    pub fn new(js: Context, subject: String, pending: Pending, max_pause: Duration) -> Self {
        ChunkWriter {
            js,
            subject,
            next: Vec::new(),
            next_len: 0,
            pending,
            offset: 0,
            chunks: 0,
            first_seq: None,
            last_seq: 0,
            md5: Some(Md5::default()),
            sha256: Sha256::new(),
            last_write: Instant::now(),
            max_pause,
            hold_single: false,
        }
    }

    /// Refuses to go on after too long a pause since the last chunk.
    pub fn check_pause(&self) -> StoreResult<()> {
        if self.last_write.elapsed() > self.max_pause {
            return Err(StoreError::TooSlow("The upload paused for too long."));
        }
        Ok(())
    }

    /// Keeps the chunk of an object that fits in one instead of publishing it: the caller
    /// publishes it with the metadata ([`Written::held`]).
    pub fn hold_single_chunk(&mut self) {
        self.hold_single = true;
    }

    /// Skips the MD5 (when the ETag comes from elsewhere, as for multipart objects).
    pub fn skip_md5(&mut self) {
        self.md5 = None;
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.offset + self.next_len as u64
    }

    /// Appends data, publishing every full chunk.
    pub async fn write(&mut self, mut data: Bytes) -> Result<(), NatsError> {
        self.sha256.update(&data);
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.next_len).min(data.len());
            self.next.push(data.split_to(take));
            self.next_len += take;
            if self.next_len == CHUNK_SIZE {
                let chunk = self.take_chunk();
                self.publish(chunk).await?;
            }
        }
        Ok(())
    }

    /// The next chunk's pieces as one buffer: copied once, or not at all when a single
    /// piece holds the whole chunk.
    fn take_chunk(&mut self) -> Bytes {
        let len = std::mem::take(&mut self.next_len);
        if self.next.len() == 1 {
            return self.next.pop().unwrap_or_default();
        }
        let mut chunk = BytesMut::with_capacity(len);
        for piece in self.next.drain(..) {
            chunk.extend_from_slice(&piece);
        }
        chunk.freeze()
    }

    async fn publish(&mut self, chunk: Bytes) -> Result<(), NatsError> {
        // Whole chunks, not the body's pieces: equal-sized updates keep the MD5 lanes full.
        if let Some(md5) = self.md5.as_mut() {
            md5.update(&chunk).await;
        }
        let len = chunk.len() as u64;
        let msg = PublishMessage::build()
            .payload(chunk)
            .header(OFFSET_HEADER, self.offset.to_string());
        if self.in_flight() >= ACK_WINDOW {
            self.await_oldest().await?;
        }
        let ack = self
            .js
            .send_publish(self.subject.clone(), msg)
            .await
            .map_err(NatsError::publish)?;
        self.lock().push_back(ack);
        self.last_write = Instant::now();
        self.offset += len;
        self.chunks += 1;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<PublishAckFuture>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> usize {
        self.lock().len()
    }

    async fn await_oldest(&mut self) -> Result<(), NatsError> {
        let next = self.lock().pop_front();
        if let Some(fut) = next {
            let ack = fut.await.map_err(NatsError::publish)?;
            if self.first_seq.is_none() {
                self.first_seq = Some(ack.sequence);
            }
            self.last_seq = ack.sequence;
        }
        Ok(())
    }

    /// Publishes the last partial chunk and waits for every ack.
    pub async fn finish(mut self) -> Result<Written, NatsError> {
        let mut held = None;
        if self.next_len > 0 {
            let chunk = self.take_chunk();
            if self.hold_single && self.chunks == 0 {
                held = Some(self.keep(chunk).await);
            } else {
                self.publish(chunk).await?;
            }
        }
        while self.in_flight() > 0 {
            self.await_oldest().await?;
        }
        Ok(Written {
            size: self.offset,
            chunks: self.chunks,
            seq: self.first_seq.map(|f| (f, self.last_seq)),
            md5: match self.md5 {
                Some(m) => m.finalize().await,
                None => [0; 16],
            },
            sha256: self.sha256.finalize().into(),
            last_write: self.last_write,
            held,
        })
    }

    /// Counts `chunk` as written without publishing it.
    async fn keep(&mut self, chunk: Bytes) -> Bytes {
        if let Some(md5) = self.md5.as_mut() {
            md5.update(&chunk).await;
        }
        self.offset += chunk.len() as u64;
        self.chunks += 1;
        self.last_write = Instant::now();
        chunk
    }
}
