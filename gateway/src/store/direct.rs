//! JetStream Direct Get: reads messages by sequence or subject without creating consumers.

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{RawMessageBuilder, RawMessageError, RawMessageErrorKind};
use async_nats::{Client, HeaderMap, StatusCode, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::NatsError;

/// A message read from a stream.
#[derive(Debug, Clone)]
pub struct RawMsg {
    pub seq: u64,
    pub subject: String,
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
}

impl RawMsg {
    /// A header's value, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|v| v.as_str())
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// The message `ask` names as its stream's leader holds it (the JetStream API, not a Direct
/// Get, which a replica that is behind may answer); `None` when there is none.
pub(super) async fn from_leader(
    ask: RawMessageBuilder,
) -> Result<Option<StreamMessage>, RawMessageError> {
    match ask.send().await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a KV stream's message is a value, not a delete or purge marker.
pub(super) fn kv_live(m: &StreamMessage) -> bool {
    let op = m.headers.get("KV-Operation").map(|v| v.as_str());
    !matches!(op, Some("DEL" | "PURGE"))
}

#[derive(Serialize, Default)]
struct Request<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_by_subj: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_last: Option<Vec<&'a str>>,
}

fn decode(msg: async_nats::Message) -> Result<Option<RawMsg>, NatsError> {
    match msg.status {
        Some(StatusCode::NOT_FOUND) => return Ok(None),
        Some(s) if s.as_u16() == 204 => return Ok(None),
        Some(s) if s != StatusCode::OK => {
            return Err(NatsError::Other(format!(
                "direct get: {s} {}",
                msg.description.unwrap_or_default()
            )))
        }
        _ => {}
    }
    let headers = msg.headers;
    let get = |n: &str| {
        headers
            .as_ref()
            .and_then(|h| h.get(n))
            .map(|v| v.as_str().to_string())
    };
    let seq = get("Nats-Sequence")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| NatsError::Other("direct get reply without Nats-Sequence".into()))?;
    let subject = get("Nats-Subject").unwrap_or_default();
    Ok(Some(RawMsg {
        seq,
        subject,
        headers,
        payload: msg.payload,
    }))
}

fn request_error(e: async_nats::RequestError) -> NatsError {
    match e.kind() {
        async_nats::RequestErrorKind::NoResponders => NatsError::NoResponders,
        async_nats::RequestErrorKind::TimedOut => NatsError::TimedOut,
        _ => NatsError::Other(e.to_string()),
    }
}

/// The last message on `subject` (wildcards allowed), if any.
#[tracing::instrument(level = "debug", name = "nats.direct_get.last", skip(client))]
pub async fn last_for_subject(
    client: &Client,
    stream: &str,
    subject: &str,
) -> Result<Option<RawMsg>, NatsError> {
    let msg = client
        .request(
            format!("$JS.API.DIRECT.GET.{stream}.{subject}"),
            Bytes::new(),
        )
        .await
        .map_err(request_error)?;
    decode(msg)
}

/// The first message on `subject` at or after sequence `from`.
#[tracing::instrument(level = "debug", name = "nats.direct_get.next", skip(client))]
pub async fn next_for_subject(
    client: &Client,
    stream: &str,
    subject: &str,
    from: u64,
) -> Result<Option<RawMsg>, NatsError> {
    let req = Request {
        seq: Some(from),
        next_by_subj: Some(subject),
        ..Default::default()
    };
    let payload = serde_json::to_vec(&req).map_err(|e| NatsError::Other(e.to_string()))?;
    let msg = client
        .request(format!("$JS.API.DIRECT.GET.{stream}"), payload.into())
        .await
        .map_err(request_error)?;
    decode(msg)
}

/// A batch of messages answered to one request, read until the end-of-batch marker.
pub struct Batch {
    sub: Subscriber,
    done: bool,
}

impl Batch {
    /// Up to `batch` messages on `subject` from sequence `from`.
    pub async fn next_by_subject(
        client: &Client,
        stream: &str,
        subject: &str,
        from: u64,
        batch: usize,
    ) -> Result<Batch, NatsError> {
        let req = Request {
            seq: Some(from),
            next_by_subj: Some(subject),
            batch: Some(batch),
            ..Default::default()
        };
        Self::send(client, stream, &req).await
    }

    /// The last message of every subject matching `filter`, up to `batch` of them,
    /// in sequence order, starting at sequence `from` (pages of a listing).
    pub async fn multi_last(
        client: &Client,
        stream: &str,
        filter: &str,
        batch: usize,
    ) -> Result<Batch, NatsError> {
        let req = Request {
            multi_last: Some(vec![filter]),
            batch: Some(batch),
            ..Default::default()
        };
        Self::send(client, stream, &req).await
    }

    #[tracing::instrument(
        level = "debug",
        name = "nats.direct_get.batch",
        skip_all,
        fields(stream)
    )]
    async fn send(client: &Client, stream: &str, req: &Request<'_>) -> Result<Batch, NatsError> {
        let payload = serde_json::to_vec(req).map_err(|e| NatsError::Other(e.to_string()))?;
        let inbox = client.new_inbox();
        let sub = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{stream}"),
                inbox,
                payload.into(),
            )
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        Ok(Batch { sub, done: false })
    }

    /// The next message of the batch; `None` at its end.
    pub async fn next(&mut self) -> Result<Option<RawMsg>, NatsError> {
        if self.done {
            return Ok(None);
        }
        let msg = match tokio::time::timeout(TIMEOUT, self.sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(NatsError::Other("batch subscription closed".into())),
            Err(_) => return Err(NatsError::TimedOut),
        };
        if msg.status == Some(StatusCode::NO_RESPONDERS) {
            self.done = true;
            return Err(NatsError::NoResponders);
        }
        let decoded = decode(msg)?;
        if decoded.is_none() {
            self.done = true;
        }
        Ok(decoded)
    }
}
