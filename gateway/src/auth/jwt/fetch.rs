//! A small HTTP(S) GET for JWKS documents: one request per connection, a size limit and a
//! timeout; HTTPS trusts the system's root certificates. The host's addresses are checked
//! after resolution (see `jets3_crds::jwks_address_refused`): a name that resolves to a
//! link-local or metadata address, or plain http to one that is not loopback, is refused.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The TLS client settings: system roots, ring.
fn tls() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// GETs `url` (http or https) and returns the body of a 200 answer of at most `limit` bytes.
/// `allow_insecure` (the bucket's `jwksAllowInsecure`) lifts the address rules.
pub async fn get(
    url: &str,
    limit: usize,
    timeout: Duration,
    allow_insecure: bool,
) -> Result<Bytes, String> {
    tokio::time::timeout(timeout, get_inner(url, limit, allow_insecure))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// The addresses of `host` a fetch may connect to.
async fn addresses(
    host: &str,
    port: u16,
    https: bool,
    allow_insecure: bool,
) -> Result<Vec<SocketAddr>, String> {
    let resolved = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?;
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .filter(|a| {
            let why = jets3_crds::jwks_address_refused(a.ip(), https, allow_insecure);
            refused = refused.or(why);
            why.is_none()
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (true, Some(why)) => Err(format!("{host} resolves to {why}: refused")),
        (true, None) => Err(format!("{host} resolves to no address")),
        (false, _) => Ok(allowed),
    }
}

async fn get_inner(url: &str, limit: usize, allow_insecure: bool) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the URL must be http or https".into()),
    };
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs = addresses(host.trim_matches(['[', ']']), port, https, allow_insecure).await?;
    let tcp = TcpStream::connect(&addrs[..])
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    // Host and port only: user info in the URL is not sent.
    let authority = match uri.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "jets3-gateway")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = if https {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(
            host.trim_matches(['[', ']']).to_string(),
        )
        .map_err(|e| format!("bad host name: {e}"))?;
        let stream = TlsConnector::from(tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(stream), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    if resp.status() != http::StatusCode::OK {
        return Err(format!("HTTP {}", resp.status()));
    }
    Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the body: {e}"))
}

async fn send<I>(
    io: I,
    req: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Host header names the URL's host and port only: user info in the URL is neither
    /// sent nor taken for part of the host.
    #[tokio::test]
    async fn the_host_header_names_only_host_and_port() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await.expect("read") {
                    0 => break,
                    n => head.extend_from_slice(&buf[..n]),
                }
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .expect("write");
            String::from_utf8_lossy(&head).to_lowercase()
        });
        let url = format!("http://reader:s3cret@127.0.0.1:{port}/certs?x=1");
        let body = get(&url, 1024, Duration::from_secs(5), false)
            .await
            .expect("fetched");
        assert_eq!(&body[..], b"{}");
        let head = server.await.expect("server");
        assert!(
            head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(!head.contains("s3cret"), "{head}");
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked() {
        let get = |url: &'static str, insecure: bool| async move {
            get(url, 1024, Duration::from_secs(2), insecure).await
        };
        // 2852039166 is 169.254.169.254 to the resolver, though no IP literal to the config
        // validation: the check after resolution is what stops it.
        for url in [
            "https://2852039166/latest/meta-data",
            "https://169.254.169.254/latest/meta-data",
            "http://[::ffff:169.254.169.254]/",
            "https://[fe80::1]/certs",
            "http://192.0.2.1/certs",
        ] {
            let e = get(url, false).await.expect_err(url);
            assert!(e.contains("refused"), "{url}: {e}");
        }
        // Loopback http is allowed (nothing listens on port 1: a connect error, no refusal).
        let e = get("http://127.0.0.1:1/certs", false)
            .await
            .expect_err("no server");
        assert!(e.starts_with("connect"), "{e}");
        let e = get("http://localhost:1/certs", false)
            .await
            .expect_err("no server");
        assert!(e.starts_with("connect"), "{e}");
    }
}
