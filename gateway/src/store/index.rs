//! A per-bucket sorted index of live objects (and, with versioning, of every version),
//! kept current from the metadata subjects.
//!
//! Listing pages walk `BTreeMap`s (O(log n + page)). Before a listing is answered the
//! index catches up to the last metadata message in the stream, which keeps S3's
//! read-after-write promise for writes through any gateway or native client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::Context;
use async_nats::Client;
use futures::StreamExt;
use jets3_nats::names;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::direct::next_for_subject;
use super::meta::{token_key, Malformed, Record};
use super::versions::versions_filter;
use super::{NatsError, Store};

/// What a listing shows of a current object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub size: u64,
    pub etag: Box<str>,
    pub modified: OffsetDateTime,
    /// `None`: the null version.
    pub version: Option<Box<str>>,
    pub stamp: u64,
}

/// What ListObjectVersions shows of one version.
#[derive(Debug, Clone)]
pub struct VersionEntry {
    /// `None`: the null version.
    pub version: Option<Box<str>>,
    pub stamp: u64,
    /// A delete marker (no size, no ETag).
    pub marker: bool,
    pub size: u64,
    pub etag: Box<str>,
    pub modified: OffsetDateTime,
}

impl From<&Entry> for VersionEntry {
    fn from(e: &Entry) -> Self {
        VersionEntry {
            version: e.version.clone(),
            stamp: e.stamp,
            marker: false,
            size: e.size,
            etag: e.etag.clone(),
            modified: e.modified,
        }
    }
}

/// The index's maps.
#[derive(Default)]
pub struct Maps {
    /// Current objects by key.
    pub current: BTreeMap<String, Entry>,
    /// Current delete markers by key.
    markers: BTreeMap<String, VersionEntry>,
    /// Noncurrent versions by key, then by version id (`null` for the null version).
    noncurrent: BTreeMap<String, BTreeMap<Box<str>, VersionEntry>>,
}

impl Maps {
    /// Every version of `key`, newest first, with whether it is the latest.
    pub fn versions_of(&self, key: &str) -> Vec<(VersionEntry, bool)> {
        let mut out: Vec<(VersionEntry, bool)> = Vec::new();
        let latest = match (self.current.get(key), self.markers.get(key)) {
            (Some(e), _) => Some(VersionEntry::from(e)),
            (None, Some(m)) => Some(m.clone()),
            (None, None) => None,
        };
        if let Some(l) = &latest {
            out.push((l.clone(), true));
        }
        if let Some(old) = self.noncurrent.get(key) {
            let mut older: Vec<VersionEntry> = old
                .values()
                // A stale copy of the current version, or a null version it replaced.
                .filter(|v| {
                    latest.as_ref().is_none_or(|l| {
                        v.stamp < l.stamp && (v.version.is_some() || l.version.is_some())
                    })
                })
                .cloned()
                .collect();
            older.sort_by_key(|v| std::cmp::Reverse(v.stamp));
            out.extend(older.into_iter().map(|v| (v, false)));
        }
        out
    }

    /// Keys that have any version, in order, from `start` (inclusive or not).
    pub fn version_keys<'a>(
        &'a self,
        start: std::ops::Bound<&'a str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let range = (start, std::ops::Bound::Unbounded);
        let a = self.current.range::<str, _>(range).map(|(k, _)| k.as_str());
        let b = self.markers.range::<str, _>(range).map(|(k, _)| k.as_str());
        let c = self
            .noncurrent
            .range::<str, _>(range)
            .map(|(k, _)| k.as_str());
        merge_sorted(merge_sorted(a, b), c)
    }

    /// No version and no marker.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.markers.is_empty() && self.noncurrent.is_empty()
    }

    fn apply_current(&mut self, key: String, record: Record) {
        match record {
            Record::Object(m) => {
                self.markers.remove(&key);
                self.current.insert(
                    key,
                    Entry {
                        size: m.size,
                        etag: m.etag.into_boxed_str(),
                        modified: m.modified,
                        version: m.version.map(String::into_boxed_str),
                        stamp: m.stamp,
                    },
                );
            }
            Record::Marker(m) => {
                self.current.remove(&key);
                self.markers.insert(
                    key,
                    VersionEntry {
                        version: m.version.map(String::into_boxed_str),
                        stamp: m.stamp,
                        marker: true,
                        size: 0,
                        etag: "".into(),
                        modified: m.modified,
                    },
                );
            }
            Record::Absent | Record::Gone { .. } => {
                self.current.remove(&key);
                self.markers.remove(&key);
            }
        }
    }

    fn apply_noncurrent(&mut self, key: String, vid: &str, record: Record) {
        let entry = match record {
            Record::Object(m) => Some(VersionEntry {
                version: m.version.map(String::into_boxed_str),
                stamp: m.stamp,
                marker: false,
                size: m.size,
                etag: m.etag.into_boxed_str(),
                modified: m.modified,
            }),
            Record::Marker(m) => Some(VersionEntry {
                version: m.version.map(String::into_boxed_str),
                stamp: m.stamp,
                marker: true,
                size: 0,
                etag: "".into(),
                modified: m.modified,
            }),
            Record::Absent | Record::Gone { .. } => None,
        };
        match entry {
            Some(e) => {
                self.noncurrent
                    .entry(key)
                    .or_default()
                    .insert(vid.into(), e);
            }
            None => {
                if let Some(versions) = self.noncurrent.get_mut(&key) {
                    versions.remove(vid);
                    if versions.is_empty() {
                        self.noncurrent.remove(&key);
                    }
                }
            }
        }
    }
}

