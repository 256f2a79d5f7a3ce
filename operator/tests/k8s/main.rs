//! The operator against real servers: etcd + kube-apiserver (one pair for the whole binary,
//! a namespace per test), a nats-server per test, and the `jets3-operator` binary.

mod common;

mod access;

mod buckets;
mod config;
mod credentials;
mod policies;
mod process;
mod push;
mod rbac;
mod schema;
mod versioning;
