//! The last message of every subject matching a filter, at any scale: one Direct Get batch
//! when the answer is small (no server state), an ordered consumer replay when it is not
//! (a multi-last Direct Get refuses to match too many subjects). Either may be answered by
//! a replica that is behind; a read that must miss nothing the leader holds asks for
//! [`Reach::Leader`].

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

/// How complete a read of a stream's subjects must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// What the server that answers holds: on a replicated stream a replica that is behind
    /// (restarted and catching up, or frozen for a while) answers with less.
    Any,
    /// At least every message the stream's leader held when the read began: what a
    /// decision that something is unreferenced (and may be purged) needs.
    Leader,
}

/// The sequence of the last message matching any of `filters` as the stream's leader has
/// it (the JetStream API, not a Direct Get); `None` when none matches.
async fn leader_floor(
    js: &Context,
    stream: &str,
    filters: &[String],
) -> Result<Option<u64>, NatsError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
    use async_nats::jetstream::ErrorCode;
    let s = js
        .get_stream_no_info(stream)
        .await
        .map_err(NatsError::other)?;
    let mut floor = None;
    for filter in filters {
        match s.get_last_raw_message_by_subject(filter).await {
            Ok(m) => floor = floor.max(Some(m.sequence)),
            Err(e) if e.kind() == K::NoMessageFound => {}
            // The JetStream API answers for a stream that is not there (no responders is
            // a Direct Get's way of saying so).
            Err(e) if matches!(e.kind(), K::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
                return Err(NatsError::NoStream)
            }
            Err(e) => return Err(NatsError::within(&e)),
        }
    }
    Ok(floor)
}

/// Feeds the last message of every subject matching `filters` to `f`, through an ordered
/// consumer (removed when done, not left to expire). With [`Reach::Leader`] the replay does
/// not end before it has delivered the last matching message the leader held when it began:
/// a consumer placed on a replica that is behind waits for it to catch up, or times out.
pub async fn replay(
    js: &Context,
    client: &Client,
    stream: &str,
    filters: Vec<String>,
    reach: Reach,
    f: impl FnMut(Replayed<'_>),
) -> Result<(), NatsError> {
    let floor = match reach {
        Reach::Leader => match leader_floor(js, stream, &filters).await? {
            Some(seq) => seq,
            None => return Ok(()),
        },
        Reach::Any => {
            let mut any = false;
            for filter in &filters {
                any |= next_for_subject(client, stream, filter, 1).await?.is_some();
            }
            if !any {
                return Ok(());
            }
            0
        }
    };
    replay_from(js, stream, filters, floor, f).await
}

/// [`replay`] once the floor is known (0: none).
async fn replay_from(
    js: &Context,
    stream: &str,
    filters: Vec<String>,
    floor: u64,
    f: impl FnMut(Replayed<'_>),
) -> Result<(), NatsError> {
    let s = js
        .get_stream_no_info(stream)
        .await
        .map_err(NatsError::other)?;
    let consumer = s
        .create_consumer(OrderedConfig {
            filter_subjects: filters.clone(),
            // Every message in order (callers keep the last of each subject): asking NATS
            // for the last per subject first takes it 24 s at ten million subjects.
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(NatsError::consumer)?;
    let name = consumer.cached_info().name.clone();
    let result = feed(
        consumer,
        Floor {
            js,
            stream,
            filters: &filters,
            seq: floor,
        },
        f,
    )
    .await;
    if let Err(e) = s.delete_consumer(&name).await {
        tracing::debug!(error = %e, "a replay's consumer stays until it expires");
    }
    result
}

/// How far a replay must reach: the leader's last matching message (`seq`, 0 for none).
struct Floor<'a> {
    js: &'a Context,
    stream: &'a str,
    filters: &'a [String],
    seq: u64,
}

/// Delivers the consumer's messages to `f` until its server has no more and the floor has
/// come. When it has no more short of the floor, the leader is asked again: the floor's
/// message may have been removed since (a KV key purged), and what the leader holds now is
/// what counts.
async fn feed(
    consumer: async_nats::jetstream::consumer::Consumer<OrderedConfig>,
    mut floor: Floor<'_>,
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
        if pending > 0 {
            continue;
        }
        if seq >= floor.seq {
            return Ok(());
        }
        // "Nothing pending" from a replica that is behind is not the end: more comes as
        // it catches up.
        floor.seq = leader_floor(floor.js, floor.stream, floor.filters)
            .await?
            .unwrap_or(0);
        if seq >= floor.seq {
            return Ok(());
        }
    }
}

/// The last message of every subject matching `filter`, as complete as `reach` asks.
pub async fn last_messages(
    js: &Context,
    client: &Client,
    stream: &str,
    filter: &str,
    reach: Reach,
) -> Result<Vec<RawMsg>, NatsError> {
    let filters = vec![filter.to_string()];
    let floor = match reach {
        Reach::Leader => match leader_floor(js, stream, &filters).await? {
            Some(seq) => seq,
            None => return Ok(Vec::new()),
        },
        Reach::Any => 0,
    };
    if let Some(small) = batch(client, stream, filter).await? {
        // A replica behind answers without the leader's last message: replay instead.
        if floor == 0 || small.iter().any(|m| m.seq >= floor) {
            return Ok(small);
        }
    }
    let mut out: Vec<RawMsg> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let keep = |m: Replayed<'_>| {
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
    };
    match reach {
        Reach::Leader => replay_from(js, stream, filters, floor, keep).await?,
        Reach::Any => replay(js, client, stream, filters, reach, keep).await?,
    }
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
