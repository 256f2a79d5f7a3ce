//! What the jets3 gateway and operator share about NATS:
//! - [`settings`]: how to reach NATS (the config file's `server.nats` and the `--nats-*`
//!   flags);
//! - [`connect`]: the client options both use, authentication and TLS from the settings;
//! - [`names`]: the streams and subjects of object-store buckets and KV buckets;
//! - [`config_lock`]: the lock every change of a bucket stream's config holds.

pub mod config_lock;
pub mod connect;
pub mod names;
pub mod settings;

pub use connect::{connect, options, ConnectError};
pub use settings::{NatsFlags, NatsSettings};
