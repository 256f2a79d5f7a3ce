//! Values loaded from files and loaded again when a file changes (certificates, keys).
//!
//! Kubernetes updates a mounted Secret by swapping a symlink, so a file's identity is its
//! modification time, length and inode, as seen through the link.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;

/// How often watched files are checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// A file's version: modification time, length and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(SystemTime, u64, u64);

/// The current version of a file; `None` if it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp(m.modified().ok()?, m.len(), m.ino()))
}

type Loader<T> = Box<dyn Fn(&[PathBuf]) -> Result<T, Error> + Send + Sync>;

/// A value built from files. [`Reloading::check`] builds it again when one of them changed;
/// if that fails, the old value stays and the error is logged.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    current: ArcSwap<T>,
    seen: Mutex<Vec<Option<Stamp>>>,
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Loads the value once; an error here is a start-up error.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn(&[PathBuf]) -> Result<T, Error> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, Error> {
        let seen = paths.iter().map(|p| stamp(p)).collect();
        let value = load(&paths).map_err(|e| Error::Config(format!("{what}: {e}")))?;
        Ok(Arc::new(Reloading {
            what,
            paths,
            load: Box::new(load),
            current: ArcSwap::from_pointee(value),
            seen: Mutex::new(seen),
        }))
    }

    /// The value in force.
    pub fn get(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Loads the value again if a file changed since the last look.
    pub fn check(&self) {
        let now: Vec<_> = self.paths.iter().map(|p| stamp(p)).collect();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match (self.load)(&self.paths) {
            Ok(value) => {
                self.current.store(Arc::new(value));
                tracing::info!(what = self.what, paths = ?self.paths, "reloaded");
            }
            Err(e) => tracing::error!(
                what = self.what,
                error = %e,
                "cannot reload; the one loaded before stays in force"
            ),
        }
    }

    /// Checks the files every [`POLL`] until `stop`.
    pub fn watch(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tokio::select! {
                    _ = tick.tick() => this.check(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }
}
