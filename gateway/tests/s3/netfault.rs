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
    /// What becomes of the messages the server delivers, by their reply subjects.
    deliveries: Arc<Mutex<Option<Rule>>>,
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
        let deliveries: Arc<Mutex<Option<Rule>>> = Arc::default();
        let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let subjects = Subjects::default();
        let (l, d, n, s) = (
            rule.clone(),
            deliveries.clone(),
            lost.clone(),
            subjects.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let rules = Rules {
                    publishes: l.clone(),
                    deliveries: d.clone(),
                };
                tokio::spawn(relay(client, server, rules, n.clone(), s.clone()));
            }
        });
        FaultProxy {
            url,
            rule,
            deliveries,
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

    /// From now on, delivers every message from the server whose reply subject starts with
    /// one of `prefixes` (e.g. a consumer's `$JS.ACK.<stream>.`) `hold` late: what a client
    /// of a replica that is behind sees.
    pub fn hold_deliveries_replying_to(&self, prefixes: &[&str], hold: Duration) {
        *self.deliveries.lock().expect("lock") = Some(Rule {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            hold: Some(hold),
        });
    }

    /// From now on, forwards everything.
    pub fn heal(&self) {
        *self.rule.lock().expect("lock") = None;
        *self.deliveries.lock().expect("lock") = None;
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

/// The rules of one relayed connection.
struct Rules {
    publishes: Arc<Mutex<Option<Rule>>>,
    deliveries: Arc<Mutex<Option<Rule>>>,
}

/// One protocol operation read from `rd`: its line's words and its whole bytes (with the
/// payload of a message). `None` at the end of the stream.
async fn next_op<R: AsyncBufReadExt + Unpin>(rd: &mut R) -> Option<(Vec<String>, Vec<u8>)> {
    let mut line = Vec::new();
    match rd.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    let words: Vec<String> = String::from_utf8_lossy(&line)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let op = words.first().map(|w| w.to_ascii_uppercase());
    // PUB <subject> [reply] <size>, HPUB <subject> [reply] <header size> <total size>,
    // MSG <subject> <sid> [reply] <size>, HMSG <subject> <sid> [reply] <header size> <total>
    if matches!(op.as_deref(), Some("PUB" | "HPUB" | "MSG" | "HMSG")) {
        let size = words.last().and_then(|n| n.parse::<usize>().ok())?;
        let mut body = vec![0u8; size + 2];
        rd.read_exact(&mut body).await.ok()?;
        line.extend_from_slice(&body);
    }
    Some((words, line))
}

/// Whether `rule` (if any) covers `subject`: then the hold it asks for (`None`: lost).
fn covered(rule: &Mutex<Option<Rule>>, subject: &str) -> Option<Option<Duration>> {
    rule.lock()
        .expect("lock")
        .as_ref()
        .filter(|r| r.prefixes.iter().any(|p| subject.starts_with(p)))
        .map(|r| r.hold)
}

/// Reads the server's side one protocol operation at a time and forwards all but the held
/// deliveries (delivered later, whole).
async fn relay_down(
    server_rd: tokio::net::tcp::OwnedReadHalf,
    client_wr: tokio::net::tcp::OwnedWriteHalf,
    deliveries: Arc<Mutex<Option<Rule>>>,
) {
    let client_wr = Arc::new(tokio::sync::Mutex::new(client_wr));
    let mut rd = BufReader::with_capacity(1 << 16, server_rd);
    while let Some((words, message)) = next_op(&mut rd).await {
        let op = words.first().map(|w| w.to_ascii_uppercase());
        let reply = match op.as_deref() {
            Some("MSG") if words.len() == 5 => Some(words[3].as_str()),
            Some("HMSG") if words.len() == 6 => Some(words[3].as_str()),
            _ => None,
        };
        if let Some(Some(hold)) = reply.and_then(|r| covered(&deliveries, r)) {
            let wr = client_wr.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                let _ = wr.lock().await.write_all(&message).await;
            });
            continue;
        }
        if client_wr.lock().await.write_all(&message).await.is_err() {
            break;
        }
    }
}

/// Relays the server's side ([`relay_down`]); reads the client's side one protocol
/// operation at a time and forwards all but the lost or held publishes (whole messages, so
/// a held one delivered later never splits another).
async fn relay(
    client: TcpStream,
    server: TcpStream,
    rules: Rules,
    lost: Arc<std::sync::atomic::AtomicU64>,
    subjects: Subjects,
) {
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let server_wr = Arc::new(tokio::sync::Mutex::new(server_wr));
    let down = tokio::spawn(relay_down(server_rd, client_wr, rules.deliveries));
    let mut rd = BufReader::new(client_rd);
    while let Some((words, message)) = next_op(&mut rd).await {
        let op = words.first().map(|w| w.to_ascii_uppercase());
        if matches!(op.as_deref(), Some("PUB" | "HPUB")) {
            let subject = words.get(1).cloned().unwrap_or_default();
            let head = message
                .iter()
                .position(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let api = subject
                .starts_with("$JS.API.")
                .then(|| message[head..].to_vec());
            let with_reply = if op.as_deref() == Some("PUB") { 4 } else { 5 };
            let reply = (words.len() == with_reply).then(|| words[2].clone());
            subjects.lock().expect("lock").push(Publish {
                subject: subject.clone(),
                reply,
                api,
            });
            if let Some(hold) = covered(&rules.publishes, &subject) {
                lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(hold) = hold {
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
