//! Writes a bucket's listing snapshot (run by the collector's leader).
//!
//! Incremental: the metadata messages after the current snapshot's sequence are read; when
//! they change at most a batch of keys (`collector.snapshotBatchKeys`), only the pages those keys fall on are read, merged
//! and written again (cut again when they grow). More changes than that (a bucket's first
//! snapshot, or one far behind) are cut into sorted runs and merged with the old pages in
//! one pass ([`super::merge`]), so memory stays bounded by a batch whatever the bucket's
//! size. The new manifest becomes the head by a compare-and-set, so two writers never
//! interleave; the loser removes what it wrote. Pages and manifests that are no longer
//! referenced are removed after [`RETAIN`], long after any listing that started on them.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::Context;
use async_nats::Client;
use futures::StreamExt;
use time::OffsetDateTime;

use super::super::direct::next_for_subject;
use super::merge::{self, MergeError, Runs};
use super::shared::{CommitError, ReadError, Shared};
use super::snapshot::{deltas_of, merge as merge_page, paginate, Manifest, PageRef};
use super::state::Delta;
use super::view::Overlay;
use super::{filters, Prefixes, Snapshots};
use crate::store::NatsError;

/// How long a page or manifest stays after it stopped being referenced.
pub const RETAIN: Duration = Duration::from_secs(600);

/// What a snapshot pass did for one bucket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// New manifests made the head.
    pub manifests: u64,
    pub pages_written: u64,
    pub bytes_written: u64,
    /// Metadata messages read.
    pub messages: u64,
    /// Sorted runs merged (0: the pages were updated in place).
    pub runs: u64,
}

/// How much a writer takes on.
pub struct Limits {
    /// Buckets with fewer subjects get no snapshot.
    pub min_subjects: u64,
    /// Changed keys held in memory at once.
    pub batch: usize,
    /// A snapshot this old is rewritten even for a few changes (readers refuse it at
    /// twice this age).
    pub refresh: Duration,
}

/// The bucket's stream as the writer sees it.
pub struct StreamState {
    pub created: OffsetDateTime,
    pub last_seq: u64,
    /// Subjects in the stream (a bucket with fewer gets no snapshot).
    pub subjects: u64,
}

/// What one pass read from the stream.
struct Tail {
    /// The changes not spilled to runs.
    deltas: BTreeMap<String, Delta>,
    runs: Option<Runs>,
    seq: u64,
    /// Every message after `seq` was stored after this.
    valid_from: OffsetDateTime,
}

/// Brings `bucket`'s snapshot up to the stream's last metadata message.
pub async fn write(
    snapshots: &Snapshots,
    js: &Context,
    client: &Client,
    bucket: &str,
    history: bool,
    stream: &StreamState,
    limits: &Limits,
) -> Result<Written, NatsError> {
    let shared = snapshots.shared(js).await?;
    let started = OffsetDateTime::now_utc();
    let revision = shared.head_revision(bucket).await?;
    let mut m = match current(shared, bucket).await? {
        Some(m) if m.stream_created == stream.created && m.history == history => m,
        old => {
            if stream.subjects < limits.min_subjects {
                return Ok(Written::default());
            }
            let mut fresh = Manifest::empty(bucket, stream.created, history);
            // Pages of the old one may still be read for a while.
            if let Some(old) = old {
                fresh.retired = retire_all(&old);
            }
            fresh
        }
    };
    let mut written = Written::default();
    let names = jets3_nats::names::stream_name(bucket);
    let mut more = false;
    for filter in filters(bucket, history) {
        more |= next_for_subject(client, &names, &filter, m.seq + 1)
            .await?
            .is_some();
    }
    if !more {
        if m.seq > 0 && OffsetDateTime::now_utc() - m.valid_from > limits.refresh / 2 {
            // Nothing changed: say so, so that readers keep trusting it.
            m.valid_from = started;
            commit(shared, bucket, m, revision, &[], &mut written).await?;
        }
        return Ok(written);
    }
    let tail = read_tail(
        shared,
        js,
        bucket,
        history,
        stream,
        &m,
        started,
        limits.batch,
        &mut written,
    )
    .await?;
    // A few changes stay with the readers (they hold the changes since the snapshot) until
    // they are a hundredth of the snapshot or it must be renewed: a page rewrite per
    // scattered change would rewrite the whole snapshot for a bucket with random keys.
    let age = OffsetDateTime::now_utc() - m.valid_from;
    let few = (tail.deltas.len() as u64) < (m.keys() / 100).max(1);
    if m.seq > 0 && tail.runs.is_none() && few && age < limits.refresh {
        return Ok(written);
    }
    let mut new_pages: Vec<PageRef> = Vec::new();
    let result = async {
        let pages = match tail.runs {
            Some(mut runs) => {
                runs.spill(shared, bucket, tail.deltas).await?;
                written.runs = runs.pages.len() as u64;
                let merged = merge::merge(shared, bucket, &m.pages, &runs).await;
                if let Err(e) = shared.forget_runs(js, bucket, &runs.build).await {
                    tracing::debug!(error = ?e, bucket, "runs left behind");
                }
                let (pages, bytes) = merged?;
                written.pages_written += pages.len() as u64;
                written.bytes_written += bytes;
                new_pages = pages.clone();
                pages
            }
            None => {
                rewrite(
                    shared,
                    bucket,
                    &m,
                    &tail.deltas,
                    &mut new_pages,
                    &mut written,
                )
                .await?
            }
        };
        retire_replaced(&mut m, &pages);
        m.pages = pages;
        m.seq = tail.seq;
        m.valid_from = tail.valid_from;
        Ok::<_, MergeError>(())
    }
    .await;
    match result {
        Ok(()) => {}
        Err(MergeError::Nats(e)) => {
            discard(shared, bucket, &new_pages).await;
            return Err(e);
        }
        Err(MergeError::Corrupt(c)) => {
            // Start over: the next pass builds the snapshot from nothing.
            tracing::warn!(bucket, reason = %c, "a listing snapshot page is damaged");
            discard(shared, bucket, &new_pages).await;
            shared.forget_head(bucket).await?;
            return Err(NatsError::Other(format!("damaged snapshot: {c}")));
        }
    }
    commit(shared, bucket, m, revision, &new_pages, &mut written).await?;
    Ok(written)
}

