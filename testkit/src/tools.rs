//! The binaries `make tools` installs (nats-server, kube-apiserver, etcd, helm ...).

use std::path::PathBuf;

/// Where `make tools` installs: `$JETS3_TOOLS_DIR`, else `~/.cache/jets3`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("JETS3_TOOLS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/jets3"),
    }
}

/// A tool `make tools` installs; panics with what to do when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let bin = tools_dir().join("bin").join(name);
    assert!(
        bin.is_file(),
        "{name} not found at {}: run `make tools` (scripts/tools.sh; kube-apiserver and etcd come from scripts/tools-k8s.sh)",
        bin.display()
    );
    bin
}
