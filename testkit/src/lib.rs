//! The harness the jets3 crates' tests share (a dev-dependency only, never built into a
//! binary): [`tools`] (the binaries `make tools` installs), [`names`] (free ports, unique
//! names) and [`nats`] (nats-server processes with JetStream, alone or as a cluster).

pub mod names;
pub mod nats;
pub mod tools;

pub use names::{free_port, unique};
pub use nats::NatsServer;
pub use tools::tool;
