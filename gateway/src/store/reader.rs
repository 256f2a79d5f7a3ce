//! Streams a byte range of an object from its chunks with batched Direct Gets:
//! no consumer, bounded memory, and a binary search to start deep inside large objects.

use async_nats::Client;
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};

use super::direct::{next_for_subject, Batch, RawMsg};
use super::meta::{chunk_subject, ObjectMeta, CHUNK_SIZE};
use super::writer::OFFSET_HEADER;
use super::NatsError;

/// Chunks requested per Direct Get batch for client reads (bounds memory per reader).
pub const CLIENT_BATCH: usize = 8;

/// Where a read continues: the next sequence to ask for and the byte offset it holds.
struct Cursor {
    client: Client,
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
}

/// Reads `[start, end)` of the object, `batch` chunks per Direct Get.
pub fn read_range(
    client: Client,
    stream: String,
    bucket: &str,
    meta: &ObjectMeta,
    (start, end): (u64, u64),
    batch_size: usize,
) -> impl Stream<Item = Result<Bytes, NatsError>> + Send + 'static {
    let subject = chunk_subject(bucket, &meta.nuid);
    let seq = meta.seq;
    let size = meta.size;
    let init = async move {
        let mut cur = Cursor {
            client,
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
        };
        if start > 0 {
            if let Some((f, l)) = seq {
                cur.seek(f, l, size).await?;
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
    /// Finds the chunk holding `self.start` between sequences `lo` and `hi`:
    /// interpolation first (exact when the chunks are contiguous), then bisection.
    async fn seek(&mut self, mut lo: u64, mut hi: u64, size: u64) -> Result<(), NatsError> {
        let mut guess = if size > 0 && hi > lo {
            lo + ((hi - lo) as u128 * self.start as u128 / size as u128) as u64
        } else {
            lo
        };
        loop {
            let msg = next_for_subject(&self.client, &self.stream, &self.subject, guess).await?;
            let Some(msg) = msg else {
                return Err(NatsError::Other("object chunks are missing".into()));
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
                hi = msg.seq.saturating_sub(1);
            } else {
                lo = msg.seq + 1;
            }
            if lo > hi {
                return Err(NatsError::Other("object chunk not found".into()));
            }
            guess = lo + (hi - lo) / 2;
        }
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
                let msg =
                    next_for_subject(&self.client, &self.stream, &self.subject, self.next_seq)
                        .await?
                        .ok_or_else(|| NatsError::Other("object chunks are missing".into()))?;
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
            match batch.next().await? {
                Some(msg) => {
                    self.in_batch += 1;
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
                        return Err(NatsError::Other("object chunks are missing".into()));
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