/// Merges two sorted iterators of keys, without duplicates.
fn merge_sorted<'a>(
    a: impl Iterator<Item = &'a str> + 'a,
    b: impl Iterator<Item = &'a str> + 'a,
) -> impl Iterator<Item = &'a str> + 'a {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x == y => {
            b.next();
            a.next()
        }
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// The sorted keys (and versions) of one bucket.
pub struct Index {
    maps: RwLock<Maps>,
    applied: watch::Sender<u64>,
    /// True once the consumer has delivered every message that existed when it started.
    loaded: watch::Sender<bool>,
    dead: AtomicBool,
    /// Follows the noncurrent-version subjects too.
    history: bool,
}

const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

impl Index {
    /// Starts following the bucket's metadata subjects (and version subjects with
    /// `history`).
    pub async fn start(
        js: &Context,
        stream: &str,
        bucket: &str,
        history: bool,
        store: Store,
    ) -> Result<Arc<Index>, NatsError> {
        let s = js
            .get_stream_no_info(stream)
            .await
            .map_err(NatsError::other)?;
        let mut filters = vec![names::meta_filter(bucket)];
        if history {
            filters.push(versions_filter(bucket));
        }
        let consumer = s
            .create_consumer(OrderedConfig {
                filter_subjects: filters,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(NatsError::consumer)?;
        let mut messages = consumer.messages().await.map_err(NatsError::other)?;
        let (applied, _) = watch::channel(0);
        let (loaded, _) = watch::channel(false);
        let index = Arc::new(Index {
            maps: RwLock::new(Maps::default()),
            applied,
            loaded,
            dead: AtomicBool::new(false),
            history,
        });
        let weak = Arc::downgrade(&index);
        let prefixes = (names::meta_prefix(bucket), names::version_prefix(bucket));
        tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                let Some(index) = weak.upgrade() else { return };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "listing index lost its consumer");
                        index.dead.store(true, Ordering::Relaxed);
                        return;
                    }
                };
                let (seq, pending) = match msg.info() {
                    Ok(i) => (i.stream_sequence, i.pending),
                    Err(_) => continue,
                };
                if let Err(why) = index.apply(&prefixes, &msg.subject, &msg.payload, seq) {
                    store.malformed(&msg.subject, &why);
                }
                index.applied.send_replace(seq);
                if pending == 0 {
                    index.loaded.send_replace(true);
                }
            }
            if let Some(index) = weak.upgrade() {
                index.dead.store(true, Ordering::Relaxed);
            }
        });
        Ok(index)
    }

    /// Applies one metadata message; a malformed one changes nothing.
    fn apply(
        &self,
        (meta, versions): &(String, String),
        subject: &str,
        payload: &[u8],
        seq: u64,
    ) -> Result<(), Malformed> {
        let bad = |what: &str| Malformed(format!("{what} in subject {subject:?}"));
        if let Some(token) = subject.strip_prefix(meta.as_str()) {
            let key = token_key(token).ok_or_else(|| bad("no key"))?;
            let record = Record::decode(payload, Some(&key), seq)?;
            self.write().apply_current(key, record);
        } else if let Some(rest) = subject.strip_prefix(versions.as_str()) {
            let (token, vid) = rest.rsplit_once('.').ok_or_else(|| bad("no version"))?;
            let key = token_key(token).ok_or_else(|| bad("no key"))?;
            let record = Record::decode(payload, Some(&key), seq)?;
            let named = match &record {
                Record::Object(_) | Record::Marker(_) => {
                    record.version() == Some((vid != "null").then_some(vid))
                }
                _ => true,
            };
            if !named {
                return Err(bad("another version"));
            }
            self.write().apply_noncurrent(key, vid, record);
        }
        Ok(())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    /// False once the consumer behind the index has failed.
    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }

    /// Whether the index follows noncurrent versions.
    pub fn has_history(&self) -> bool {
        self.history
    }

    /// No version and no marker.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Waits until every metadata message in the stream now has been applied: asks for
    /// the first metadata message after the last one applied, and waits for it, until
    /// there is none. That costs one Direct Get per followed subject tree when the index is
    /// current (a wildcard `last_by_subj` would scan every subject of the bucket).
    pub async fn catch_up(
        &self,
        client: &Client,
        stream: &str,
        bucket: &str,
    ) -> Result<(), NatsError> {
        let mut filters = vec![names::meta_filter(bucket)];
        if self.history {
            filters.push(versions_filter(bucket));
        }
        let wait = async {
            let mut applied = self.applied.subscribe();
            let mut loaded = self.loaded.subscribe();
            let mut first = true;
            for filter in &filters {
                loop {
                    let from = *applied.borrow() + 1;
                    let next = next_for_subject(client, stream, filter, from).await?;
                    let Some(next) = next else { break };
                    if first {
                        // Still loading: let the consumer finish its initial pass first.
                        let _ = loaded.wait_for(|l| *l).await;
                        first = false;
                    }
                    if applied.wait_for(|a| *a >= next.seq).await.is_err() {
                        return Err(NatsError::Other("listing index stopped".into()));
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(CATCH_UP_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => Err(NatsError::Other("listing index did not catch up".into())),
        }
    }

    /// Read access to the maps.
    pub fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_sorted_keys_once() {
        let a = ["a", "c", "e"];
        let b = ["b", "c", "f"];
        let got: Vec<&str> = merge_sorted(a.iter().copied(), b.iter().copied()).collect();
        assert_eq!(got, ["a", "b", "c", "e", "f"]);
    }
}
