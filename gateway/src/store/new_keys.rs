//! Whether a bucket's blind writes (no condition) mostly create new keys. While they do, such
//! a write skips the lookup of the key's current version and commits expecting none: one
//! NATS round trip fewer. The commit's compare-and-set catches a key that did exist (it then
//! looks the key up and commits again), so a wrong guess costs time, never correctness; a
//! bucket whose blind writes often replace keys goes back to looking up first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The tally's ceiling: how far a bucket's past can outweigh its present.
const CEILING: u8 = 8;
/// A tally below this guesses "new key".
const GUESS_BELOW: u8 = 4;
/// What a write that found its key takes to outweigh: a wrong guess costs two round trips in
/// a row (the refused commit and the lookup), a right one saves one that ran alongside the
/// upload; so guess only while under a third of the writes find their key.
const FOUND_WEIGHT: u8 = 2;

/// How the guesses went.
#[derive(Default)]
pub struct GuessStats {
    /// Commits that guessed their key new, rightly: a lookup saved.
    pub right: AtomicU64,
    /// Commits that guessed their key new, wrongly: refused, looked up, tried again.
    pub wrong: AtomicU64,
}

/// Per bucket, a saturating tally: writes that found their key raise it, new keys lower it.
#[derive(Default)]
pub struct NewKeys {
    tallies: Mutex<HashMap<String, u8>>,
    stats: Arc<GuessStats>,
}

impl NewKeys {
    pub fn new(stats: Arc<GuessStats>) -> NewKeys {
        NewKeys {
            tallies: Mutex::default(),
            stats,
        }
    }

    /// Whether a blind write to bucket `nats` should commit expecting no current version.
    pub fn expect_new(&self, nats: &str) -> bool {
        let map = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        map.get(nats).is_none_or(|t| *t < GUESS_BELOW)
    }

    /// Records how a guess of bucket `nats` went: `wrong` when its commit was refused
    /// because the key existed.
    pub fn guessed(&self, nats: &str, wrong: bool) {
        let count = if wrong {
            &self.stats.wrong
        } else {
            &self.stats.right
        };
        count.fetch_add(1, Ordering::Relaxed);
        self.saw(nats, wrong);
    }

    /// Records what a blind write to bucket `nats` found: whether its key had a current
    /// version (or a deletion's record).
    pub fn saw(&self, nats: &str, found: bool) {
        let mut map = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(nats) {
            Some(t) if found => *t = (*t + FOUND_WEIGHT).min(CEILING),
            Some(t) => *t = t.saturating_sub(1),
            None if found => {
                map.insert(nats.to_string(), FOUND_WEIGHT);
            }
            None => {}
        }
    }

    /// Forgets a bucket (deleted).
    pub fn forget(&self, nats: &str) {
        let mut map = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(nats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_guesses_new_keys_until_a_third_of_its_writes_find_theirs() {
        let k = NewKeys::default();
        assert!(k.expect_new("b"), "nothing seen yet");
        k.saw("b", true);
        assert!(k.expect_new("b"), "one overwrite is not a pattern");
        k.saw("b", true);
        assert!(!k.expect_new("b"), "two in a row are");
        assert!(k.expect_new("other"), "each bucket has its own tally");
        // One overwrite in two keeps it looking up; one in four lets it guess again.
        for _ in 0..10 {
            k.saw("b", true);
            k.saw("b", false);
        }
        assert!(!k.expect_new("b"));
        for _ in 0..4 {
            k.saw("b", true);
            for _ in 0..3 {
                k.saw("b", false);
            }
        }
        assert!(k.expect_new("b"));
        k.guessed("b", true);
        k.guessed("b", true);
        assert_eq!(k.stats.wrong.load(Ordering::Relaxed), 2);
        k.forget("b");
        assert!(k.expect_new("b"), "a deleted bucket starts afresh");
    }
}
