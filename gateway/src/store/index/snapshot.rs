//! A bucket's listing snapshot as it is stored in NATS: sorted pages of keys, each named by
//! the hash of its bytes, and a manifest that lists the pages by first key and says which
//! stream sequence the snapshot is current to.
//!
//! Every page and manifest is checked when read (hash, format, order); a snapshot that
//! fails a check is never used for a listing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::state::{Delta, KeyState, VersionEntry};

/// The snapshot format this gateway reads and writes.
pub const FORMAT: u32 = 1;

/// Encoded bytes a page aims at (NATS refuses messages over 1 MiB by default).
pub const PAGE_BYTES: usize = 256 * 1024;

/// Why a stored snapshot part was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of some bytes: the first 16 bytes of their SHA-256, in hex.
pub fn content_id(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sorted keys with at least one version each.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub keys: Vec<(Box<str>, KeyState)>,
}

impl Page {
    /// The page's bytes and their id.
    pub fn encode(&self) -> Result<(String, Vec<u8>), Corrupt> {
        let bytes = postcard::to_stdvec(&(FORMAT, self)).map_err(|e| Corrupt(e.to_string()))?;
        Ok((content_id(&bytes), bytes))
    }

    /// Decodes page `id`, checking its hash, its format and its order.
    pub fn decode(id: &str, bytes: &[u8]) -> Result<Page, Corrupt> {
        if content_id(bytes) != id {
            return Err(Corrupt(format!("page {id} does not match its hash")));
        }
        let (format, page): (u32, Page) =
            postcard::from_bytes(bytes).map_err(|e| Corrupt(format!("page {id}: {e}")))?;
        if format != FORMAT {
            return Err(Corrupt(format!("page {id} has format {format}")));
        }
        let ordered = page.keys.windows(2).all(|w| w[0].0 < w[1].0);
        if !ordered || page.keys.is_empty() || page.keys.iter().any(|(_, s)| s.is_empty()) {
            return Err(Corrupt(format!("page {id} is not sorted, or empty")));
        }
        Ok(page)
    }

    /// About how much memory the decoded page holds: the vector's slots, each string on
    /// the heap with the allocator's overhead, each noncurrent version's tree slot.
    pub fn weight(&self) -> usize {
        const HEAP: usize = 16;
        let entry = |v: &VersionEntry| {
            v.etag.len() + HEAP + v.version.as_deref().map_or(0, |x| x.len() + HEAP)
        };
        let slot = std::mem::size_of::<(Box<str>, KeyState)>();
        let version_slot = std::mem::size_of::<(Box<str>, VersionEntry)>() * 3 / 2;
        self.keys
            .iter()
            .map(|(k, s)| {
                let versions: usize = s
                    .noncurrent
                    .iter()
                    .map(|(vid, v)| version_slot + vid.len() + HEAP + entry(v))
                    .sum();
                slot + k.len() + HEAP + s.latest.as_ref().map_or(0, entry) + versions
            })
            .sum()
    }

    /// The index of the first key within `lower`.
    pub fn position(&self, lower: std::ops::Bound<&str>) -> usize {
        use std::ops::Bound::*;
        match lower {
            Unbounded => 0,
            Included(k) => self.keys.partition_point(|(x, _)| &**x < k),
            Excluded(k) => self.keys.partition_point(|(x, _)| &**x <= k),
        }
    }
}

/// One page of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    /// Its first key: the page holds the keys from it to the next page's first key.
    pub first: Box<str>,
    pub id: Box<str>,
    pub keys: u32,
}

/// A snapshot of one bucket's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The NATS bucket.
    pub bucket: String,
    /// When the bucket's stream was created: a bucket deleted and made again is another.
    #[serde(with = "time::serde::timestamp::nanoseconds")]
    pub stream_created: OffsetDateTime,
    /// Every metadata message up to this stream sequence is in the snapshot.
    pub seq: u64,
    /// Every metadata message after `seq` was stored after this time.
    #[serde(with = "time::serde::timestamp::nanoseconds")]
    pub valid_from: OffsetDateTime,
    /// Whether noncurrent versions are in it.
    pub history: bool,
    pub pages: Vec<PageRef>,
    /// Pages and manifests no longer referenced, with when, removed after a grace period.
    pub retired: Vec<(Box<str>, i64)>,
}

