//! The harness the jets3 crates' tests share (a dev-dependency only, never built into a
//! binary): [`tools`] (the binaries `make tools` installs), [`names`] (free ports, unique
//! names), [`http`] (a bare HTTP/1.1 client for benchmarks), [`nats`] (nats-server processes with JetStream, alone or as a cluster), [`pki`]
//! (a test CA and its certificates) and [`sigv4`] (SigV4's dates and signing key).

pub mod http;
pub mod names;
pub mod nats;
pub mod pki;
pub mod sigv4;
pub mod tools;

pub use names::{free_port, unique};
pub use nats::{NatsCluster, NatsServer};
pub use pki::Pki;
pub use tools::tool;
