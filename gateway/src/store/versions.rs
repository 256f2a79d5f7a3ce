//! S3 Versioning on the object-store layout.
//!
//! The native metadata subject `$O.<b>.M.<key>` always holds the key's current version (an
//! object, a delete marker, or nothing), so native clients read the current version as a
//! normal object. Noncurrent versions of a bucket that has had versioning on live on
//! `$O.<b>.V.<key>.<versionId>` (`null` for the null version), one record per subject,
//! added to the stream when versioning is first turned on.
//!
//! A version becomes noncurrent when a commit replaces it: the writer first *preserves* it
//! on its V subject (a publish that only succeeds on an empty subject, or replaces a stale
//! copy of the same version), then commits the new current version (a compare-and-set on the
//! M subject). A version deleted by id leaves a *tombstone* on its V subject (`deleted`, with
//! the version's stamp) before anything else happens, so a writer that read it as current
//! never preserves it again. The collector removes tombstones after the orphan horizon.
//!
//! Version ids are 16 hex digits of the version's stamp (nanoseconds, strictly increasing
//! per key because every commit is a compare-and-set on the key) and 6 random letters, so
//! they sort like the versions they name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jets3_nats::names;
use time::OffsetDateTime;

/// A bucket's versioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never turned on: writes replace the null version.
    Off,
    Enabled,
    Suspended,
}

impl Versioning {
    /// The S3 `Status` value; `None` for a bucket that never had versioning.
    pub fn status(self) -> Option<&'static str> {
        match self {
            Versioning::Off => None,
            Versioning::Enabled => Some("Enabled"),
            Versioning::Suspended => Some("Suspended"),
        }
    }

    /// Parses an S3 `Status` value.
    pub fn parse(s: &str) -> Option<Versioning> {
        match s {
            "Enabled" => Some(Versioning::Enabled),
            "Suspended" => Some(Versioning::Suspended),
            _ => None,
        }
    }

    /// Whether noncurrent versions may exist (the V subjects are in the stream).
    pub fn has_history(self) -> bool {
        self != Versioning::Off
    }
}

/// Stream metadata key holding the versioning status set over S3.
pub const VERSIONING_KEY: &str = "jets3.versioning";

/// How long a gateway trusts the versioning state it read (changes made through another
/// gateway take at most this long to apply here).
pub const STATE_TTL: Duration = Duration::from_secs(2);

/// The V subject filter of one key (all its noncurrent versions).
pub fn key_versions_filter(bucket: &str, key: &str) -> String {
    format!(
        "{}{}.*",
        names::version_prefix(bucket),
        super::meta::key_token(key)
    )
}

/// The V subject of one version (`None`: the null version).
pub fn version_subject(bucket: &str, key: &str, version: Option<&str>) -> String {
    format!(
        "{}{}.{}",
        names::version_prefix(bucket),
        super::meta::key_token(key),
        version.unwrap_or("null")
    )
}

/// The V subjects of a bucket.
pub use jets3_nats::names::version_filter as versions_filter;

/// A stamp newer than `previous` and no older than now.
pub fn next_stamp(previous: Option<u64>) -> u64 {
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0);
    now.max(previous.map_or(0, |p| p.saturating_add(1)))
}

/// A new version id for `stamp`.
pub fn new_version_id(stamp: u64) -> String {
    let nuid = nuid::next().to_string();
    format!("{stamp:016x}{}", &nuid[nuid.len().saturating_sub(6)..])
}

/// What a gateway keeps of a bucket's stream settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub versioning: Versioning,
    /// Stream replicas: above 1, a Direct Get may be answered by a replica that is behind.
    pub replicas: usize,
    /// A small object's chunk and metadata go as one atomic batch: the stream allows it and
    /// stages batches in memory (replicated or memory streams; a file stream of one replica
    /// stages each batch in files of its own, slower than two publishes).
    pub batched_writes: bool,
}

/// Bucket states read from the streams, kept for [`STATE_TTL`].
#[derive(Default)]
pub struct StateCache {
    states: Mutex<HashMap<String, (Instant, BucketState)>>,
}

impl StateCache {
    /// A state read less than [`STATE_TTL`] ago.
    pub fn get(&self, nats: &str) -> Option<BucketState> {
        let map = self.states.lock().unwrap_or_else(|p| p.into_inner());
        map.get(nats)
            .filter(|(at, _)| at.elapsed() < STATE_TTL)
            .map(|(_, v)| *v)
    }

    /// Remembers a state just read or set.
    pub fn set(&self, nats: &str, v: BucketState) {
        let mut map = self.states.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(nats.to_string(), (Instant::now(), v));
    }

    /// Forgets a bucket (deleted).
    pub fn forget(&self, nats: &str) {
        let mut map = self.states.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(nats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::valid_version_id;

    #[test]
    fn version_ids_sort_like_their_stamps_and_are_valid() {
        let a = new_version_id(next_stamp(None));
        let b = new_version_id(next_stamp(Some(u64::MAX - 1)));
        assert!(valid_version_id(&a), "{a}");
        assert!(valid_version_id(&b), "{b}");
        assert!(a < b);
        assert_eq!(next_stamp(Some(u64::MAX)), u64::MAX);
        let s = next_stamp(None);
        assert!(next_stamp(Some(s + 1_000_000_000_000)) > s + 1_000_000_000_000);
    }

    #[test]
    fn status_round_trips() {
        for v in [Versioning::Enabled, Versioning::Suspended] {
            assert_eq!(Versioning::parse(v.status().unwrap_or_default()), Some(v));
        }
        assert_eq!(Versioning::Off.status(), None);
        assert_eq!(Versioning::parse("enabled"), None);
    }
}