/// Reads the metadata messages after `m`'s sequence, up to the end of the stream as it was
/// when the pass started, spilling to runs beyond a batch. Each batch reads through its own
/// consumer, removed before the batch is spilled: a consumer left unread while NATS stores a
/// run can stall.
#[allow(clippy::too_many_arguments)]
async fn read_tail(
    shared: &Shared,
    js: &Context,
    bucket: &str,
    history: bool,
    stream: &StreamState,
    m: &Manifest,
    started: OffsetDateTime,
    batch: usize,
    written: &mut Written,
) -> Result<Tail, NatsError> {
    let s = js
        .get_stream_no_info(jets3_nats::names::stream_name(bucket))
        .await
        .map_err(NatsError::other)?;
    let prefixes = Prefixes::of(bucket);
    let mut runs: Option<Runs> = None;
    let mut from = m.seq + 1;
    loop {
        let mut overlay = Overlay::new(true);
        let span = (from, stream.last_seq);
        let read = read_batch(
            &s,
            bucket,
            history,
            span,
            batch,
            &prefixes,
            &mut overlay,
            written,
        )
        .await;
        let end = match read {
            Ok(end) => end,
            Err(e) => {
                if let Some(r) = &runs {
                    let _ = shared.forget_runs(js, bucket, &r.build).await;
                }
                return Err(e);
            }
        };
        // Done at the end of the stream as it was when the pass started.
        if end.pending == 0 || end.seq >= stream.last_seq {
            return Ok(Tail {
                deltas: overlay.into_deltas(),
                runs,
                seq: end.seq,
                // When caught up, every later message was stored after the pass started.
                valid_from: if end.pending == 0 {
                    started
                } else {
                    end.stored
                },
            });
        }
        runs.get_or_insert_with(Runs::new)
            .spill(shared, bucket, overlay.into_deltas())
            .await?;
        from = end.seq + 1;
    }
}

/// Where a batch stopped.
struct BatchEnd {
    seq: u64,
    pending: u64,
    stored: OffsetDateTime,
}

/// Applies messages from sequence `from` on to `overlay` until it holds `batch` keys, no
/// message is pending or it reached sequence `until`.
#[allow(clippy::too_many_arguments)]
async fn read_batch(
    s: &async_nats::jetstream::stream::Stream<()>,
    bucket: &str,
    history: bool,
    (from, until): (u64, u64),
    batch: usize,
    prefixes: &Prefixes,
    overlay: &mut Overlay,
    written: &mut Written,
) -> Result<BatchEnd, NatsError> {
    let consumer = s
        .create_consumer(OrderedConfig {
            filter_subjects: filters(bucket, history),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(NatsError::consumer)?;
    let name = consumer.cached_info().name.clone();
    let result = async {
        let mut messages = consumer.messages().await.map_err(NatsError::other)?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
            let msg = match next {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(e))) => return Err(NatsError::other(e)),
                Ok(None) => return Err(NatsError::Other("the snapshot's consumer ended".into())),
                Err(_) => return Err(NatsError::TimedOut),
            };
            let info = msg.info().map_err(NatsError::other)?;
            written.messages += 1;
            if let Ok(Some(change)) =
                prefixes.decode(&msg.subject, &msg.payload, info.stream_sequence)
            {
                overlay.apply(change, info.stream_sequence);
            }
            if info.pending == 0 || info.stream_sequence >= until || overlay.len() >= batch {
                return Ok(BatchEnd {
                    seq: info.stream_sequence,
                    pending: info.pending,
                    stored: info.published,
                });
            }
        }
    }
    .await;
    if let Err(e) = s.delete_consumer(&name).await {
        tracing::debug!(error = %e, "a snapshot consumer stays until it expires");
    }
    result
}

