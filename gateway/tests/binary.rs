//! The `jets3-gateway` binary: refusing an invalid file, reloading on file change and
//! SIGHUP (keeping the old config when the new one is invalid), and draining on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;

use jets3_testkit::{free_port, NatsServer, Pki};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server (the tests here are synchronous: it is started on a runtime of its own).
fn nats() -> NatsServer {
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(NatsServer::start())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn config(s3: u16, admin: u16, nats: u16, buckets: &str) -> String {
    format!(
        "server:\n  listen: ['127.0.0.1:{s3}']\n  adminListen: '127.0.0.1:{admin}'\n  nats:\n    servers: ['nats://127.0.0.1:{nats}']\n  shutdownGraceSeconds: 5\nbuckets:\n{buckets}credentials:\n  - accessKeyId: AKIDBINARYTEST\n    secretAccessKey: secretsecret\n    grants: [{{bucket: '*', permission: admin}}]\n"
    )
}

fn metric(admin: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(admin, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn gateway(file: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jets3-gateway"));
    c.arg("--config")
        .arg(file)
        .env("NO_COLOR", "1")
        .env_remove("JETS3_LISTEN");
    c
}

#[test]
fn invalid_file_exits_with_every_problem_listed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "region: US\nbuckets:\n  - name: Bad_Name\ncredentials:\n  - accessKeyId: A\n    secretAccessKey: s\n",
    )
    .unwrap();
    let out = gateway(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in [
        "region",
        "buckets[0].name",
        "credentials[0].accessKeyId",
        "credentials[0].secretAccessKey",
    ] {
        assert!(err.contains(path), "{path} missing from: {err}");
    }
}

#[test]
fn reloads_on_change_and_sighup_keeps_old_config_when_invalid_and_drains_on_term() {
    let dir = tempfile::tempdir().unwrap();
    let nats = nats();
    let nats_port = nats.port;
    let (s3, admin) = (free_port(), free_port());
    let file = dir.path().join("gw.yaml");
    let private = "  - name: first\n    create: true\n";
    std::fs::write(&file, config(s3, admin, nats_port, private)).unwrap();
    let mut gw = Kill(
        gateway(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("readyz", || {
        http_get(admin, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    wait_for("bucket created", || {
        http_get(s3, "/first").is_some_and(|(s, b)| s == 403 && b.contains("AccessDenied"))
    });

    // A file change that makes the bucket public-read is picked up without a signal.
    let public = "  - name: first\n    create: true\n    access: public-read\n";
    std::fs::write(&file, config(s3, admin, nats_port, public)).unwrap();
    wait_for("anonymous listing after reload", || {
        http_get(s3, "/first?list-type=2")
            .is_some_and(|(s, b)| s == 200 && b.contains("<KeyCount>0</KeyCount>"))
    });

    // An invalid file is refused and the public config stays in force.
    std::fs::write(&file, "buckets:\n  - name: NOT_VALID\n").unwrap();
    wait_for("rejection counted", || {
        metric(admin, "jets3_config_rejected_total").is_some_and(|v| v >= 1.0)
    });
    let (status, _) = http_get(s3, "/first?list-type=2").unwrap();
    assert_eq!(status, 200, "old config still serves");

    // SIGHUP reloads a valid file (back to private).
    std::fs::write(&file, config(s3, admin, nats_port, private)).unwrap();
    let pid = gw.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("private again", || {
        http_get(s3, "/first?list-type=2").is_some_and(|(s, _)| s == 403)
    });

    // SIGTERM: stops accepting and exits cleanly.
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = gw.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "gateway did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        TcpStream::connect(("127.0.0.1", s3)).is_err(),
        "listener closed"
    );
}

/// The gateway with nothing from this process's environment but `vars`.
fn kubernetes_gateway(vars: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jets3-gateway"));
    c.env_clear().env("NO_COLOR", "1");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

#[test]
fn kubernetes_mode_starts_from_env_vars_without_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = Pki::new().serving("jets3-gateway-push.ns.svc");
    let verify = rcgen::KeyPair::generate().unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls_crt = file("tls.crt", cert);
    let tls_key = file("tls.key", key);
    let verify_pem = file("verify.pem", verify.public_key_pem());
    let (s3, admin, push) = (free_port(), free_port(), free_port());
    let addr = |port: u16| PathBuf::from(format!("127.0.0.1:{port}"));
    let (s3_addr, admin_addr, push_addr) = (addr(s3), addr(admin), addr(push));
    let nats = PathBuf::from(format!("nats://127.0.0.1:{}", free_port()));
    let base = [
        ("JETS3_LISTEN", s3_addr.as_path()),
        ("JETS3_ADMIN_LISTEN", admin_addr.as_path()),
        ("JETS3_NATS_URL", nats.as_path()),
    ];

    let refused = |extra: &[(&str, &Path)], code: i32, says: &str| {
        let vars: Vec<_> = base.iter().chain(extra).copied().collect();
        let out = kubernetes_gateway(&vars).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {says:?} missing from {err}");
    };
    refused(&[], 2, "--push-listen");
    refused(&[("JETS3_PUSH_LISTEN", &push_addr)], 2, "--push-verify-key");
    refused(
        &[("JETS3_PUSH_TLS_CERT", &tls_crt)],
        2,
        "need --push-listen",
    );
    refused(
        &[
            ("JETS3_PUSH_LISTEN", &push_addr),
            ("JETS3_PUSH_VERIFY_KEY", &verify_pem),
        ],
        1,
        "--push-insecure",
    );

    let vars: Vec<_> = base
        .iter()
        .copied()
        .chain([
            ("JETS3_PUSH_LISTEN", push_addr.as_path()),
            ("JETS3_PUSH_TLS_CERT", tls_crt.as_path()),
            ("JETS3_PUSH_TLS_KEY", tls_key.as_path()),
            ("JETS3_PUSH_VERIFY_KEY", verify_pem.as_path()),
        ])
        .collect();
    let _gw = Kill(
        kubernetes_gateway(&vars)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the admin listener", || {
        http_get(admin, "/healthz").is_some()
    });
    let (status, body) = http_get(admin, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.ends_with("no config yet\n"), "{body}");
    let (status, body) = http_get(s3, "/").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
    // The push listener speaks TLS only: plain HTTP gets no HTTP answer.
    let (_, answer) = http_get(push, "/v1/config").unwrap_or_default();
    assert!(!answer.starts_with("HTTP/"), "{answer}");
    assert!(TcpStream::connect(("127.0.0.1", push)).is_ok());
}

/// Requests an OTLP receiver got: path and body.
#[cfg(feature = "otel")]
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP receiver: answers every POST with 200 and keeps the bodies.
#[cfg(feature = "otel")]
fn otlp_receiver() -> (u16, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Received::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let seen = seen.clone();
            std::thread::spawn(move || loop {
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => buf.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if conn.read_exact(&mut body).is_err() {
                    return;
                }
                let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                seen.lock().unwrap().push((path, body));
                let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                if conn.write_all(ok.as_bytes()).is_err() {
                    return;
                }
            });
        }
    });
    (port, got)
}

#[cfg(feature = "otel")]
#[test]
fn traces_reach_an_otlp_receiver_with_the_trace_id_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let nats = nats();
    let nats_port = nats.port;
    let (otlp, received) = otlp_receiver();
    let (s3, admin) = (free_port(), free_port());
    let file = dir.path().join("gw.yaml");
    let bucket = "  - name: traced\n    create: true\n    access: public-read\n";
    std::fs::write(&file, config(s3, admin, nats_port, bucket)).unwrap();
    let log = dir.path().join("gw.log");
    let mut gw = Kill(
        gateway(&file)
            .args(["--log-format", "json", "--otlp-endpoint"])
            .arg(format!("http://127.0.0.1:{otlp}"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("readyz", || {
        http_get(admin, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    wait_for("bucket", || {
        http_get(s3, "/traced/missing").is_some_and(|(s, _)| s == 404)
    });
    // SIGTERM flushes the spans still batched.
    let pid = gw.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let _ = gw.0.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .rfind(|l| l.contains("\"request\"") && l.contains("/traced/missing"))
        .unwrap_or_else(|| panic!("no request log line in {text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let trace_id = v["span"]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace_id on {line}"));
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let raw = hex::decode(trace_id).unwrap();
    let bodies = received.lock().unwrap();
    assert!(
        bodies.iter().all(|(p, _)| p == "/v1/traces"),
        "{:?}",
        bodies.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    let has = |needle: &[u8]| {
        bodies
            .iter()
            .any(|(_, b)| b.windows(needle.len()).any(|w| w == needle))
    };
    assert!(has(b"s3.request"), "the request span was exported");
    assert!(
        has(b"nats.direct_get.last"),
        "the NATS call's span was exported"
    );
    assert!(has(&raw), "the logged trace id is the exported one");
}

#[cfg(not(feature = "otel"))]
#[test]
fn an_otlp_endpoint_needs_the_otel_build() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, "region: us-east-1\n").unwrap();
    let out = gateway(&file)
        .args(["--otlp-endpoint", "http://127.0.0.1:4318"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("feature `otel`"));
}
