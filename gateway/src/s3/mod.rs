//! The S3 API: the endpoint a request addresses, its context, the pipeline from address to
//! response (authenticate, authorize, operation, CORS) and the operations.

pub(crate) mod api;
pub(crate) mod common;
pub(crate) mod context;
pub mod endpoint;
pub mod ops;
pub(crate) mod respond;
