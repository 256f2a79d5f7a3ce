//! The keys a listing walks: a snapshot's pages with the changes made since (the overlay)
//! applied over them, read one key at a time.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::snapshot::{Manifest, Page, PageRef};
use super::state::{Delta, KeyState, VersionEntry};

/// A page the walk needs and where it stopped: load the page, then seek from `from`.
#[derive(Debug)]
pub struct Need {
    pub page: PageRef,
    pub from: Bound<String>,
}

/// Sorted keys with their versions.
pub trait Source {
    /// The first key within `lower` that has any version, with its versions.
    fn seek(&self, lower: Bound<&str>) -> Result<Option<(String, KeyState)>, Need>;
}

impl Source for BTreeMap<String, KeyState> {
    fn seek(&self, lower: Bound<&str>) -> Result<Option<(String, KeyState)>, Need> {
        Ok(self
            .range::<str, _>((lower, Bound::Unbounded))
            .find(|(_, s)| !s.is_empty())
            .map(|(k, s)| (k.clone(), s.clone())))
    }
}

/// The changes since the snapshot (or, without one, every key).
#[derive(Default)]
pub struct Overlay {
    deltas: BTreeMap<String, Delta>,
    /// Without a snapshot, deletions are forgotten; this is the last one's sequence (a
    /// snapshot older than it misses it and cannot be used).
    forgotten: u64,
    over_snapshot: bool,
}

impl Overlay {
    /// An overlay over a snapshot (keeps deletions) or over nothing (forgets them).
    pub fn new(over_snapshot: bool) -> Overlay {
        Overlay {
            over_snapshot,
            ..Default::default()
        }
    }

    /// Applies what one metadata message changes.
    pub fn apply(&mut self, change: super::Change, seq: u64) {
        match change {
            super::Change::Current(key, entry) => self.apply_current(key, entry, seq),
            super::Change::Noncurrent(key, vid, entry) => {
                self.apply_noncurrent(key, &vid, entry, seq)
            }
        }
    }

    /// Takes the changes out, by key.
    pub fn into_deltas(self) -> BTreeMap<String, Delta> {
        self.deltas
    }

    /// Applies the message of a key's metadata subject.
    fn apply_current(&mut self, key: String, entry: Option<VersionEntry>, seq: u64) {
        let d = self.deltas.entry(key.clone()).or_default();
        d.latest = Some(entry);
        d.seq = seq;
        self.settle(&key, seq);
    }

    /// Applies the message of one of a key's version subjects.
    fn apply_noncurrent(&mut self, key: String, vid: &str, entry: Option<VersionEntry>, seq: u64) {
        let d = self.deltas.entry(key.clone()).or_default();
        d.set_noncurrent(vid, entry);
        d.seq = seq;
        self.settle(&key, seq);
    }

    /// Without a snapshot, drops what a deletion left of a key.
    fn settle(&mut self, key: &str, seq: u64) {
        if self.over_snapshot {
            return;
        }
        let Some(d) = self.deltas.get_mut(key) else {
            return;
        };
        let mut forgot = d.drop_deleted_versions();
        if matches!(d.latest, Some(None)) {
            d.latest = None;
            forgot = true;
        }
        if forgot {
            self.forgotten = self.forgotten.max(seq);
        }
        if d.latest.is_none() && d.noncurrent.is_none() {
            self.deltas.remove(key);
        }
    }

    /// Whether a snapshot current to `seq` can take this overlay's place below it.
    pub fn can_rest_on(&self, seq: u64) -> bool {
        seq >= self.forgotten
    }

    /// Rests the overlay on a snapshot current to `seq`: the changes it holds are dropped.
    pub fn rest_on(&mut self, seq: u64) {
        self.over_snapshot = true;
        self.deltas.retain(|_, d| d.seq > seq);
    }

    /// Keys the overlay holds.
    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    fn next(&self, lower: Bound<&str>) -> Option<(&str, &Delta)> {
        self.deltas
            .range::<str, _>((lower, Bound::Unbounded))
            .next()
            .map(|(k, d)| (k.as_str(), d))
    }
}

/// A snapshot, the overlay over it and the pages a walk has loaded.
pub struct View<'a> {
    pub manifest: Option<&'a Manifest>,
    pub overlay: &'a Overlay,
    /// Loaded pages, by id.
    pub pages: &'a [(Box<str>, Arc<Page>)],
}

