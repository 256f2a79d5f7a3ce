//! A TCP proxy in front of a nats-server that loses or holds up chosen publishes of its
//! clients on the way: the faults of a message that never reached a stream (a leader that
//! died before storing it) or reached it late (a slow link, a stalled server), at exactly
//! the point a test picks. It also counts its clients' publishes by subject.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jets3_gateway::ServerSettings;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// A nats-server, a proxy in front of it, and a ready gateway on the proxy serving `bucket`,
/// with its server settings changed by `settings`.
pub async fn env_behind_proxy(
    bucket: &str,
    settings: impl FnOnce(&mut ServerSettings),
) -> (Env, FaultProxy) {
    let nats = NatsServer::start().await;
    let proxy = FaultProxy::start(&nats.url()).await;
    let mut s = settings_for(&proxy.url);
    settings(&mut s);
    let env = Env::launch(nats, s, Some(config_with(&[bucket]))).await;
    env.wait_ready().await;
    env.wait_declared_buckets(&env.config).await;
    (env, proxy)
}

/// The proxy; every connection it accepts goes to the upstream server.
pub struct FaultProxy {
    pub url: String,
    rule: Arc<Mutex<Option<Rule>>>,
    lost: Arc<std::sync::atomic::AtomicU64>,
    subjects: Subjects,
    task: tokio::task::JoinHandle<()>,
}

/// Every publish that reached the proxy, in order.
type Subjects = Arc<Mutex<Vec<Publish>>>;

/// A publish's subject and reply subject, with the body of those to the JetStream API
/// (requests, small; the data's bodies are not kept).
struct Publish {
    subject: String,
    reply: Option<String>,
    api: Option<Vec<u8>>,
}

/// What becomes of the publishes to subjects starting with one of `prefixes`.
#[derive(Clone)]
struct Rule {
    prefixes: Vec<String>,
    /// `None`: lost; else delivered this much later (the rest of the traffic goes on).
    hold: Option<Duration>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`nats://host:port`) that loses nothing yet.
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("nats://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let rule: Arc<Mutex<Option<Rule>>> = Arc::default();
        let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let subjects = Subjects::default();
        let (l, n, s) = (rule.clone(), lost.clone(), subjects.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, l.clone(), n.clone(), s.clone()));
            }
        });
        FaultProxy {
            url,
            rule,
            lost,
            subjects,
            task,
        }
    }

    /// From now on, loses every publish to a subject starting with one of `prefixes`.
    pub fn lose_publishes_to(&self, prefixes: &[&str]) {
        self.set(prefixes, None);
    }

    /// From now on, delivers every publish to a subject starting with one of `prefixes`
    /// `hold` late.
    pub fn hold_publishes_to(&self, prefixes: &[&str], hold: Duration) {
        self.set(prefixes, Some(hold));
    }

    /// From now on, forwards everything.
    pub fn heal(&self) {
        *self.rule.lock().expect("lock") = None;
    }

    fn set(&self, prefixes: &[&str], hold: Option<Duration>) {
        *self.rule.lock().expect("lock") = Some(Rule {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            hold,
        });
    }

    /// How many publishes it lost or held up.
    pub fn lost(&self) -> u64 {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many publishes to a subject starting with `prefix` reached the proxy so far.
    pub fn publishes_to(&self, prefix: &str) -> usize {
        let subjects = self.subjects.lock().expect("lock");
        subjects
            .iter()
            .filter(|p| p.subject.starts_with(prefix))
            .count()
    }

    /// How many requests to a JetStream API subject starting with `prefix` whose body
    /// contains `needle` reached the proxy so far.
    pub fn api_requests(&self, prefix: &str, needle: &str) -> usize {
        self.api_replies(prefix, needle).len()
    }

    /// The reply subjects of the publishes to a subject starting with `prefix`, in the order
    /// they reached the proxy.
    pub fn replies_to(&self, prefix: &str) -> Vec<String> {
        let subjects = self.subjects.lock().expect("lock");
        subjects
            .iter()
            .filter(|p| p.subject.starts_with(prefix))
            .filter_map(|p| p.reply.clone())
            .collect()
    }

    /// The reply subjects of the requests to a JetStream API subject starting with `prefix`
    /// whose body contains `needle`, in the order they reached the proxy.
    pub fn api_replies(&self, prefix: &str, needle: &str) -> Vec<String> {
        let subjects = self.subjects.lock().expect("lock");
        subjects
            .iter()
            .filter(|p| {
                p.subject.starts_with(prefix)
                    && p.api
                        .as_deref()
                        .is_some_and(|b| find(b, needle.as_bytes()).is_some())
            })
            .map(|p| p.reply.clone().unwrap_or_default())
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies the server's side as it comes; reads the client's side one protocol operation at
/// a time and forwards all but the lost or held publishes (whole messages, so a held one
/// delivered later never splits another).
async fn relay(
    client: TcpStream,
    server: TcpStream,
    rule: Arc<Mutex<Option<Rule>>>,
    lost: Arc<std::sync::atomic::AtomicU64>,
    subjects: Subjects,
) {
    let (client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, server_wr) = server.into_split();
    let server_wr = Arc::new(tokio::sync::Mutex::new(server_wr));
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
    });
    let mut rd = BufReader::new(client_rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        match rd.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let words: Vec<&str> = text.split_whitespace().collect();
        let op = words.first().map(|w| w.to_ascii_uppercase());
        // PUB <subject> [reply] <size>, HPUB <subject> [reply] <header size> <total size>
        let payload = match op.as_deref() {
            Some("PUB" | "HPUB") => words.last().and_then(|n| n.parse::<usize>().ok()),
            _ => None,
        };
        let mut message = line.clone();
        if let Some(size) = payload {
            let mut body = vec![0u8; size + 2];
            if rd.read_exact(&mut body).await.is_err() {
                break;
            }
            message.extend_from_slice(&body);
            let subject = words.get(1).copied().unwrap_or_default();
            let api = subject.starts_with("$JS.API.").then(|| body.clone());
            let with_reply = if op.as_deref() == Some("PUB") { 4 } else { 5 };
            let reply = (words.len() == with_reply).then(|| words[2].to_string());
            subjects.lock().expect("lock").push(Publish {
                subject: subject.to_string(),
                reply,
                api,
            });
            let matched = rule
                .lock()
                .expect("lock")
                .clone()
                .filter(|r| r.prefixes.iter().any(|p| subject.starts_with(p)));
            if let Some(r) = matched {
                lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(hold) = r.hold {
                    let wr = server_wr.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(hold).await;
                        let _ = wr.lock().await.write_all(&message).await;
                    });
                }
                continue;
            }
        }
        if server_wr.lock().await.write_all(&message).await.is_err() {
            break;
        }
    }
    down.abort();
}
