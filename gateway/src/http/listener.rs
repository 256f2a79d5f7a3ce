//! The connections of every listener (S3, admin, push): HTTP/1.1 with a header read
//! timeout (which also bounds idle keep-alive), a cap on open connections, the peer address
//! on every request, and a graceful stop that lets open requests finish.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// The address a request's connection comes from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The address a request's connection came in on (the pod IP the client dialled).
#[derive(Debug, Clone, Copy)]
pub struct Local(pub SocketAddr);

/// A connection's own address.
pub trait LocalAddr {
    fn local(&self) -> Option<SocketAddr>;
}

impl LocalAddr for Slot<TcpStream> {
    fn local(&self) -> Option<SocketAddr> {
        self.io.local_addr().ok()
    }
}

/// A TCP listener holding at most `cap` connections open (0: no cap). Past the cap it
/// stops accepting: new connections wait in the kernel's backlog, costing no descriptor
/// here, until one closes. Counted before any TLS handshake.
pub struct CappedTcp {
    tcp: TcpListener,
    slots: Option<Arc<Semaphore>>,
}

impl CappedTcp {
    pub fn new(tcp: TcpListener, cap: usize) -> CappedTcp {
        CappedTcp {
            tcp,
            slots: (cap > 0).then(|| Arc::new(Semaphore::new(cap))),
        }
    }
}

impl Listener for CappedTcp {
    type Io = Slot<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        let permit = match &self.slots {
            // The semaphore is never closed.
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        loop {
            match self.tcp.accept().await {
                Ok((io, peer)) => {
                    // Bodies stream after their headers: without TCP_NODELAY, Nagle and
                    // delayed ACKs add ~40 ms to every small GET.
                    let _ = io.set_nodelay(true);
                    return (
                        Slot {
                            io,
                            _permit: permit,
                        },
                        peer,
                    );
                }
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A connection holding its place under its listener's cap until it is dropped.
pub struct Slot<IO> {
    io: IO,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Slot<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Slot<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `stop`, then waits for open connections to finish.
/// `header_timeout` is read for each new connection (`None`: no timeout).
pub fn serve<L>(
    mut listener: L,
    app: Router,
    header_timeout: impl Fn() -> Option<Duration> + Send + 'static,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    L: Listener<Addr = SocketAddr>,
    L::Io: LocalAddr,
{
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let (io, peer) = tokio::select! {
                conn = listener.accept() => conn,
                _ = stop.wait_for(|s| *s) => break,
            };
            let app = app.clone();
            let local = io.local();
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                if let Some(local) = local {
                    req.extensions_mut().insert(Local(local));
                }
                app.clone().oneshot(req.map(Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout());
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    })
}

/// A header read timeout of `seconds` (0: none).
pub fn seconds(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}
