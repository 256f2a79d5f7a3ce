//! Authorization: the credential's grants (and the bucket's `access: public-read`), the
//! bucket policy, bucket and object ACLs, and Block Public Access.
//!
//! Evaluation follows S3: a policy statement that denies wins over everything; otherwise
//! the request is allowed if a grant, the policy or an ACL allows it. Block Public Access
//! makes ACL grants to everyone count for nothing (IgnorePublicAcls) and a public
//! policy grant only credentials (RestrictPublicBuckets). A read-only bucket refuses
//! every write whatever allows it.

pub mod acl;
mod keys;
pub mod state;

use std::sync::Arc;

use http::HeaderMap;
use jets3_crds::policy::{Decision, Policy, PrincipalId, Request};
use jets3_crds::PublicAccessBlock;

use crate::auth::Principal;
use crate::config::compiled::{BucketRef, CompiledConfig};
use crate::error::{S3Code, S3Error, S3Result};
use crate::limits::ClientAddr;
use crate::s3::endpoint::{query_get, Endpoint, Need, Query};
use crate::state::AppState;
use acl::Perm;

/// What access control looks at in a request.
pub struct Subject<'a> {
    pub ep: Endpoint,
    pub bucket: Option<&'a BucketRef>,
    pub key: Option<&'a str>,
    pub principal: Option<&'a Principal>,
    pub headers: &'a HeaderMap,
    pub query: &'a Query,
    pub client: &'a ClientAddr,
    /// Signed in the query string (a presigned URL).
    pub presigned: bool,
}

/// The Block Public Access in force for a bucket: the config's, else the one set over S3,
/// else the gateway-wide default.
pub fn public_access_block(
    compiled: &CompiledConfig,
    bucket: &BucketRef,
    stored: &state::Stored,
) -> PublicAccessBlock {
    bucket
        .config
        .as_ref()
        .and_then(|c| c.public_access_block)
        .or(stored.pab)
        .unwrap_or(compiled.config.public_access_block)
}

/// The policy in force for a bucket: the config's, else the one set over S3.
pub fn policy<'a>(bucket: &'a BucketRef, stored: &'a state::Stored) -> Option<&'a Arc<Policy>> {
    bucket
        .policy
        .as_ref()
        .or(stored.policy.as_ref().map(|(_, p)| p))
}

/// The canonical id of the owner of a bucket: the one its ACL records, else the caller's
/// (a bucket made by the config or before ACLs has no recorded owner).
pub fn bucket_owner(stored: &state::Stored, caller: Option<&PrincipalId>) -> String {
    match (&stored.acl, caller) {
        (Some(acl), _) => acl.owner.clone(),
        (None, Some(c)) => c.canonical.clone(),
        (None, None) => crate::s3::respond::OWNER_ID.to_string(),
    }
}

/// The S3 action of an operation (policies name these).
pub fn action(ep: Endpoint, versioned: bool) -> &'static str {
    use Endpoint::*;
    match ep {
        ListBuckets => "s3:ListAllMyBuckets",
        CreateBucket => "s3:CreateBucket",
        DeleteBucket => "s3:DeleteBucket",
        HeadBucket | ListObjects | ListObjectsV2 => "s3:ListBucket",
        GetBucketLocation => "s3:GetBucketLocation",
        GetBucketVersioning => "s3:GetBucketVersioning",
        PutBucketVersioning => "s3:PutBucketVersioning",
        ListObjectVersions => "s3:ListBucketVersions",
        ListMultipartUploads => "s3:ListBucketMultipartUploads",
        GetBucketTagging => "s3:GetBucketTagging",
        PutBucketTagging | DeleteBucketTagging => "s3:PutBucketTagging",
        GetBucketCors => "s3:GetBucketCORS",
        PutBucketCors | DeleteBucketCors => "s3:PutBucketCORS",
        GetBucketAcl => "s3:GetBucketAcl",
        PutBucketAcl => "s3:PutBucketAcl",
        GetBucketPolicy => "s3:GetBucketPolicy",
        PutBucketPolicy => "s3:PutBucketPolicy",
        DeleteBucketPolicy => "s3:DeleteBucketPolicy",
        GetBucketPolicyStatus => "s3:GetBucketPolicyStatus",
        GetPublicAccessBlock => "s3:GetBucketPublicAccessBlock",
        PutPublicAccessBlock | DeletePublicAccessBlock => "s3:PutBucketPublicAccessBlock",
        GetObject | HeadObject if versioned => "s3:GetObjectVersion",
        GetObject | HeadObject => "s3:GetObject",
        GetObjectAttributes => "s3:GetObjectAttributes",
        DeleteObject if versioned => "s3:DeleteObjectVersion",
        DeleteObject | DeleteObjects => "s3:DeleteObject",
        PutObject
        | CopyObject
        | PostObject
        | CreateMultipartUpload
        | UploadPart
        | UploadPartCopy
        | CompleteMultipartUpload => "s3:PutObject",
        GetObjectTagging => "s3:GetObjectTagging",
        PutObjectTagging => "s3:PutObjectTagging",
        DeleteObjectTagging => "s3:DeleteObjectTagging",
        GetObjectAcl => "s3:GetObjectAcl",
        PutObjectAcl => "s3:PutObjectAcl",
        AbortMultipartUpload => "s3:AbortMultipartUpload",
        ListParts => "s3:ListMultipartUploadParts",
        Preflight | NotImplemented(_) => "",
    }
}

