//! A value loaded from a file and loaded again when the file changes (its modification time
//! or size; a Kubernetes Secret volume swaps a symlink, which changes both). Checked on use:
//! one `stat` per use. A file that no longer loads keeps the last good value, with a warning.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::{Error, Result};

type Loader<T> = fn(&[u8]) -> std::result::Result<T, String>;
/// A file's modification time and size.
type Stamp = (SystemTime, u64);

/// See the module docs.
pub struct Watched<T> {
    what: &'static str,
    path: PathBuf,
    load: Loader<T>,
    state: Mutex<(Option<Stamp>, Arc<T>)>,
}

impl<T> Watched<T> {
    /// Loads `path`; an unreadable or invalid file is an error here.
    pub fn new(what: &'static str, path: PathBuf, load: Loader<T>) -> Result<Watched<T>> {
        let stamp = stamp(&path);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))?;
        let value =
            load(&bytes).map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))?;
        Ok(Watched {
            what,
            path,
            load,
            state: Mutex::new((stamp, Arc::new(value))),
        })
    }

    /// The current value, and whether it was loaded again just now.
    pub fn get(&self) -> (Arc<T>, bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path);
        if now.is_none() || now == state.0 {
            return (state.1.clone(), false);
        }
        state.0 = now;
        match std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|b| (self.load)(&b))
        {
            Ok(value) => {
                tracing::info!(file = %self.path.display(), "{} reloaded", self.what);
                state.1 = Arc::new(value);
                (state.1.clone(), true)
            }
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "{} changed but does not load; keeping the previous one", self.what);
                (state.1.clone(), false)
            }
        }
    }
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
