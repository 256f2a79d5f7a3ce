//! The last message of every subject matching a filter, at any scale: one Direct Get batch
//! when the answer is small (no server state), an ordered consumer replay when it is not
//! (a multi-last Direct Get refuses to match too many subjects).

use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::Context;
use async_nats::Client;
use futures::StreamExt;
use time::OffsetDateTime;

use super::direct::{next_for_subject, Batch, RawMsg};
use super::NatsError;

/// Subjects a Direct Get batch is asked for before the replay takes over.
const BATCH: usize = 1000;

/// One message of a replay: subject, payload, stream sequence and when NATS stored it.
pub struct Replayed<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub seq: u64,
    pub stored: OffsetDateTime,
    pub headers: Option<&'a async_nats::HeaderMap>,
}

/// Feeds the last message of every subject matching `filters` to `f`, through an ordered
/// consumer (removed when done, not left to expire).
pub async fn replay(
    js: &Context,
    client: &Client,
    stream: &str,
    filters: Vec<String>,
    f: impl FnMut(Replayed<'_>),
) -> Result<(), NatsError> {
    let mut any = false;
    for filter in &filters {
        any |= next_for_subject(client, stream, filter, 1).await?.is_some();
    }
    if !any {
        return Ok(());
    }
    let s = js
        .get_stream_no_info(stream)
        .await
        .map_err(NatsError::other)?;
    let consumer = s
        .create_consumer(OrderedConfig {
            filter_subjects: filters,
            // Every message in order (callers keep the last of each subject): asking NATS
            // for the last per subject first takes it 24 s at ten million subjects.
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(NatsError::consumer)?;
    let name = consumer.cached_info().name.clone();
    let result = feed(consumer, f).await;
    if let Err(e) = s.delete_consumer(&name).await {
        tracing::debug!(error = %e, "a replay's consumer stays until it expires");
    }
    result
}

async fn feed(
    consumer: async_nats::jetstream::consumer::Consumer<OrderedConfig>,
    mut f: impl FnMut(Replayed<'_>),
) -> Result<(), NatsError> {
    let mut messages = consumer.messages().await.map_err(NatsError::other)?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(NatsError::other(e)),
            Ok(None) => return Ok(()),
            Err(_) => return Err(NatsError::TimedOut),
        };
        let info = msg.info().map_err(NatsError::other)?;
        let (seq, pending, stored) = (info.stream_sequence, info.pending, info.published);
        f(Replayed {
            subject: &msg.subject,
            payload: &msg.payload,
            seq,
            stored,
            headers: msg.headers.as_ref(),
        });
        if pending == 0 {
            return Ok(());
        }
    }
}

/// The last message of every subject matching `filter`.
pub async fn last_messages(
    js: &Context,
    client: &Client,
    stream: &str,
    filter: &str,
) -> Result<Vec<RawMsg>, NatsError> {
    if let Some(small) = batch(client, stream, filter).await? {
        return Ok(small);
    }
    let mut out: Vec<RawMsg> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    replay(js, client, stream, vec![filter.to_string()], |m| {
        // As a Direct Get answers it: with the time NATS stored the message.
        let mut headers = m.headers.cloned().unwrap_or_default();
        if let Ok(t) = m
            .stored
            .format(&time::format_description::well_known::Rfc3339)
        {
            headers.insert("Nats-Time-Stamp", t.as_str());
        }
        let msg = RawMsg {
            seq: m.seq,
            subject: m.subject.to_string(),
            headers: Some(headers),
            payload: bytes::Bytes::copy_from_slice(m.payload),
        };
        // The last message of each subject.
        match at.get(m.subject) {
            Some(&i) => out[i] = msg,
            None => {
                at.insert(m.subject.to_string(), out.len());
                out.push(msg);
            }
        }
    })
    .await?;
    Ok(out)
}

/// One Direct Get batch; `None` when the answer may be larger than one batch.
async fn batch(
    client: &Client,
    stream: &str,
    filter: &str,
) -> Result<Option<Vec<RawMsg>>, NatsError> {
    let mut b = Batch::multi_last(client, stream, filter, BATCH).await?;
    let mut out = Vec::new();
    loop {
        match b.next().await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => break,
            // "413 Too Many Results": more subjects match than a batch may answer.
            Err(NatsError::Other(e)) if e.contains("413") => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok((out.len() < BATCH).then_some(out))
}