/// The bucket ACL permission that allows an operation, if one does.
fn bucket_acl_need(ep: Endpoint) -> Option<Perm> {
    use Endpoint::*;
    match ep {
        HeadBucket | ListObjects | ListObjectsV2 | ListObjectVersions | ListMultipartUploads => {
            Some(Perm::Read)
        }
        PutObject
        | CopyObject
        | DeleteObject
        | DeleteObjects
        | CreateMultipartUpload
        | UploadPart
        | UploadPartCopy
        | CompleteMultipartUpload
        | AbortMultipartUpload
        | ListParts => Some(Perm::Write),
        GetBucketAcl => Some(Perm::ReadAcp),
        PutBucketAcl => Some(Perm::WriteAcp),
        _ => None,
    }
}

/// The object ACL permission that allows an operation, if one does.
fn object_acl_need(ep: Endpoint) -> Option<Perm> {
    use Endpoint::*;
    match ep {
        GetObject | HeadObject => Some(Perm::Read),
        GetObjectAcl => Some(Perm::ReadAcp),
        PutObjectAcl => Some(Perm::WriteAcp),
        _ => None,
    }
}

/// What the credential's grant (or the bucket's `access: public-read`) allows.
fn grant_allows(compiled: &CompiledConfig, s: &Subject<'_>, bucket: &BucketRef) -> (bool, bool) {
    let need = s.ep.need();
    let public = s.ep.public_read() && bucket.public_read();
    let permission = match s.principal {
        None => None,
        Some(Principal::AccessKey(key)) => compiled.permission(key, &bucket.s3),
        // A token is only ever checked against the bucket it addresses.
        Some(Principal::Token(t)) => Some(t.permission),
    };
    let admin = permission.is_some_and(|p| p.can_admin());
    let allowed = match permission {
        None => false,
        Some(p) => match need {
            Need::Read => p.can_read(),
            Need::Write => p.can_write(),
            Need::Admin => p.can_admin(),
            Need::Authenticated | Need::Nothing => true,
        },
    };
    (allowed || public, admin)
}

