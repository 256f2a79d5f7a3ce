//! A snapshot rewritten whole from sorted runs, for changes too many to hold at once (a
//! bucket's first snapshot, or one far behind): the changes are cut into runs of at most a
//! batch, each stored sorted in `jets3_index`; then the old snapshot's pages and every run
//! are read page by page, in key order, and merged into new pages. Memory stays at one
//! batch while the runs are made and one page per run while they are merged.

use std::collections::{BTreeMap, VecDeque};

use super::shared::{ReadError, Shared};
use super::snapshot::{Corrupt, Manifest, Page, PageRef, Paginator, PAGE_BYTES};
use super::state::{Delta, KeyState};
use crate::store::NatsError;

/// What went wrong in a merge.
#[derive(Debug)]
pub enum MergeError {
    Nats(NatsError),
    /// A page of the old snapshot or of a run is damaged.
    Corrupt(Corrupt),
}

impl From<ReadError> for MergeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Nats(e) => MergeError::Nats(e),
            ReadError::Corrupt(c) => MergeError::Corrupt(c),
        }
    }
}

impl From<NatsError> for MergeError {
    fn from(e: NatsError) -> Self {
        MergeError::Nats(e)
    }
}

/// The runs of one merge.
pub struct Runs {
    pub build: String,
    /// Pages of each run.
    pub pages: Vec<usize>,
}

impl Runs {
    pub fn new() -> Runs {
        Runs {
            build: nuid::next().to_string(),
            pages: Vec::new(),
        }
    }

    /// Stores `deltas` (sorted) as the next run.
    pub async fn spill(
        &mut self,
        shared: &Shared,
        bucket: &str,
        deltas: BTreeMap<String, Delta>,
    ) -> Result<(), NatsError> {
        let run = self.pages.len();
        let mut n = 0;
        let mut page: Vec<(Box<str>, Delta)> = Vec::new();
        let mut bytes = 0;
        let mut out = Vec::new();
        for (k, d) in deltas {
            bytes += k.len() + 2 + d.encoded_size();
            page.push((k.into(), d));
            if bytes >= PAGE_BYTES {
                out.push(std::mem::take(&mut page));
                bytes = 0;
            }
        }
        if !page.is_empty() {
            out.push(page);
        }
        for page in out {
            let encoded =
                postcard::to_stdvec(&page).map_err(|e| NatsError::Other(e.to_string()))?;
            shared
                .put_run_page(bucket, &self.build, run, n, encoded)
                .await?;
            n += 1;
        }
        self.pages.push(n);
        Ok(())
    }
}

/// Reads a sorted source page by page.
struct Cursor<T> {
    buf: VecDeque<(Box<str>, T)>,
    next: usize,
    pages: usize,
}

impl<T> Cursor<T> {
    fn front(&self) -> Option<&str> {
        self.buf.front().map(|(k, _)| &**k)
    }
}

/// The old snapshot's pages and `runs` merged (runs applied in order over the pages): the
/// new pages, written, and the bytes written.
pub async fn merge(
    shared: &Shared,
    bucket: &str,
    base: &[PageRef],
    runs: &Runs,
) -> Result<(Vec<PageRef>, u64), MergeError> {
    let mut old: Cursor<KeyState> = Cursor {
        buf: VecDeque::new(),
        next: 0,
        pages: base.len(),
    };
    let mut cursors: Vec<Cursor<Delta>> = runs
        .pages
        .iter()
        .map(|&pages| Cursor {
            buf: VecDeque::new(),
            next: 0,
            pages,
        })
        .collect();
    let mut paginator = Paginator::default();
    let mut written: Vec<PageRef> = Vec::new();
    let mut bytes = 0u64;
    loop {
        if old.buf.is_empty() && old.next < old.pages {
            let page = shared.page(bucket, &base[old.next].id).await?;
            old.buf.extend(page.keys);
            old.next += 1;
        }
        for (run, c) in cursors.iter_mut().enumerate() {
            if c.buf.is_empty() && c.next < c.pages {
                let raw = shared.run_page(bucket, &runs.build, run, c.next).await?;
                let page: Vec<(Box<str>, Delta)> = postcard::from_bytes(&raw)
                    .map_err(|e| MergeError::Corrupt(Corrupt(format!("run {run}: {e}"))))?;
                c.buf.extend(page);
                c.next += 1;
            }
        }
        let least = cursors
            .iter()
            .filter_map(Cursor::front)
            .chain(old.front())
            .min()
            .map(Box::<str>::from);
        let Some(key) = least else { break };
        let mut state = match old.front() {
            Some(k) if k == &*key => old.buf.pop_front().map(|(_, s)| s).unwrap_or_default(),
            _ => KeyState::default(),
        };
        for c in &mut cursors {
            if c.front() == Some(&*key) {
                if let Some((_, d)) = c.buf.pop_front() {
                    state = state.with(&d);
                }
            }
        }
        if state.is_empty() {
            continue;
        }
        if let Some(page) = paginator.push(key, state) {
            bytes += put(shared, bucket, page, &mut written).await?;
        }
    }
    if let Some(page) = paginator.finish() {
        bytes += put(shared, bucket, page, &mut written).await?;
    }
    Ok((written, bytes))
}

/// Stores a page; its size.
pub async fn put(
    shared: &Shared,
    bucket: &str,
    page: Page,
    refs: &mut Vec<PageRef>,
) -> Result<u64, NatsError> {
    let (id, bytes) = page.encode().map_err(|e| NatsError::Other(e.to_string()))?;
    let size = bytes.len() as u64;
    shared.put_page(bucket, &id, bytes).await?;
    refs.push(PageRef {
        first: page
            .keys
            .first()
            .map(|(k, _)| k.clone())
            .unwrap_or_default(),
        id: id.into(),
        keys: page.keys.len() as u32,
    });
    Ok(size)
}

/// Whether `m` names page `id`.
pub fn references(m: &Manifest, id: &str) -> bool {
    m.pages.iter().any(|p| &*p.id == id)
}
