//! What a reconcile of each kind does: [`bucket`] (the NATS bucket, the S3Bucket's status,
//! the finalizer's cleanup) and [`credential`] (the key, the app Secret, the status), as
//! methods on the resource. The controllers ([`crate::controller`]) call them.

pub mod bucket;
pub mod credential;
