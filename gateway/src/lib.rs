//! jets3-gateway: the S3 API on NATS JetStream Object Store.
//!
//! [`start`] connects to NATS, binds the S3, admin and (Kubernetes mode) config push
//! listeners and serves until [`GatewayHandle::shutdown`]. The binary adds the CLI, the
//! config file and signals.

pub mod access;
pub mod audit;
pub mod auth;
mod breaker;
mod bucket;
pub mod cache;
pub mod checksum;
pub mod cli;
mod copy;
mod cors;
mod delete;
mod dispatch;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod get;
mod guards;
mod limits;
mod list;
mod listener;
pub mod metrics;
pub mod multipart;
mod ops;
mod post_object;
pub mod push;
mod put;
pub mod reload;
mod request;
mod respond;
pub mod router;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod store;
mod tagging;
mod tail;
pub mod telemetry;
pub mod tls;
mod versioning;
pub mod xml;

pub use server::{start, Gateway, GatewayHandle};
pub use settings::{ConfigFile, ConnectionLimits, NatsSettings, PushSettings, ServerSettings};

/// Errors of the gateway process (start-up, config, NATS connection).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Invalid(#[from] jets3_crds::ValidationErrors),
    #[error("nats: {0}")]
    Nats(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
