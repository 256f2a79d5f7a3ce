//! Changes to a bucket's objects as they happen: every metadata write (by any gateway or
//! native client) on `$O.<bucket>.M.>`, and the stream being deleted or created. A core
//! subscription: no consumer state on the server, and what is published while the client
//! is disconnected is missed, so callers compare [`Store::interruptions`] to see gaps.

use async_nats::Subscriber;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use futures::StreamExt;

use jets3_nats::names::{meta_prefix, stream_name};

use super::{NatsError, Store};

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The object with this key was written or deleted.
    Key(String),
    /// Anything may have changed (the bucket was deleted or created).
    All,
}

/// A live subscription to one bucket's changes.
pub struct Changes {
    meta: Subscriber,
    stream: Subscriber,
    prefix: String,
}

impl Store {
    /// Subscribes to the changes of bucket `nats`; once this returns, the server has the
    /// subscription, so every later write is seen.
    pub async fn changes(&self, nats: &str) -> Result<Changes, NatsError> {
        let client = &self.inner.client;
        let other = |e: &dyn std::fmt::Display| NatsError::Other(e.to_string());
        let prefix = meta_prefix(nats);
        let meta = client
            .subscribe(format!("{prefix}>"))
            .await
            .map_err(|e| other(&e))?;
        let stream = client
            .subscribe(format!("$JS.EVENT.ADVISORY.STREAM.*.{}", stream_name(nats)))
            .await
            .map_err(|e| other(&e))?;
        client.flush().await.map_err(|e| other(&e))?;
        Ok(Changes {
            meta,
            stream,
            prefix,
        })
    }

    /// How often the connection broke or dropped messages: a change means a gap in every
    /// subscription.
    pub fn interruptions(&self) -> u64 {
        self.inner
            .interruptions
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Changes {
    /// The next change; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            tokio::select! {
                msg = self.meta.next() => {
                    let msg = msg?;
                    let Some(encoded) = msg.subject.as_str().strip_prefix(&self.prefix) else {
                        continue;
                    };
                    let raw = URL_SAFE
                        .decode(encoded)
                        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded));
                    match raw.ok().and_then(|r| String::from_utf8(r).ok()) {
                        Some(key) => return Some(Change::Key(key)),
                        None => return Some(Change::All),
                    }
                }
                msg = self.stream.next() => {
                    let msg = msg?;
                    let kind = msg.subject.as_str().split('.').nth(4).unwrap_or_default();
                    if matches!(kind, "DELETED" | "CREATED") {
                        return Some(Change::All);
                    }
                }
            }
        }
    }
}