/// Decides a request: `Ok` to go on, AccessDenied otherwise.
pub async fn authorize(gw: &AppState, compiled: &CompiledConfig, s: &Subject<'_>) -> S3Result<()> {
    let need = s.ep.need();
    match need {
        Need::Nothing => return Ok(()),
        Need::Authenticated => {
            return s.principal.map(|_| ()).ok_or_else(S3Error::access_denied);
        }
        _ => {}
    }
    let Some(bucket) = s.bucket else {
        return Err(S3Error::access_denied());
    };
    if matches!(need, Need::Write | Need::Admin) && bucket.read_only() {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            "Access Denied: the bucket is read-only",
        ));
    }
    let (granted, admin) = grant_allows(compiled, s, bucket);
    let stored = gw.access.get(&gw.store, &bucket.s3, &bucket.nats).await?;
    let caller = match s.principal {
        Some(Principal::AccessKey(k)) => compiled.principal_id(k),
        _ => None,
    };
    let pab = public_access_block(compiled, bucket, &stored);
    let mut object: Option<Option<crate::store::ObjectMeta>> = None;
    if let Some(policy) = policy(bucket, &stored) {
        if let (true, Some(key)) = (policy.uses_object_tags(), s.key) {
            object = Some(head(gw, bucket, key, s.query).await?);
        }
        let versioned = query_get(s.query, "versionId").is_some();
        let resource = match s.key {
            Some(k) => format!("arn:aws:s3:::{}/{k}", bucket.s3),
            None => format!("arn:aws:s3:::{}", bucket.s3),
        };
        let ctx = keys::Keys {
            s,
            secure: gw.tls || keys::forwarded_https(s),
            caller,
            tags: object
                .as_ref()
                .and_then(|o| o.as_ref())
                .map(|m| &m.tags[..]),
            now: time::OffsetDateTime::now_utc(),
        };
        let req = Request {
            principal: caller,
            action: action(s.ep, versioned),
            resource: &resource,
            context: &ctx,
        };
        // Whoever may administer the bucket can always fix its policy (as S3's root user).
        let policy_op = matches!(
            s.ep,
            Endpoint::GetBucketPolicy | Endpoint::PutBucketPolicy | Endpoint::DeleteBucketPolicy
        );
        match policy.evaluate(&req) {
            Decision::Deny if !(policy_op && admin) => return Err(S3Error::access_denied()),
            Decision::Allow
                if !(pab.restrict_public_buckets && policy.is_public() && caller.is_none()) =>
            {
                return Ok(())
            }
            _ => {}
        }
    }
    if granted {
        return Ok(());
    }
    let caller_id = caller.map(|c| c.canonical.as_str());
    if let (Some(perm), Some(acl)) = (bucket_acl_need(s.ep), &stored.acl) {
        if acl.allows(caller_id, perm, pab.ignore_public_acls) {
            return Ok(());
        }
    }
    if let (Some(perm), Some(key)) = (object_acl_need(s.ep), s.key) {
        let meta = match object {
            Some(m) => m,
            None => head(gw, bucket, key, s.query).await?,
        };
        let acl = meta.as_ref().and_then(|m| m.acl.as_ref());
        if acl.is_some_and(|a| a.allows(caller_id, perm, pab.ignore_public_acls)) {
            return Ok(());
        }
        // No object to read: S3 answers 404 to whoever may list the bucket (its ACL's
        // READ, say), so that the read says what a listing would.
        if meta.is_none() && missing_key_is_404(s) && may_list(gw, compiled, s).await {
            return Err(S3Error::no_such_key(key));
        }
    }
    // A bucket that does not exist is no secret (S3 answers so to anyone), except to a
    // caller who may not make it.
    if !stored.exists && s.ep != Endpoint::CreateBucket {
        return Err(S3Error::no_such_bucket(&bucket.s3));
    }
    Err(S3Error::access_denied())
}

/// Whether a read of `s`'s key that finds no object answers by the caller's right to list
/// the bucket (404 with it, 403 without): S3's rule for GetObject and HeadObject of the
/// current version, so that only who may list learns which keys do not exist.
pub fn missing_key_is_404(s: &Subject<'_>) -> bool {
    matches!(s.ep, Endpoint::GetObject | Endpoint::HeadObject)
        && query_get(s.query, "versionId").is_none()
}

/// Whether the caller of `s` may list its bucket (`s3:ListBucket`: grants, policy, ACL).
pub async fn may_list(gw: &AppState, compiled: &CompiledConfig, s: &Subject<'_>) -> bool {
    let list = Subject {
        ep: Endpoint::ListObjectsV2,
        key: None,
        query: &Query::new(),
        ..*s
    };
    Box::pin(authorize(gw, compiled, &list)).await.is_ok()
}

/// The version a request addresses (the current one without `versionId`), if any.
async fn head(
    gw: &AppState,
    bucket: &BucketRef,
    key: &str,
    query: &Query,
) -> S3Result<Option<crate::store::ObjectMeta>> {
    let b = gw
        .store
        .bucket(&bucket.nats)
        .with_versioning(bucket.declared_versioning());
    let version = query_get(query, "versionId");
    let record = match version {
        Some(v) => b.version(key, Some(v).filter(|v| *v != "null")).await,
        None => b.current(key).await.map(Some),
    };
    match record {
        Ok(r) => Ok(r.and_then(|r| r.object())),
        // No such bucket, key or version: nothing can allow it (the caller learns nothing).
        Err(e) if e.not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
