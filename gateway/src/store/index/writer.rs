//! Writes a bucket's listing snapshot (run by the collector's leader, one gateway at a time).
//!
//! Incremental: the metadata messages after the current snapshot's sequence are read in
//! batches of at most [`BATCH`] changed keys; only the pages those keys fall on are read,
//! merged and written again (cut again when they grow), then a new manifest becomes the
//! head. Pages and manifests that are no longer referenced are removed after [`RETAIN`],
//! long after any listing that started on them has ended. The first snapshot of a bucket is
//! the same process starting from an empty one, so its memory is bounded by a batch too.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::Context;
use async_nats::Client;
use futures::StreamExt;
use time::OffsetDateTime;

use super::super::direct::next_for_subject;
use super::shared::{ReadError, Shared};
use super::snapshot::{deltas_of, merge, paginate, Manifest, PageRef};
use super::view::Overlay;
use super::{filters, Prefixes, Snapshots};
use crate::store::NatsError;

/// Changed keys merged into the snapshot at once.
pub const BATCH: usize = 200_000;

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
}

/// The bucket's stream as the writer sees it.
pub struct StreamState {
    pub created: OffsetDateTime,
    pub last_seq: u64,
    /// Subjects in the stream (a bucket with fewer gets no snapshot).
    pub subjects: u64,
}

/// Brings `bucket`'s snapshot up to the stream's last metadata message.
pub async fn write(
    snapshots: &Snapshots,
    js: &Context,
    client: &Client,
    bucket: &str,
    history: bool,
    stream: &StreamState,
    min_subjects: u64,
) -> Result<Written, NatsError> {
    let shared = snapshots.shared(js).await?;
    let started = OffsetDateTime::now_utc();
    let mut m = match current(shared, bucket).await? {
        Some(m) if m.stream_created == stream.created && m.history == history => m,
        _ => {
            if stream.subjects < min_subjects {
                return Ok(Written::default());
            }
            let mut fresh = Manifest::empty(bucket, stream.created, history);
            // Pages of the old one may still be read for a while.
            if let Some(old) = current(shared, bucket).await.ok().flatten() {
                fresh.retired = retire_all(&old);
            }
            fresh
        }
    };
    let mut written = Written::default();
    let mut more = false;
    for filter in filters(bucket, history) {
        more |= next_for_subject(client, &names_stream(bucket), &filter, m.seq + 1)
            .await?
            .is_some();
    }
    if !more {
        if m.seq > 0 && OffsetDateTime::now_utc() - m.valid_from > RETAIN / 2 {
            // Nothing changed: say so, so that readers keep trusting it.
            m.valid_from = started;
            commit(shared, bucket, m, &mut written).await?;
        }
        return Ok(written);
    }
    let s = js
        .get_stream_no_info(names_stream(bucket))
        .await
        .map_err(NatsError::other)?;
    let deliver_policy = match m.seq {
        0 => DeliverPolicy::LastPerSubject,
        seq => DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
    };
    let consumer = s
        .create_consumer(OrderedConfig {
            filter_subjects: filters(bucket, history),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(NatsError::consumer)?;
    let name = consumer.cached_info().name.clone();
    let result = async {
        let mut messages = consumer.messages().await.map_err(NatsError::other)?;
        let prefixes = Prefixes::of(bucket);
        let mut overlay = Overlay::new(true);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
            let msg = match next {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(e))) => return Err(NatsError::other(e)),
                Ok(None) => return Err(NatsError::Other("the snapshot's consumer ended".into())),
                Err(_) => return Err(NatsError::TimedOut),
            };
            let info = msg.info().map_err(NatsError::other)?;
            let (seq, pending, stored) = (info.stream_sequence, info.pending, info.published);
            written.messages += 1;
            if let Ok(Some(change)) = prefixes.decode(&msg.subject, &msg.payload, seq) {
                overlay.apply(change, seq);
            }
            // Done at the end of the stream as it was when the pass started.
            let done = pending == 0 || seq >= stream.last_seq;
            if done || overlay.len() >= BATCH {
                let deltas = std::mem::take(&mut overlay).into_deltas();
                overlay = Overlay::new(true);
                m = rewrite(shared, bucket, m, &deltas, &mut written).await?;
                m.seq = seq;
                // When caught up, every later message was stored after this pass started;
                // otherwise after the last one read.
                m.valid_from = if pending == 0 { started } else { stored };
                m = commit(shared, bucket, m, &mut written).await?;
                if done {
                    return Ok(());
                }
            }
        }
    }
    .await;
    if let Err(e) = s.delete_consumer(&name).await {
        tracing::debug!(error = %e, "a snapshot consumer stays until it expires");
    }
    result.map(|()| written)
}