impl View<'_> {
    /// The first snapshot key within `lower`.
    fn snapshot_next(&self, lower: Bound<&str>) -> Result<Option<(&str, &KeyState)>, PageRef> {
        let Some(m) = self.manifest else {
            return Ok(None);
        };
        let mut i = match lower {
            Bound::Unbounded => 0,
            Bound::Included(k) | Bound::Excluded(k) => match m.page_for(k) {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        while let Some(r) = m.pages.get(i) {
            let (_, page) = self
                .pages
                .iter()
                .find(|(id, _)| *id == r.id)
                .ok_or_else(|| r.clone())?;
            let at = page.position(lower);
            if let Some((k, s)) = page.keys.get(at) {
                return Ok(Some((k, s)));
            }
            i += 1;
        }
        Ok(None)
    }
}

impl Source for View<'_> {
    fn seek(&self, lower: Bound<&str>) -> Result<Option<(String, KeyState)>, Need> {
        let mut lower: Bound<String> = match lower {
            Bound::Included(k) => Bound::Included(k.to_string()),
            Bound::Excluded(k) => Bound::Excluded(k.to_string()),
            Bound::Unbounded => Bound::Unbounded,
        };
        loop {
            let bound = lower.as_ref().map(String::as_str);
            let snap = match self.snapshot_next(bound) {
                Ok(s) => s,
                Err(page) => return Err(Need { page, from: lower }),
            };
            let over = self.overlay.next(bound);
            let (key, state) = match (snap, over) {
                (None, None) => return Ok(None),
                (Some((k, s)), None) => (k, s.clone()),
                (None, Some((k, d))) => (k, KeyState::default().with(d)),
                (Some((sk, s)), Some((ok, d))) => {
                    if sk < ok {
                        (sk, s.clone())
                    } else if ok < sk {
                        (ok, KeyState::default().with(d))
                    } else {
                        (sk, s.clone().with(d))
                    }
                }
            };
            if state.is_empty() {
                lower = Bound::Excluded(key.to_string());
                continue;
            }
            return Ok(Some((key.to_string(), state)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::{paginate, Manifest};
    use super::*;
    use time::OffsetDateTime;

    fn entry(stamp: u64) -> VersionEntry {
        VersionEntry {
            version: None,
            stamp,
            marker: false,
            size: stamp,
            etag: "e".into(),
            modified_ns: 0,
        }
    }

    type Loaded = Vec<(Box<str>, Arc<Page>)>;

    /// A snapshot of `keys` in pages of `per_page` keys, and its pages by id.
    fn snapshot(keys: &[&str], per_page: usize) -> (Manifest, Loaded) {
        let mut m = Manifest::empty("b", OffsetDateTime::UNIX_EPOCH, false);
        let mut pages = Vec::new();
        for chunk in keys.chunks(per_page) {
            let page = paginate(
                chunk
                    .iter()
                    .map(|k| {
                        let s = KeyState {
                            latest: Some(entry(1)),
                            ..Default::default()
                        };
                        ((*k).into(), s)
                    })
                    .collect(),
            )
            .remove(0);
            let (id, _) = page.encode().unwrap();
            m.pages.push(PageRef {
                first: page.keys[0].0.clone(),
                id: id.clone().into(),
                keys: page.keys.len() as u32,
            });
            pages.push((id.into(), Arc::new(page)));
        }
        (m, pages)
    }

    /// Every key, loading pages as the seeks ask.
    fn walk(
        m: &Manifest,
        overlay: &Overlay,
        all: &[(Box<str>, Arc<Page>)],
    ) -> (Vec<String>, usize) {
        let mut loaded: Loaded = Vec::new();
        let mut lower = Bound::Unbounded;
        let mut keys = Vec::new();
        loop {
            let view = View {
                manifest: Some(m),
                overlay,
                pages: &loaded,
            };
            match view.seek(lower.as_ref().map(String::as_str)) {
                Ok(Some((k, _))) => {
                    lower = Bound::Excluded(k.clone());
                    keys.push(k);
                }
                Ok(None) => return (keys, loaded.len()),
                Err(need) => {
                    lower = need.from;
                    let page = all.iter().find(|(id, _)| *id == need.page.id).unwrap();
                    loaded.push(page.clone());
                }
            }
        }
    }

    #[test]
    fn seeks_across_pages_with_the_changes_over_them() {
        let (m, pages) = snapshot(&["a", "c", "e", "g", "i", "k"], 2);
        assert_eq!(m.pages.len(), 3);
        let mut overlay = Overlay::new(true);
        overlay.apply_current("b".into(), Some(entry(2)), 10);
        overlay.apply_current("c".into(), None, 11);
        overlay.apply_current("d".into(), None, 12);
        overlay.apply_current("e".into(), None, 13);
        overlay.apply_current("z".into(), Some(entry(3)), 14);
        let (keys, loaded) = walk(&m, &overlay, &pages);
        assert_eq!(keys, ["a", "b", "g", "i", "k", "z"]);
        assert_eq!(loaded, 3, "each page is loaded once");
    }

    #[test]
    fn an_overlay_without_a_snapshot_forgets_deletions_and_says_so() {
        let mut overlay = Overlay::new(false);
        overlay.apply_current("a".into(), Some(entry(1)), 1);
        overlay.apply_current("a".into(), None, 2);
        assert_eq!(overlay.len(), 0);
        assert!(
            !overlay.can_rest_on(1),
            "a snapshot at 1 would bring `a` back"
        );
        assert!(overlay.can_rest_on(2));
        overlay.apply_current("b".into(), Some(entry(1)), 3);
        overlay.rest_on(2);
        assert_eq!(overlay.len(), 1, "changes after the snapshot stay");
        overlay.rest_on(3);
        assert_eq!(overlay.len(), 0);
    }
}
