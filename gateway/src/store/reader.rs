//! Streams a byte range of an object from its chunks with batched Direct Gets:
//! no consumer, bounded memory, and a direct (or searched) start deep inside large objects.

use async_nats::jetstream::Context;
use async_nats::Client;
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};

use super::direct::{from_leader, next_for_subject, Batch, RawMsg};
use super::meta::{chunk_subject, ObjectMeta, CHUNK_SIZE};
use super::writer::OFFSET_HEADER;
use super::NatsError;

/// Chunks requested per Direct Get batch for client reads (bounds memory per reader).
pub const CLIENT_BATCH: usize = 8;

/// Where a read continues: the next sequence to ask for and the byte offset it holds.
struct Cursor {
    client: Client,
    /// For the stream leader's answer after a Direct Get found nothing.
    js: Context,
    stream: String,
    subject: String,
    next_seq: u64,
    /// Object offset of the next chunk to arrive, when known exactly.
    offset: u64,
    /// First and one-past-last byte wanted.
    start: u64,
    end: u64,
    /// A chunk already fetched while searching, served before asking for more.
    first: Option<RawMsg>,
    batch: Option<Batch>,
    batch_size: usize,
    /// Messages received from the current batch.
    in_batch: usize,
    /// Misses in a row: chunks that must exist and were not found.
    misses: u32,
}

/// How long one chunk request may take before it counts as a miss.
const CHUNK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Misses in a row a read tries again before it fails. A Direct Get of a replicated stream
/// may reach a replica that is still catching up (after a partition or a restart, or on a
/// write acknowledged a moment ago): the stream leader is asked then, and the next request
/// may reach another replica.
const MAX_MISSES: u32 = 6;

fn missing() -> NatsError {
    NatsError::Other("object chunks are missing".into())
}

