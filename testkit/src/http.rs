//! A bare HTTP/1.1 client for benchmarks: GETs on a kept-alive connection, with nothing
//! between the request and the socket (no SDK, no pool), and latency percentiles.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// One kept-alive connection.
pub type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Opens a connection to `addr` (no Nagle delay).
pub async fn connect(addr: SocketAddr) -> Conn {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (conn, io) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(io);
    conn
}

/// A GET of `path` on `conn`: status and body.
pub async fn get(conn: &mut Conn, path: &str) -> (u16, Bytes) {
    let req = http::Request::get(path)
        .header("host", "bench")
        .body(Empty::new())
        .expect("request");
    let resp = conn.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

/// The `p` quantile (0 to 1) of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}
