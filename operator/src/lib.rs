//! jets3-operator: the Kubernetes control plane of jets3.
//!
//! It reconciles `S3Bucket`s into NATS JetStream object-store buckets
//! ([`reconcile::bucket`]) and `S3Credential`s into access key pairs in Secrets for apps
//! ([`reconcile::credential`]), and builds from all of them the one validated `GatewayConfig`
//! the gateways serve ([`model::gateway_config`], published by [`publish`] and [`push`]). The
//! shape is kube-rs's example controller: a thin reconcile per kind ([`controller`]) around one
//! shared [`context::Context`], the logic as methods on the resource, what it decides computed
//! in the pure [`model`], status by server-side apply with one field manager ([`status`]),
//! Events for what a person must see, and one error type whose variants label the failure
//! metric.
//!
//! Layers, each importing only those below it: `main`/`cli` → [`controller`] →
//! [`reconcile`], [`publish`], [`push`] → [`context`] → [`status`], [`hub`], [`nats`],
//! [`metrics`] → [`model`].

pub mod admin;
pub mod cli;
pub mod context;
pub mod controller;
#[cfg(test)]
mod fixtures;
pub mod hub;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod nats;
pub mod publish;
pub mod push;
pub mod reconcile;
pub mod status;

/// The field manager of every write the operator makes (status, Secrets, state ConfigMap).
pub const FIELD_MANAGER: &str = "jets3-operator";

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// NATS is unreachable, or a JetStream request timed out.
    #[error("nats: {0}")]
    Nats(String),
    /// JetStream answered a request with an error (it refuses the change).
    #[error("nats refused: {0}")]
    NatsRefused(String),
    /// Adding or removing a finalizer, or the reconcile inside it, failed.
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<Error>>),
    /// A flag or the environment is wrong, or the CRDs are not installed.
    #[error("{0}")]
    Config(String),
    /// Reading or writing a local file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The `reason` label of `jets3_operator_reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(_) => "kube",
            Error::Nats(_) => "nats",
            Error::NatsRefused(_) => "nats_refused",
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "finalizer",
                _ => "finalizer",
            },
            Error::Config(_) => "config",
            Error::Io(_) => "io",
        }
    }
}

/// A result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
