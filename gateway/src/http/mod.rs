//! HTTP transport: listeners, TLS, the admin endpoints and the config push listener.

pub(crate) mod admin;
pub(crate) mod listener;
pub mod push;
pub mod tls;
