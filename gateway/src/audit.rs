//! The audit log: one JSON line per request, apart from the normal log, written to a
//! file (reopened when it is rotated away), stdout or stderr by a thread of its own, so a
//! slow disk never holds up a request. It names who did what (access key or JWT subject,
//! operation, bucket, key) and how it went; never secrets, signatures or tokens.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use serde::Serialize;

use crate::Error;

/// Lines waiting to be written at most; past that new lines are dropped (and counted).
const QUEUE: usize = 16_384;

/// One request, as the audit log records it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When the request arrived (RFC 3339, UTC).
    pub time: String,
    pub request_id: String,
    /// `access-key`, `jwt` or `anonymous`.
    pub principal_type: &'static str,
    /// The access key id or the token's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub operation: &'static str,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    pub client_ip: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_ms: f64,
}

/// What the request pipeline learns about a request, for its audit record.
#[derive(Debug)]
pub struct Facts {
    arrived: time::OffsetDateTime,
    client_ip: IpAddr,
    method: http::Method,
    bytes_in: u64,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub principal: Option<crate::auth::Principal>,
    /// The operation only reads.
    pub read: bool,
}

impl Facts {
    /// What is known when a request arrives.
    pub fn new(client_ip: IpAddr, method: http::Method, bytes_in: u64) -> Facts {
        Facts {
            arrived: time::OffsetDateTime::now_utc(),
            client_ip,
            method,
            bytes_in,
            bucket: None,
            key: None,
            principal: None,
            read: false,
        }
    }

    /// The record of a request answered with `status`; none for a successful read when
    /// reads are not audited. `bytesOut` and `latencyMs` are filled when it is written.
    pub fn finish(
        self,
        request_id: String,
        operation: &'static str,
        status: u16,
        error_code: Option<&'static str>,
        reads: bool,
    ) -> Option<Record> {
        if self.read && status < 400 && !reads {
            return None;
        }
        let (principal_type, principal) = match self.principal {
            Some(crate::auth::Principal::AccessKey(k)) => ("access-key", Some(k)),
            Some(crate::auth::Principal::Token(t)) => ("jwt", Some(t.subject)),
            None => ("anonymous", None),
        };
        Some(Record {
            time: crate::s3::respond::iso8601(self.arrived),
            request_id,
            principal_type,
            principal,
            operation,
            method: self.method.to_string(),
            bucket: self.bucket,
            key: self.key,
            status,
            error_code,
            client_ip: self.client_ip.to_string(),
            bytes_in: self.bytes_in,
            bytes_out: 0,
            latency_ms: 0.0,
        })
    }
}

/// Where audit lines go.
enum Target {
    Stdout,
    Stderr,
    File(PathBuf),
}

/// The audit log of one gateway.
#[derive(Clone)]
pub struct Audit {
    tx: SyncSender<String>,
    dropped: IntCounter,
}

impl Audit {
    /// Starts writing to `target`: `stdout`, `stderr` or a file path (appended to).
    pub fn start(target: &str, dropped: IntCounter) -> Result<Audit, Error> {
        let target = match target {
            "stdout" | "-" => Target::Stdout,
            "stderr" => Target::Stderr,
            path => Target::File(PathBuf::from(path)),
        };
        let mut out = Output::open(target)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("jets3-audit".into())
            .spawn(move || out.run(rx))?;
        Ok(Audit { tx, dropped })
    }

    /// Writes `record` when the response is done, with the bytes sent and the latency
    /// since `started`.
    pub fn on_end(&self, mut record: Record, started: Instant) -> crate::bodies::OnEnd {
        let audit = self.clone();
        Box::new(move |sent| {
            record.bytes_out = sent;
            record.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            audit.record(&record);
        })
    }

    /// Queues one record.
    fn record(&self, r: &Record) {
        let Ok(mut line) = serde_json::to_string(r) else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.inc();
        }
    }
}

struct Output {
    target: Target,
    w: BufWriter<Box<dyn Write + Send>>,
    /// The file's identity when opened, to notice rotation.
    id: Option<(u64, u64)>,
    checked: Instant,
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Output {
    fn open(target: Target) -> Result<Output, Error> {
        let (w, id): (Box<dyn Write + Send>, _) = match &target {
            Target::Stdout => (Box::new(std::io::stdout()), None),
            Target::Stderr => (Box::new(std::io::stderr()), None),
            Target::File(p) => {
                let f: File = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::Config(format!("audit log {}: {e}", p.display())))?;
                let id = f.metadata().ok().map(|m| file_id(&m));
                (Box::new(f), id)
            }
        };
        Ok(Output {
            target,
            w: BufWriter::new(w),
            id,
            checked: Instant::now(),
        })
    }

    /// Reopens the file when it was moved or deleted (log rotation), at most once a second.
    fn follow_rotation(&mut self) {
        let Target::File(p) = &self.target else {
            return;
        };
        if self.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.checked = Instant::now();
        let now = std::fs::metadata(p).ok().map(|m| file_id(&m));
        if now.is_some() && now == self.id {
            return;
        }
        let _ = self.w.flush();
        match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => {
                self.id = f.metadata().ok().map(|m| file_id(&m));
                self.w = BufWriter::new(Box::new(f));
            }
            Err(e) => {
                tracing::error!(path = %p.display(), error = %e, "cannot reopen the audit log")
            }
        }
    }

    fn write(&mut self, line: &str) {
        if let Err(e) = self.w.write_all(line.as_bytes()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    fn run(&mut self, rx: Receiver<String>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    self.follow_rotation();
                    self.write(&line);
                    // Flush once the queue is empty: lines reach the file promptly.
                    while let Ok(next) = rx.try_recv() {
                        self.write(&next);
                    }
                    let _ = self.w.flush();
                }
                Err(RecvTimeoutError::Timeout) => self.follow_rotation(),
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.w.flush();
                    return;
                }
            }
        }
    }
}
