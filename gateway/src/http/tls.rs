//! TLS for a listener: a certificate chain and key from PEM files, re-read when the files
//! change (new connections get the new certificate, open ones keep theirs), and a listener
//! that runs handshakes concurrently so one slow client cannot hold up the others.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::reload::Reloading;
use crate::http::listener::{CappedTcp, Slot};
use crate::Error;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key in force, from their PEM files.
pub type ServingCert = Reloading<CertifiedKey>;

/// The crypto provider of every TLS endpoint of the gateway (ring, as async-nats uses).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// Loads `cert` (PEM chain, leaf first) and `key` (PEM: PKCS#8, PKCS#1 or SEC1) and checks
/// that they belong together; then watches both files for changes until `stop`.
pub fn serving_cert(
    cert: PathBuf,
    key: PathBuf,
    stop: watch::Receiver<bool>,
) -> Result<(Arc<ServingCert>, JoinHandle<()>), Error> {
    let provider = provider();
    let cert = Reloading::new("TLS certificate", vec![cert, key], move |paths| {
        let (cert, key) = (&paths[0], &paths[1]);
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(Error::Config(format!(
                "{}: no CERTIFICATE in the file",
                cert.display()
            )));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::Config(format!("{}: {e}", key.display())))?;
        CertifiedKey::from_der(chain, key_der, &provider)
            .map_err(|e| Error::Config(format!("{} and {}: {e}", cert.display(), key.display())))
    })?;
    let task = cert.watch(stop);
    Ok((cert, task))
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Client certificates a listener asks for (mutual TLS).
#[derive(Debug, Clone)]
pub struct ClientCerts {
    /// CA certificates (PEM) client certificates must chain to.
    pub ca_file: PathBuf,
    /// Refuse clients without a certificate (else only certificates given are checked).
    pub required: bool,
}

fn client_verifier(c: &ClientCerts) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Config(format!("{}: {e}", c.ca_file.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&c.ca_file).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if c.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| bad(&e))
}

/// A TLS 1.3 server config (HTTP/1.1) that always serves the current certificate, and
/// checks client certificates when `clients` says so.
pub fn server_config(
    cert: Arc<ServingCert>,
    clients: Option<&ClientCerts>,
) -> Result<Arc<ServerConfig>, Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let builder = match clients {
        Some(c) => builder.with_client_cert_verifier(client_verifier(c)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener that yields connections after their TLS handshake. Handshakes run in their
/// own tasks with a timeout; a failed one (plain HTTP, an untrusted client) is dropped.
/// Connections count under the TCP listener's cap from their accept on.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<Slot<TcpStream>>, SocketAddr)>,
    accept: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `config`.
    pub fn new(mut tcp: CappedTcp, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let accept = tokio::spawn(async move {
            loop {
                let (stream, peer) = Listener::accept(&mut tcp).await;
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accept,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl crate::http::listener::LocalAddr for TlsStream<Slot<TcpStream>> {
    fn local(&self) -> Option<std::net::SocketAddr> {
        self.get_ref().0.local()
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<Slot<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
