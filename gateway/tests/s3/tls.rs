//! HTTPS on the S3 listener with certificates made here: aws-sdk-s3 and the AWS CLI trust
//! the test CA; a rotated certificate is served without a restart; with a client CA, only
//! clients with a certificate it signed get through (mutual TLS), or, in optional mode,
//! clients without one too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use jets3_gateway::config::settings::{ClientAuth, ListenerTls};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;

use crate::common::*;

struct Tls {
    env: Env,
    pki: Pki,
    dir: tempfile::TempDir,
}

impl Tls {
    async fn start(b: &str, client_auth: Option<ClientAuth>) -> Tls {
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pki.serving("127.0.0.1");
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("tls.crt"), cert).unwrap();
        std::fs::write(path("tls.key"), key).unwrap();
        std::fs::write(path("ca.pem"), pki.ca_pem()).unwrap();
        let tls = ListenerTls {
            cert_file: path("tls.crt"),
            key_file: path("tls.key"),
            client_ca_file: client_auth.map(|_| path("ca.pem")),
            client_auth: client_auth.unwrap_or_default(),
        };
        let env = Env::start_with(config_with(&[b]), move |s| s.tls = Some(tls)).await;
        Tls { env, pki, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// aws-sdk-s3 over HTTPS to `endpoint`, trusting the test CA.
    fn sdk(&self, endpoint: &str) -> aws_sdk_s3::Client {
        let ctx = TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_pem_certificate(self.pki.ca_pem()))
            .build()
            .unwrap();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(ctx)
            .build_https();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(ADMIN_AK, ADMIN_SK, None, None, "t"))
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A TLS handshake from a client presenting `client`; the served certificate on success.
    async fn handshake(
        &self,
        client: Option<&(String, String)>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.env.addr).await?;
        let mut s = self
            .pki
            .connector(client)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await?;
        // TLS 1.3 reports a refused client certificate on the first read or write.
        s.write_all(&RawRequest::new("GET", "/").to_bytes("127.0.0.1"))
            .await?;
        let mut buf = Vec::new();
        read_response(&mut s, &mut buf, false, true).await?;
        Ok(s)
    }
}

/// Accepts plain connections and carries them to `upstream` over TLS with `client`'s
/// certificate: a stand-in for a client library that presents one.
async fn mtls_proxy(upstream: SocketAddr, connector: tokio_rustls::TlsConnector) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut plain, _)) = listener.accept().await {
            let connector = connector.clone();
            tokio::spawn(async move {
                let Ok(tcp) = TcpStream::connect(upstream).await else {
                    return;
                };
                let name = ServerName::try_from("127.0.0.1").unwrap();
                if let Ok(mut tls) = connector.connect(name, tcp).await {
                    let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
                }
            });
        }
    });
    addr
}

