//! Free ports and names unique in a test run.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port free on 127.0.0.1 now (someone else may take it before it is bound again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique in this run: `prefix-<n>-<random>`.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand_u32() % 100_000;
    format!("{prefix}-{n}-{r}")
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}