impl Manifest {
    /// An empty snapshot.
    pub fn empty(bucket: &str, stream_created: OffsetDateTime, history: bool) -> Manifest {
        Manifest {
            format: FORMAT,
            bucket: bucket.to_string(),
            stream_created,
            seq: 0,
            valid_from: OffsetDateTime::UNIX_EPOCH,
            history,
            pages: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// The manifest's bytes and their id.
    pub fn encode(&self) -> Result<(String, Vec<u8>), Corrupt> {
        let bytes = postcard::to_stdvec(self).map_err(|e| Corrupt(e.to_string()))?;
        Ok((content_id(&bytes), bytes))
    }

    /// Decodes manifest `id` of `bucket`, checking its hash, format and page order.
    pub fn decode(bucket: &str, id: &str, bytes: &[u8]) -> Result<Manifest, Corrupt> {
        if content_id(bytes) != id {
            return Err(Corrupt(format!("manifest {id} does not match its hash")));
        }
        let m: Manifest =
            postcard::from_bytes(bytes).map_err(|e| Corrupt(format!("manifest {id}: {e}")))?;
        if m.format != FORMAT || m.bucket != bucket {
            return Err(Corrupt(format!(
                "manifest {id} is format {} of bucket {:?}",
                m.format, m.bucket
            )));
        }
        if !m.pages.windows(2).all(|w| w[0].first < w[1].first) {
            return Err(Corrupt(format!("manifest {id} lists pages out of order")));
        }
        Ok(m)
    }

    /// Keys in the snapshot.
    pub fn keys(&self) -> u64 {
        self.pages.iter().map(|p| u64::from(p.keys)).sum()
    }

    /// The page that holds `key` if any page does: the last whose first key is not after it
    /// (the first page also takes keys before its first).
    pub fn page_for(&self, key: &str) -> Option<usize> {
        if self.pages.is_empty() {
            return None;
        }
        Some(
            self.pages
                .partition_point(|p| &*p.first <= key)
                .saturating_sub(1),
        )
    }
}

/// Applies sorted `deltas` to the sorted keys of `page`: the keys that remain, sorted.
pub fn merge<'a>(
    page: &[(Box<str>, KeyState)],
    deltas: impl Iterator<Item = (&'a str, &'a Delta)>,
) -> Vec<(Box<str>, KeyState)> {
    let mut out = Vec::with_capacity(page.len());
    let mut old = page.iter().peekable();
    for (key, delta) in deltas {
        while let Some((k, s)) = old.next_if(|(k, _)| &**k < key) {
            out.push((k.clone(), s.clone()));
        }
        let base = old
            .next_if(|(k, _)| &**k == key)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let state = base.with(delta);
        if !state.is_empty() {
            out.push((key.into(), state));
        }
    }
    out.extend(old.cloned());
    out
}

/// Cuts sorted keys into pages of about [`PAGE_BYTES`] each (a key's versions stay on one
/// page), as they come.
#[derive(Default)]
pub struct Paginator {
    current: Page,
    bytes: usize,
}

impl Paginator {
    /// Adds the next key; a page when it is full.
    pub fn push(&mut self, key: Box<str>, state: KeyState) -> Option<Page> {
        let size = key.len() + 2 + state.encoded_size();
        let full = (self.bytes + size > PAGE_BYTES && !self.current.keys.is_empty())
            .then(|| std::mem::take(&mut self.current));
        if full.is_some() {
            self.bytes = 0;
        }
        self.bytes += size;
        self.current.keys.push((key, state));
        full
    }