/// The bucket's current manifest; `None` when it has none or it cannot be read.
async fn current(shared: &Shared, bucket: &str) -> Result<Option<Manifest>, NatsError> {
    let head = match shared.head(bucket).await {
        Ok(Some(h)) => h,
        Ok(None) | Err(ReadError::Corrupt(_)) => return Ok(None),
        Err(ReadError::Nats(e)) => return Err(e),
    };
    match shared.manifest(bucket, &head).await {
        Ok(m) => Ok(Some(m)),
        Err(ReadError::Corrupt(c)) => {
            tracing::warn!(bucket, reason = %c, "rewriting a damaged listing snapshot");
            Ok(None)
        }
        Err(ReadError::Nats(e)) => Err(e),
    }
}

fn retire_all(m: &Manifest) -> Vec<(Box<str>, i64)> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut out: Vec<(Box<str>, i64)> = m
        .pages
        .iter()
        .map(|p| (format!("p.{}", p.id).into(), now))
        .collect();
    out.extend(m.retired.iter().cloned());
    out
}

/// Retires the pages of `m` that `pages` no longer lists.
fn retire_replaced(m: &mut Manifest, pages: &[PageRef]) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let kept: HashSet<&str> = pages.iter().map(|p| &*p.id).collect();
    for old in &m.pages {
        if !kept.contains(&*old.id) {
            m.retired.push((format!("p.{}", old.id).into(), now));
        }
    }
}

/// Merges `deltas` into the pages they fall on: the pages of the new snapshot.
async fn rewrite(
    shared: &Shared,
    bucket: &str,
    m: &Manifest,
    deltas: &BTreeMap<String, Delta>,
    new_pages: &mut Vec<PageRef>,
    written: &mut Written,
) -> Result<Vec<PageRef>, MergeError> {
    let mut pages: Vec<PageRef> = Vec::with_capacity(m.pages.len());
    if m.pages.is_empty() {
        let keys = merge_page(&[], deltas.iter().map(|(k, d)| (k.as_str(), d)));
        for page in paginate(keys) {
            store(shared, bucket, page, &mut pages, new_pages, written).await?;
        }
        return Ok(pages);
    }
    for i in 0..m.pages.len() {
        let mut touching = deltas_of(&m.pages, i, deltas).peekable();
        if touching.peek().is_none() {
            pages.push(m.pages[i].clone());
            continue;
        }
        let old = shared.page(bucket, &m.pages[i].id).await?;
        for page in paginate(merge_page(&old.keys, touching)) {
            store(shared, bucket, page, &mut pages, new_pages, written).await?;
        }
    }
    Ok(pages)
}

/// Stores a new page, listed in `pages` and in `new_pages`.
async fn store(
    shared: &Shared,
    bucket: &str,
    page: super::snapshot::Page,
    pages: &mut Vec<PageRef>,
    new_pages: &mut Vec<PageRef>,
    written: &mut Written,
) -> Result<(), NatsError> {
    let size = merge::put(shared, bucket, page, pages).await?;
    new_pages.extend(pages.last().cloned());
    written.pages_written += 1;
    written.bytes_written += size;
    Ok(())
}

/// Removes pages this pass wrote that the head does not use (pages are named by their
/// content, so the head may share some); when the head cannot be read, none.
async fn discard(shared: &Shared, bucket: &str, pages: &[PageRef]) {
    let head = match current(shared, bucket).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(error = ?e, bucket, "unused snapshot pages stay");
            return;
        }
    };
    for p in pages {
        if head.as_ref().is_some_and(|k| merge::references(k, &p.id)) {
            continue;
        }
        if let Err(e) = shared.remove(bucket, &format!("p.{}", p.id)).await {
            tracing::debug!(error = ?e, bucket, "an unused snapshot page stays");
        }
    }
}

/// Makes `m` the head if the head is still at `revision`, retires the manifest it replaces
/// and removes what retired long ago. When another writer moved the head first, removes
/// the pages this pass wrote that the other's snapshot does not use.
async fn commit(
    shared: &Shared,
    bucket: &str,
    mut m: Manifest,
    revision: u64,
    new_pages: &[PageRef],
    written: &mut Written,
) -> Result<(), NatsError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let retain = RETAIN.as_secs() as i64;
    let (due, kept): (Vec<_>, Vec<_>) = m.retired.drain(..).partition(|(_, at)| now - at > retain);
    m.retired = kept;
    if let Ok(Some(h)) = shared.head(bucket).await {
        m.retired
            .push((format!("m.{}.{}", h.id, h.parts).into(), now));
    }
    match shared.put_manifest(bucket, &m, revision).await {
        Ok(head) => {
            written.manifests += 1;
            tracing::debug!(
                bucket,
                seq = head.seq,
                pages = m.pages.len(),
                "listing snapshot written"
            );
        }
        Err(CommitError::Conflict) => {
            tracing::info!(bucket, "another gateway wrote the listing snapshot first");
            discard(shared, bucket, new_pages).await;
            return Ok(());
        }
        Err(CommitError::Nats(e)) => {
            discard(shared, bucket, new_pages).await;
            return Err(e);
        }
    }
    for (what, _) in due {
        if let Err(e) = shared.remove(bucket, &what).await {
            tracing::debug!(error = ?e, bucket, "could not remove a retired snapshot part");
        }
    }
    Ok(())
}
