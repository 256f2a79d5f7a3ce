//! jets3-gateway: the S3 API on NATS JetStream Object Store.
//!
//! [`start`] connects to NATS, binds the S3, admin and (Kubernetes mode) config push
//! listeners and serves until [`GatewayHandle::shutdown`]. The binary adds the CLI, the
//! config file and signals.

pub mod access;
mod app;
pub mod audit;
pub mod auth;
mod bodies;
mod breaker;
pub mod cache;
pub mod checksum;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod guards;
pub mod http;
mod limits;
pub mod metrics;
pub mod s3;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod xml;

pub use app::{start, GatewayHandle};
pub use config::settings::{
    ConfigFile, ConnectionLimits, NatsSettings, PushSettings, ServerSettings,
};
pub use state::AppState;

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