/// Reads `[start, end)` of the object, `batch` chunks per Direct Get.
pub fn read_range(
    (client, js): (Client, Context),
    stream: String,
    bucket: &str,
    meta: &ObjectMeta,
    (start, end): (u64, u64),
    batch_size: usize,
) -> impl Stream<Item = Result<Bytes, NatsError>> + Send + 'static {
    let subject = chunk_subject(bucket, &meta.nuid);
    let seq = meta.seq;
    let chunks = meta.chunks;
    let init = async move {
        let mut cur = Cursor {
            client,
            js,
            stream,
            subject,
            next_seq: seq.map(|(f, _)| f).unwrap_or(1),
            offset: 0,
            start,
            end,
            first: None,
            batch: None,
            batch_size,
            in_batch: 0,
            misses: 0,
        };
        if start > 0 {
            if let Some((f, l)) = seq {
                cur.seek(f, l, chunks).await?;
            }
        }
        Ok::<_, NatsError>(cur)
    };
    stream::once(init).flat_map(|res| match res {
        Ok(cur) => stream::unfold(Some(cur), |state| async move {
            let mut cur = state?;
            match cur.next_piece().await {
                Ok(Some(b)) => Some((Ok(b), Some(cur))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
        .left_stream(),
        Err(e) => stream::once(async move { Err(e) }).right_stream(),
    })
}

fn chunk_offset(msg: &RawMsg) -> Option<u64> {
    msg.header(OFFSET_HEADER)?.parse().ok()
}

impl Cursor {
    /// Finds the chunk holding `self.start` among the object's `chunks` chunks, whose
    /// sequences run from `first` to `last`. jets3 writes chunks of `CHUNK_SIZE` bytes, so the
    /// chunk's index is known; when the chunks are contiguous in the stream (written while no
    /// other upload ran) the first probe is exact. Otherwise they interleave with other
    /// uploads' chunks, and each probe's offset header narrows the sequence range: steps
    /// alternate between interpolation and bisection, so the search stays logarithmic.
    async fn seek(&mut self, first: u64, last: u64, chunks: u64) -> Result<(), NatsError> {
        let chunk = CHUNK_SIZE as u64;
        let want = self.start / chunk;
        // Sequences lo..=hi hold the chunks with indexes lo_idx..=hi_idx (and others' chunks).
        let (mut lo, mut hi) = (first, last);
        let (mut lo_idx, mut hi_idx) = (0u64, chunks.saturating_sub(1));
        let mut bisect = false;
        loop {
            let guess = if bisect || hi_idx <= lo_idx {
                lo + (hi - lo) / 2
            } else {
                let frac = want.saturating_sub(lo_idx) as u128 * (hi - lo) as u128;
                (lo + (frac / (hi_idx - lo_idx) as u128) as u64).min(hi)
            };
            bisect = !bisect;
            let msg =
                match next_for_subject(&self.client, &self.stream, &self.subject, guess).await? {
                    Some(msg) => Some(msg),
                    None => self.leader_chunk(guess).await?,
                };
            let Some(msg) = msg else {
                return Err(missing());
            };
            let Some(off) = chunk_offset(&msg) else {
                // Not written by jets3: read from the start.
                return Ok(());
            };
            let len = msg.payload.len() as u64;
            if off <= self.start && self.start < off + len {
                self.next_seq = msg.seq + 1;
                self.offset = off + len;
                self.first = Some(msg);
                return Ok(());
            }
            if off > self.start {
                // No chunk of this object sits in guess..msg.seq: everything from guess on is
                // past the start.
                hi = guess.saturating_sub(1);
                hi_idx = (off / chunk).saturating_sub(1);
            } else {
                lo = msg.seq + 1;
                lo_idx = (off + len) / chunk;
            }
            if lo > hi {
                return Err(NatsError::Other("object chunk not found".into()));
            }
        }
    }

    /// The outcome of one chunk request: `None` after a miss that is worth another try (a
    /// replica that is behind, frozen or between leaders), the error after too many.
    async fn answered<T>(
        &mut self,
        asked: Result<Result<Option<T>, NatsError>, tokio::time::error::Elapsed>,
    ) -> Result<Option<Option<T>>, NatsError> {
        match asked {
            Ok(Ok(Some(v))) => Ok(Some(Some(v))),
            Ok(Ok(None)) => Ok(Some(None)),
            Ok(Err(NatsError::NoResponders | NatsError::TimedOut)) | Err(_) => {
                self.missed().await?;
                Ok(None)
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// The first chunk at or after `from` as the stream leader has it (the JetStream API).
    async fn leader_chunk(&self, from: u64) -> Result<Option<RawMsg>, NatsError> {
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(NatsError::other)?;
        let ask = stream
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(self.subject.as_str());
        match tokio::time::timeout(CHUNK_WAIT, from_leader(ask)).await {
            Ok(Ok(m)) => Ok(m.map(|m| RawMsg {
                seq: m.sequence,
                subject: m.subject.to_string(),
                headers: Some(m.headers),
                payload: m.payload,
            })),
            Ok(Err(e)) => Err(NatsError::other(e)),
            Err(_) => Err(NatsError::TimedOut),
        }
    }

    /// After a Direct Get found no chunk where one must be: the stream leader's answer is
    /// served next, else it counts as a miss.
    async fn not_found(&mut self) -> Result<(), NatsError> {
        match self.leader_chunk(self.next_seq).await {
            Ok(Some(msg)) => {
                self.misses = 0;
                self.next_seq = msg.seq + 1;
                self.offset += msg.payload.len() as u64;
                self.first = Some(msg);
                Ok(())
            }
            Ok(None) | Err(_) => self.missed().await,
        }
    }

    /// Counts a miss; fails once there were too many in a row, else waits a moment.
    async fn missed(&mut self) -> Result<(), NatsError> {
        self.misses += 1;
        if self.misses > MAX_MISSES {
            return Err(missing());
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            50 * u64::from(self.misses),
        ))
        .await;
        Ok(())
    }

    /// The next piece of the range, trimmed to it.
    async fn next_piece(&mut self) -> Result<Option<Bytes>, NatsError> {
        loop {
            if let Some(msg) = self.first.take() {
                let off = self.offset - msg.payload.len() as u64;
                if let Some(b) = self.trim(off, msg.payload) {
                    return Ok(Some(b));
                }
                continue;
            }
            if self.offset >= self.end {
                return Ok(None);
            }
            if self.batch.is_none() && self.end - self.offset <= CHUNK_SIZE as u64 {
                // One chunk left: a plain request, no reply subscription.
                let asked = tokio::time::timeout(
                    CHUNK_WAIT,
                    next_for_subject(&self.client, &self.stream, &self.subject, self.next_seq),
                )
                .await;
                let msg = match self.answered(asked).await? {
                    Some(Some(msg)) => msg,
                    Some(None) => {
                        self.not_found().await?;
                        continue;
                    }
                    None => continue,
                };
                self.misses = 0;
                self.next_seq = msg.seq + 1;
                let off = self.offset;
                self.offset += msg.payload.len() as u64;
                if let Some(b) = self.trim(off, msg.payload) {
                    return Ok(Some(b));
                }
                continue;
            }
            if self.batch.is_none() {
                let b = Batch::next_by_subject(
                    &self.client,
                    &self.stream,
                    &self.subject,
                    self.next_seq,
                    self.batch_size,
                )
                .await?;
                self.batch = Some(b);
            }
            let Some(batch) = self.batch.as_mut() else {
                continue;
            };
            let next = tokio::time::timeout(CHUNK_WAIT, batch.next()).await;
            let Some(next) = self.answered(next).await? else {
                self.batch = None;
                self.in_batch = 0;
                continue;
            };
            match next {
                Some(msg) => {
                    self.in_batch += 1;
                    self.misses = 0;
                    self.next_seq = msg.seq + 1;
                    let off = self.offset;
                    self.offset += msg.payload.len() as u64;
                    if let Some(b) = self.trim(off, msg.payload) {
                        return Ok(Some(b));
                    }
                }
                None => {
                    self.batch = None;
                    if std::mem::take(&mut self.in_batch) == 0 {
                        self.not_found().await?;
                    }
                }
            }
        }
    }

    /// The part of a chunk at object offset `off` that lies in the range.
    fn trim(&self, off: u64, payload: Bytes) -> Option<Bytes> {
        let len = payload.len() as u64;
        let from = self.start.max(off);
        let to = self.end.min(off + len);
        if from >= to {
            return None;
        }
        Some(payload.slice((from - off) as usize..(to - off) as usize))
    }
}
