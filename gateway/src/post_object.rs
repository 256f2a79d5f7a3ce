//! PostObject: browser form uploads signed with a SigV4 POST policy.

use axum::response::Response;

use crate::error::{S3Error, S3Result};
use crate::request::Ctx;

/// PostObject.
pub async fn post_object(_ctx: Ctx) -> S3Result<Response> {
    Err(S3Error::not_implemented("PostObject"))
}