fn names_stream(bucket: &str) -> String {
    jets3_nats::names::stream_name(bucket)
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

/// Merges `deltas` into the pages they fall on; the manifest that lists the result.
async fn rewrite(
    shared: &Shared,
    bucket: &str,
    mut m: Manifest,
    deltas: &std::collections::BTreeMap<String, super::state::Delta>,
    written: &mut Written,
) -> Result<Manifest, NatsError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut pages: Vec<PageRef> = Vec::with_capacity(m.pages.len());
    let put = |page: super::snapshot::Page| {
        let encoded = page.encode();
        let first = page.keys.first().map(|(k, _)| k.clone());
        let keys = page.keys.len() as u32;
        async move {
            let (id, bytes) = encoded.map_err(|e| NatsError::Other(e.to_string()))?;
            let size = bytes.len() as u64;
            shared.put_page(bucket, &id, bytes).await?;
            Ok::<_, NatsError>((
                PageRef {
                    first: first.unwrap_or_default(),
                    id: id.into(),
                    keys,
                },
                size,
            ))
        }
    };
    if m.pages.is_empty() {
        let keys = merge(&[], deltas.iter().map(|(k, d)| (k.as_str(), d)));
        for page in paginate(keys) {
            let (r, size) = put(page).await?;
            written.pages_written += 1;
            written.bytes_written += size;
            pages.push(r);
        }
    } else {
        for i in 0..m.pages.len() {
            let mut touching = deltas_of(&m.pages, i, deltas).peekable();
            if touching.peek().is_none() {
                pages.push(m.pages[i].clone());
                continue;
            }
            let old = match shared.page(bucket, &m.pages[i].id).await {
                Ok(p) => p,
                Err(ReadError::Nats(e)) => return Err(e),
                Err(ReadError::Corrupt(c)) => {
                    // Start over: the next pass builds the snapshot from nothing.
                    tracing::warn!(bucket, reason = %c, "a listing snapshot page is damaged");
                    shared.forget_head(bucket).await?;
                    return Err(NatsError::Other(format!("damaged snapshot page: {c}")));
                }
            };
            for page in paginate(merge(&old.keys, touching)) {
                let (r, size) = put(page).await?;
                written.pages_written += 1;
                written.bytes_written += size;
                pages.push(r);
            }
        }
    }
    let kept: HashSet<&str> = pages.iter().map(|p| &*p.id).collect();
    for old in &m.pages {
        if !kept.contains(&*old.id) {
            m.retired.push((format!("p.{}", old.id).into(), now));
        }
    }
    m.pages = pages;
    Ok(m)
}

/// Makes `m` the head, retires the manifest it replaces and removes what retired long ago.
async fn commit(
    shared: &Shared,
    bucket: &str,
    mut m: Manifest,
    written: &mut Written,
) -> Result<Manifest, NatsError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let retain = RETAIN.as_secs() as i64;
    let (due, kept): (Vec<_>, Vec<_>) = m.retired.drain(..).partition(|(_, at)| now - at > retain);
    m.retired = kept;
    let previous = shared.head(bucket).await.ok().flatten();
    if let Some(h) = &previous {
        m.retired
            .push((format!("m.{}.{}", h.id, h.parts).into(), now));
    }
    let head = shared.put_manifest(bucket, &m).await?;
    written.manifests += 1;
    tracing::debug!(
        bucket,
        seq = head.seq,
        pages = m.pages.len(),
        "listing snapshot written"
    );
    for (what, _) in due {
        if let Err(e) = shared.remove(bucket, &what).await {
            tracing::debug!(error = ?e, bucket, "could not remove a retired snapshot part");
        }
    }
    Ok(m)
}
