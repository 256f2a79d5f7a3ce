//! What the index knows of one key: its latest version (an object or a delete marker) and
//! its noncurrent versions; and the change metadata messages make to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::super::meta::Record;

/// One version of a key as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// `None`: the null version.
    pub version: Option<Box<str>>,
    /// Order among the key's versions (larger is newer).
    pub stamp: u64,
    /// A delete marker (no size, no ETag).
    pub marker: bool,
    pub size: u64,
    pub etag: Box<str>,
    /// Last modified, in nanoseconds since the Unix epoch (eight bytes instead of sixteen:
    /// an index holds millions).
    pub modified_ns: i64,
}

/// `t` in nanoseconds since the Unix epoch (clamped to what fits).
pub fn unix_nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(if t.year() < 1970 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl VersionEntry {
    /// Last modified.
    pub fn modified(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.modified_ns))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// About how many bytes it takes encoded (varints at their widest).
    pub fn encoded_size(&self) -> usize {
        self.version.as_deref().map_or(0, str::len) + self.etag.len() + 40
    }

    /// The entry of a record; `None` for a deletion.
    pub fn of(record: Record) -> Option<VersionEntry> {
        match record {
            Record::Object(m) => Some(VersionEntry {
                version: m.version.map(String::into_boxed_str),
                stamp: m.stamp,
                marker: false,
                size: m.size,
                etag: m.etag.into_boxed_str(),
                modified_ns: unix_nanos(m.modified),
            }),
            Record::Marker(m) => Some(VersionEntry {
                version: m.version.map(String::into_boxed_str),
                stamp: m.stamp,
                marker: true,
                size: 0,
                etag: "".into(),
                modified_ns: unix_nanos(m.modified),
            }),
            Record::Absent | Record::Gone { .. } => None,
        }
    }
}

/// Every version of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The current object or delete marker.
    pub latest: Option<VersionEntry>,
    /// Noncurrent versions by version id (`null` for the null version).
    pub noncurrent: BTreeMap<Box<str>, VersionEntry>,
}

impl KeyState {
    /// About how many bytes it takes encoded.
    pub fn encoded_size(&self) -> usize {
        let versions: usize = self
            .noncurrent
            .iter()
            .map(|(vid, v)| vid.len() + v.encoded_size() + 2)
            .sum();
        self.latest.as_ref().map_or(0, VersionEntry::encoded_size) + versions + 4
    }

    /// No version and no marker.
    pub fn is_empty(&self) -> bool {
        self.latest.is_none() && self.noncurrent.is_empty()
    }

    /// The current object, if the latest version is not a delete marker.
    pub fn current(&self) -> Option<&VersionEntry> {
        self.latest.as_ref().filter(|l| !l.marker)
    }

    /// Every version, newest first, with whether it is the latest.
    pub fn versions(&self) -> Vec<(VersionEntry, bool)> {
        let mut out: Vec<(VersionEntry, bool)> = Vec::new();
        let latest = self.latest.as_ref();
        if let Some(l) = latest {
            out.push((l.clone(), true));
        }
        let mut older: Vec<VersionEntry> = self
            .noncurrent
            .values()
            // A stale copy of the current version, or a null version it replaced.
            .filter(|v| {
                latest.is_none_or(|l| {
                    v.stamp < l.stamp && (v.version.is_some() || l.version.is_some())
                })
            })
            .cloned()
            .collect();
        older.sort_by_key(|v| std::cmp::Reverse(v.stamp));
        out.extend(older.into_iter().map(|v| (v, false)));
        out
    }

    /// This state with `delta` applied over it.
    pub fn with(mut self, delta: &Delta) -> KeyState {
        if let Some(latest) = &delta.latest {
            self.latest = latest.clone();
        }
        for (vid, v) in delta.noncurrent() {
            match v {
                Some(v) => {
                    self.noncurrent.insert(vid.clone(), v.clone());
                }
                None => {
                    self.noncurrent.remove(vid);
                }
            }
        }
        self
    }
}

/// What the metadata messages after a snapshot changed about one key: each part is the
/// last message of its subject (`Some(None)` / `None` entries: deleted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delta {
    /// From the key's metadata subject.
    pub latest: Option<Option<VersionEntry>>,
    /// From its version subjects, by version id (boxed: most keys have none, and an index
    /// holds millions: 8 bytes a key instead of 24).
    #[allow(clippy::box_collection)]
    pub noncurrent: Option<Box<BTreeMap<Box<str>, Option<VersionEntry>>>>,
    /// The stream sequence of the last message applied.
    pub seq: u64,
}

impl Delta {
    /// The changes to noncurrent versions.
    pub fn noncurrent(&self) -> impl Iterator<Item = (&Box<str>, &Option<VersionEntry>)> {
        self.noncurrent.iter().flat_map(|m| m.iter())
    }

    /// Sets what a version subject says of version `vid`.
    pub fn set_noncurrent(&mut self, vid: &str, entry: Option<VersionEntry>) {
        self.noncurrent
            .get_or_insert_with(Box::default)
            .insert(vid.into(), entry);
    }

    /// Forgets deleted noncurrent versions; whether there were any.
    pub fn drop_deleted_versions(&mut self) -> bool {
        let Some(map) = &mut self.noncurrent else {
            return false;
        };
        let before = map.len();
        map.retain(|_, v| v.is_some());
        let dropped = map.len() != before;
        if map.is_empty() {
            self.noncurrent = None;
        }
        dropped
    }

    /// About how many bytes it takes encoded.
    pub fn encoded_size(&self) -> usize {
        let versions: usize = self
            .noncurrent()
            .map(|(vid, v)| vid.len() + v.as_ref().map_or(0, VersionEntry::encoded_size) + 2)
            .sum();
        let latest = self.latest.as_ref().and_then(Option::as_ref);
        latest.map_or(0, VersionEntry::encoded_size) + versions + 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: Option<&str>, stamp: u64, marker: bool) -> VersionEntry {
        VersionEntry {
            version: version.map(Into::into),
            stamp,
            marker,
            size: 1,
            etag: "e".into(),
            modified_ns: 0,
        }
    }

    #[test]
    fn versions_newest_first_without_stale_copies() {
        let mut s = KeyState {
            latest: Some(v(Some("c"), 3, false)),
            ..Default::default()
        };
        s.noncurrent.insert("a".into(), v(Some("a"), 1, false));
        s.noncurrent.insert("b".into(), v(Some("b"), 2, true));
        // A stale copy of the current version is not listed twice.
        s.noncurrent.insert("c".into(), v(Some("c"), 3, false));
        let got: Vec<(u64, bool)> = s.versions().iter().map(|(v, l)| (v.stamp, *l)).collect();
        assert_eq!(got, [(3, true), (2, false), (1, false)]);
        assert_eq!(s.current().map(|c| c.stamp), Some(3));
    }

    #[test]
    fn deltas_override_and_delete() {
        let mut s = KeyState {
            latest: Some(v(None, 1, false)),
            ..Default::default()
        };
        s.noncurrent.insert("a".into(), v(Some("a"), 0, false));
        let mut d = Delta {
            latest: Some(Some(v(Some("m"), 2, true))),
            ..Default::default()
        };
        d.set_noncurrent("a", None);
        let got = s.with(&d);
        assert!(got.current().is_none(), "a delete marker is latest");
        assert!(got.noncurrent.is_empty());
        let gone = Delta {
            latest: Some(None),
            ..Default::default()
        };
        assert!(KeyState::default().with(&gone).is_empty());
    }
}
