//! The watch of one cached bucket: subscribes to its changes, invalidates entries as they
//! change, and after any gap (disconnect, dropped messages, the subscription ending)
//! subscribes again and flushes the bucket.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch as signal;

use super::{cache_key, BucketWatch, Inner};
use crate::store::Change;

/// How often a live watch checks the connection for gaps (lookups check it themselves).
const GAP_CHECK: Duration = Duration::from_millis(100);

pub async fn run(
    inner: Weak<Inner>,
    nats: String,
    w: Arc<BucketWatch>,
    mut stop: signal::Receiver<bool>,
) {
    loop {
        let Some(cache) = inner.upgrade() else { return };
        let store = cache.store.clone();
        drop(cache);
        let seen = store.interruptions();
        let changes = tokio::select! {
            c = store.changes(&nats) => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut changes = match changes {
            Ok(c) if store.interruptions() == seen => c,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(bucket = %nats, error = ?e, "cache watch cannot subscribe yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        // Live from here: whatever was cached before may be stale.
        if let Some(cache) = inner.upgrade() {
            cache.flush(&nats);
        }
        w.seen.store(seen, Ordering::Release);
        w.live.store(true, Ordering::Release);
        let mut tick = tokio::time::interval(GAP_CHECK);
        loop {
            tokio::select! {
                change = changes.next() => {
                    let Some(cache) = inner.upgrade() else { return };
                    match change {
                        Some(Change::Key(key)) => cache.invalidate(&cache_key(&nats, &key)),
                        Some(Change::All) => cache.flush(&nats),
                        None => break,
                    }
                }
                _ = tick.tick() => {
                    if store.interruptions() != seen {
                        break;
                    }
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        w.live.store(false, Ordering::Release);
        tracing::debug!(bucket = %nats, "cache watch interrupted; subscribing again");
    }
}