fn aws_cli(ca: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    let bin = std::env::var_os("JETS3_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/jets3"))
        .join("bin/aws");
    assert!(
        bin.is_file(),
        "{} not found: run `make tools`",
        bin.display()
    );
    std::process::Command::new(bin)
        .arg("--endpoint-url")
        .arg(endpoint)
        .arg("--ca-bundle")
        .arg(ca)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ADMIN_AK)
        .env("AWS_SECRET_ACCESS_KEY", ADMIN_SK)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run aws")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_aws_sdk_and_aws_cli_and_certificate_rotation() {
    let b = unique_bucket("tls");
    let t = Tls::start(&b, None).await;
    let endpoint = format!("https://127.0.0.1:{}", t.env.addr.port());
    let s3 = t.sdk(&endpoint);
    let body = data(300_000, 9);
    put(&s3, &b, "over/tls.bin", &body).await;
    assert!(get_bytes(&s3, &b, "over/tls.bin").await == body);
    assert_eq!(list_all_keys(&s3, &b).await, vec!["over/tls.bin"]);
    // Plain HTTP on the TLS port gets no HTTP answer.
    let r = tokio::time::timeout(Duration::from_secs(15), async {
        let mut s = TcpStream::connect(t.env.addr).await.unwrap();
        s.write_all(&RawRequest::new("GET", "/").to_bytes("x"))
            .await
            .unwrap();
        let mut buf = Vec::new();
        read_response(&mut s, &mut buf, false, true).await
    })
    .await
    .expect("the gateway hangs up");
    assert!(r.is_err(), "plain HTTP is not answered: {r:?}");

    // The AWS CLI, trusting the CA; and refusing the certificate without it.
    let file = t.path("upload.txt");
    std::fs::write(&file, b"from the aws cli").unwrap();
    let ca = t.path("ca.pem");
    let dest = format!("s3://{b}/cli.txt");
    let out = aws_cli(&ca, &endpoint, &["s3", "cp", file.to_str().unwrap(), &dest]);
    assert!(
        out.status.success(),
        "aws s3 cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = t.path("back.txt");
    let out = aws_cli(&ca, &endpoint, &["s3", "cp", &dest, back.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "aws s3 cp back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"from the aws cli");
    let stranger = t.path("stranger.pem");
    std::fs::write(&stranger, Pki::new().ca_pem()).unwrap();
    let out = aws_cli(&stranger, &endpoint, &["s3", "ls", &format!("s3://{b}")]);
    assert!(
        !out.status.success(),
        "a CLI that does not trust the CA fails"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SSL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Rotation: new connections get the new certificate, no restart.
    let served = |s: &tokio_rustls::client::TlsStream<TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let before = served(&t.handshake(None).await.unwrap());
    let (cert, key) = t.pki.serving("127.0.0.1");
    replace_file(&t.path("tls.key"), &key);
    replace_file(&t.path("tls.crt"), &cert);
    let rotated = eventually(10, || async {
        served(&t.handshake(None).await.unwrap()) != before
    })
    .await;
    assert!(rotated, "the rotated certificate is served");
    let fresh = t.sdk(&endpoint);
    assert!(get_bytes(&fresh, &b, "over/tls.bin").await == body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_of_the_ca() {
    let b = unique_bucket("mtls");
    let t = Tls::start(&b, Some(ClientAuth::Required)).await;
    let client = t.pki.serving("client.test");
    let foreign = Pki::new().serving("client.test");
    assert!(t.handshake(None).await.is_err(), "no client certificate");
    assert!(
        t.handshake(Some(&foreign)).await.is_err(),
        "a certificate of another CA"
    );
    t.handshake(Some(&client))
        .await
        .expect("a certificate of the CA");
    // aws-sdk-s3 without a certificate is refused...
    let endpoint = format!("https://127.0.0.1:{}", t.env.addr.port());
    let r = t.sdk(&endpoint).list_buckets().send().await;
    assert!(
        r.is_err(),
        "an SDK without a client certificate gets nothing"
    );
    // ...and works through a hop that presents the client certificate.
    let hop = mtls_proxy(t.env.addr, t.pki.connector(Some(&client))).await;
    let s3 = s3_client(ClientOpts {
        endpoint: format!("http://{hop}"),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        ..Default::default()
    });
    put(&s3, &b, "k", b"mutual").await;
    assert_eq!(get_bytes(&s3, &b, "k").await, b"mutual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_are_checked_when_given() {
    let b = unique_bucket("mtls-opt");
    let t = Tls::start(&b, Some(ClientAuth::Optional)).await;
    t.handshake(None).await.expect("no certificate is fine");
    t.handshake(Some(&t.pki.serving("client.test")))
        .await
        .expect("a certificate of the CA");
    let foreign = Pki::new().serving("client.test");
    assert!(
        t.handshake(Some(&foreign)).await.is_err(),
        "a certificate of another CA is refused"
    );
    let endpoint = format!("https://127.0.0.1:{}", t.env.addr.port());
    put(&t.sdk(&endpoint), &b, "k", b"optional").await;
}
