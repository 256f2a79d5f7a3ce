//! The gateway's push API, as a client: `GET /v1/config` and `PUT /v1/config` to one pod,
//! over TLS (the CA of `--push-ca`, the name of `--push-server-name`) or, with
//! `--push-plaintext`, plain HTTP. One connection per request; on every request a token made
//! for it (this pod, this method and path, this body).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::signer::{Signer, Target};
use super::watched::Watched;
use crate::hub::Published;
use crate::Result;

/// Time to connect (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway's header for the pushed config's hash.
const HASH_HEADER: &str = "x-jets3-config-hash";
/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// The generation and hash a gateway holds (`None` before its first config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Held {
    pub generation: Option<u64>,
    pub hash: Option<String>,
}

/// Why a request to a gateway failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the gateway refused the push token (401): wrong signing key, issuer or audience, or clocks apart?")]
    Unauthorized,
    #[error("the gateway holds a newer config, generation {0} (409)")]
    Stale(u64),
    #[error("the gateway finds the config invalid (422): {0}")]
    Invalid(String),
    #[error("unexpected answer {0}: {1}")]
    Unexpected(u16, String),
    #[error("cannot sign a push token: {0}")]
    Token(String),
}

impl Failure {
    /// The `reason` label of `jets3_operator_push_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout => "timeout",
            Failure::Tls(_) => "tls",
            Failure::Http(_) => "http",
            Failure::Unauthorized => "unauthorized",
            Failure::Stale(_) => "stale",
            Failure::Invalid(_) => "invalid",
            Failure::Unexpected(..) => "unexpected",
            Failure::Token(_) => "token",
        }
    }
}

/// How to reach gateways.
pub struct PushClient {
    signer: Signer,
    /// `None`: plain HTTP.
    tls: Option<Watched<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
    port: u16,
}

impl PushClient {
    /// `ca`: the CA file to trust (TLS), or `None` for plain HTTP. `server_name`: the name
    /// the gateways' certificate carries (default: the pod IP).
    pub fn new(
        signer: Signer,
        ca: Option<std::path::PathBuf>,
        server_name: Option<&str>,
        port: u16,
    ) -> Result<PushClient> {
        let tls = ca
            .map(|path| Watched::new("push CA", path, client_config))
            .transpose()?;
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .map_err(|e| crate::Error::Config(format!("--push-server-name {n:?}: {e}")))
            })
            .transpose()?;
        Ok(PushClient {
            signer,
            tls,
            server_name,
            port,
        })
    }

    /// What the gateway at `ip` holds.
    pub async fn held(&self, ip: IpAddr) -> Result<Held, Failure> {
        let (status, body) = self.request(ip, Method::GET, None).await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map_err(|e| Failure::Http(format!("GET /v1/config answer: {e}"))),
            s => Err(refusal(s, &body)),
        }
    }

    /// Pushes `config` (serialized as `body`) to the gateway at `ip`.
    pub async fn push(&self, ip: IpAddr, config: &Published, body: Bytes) -> Result<(), Failure> {
        let (status, answer) = self
            .request(ip, Method::PUT, Some((body, &config.hash)))
            .await?;
        match status {
            StatusCode::OK => Ok(()),
            s => Err(refusal(s, &answer)),
        }
    }

    async fn request(
        &self,
        ip: IpAddr,
        method: Method,
        body: Option<(Bytes, &str)>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let req_line = format!("{method} /v1/config");
        let token = self
            .signer
            .token(&Target {
                pod: ip,
                req: &req_line,
                body: body.as_ref().map_or(&[][..], |(b, _)| b.as_ref()),
            })
            .map_err(|e| Failure::Token(e.to_string()))?;
        let addr = SocketAddr::new(ip, self.port);
        let host = match &self.server_name {
            Some(n) => n.to_str().into_owned(),
            None => addr.to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri("/v1/config")
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some((b, hash)) => {
                req = req
                    .header(HASH_HEADER, hash)
                    .header(header::CONTENT_TYPE, "application/json");
                b
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| Failure::Http(e.to_string()))?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(addr, req))
            .await
            .map_err(|_| Failure::Timeout)?
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return send(tcp, req).await;
        };
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TlsConnector::from(tls.get().0).connect(name, tcp),
        )
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|e| Failure::Tls(e.to_string()))?;
        send(stream, req).await
    }
}

async fn send<S>(stream: S, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| Failure::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let conn = tokio::spawn(conn);
    let res = sender.send_request(req).await.map_err(http)?;
    let status = res.status();
    let body = Limited::new(res.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| Failure::Http(format!("answer body: {e}")))?
        .to_bytes();
    conn.abort();
    Ok((status, body))
}

/// The failure for a non-200 answer.
fn refusal(status: StatusCode, body: &[u8]) -> Failure {
    #[derive(Deserialize)]
    struct Answer {
        generation: Option<u64>,
    }
    let text = || String::from_utf8_lossy(body).into_owned();
    match status {
        StatusCode::UNAUTHORIZED => Failure::Unauthorized,
        StatusCode::CONFLICT => match serde_json::from_slice::<Answer>(body) {
            Ok(Answer {
                generation: Some(g),
            }) => Failure::Stale(g),
            _ => Failure::Unexpected(409, text()),
        },
        StatusCode::UNPROCESSABLE_ENTITY => Failure::Invalid(text()),
        s => Failure::Unexpected(s.as_u16(), text()),
    }
}

/// A TLS client config trusting the CA certificates of a PEM file (ring, as everywhere).
fn client_config(pem: &[u8]) -> std::result::Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a certificate PEM: {e}"))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE in the file".into());
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_failures() {
        assert_eq!(
            refusal(
                StatusCode::CONFLICT,
                br#"{"error":"stale","generation":9,"hash":"x"}"#
            ),
            Failure::Stale(9)
        );
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, b""),
            Failure::Unauthorized
        );
        assert_eq!(
            refusal(StatusCode::UNPROCESSABLE_ENTITY, b"{}").label(),
            "invalid"
        );
        assert_eq!(
            refusal(StatusCode::PAYLOAD_TOO_LARGE, b"big"),
            Failure::Unexpected(413, "big".into())
        );
    }

    #[test]
    fn ca_files_need_a_certificate() {
        assert!(client_config(b"").is_err());
        let ca = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        assert!(client_config(ca.cert.pem().as_bytes()).is_ok());
    }
}
