//! The S3 operations, one file a family, and the call of each routed operation.

pub mod access;
pub(crate) mod bucket;
pub(crate) mod common;
pub(crate) mod copy;
pub(crate) mod cors;
pub(crate) mod delete;
pub(crate) mod get;
pub(crate) mod list;
pub mod multipart;
pub(crate) mod post_object;
pub(crate) mod put;
pub(crate) mod tagging;
pub(crate) mod versioning;
pub(crate) mod write;

use axum::response::Response;

use crate::error::S3Result;
use crate::s3::context::Ctx;
use crate::s3::endpoint::Endpoint;

/// Runs the operation the request was routed to.
pub(crate) async fn call(ctx: Ctx) -> S3Result<Response> {
    use Endpoint::*;
    match ctx.ep {
        ListBuckets => bucket::list_buckets(&ctx).await,
        CreateBucket => bucket::create_bucket(ctx).await,
        DeleteBucket => bucket::delete_bucket(&ctx).await,
        HeadBucket => bucket::head_bucket(&ctx).await,
        GetBucketLocation => bucket::get_location(&ctx).await,
        GetBucketVersioning => versioning::get_versioning(&ctx).await,
        PutBucketVersioning => versioning::put_versioning(ctx).await,
        GetBucketAcl | GetObjectAcl => access::get_acl(&ctx).await,
        PutBucketAcl | PutObjectAcl => access::put_acl(ctx).await,
        GetBucketPolicy => access::get_policy(&ctx).await,
        PutBucketPolicy => access::put_policy(ctx).await,
        DeleteBucketPolicy => access::delete_policy(&ctx).await,
        GetBucketPolicyStatus => access::get_policy_status(&ctx).await,
        GetPublicAccessBlock => access::get_public_access_block(&ctx).await,
        PutPublicAccessBlock => access::put_public_access_block(ctx).await,
        DeletePublicAccessBlock => access::delete_public_access_block(&ctx).await,
        GetBucketCors => cors::get_cors(&ctx).await,
        PutBucketCors => cors::put_cors(ctx).await,
        DeleteBucketCors => cors::delete_cors(&ctx).await,
        ListObjects => list::list_objects(&ctx, list::Flavor::V1).await,
        ListObjectsV2 => list::list_objects(&ctx, list::Flavor::V2).await,
        ListObjectVersions => list::list_objects(&ctx, list::Flavor::Versions).await,
        ListMultipartUploads => multipart::list_uploads(&ctx).await,
        GetBucketTagging => tagging::get_bucket_tagging(&ctx).await,
        PutBucketTagging => tagging::put_bucket_tagging(ctx).await,
        DeleteBucketTagging => tagging::delete_bucket_tagging(&ctx).await,
        GetObjectTagging => tagging::get_object_tagging(&ctx).await,
        PutObjectTagging => tagging::put_object_tagging(ctx).await,
        DeleteObjectTagging => tagging::delete_object_tagging(&ctx).await,
        DeleteObjects => delete::delete_objects(ctx).await,
        DeleteObject => delete::delete_object(&ctx).await,
        GetObject => get::get_object(&ctx, false).await,
        HeadObject => get::get_object(&ctx, true).await,
        GetObjectAttributes => get::get_object_attributes(&ctx).await,
        PutObject => put::put_object(ctx).await,
        CopyObject => copy::copy_object(&ctx).await,
        CreateMultipartUpload => multipart::create(&ctx).await,
        UploadPart => multipart::upload_part(ctx).await,
        UploadPartCopy => multipart::upload_part_copy(&ctx).await,
        CompleteMultipartUpload => multipart::complete(ctx).await,
        AbortMultipartUpload => multipart::abort(&ctx).await,
        ListParts => multipart::list_parts(&ctx).await,
        PostObject => post_object::post_object(ctx).await,
        Preflight => cors::preflight(&ctx).await,
        NotImplemented(name) => Err(crate::error::S3Error::not_implemented(name)),
    }
}