    /// The last page, if any key is left.
    pub fn finish(self) -> Option<Page> {
        (!self.current.keys.is_empty()).then_some(self.current)
    }
}

/// Cuts sorted keys into pages (see [`Paginator`]).
pub fn paginate(keys: Vec<(Box<str>, KeyState)>) -> Vec<Page> {
    let mut p = Paginator::default();
    let mut pages: Vec<Page> = keys.into_iter().filter_map(|(k, s)| p.push(k, s)).collect();
    pages.extend(p.finish());
    pages
}

/// The deltas of `deltas` that fall on page `i` of `pages`.
pub fn deltas_of<'a>(
    pages: &[PageRef],
    i: usize,
    deltas: &'a BTreeMap<String, Delta>,
) -> impl Iterator<Item = (&'a str, &'a Delta)> + 'a {
    use std::ops::Bound::*;
    let lower = if i == 0 {
        Unbounded
    } else {
        Included(pages[i].first.to_string())
    };
    let upper = match pages.get(i + 1) {
        Some(next) => Excluded(next.first.to_string()),
        None => Unbounded,
    };
    deltas
        .range::<String, _>((lower, upper))
        .map(|(k, d)| (k.as_str(), d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(stamp: u64) -> KeyState {
        KeyState {
            latest: Some(VersionEntry {
                version: Some("3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY".into()),
                stamp: u64::MAX - stamp,
                marker: false,
                size: u64::MAX - stamp,
                etag: "d41d8cd98f00b204e9800998ecf8427e-10000".into(),
                modified_ns: super::super::state::unix_nanos(OffsetDateTime::now_utc()),
            }),
            ..Default::default()
        }
    }

    fn put(stamp: u64) -> Delta {
        Delta {
            latest: Some(state(stamp).latest),
            ..Default::default()
        }
    }

    #[test]
    fn pages_round_trip_and_refuse_tampering() {
        let page = Page {
            keys: vec![("a".into(), state(1)), ("b".into(), state(2))],
        };
        let (id, mut bytes) = page.encode().unwrap();
        assert_eq!(Page::decode(&id, &bytes).unwrap(), page);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            Page::decode(&id, &bytes).is_err(),
            "a flipped bit is caught"
        );
        // Well-formed bytes under another page's name are refused too.
        let other = Page {
            keys: vec![("a".into(), state(1))],
        };
        let (_, other_bytes) = other.encode().unwrap();
        assert!(Page::decode(&id, &other_bytes).is_err());
        // A page whose keys are out of order is refused even with a matching hash.
        let bad = Page {
            keys: vec![("b".into(), state(1)), ("a".into(), state(2))],
        };
        let (bad_id, bad_bytes) = bad.encode().unwrap();
        assert!(Page::decode(&bad_id, &bad_bytes).is_err());
    }

    #[test]
    fn manifests_round_trip_and_name_their_bucket() {
        let mut m = Manifest::empty("b1", OffsetDateTime::UNIX_EPOCH, false);
        m.pages.push(PageRef {
            first: "a".into(),
            id: "x".into(),
            keys: 3,
        });
        let (id, bytes) = m.encode().unwrap();
        assert_eq!(Manifest::decode("b1", &id, &bytes).unwrap(), m);
        assert!(Manifest::decode("b2", &id, &bytes).is_err());
        assert_eq!(m.keys(), 3);
    }

    #[test]
    fn merges_deltas_into_a_page() {
        let page = vec![
            ("b".into(), state(1)),
            ("d".into(), state(2)),
            ("f".into(), state(3)),
        ];
        let mut deltas = BTreeMap::new();
        deltas.insert("a".to_string(), put(10));
        deltas.insert(
            "d".to_string(),
            Delta {
                latest: Some(None),
                ..Default::default()
            },
        );
        deltas.insert("f".to_string(), put(11));
        deltas.insert(
            "z".to_string(),
            Delta {
                latest: Some(None),
                ..Default::default()
            },
        );
        let out = merge(&page, deltas.iter().map(|(k, d)| (k.as_str(), d)));
        let got: Vec<(&str, u64)> = out
            .iter()
            .map(|(k, s)| (&**k, u64::MAX - s.latest.as_ref().unwrap().stamp))
            .collect();
        assert_eq!(got, [("a", 10), ("b", 1), ("f", 11)]);
    }

    #[test]
    fn paginates_by_size_and_finds_pages() {
        let keys: Vec<(Box<str>, KeyState)> = (0..20_000)
            .map(|i| (format!("k{i:06}").into(), state(i)))
            .collect();
        let pages = paginate(keys);
        assert!(pages.len() > 1);
        for p in &pages {
            let (_, bytes) = p.encode().unwrap();
            assert!(bytes.len() <= PAGE_BYTES, "{} bytes", bytes.len());
            assert!(bytes.len() > PAGE_BYTES * 3 / 4 || p == pages.last().unwrap());
        }
        let refs: Vec<PageRef> = pages
            .iter()
            .map(|p| PageRef {
                first: p.keys[0].0.clone(),
                id: "x".into(),
                keys: p.keys.len() as u32,
            })
            .collect();
        let mut m = Manifest::empty("b", OffsetDateTime::UNIX_EPOCH, false);
        m.pages = refs;
        assert_eq!(m.keys(), 20_000);
        assert_eq!(
            m.page_for(""),
            Some(0),
            "keys before the first go to page 0"
        );
        let second = m.pages[1].first.to_string();
        assert_eq!(m.page_for(&second), Some(1));
        assert_eq!(m.page_for("zzz"), Some(m.pages.len() - 1));
        let mut deltas = BTreeMap::new();
        deltas.insert(second.clone(), put(1));
        deltas.insert(String::new(), put(1));
        assert_eq!(deltas_of(&m.pages, 0, &deltas).count(), 1);
        assert_eq!(deltas_of(&m.pages, 1, &deltas).count(), 1);
    }
}
