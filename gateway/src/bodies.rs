//! Request and response bodies with timeouts: a request body that pauses longer than the
//! idle timeout fails, and a response keeps what the request holds (its admission permit,
//! its audit record) until its last byte is sent or the request deadline passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error of a body that timed out.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing for too long")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] when no data comes for `idle`.
pub struct IdleBody {
    inner: Body,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl IdleBody {
    pub fn wrap(inner: Body, idle: Duration) -> Body {
        Body::new(IdleBody {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        })
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that notes whether it was ever read. hyper answers `Expect:
/// 100-continue` on the first read, so a request answered before that (refused) has not
/// sent its body, and hyper closes the connection after the answer.
pub struct ReadBody {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl ReadBody {
    /// The wrapped body and the flag its first read sets.
    pub fn wrap(inner: Body) -> (Body, Arc<AtomicBool>) {
        let read = Arc::new(AtomicBool::new(false));
        let body = Body::new(ReadBody {
            inner,
            read: read.clone(),
        });
        (body, read)
    }
}

impl http_body::Body for ReadBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.read.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body error is a [`BodyTimeout`].
pub fn is_timeout(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<BodyTimeout>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Runs when the response is done (all sent, cut off, or past its deadline), with the
/// number of body bytes sent.
pub type OnEnd = Box<dyn FnOnce(u64) + Send>;

/// What a response holds until it is done.
#[derive(Default)]
pub struct Tail {
    pub permit: Option<crate::limits::Permit>,
    pub deadline: Option<Instant>,
    pub on_end: Option<OnEnd>,
    /// Who and what, collected for the audit record while auditing (not held).
    pub facts: Option<crate::audit::Facts>,
}

impl Tail {
    /// Nothing to hold: the response can go as it is.
    pub fn is_empty(&self) -> bool {
        self.permit.is_none() && self.deadline.is_none() && self.on_end.is_none()
    }

    /// Wraps the response body so that the tail lives as long as it.
    pub fn attach(self, resp: axum::response::Response) -> axum::response::Response {
        if self.is_empty() {
            return resp;
        }
        resp.map(|inner| {
            Body::new(TailBody {
                inner,
                sleep: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                tail: self,
                sent: 0,
            })
        })
    }
}

struct TailBody {
    inner: Body,
    tail: Tail,
    sleep: Option<Pin<Box<Sleep>>>,
    sent: u64,
}

impl Drop for TailBody {
    fn drop(&mut self) {
        if let Some(f) = self.tail.on_end.take() {
            f(self.sent);
        }
    }
}

impl http_body::Body for TailBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(s) = this.sleep.as_mut() {
            if s.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
            }
        }
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                this.sent += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
