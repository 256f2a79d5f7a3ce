//! The condition keys of a request, as bucket policies read them.

use std::borrow::Cow;

use jets3_crds::policy::{Context, PrincipalId, EXISTING_OBJECT_TAG, REQUEST_OBJECT_TAG};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Subject;
use crate::auth::Principal;
use crate::s3::endpoint::{query_get, Endpoint};

/// A request's condition keys, computed when a condition asks.
pub struct Keys<'a> {
    pub s: &'a Subject<'a>,
    /// TLS on the listener, or at a trusted proxy that says so.
    pub secure: bool,
    pub caller: Option<&'a PrincipalId>,
    /// The addressed object's tags, when a policy reads them.
    pub tags: Option<&'a [(String, String)]>,
    pub now: OffsetDateTime,
}

/// `X-Forwarded-Proto: https` from a trusted proxy (the only ones whose headers count).
pub fn forwarded_https(s: &Subject<'_>) -> bool {
    !s.client.proxies.is_empty()
        && s.headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

impl Keys<'_> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.s
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(Cow::Borrowed)
    }

    /// A tag the request sets on the object it writes (`x-amz-tagging` of PutObject, CopyObject
    /// and CreateMultipartUpload).
    fn request_tag(&self, name: &str) -> Option<Cow<'_, str>> {
        if !matches!(
            self.s.ep,
            Endpoint::PutObject | Endpoint::CopyObject | Endpoint::CreateMultipartUpload
        ) {
            return None;
        }
        let header = self.header("x-amz-tagging")?;
        crate::store::decode_tags(&header)
            .into_iter()
            .find(|(t, _)| t == name)
            .map(|(_, v)| Cow::Owned(v))
    }

    fn listing(&self) -> bool {
        matches!(
            self.s.ep,
            Endpoint::ListObjects
                | Endpoint::ListObjectsV2
                | Endpoint::ListObjectVersions
                | Endpoint::ListMultipartUploads
        )
    }
}

impl Context for Keys<'_> {
    fn value(&self, key: &str) -> Option<Cow<'_, str>> {
        let text = |b: bool| Some(Cow::Borrowed(if b { "true" } else { "false" }));
        match key {
            "aws:sourceip" => Some(Cow::Owned(self.s.client.ip.to_string())),
            "aws:securetransport" => text(self.secure),
            "aws:currenttime" => self.now.format(&Rfc3339).ok().map(Cow::Owned),
            "aws:epochtime" => Some(Cow::Owned(self.now.unix_timestamp().to_string())),
            "aws:useragent" => self.header("user-agent"),
            "aws:referer" => self.header("referer"),
            "aws:principaltype" => Some(Cow::Borrowed(match self.s.principal {
                None => "Anonymous",
                Some(_) => "User",
            })),
            "aws:username" => match self.s.principal {
                Some(Principal::AccessKey(k)) => Some(Cow::Borrowed(k.as_str())),
                _ => None,
            },
            "aws:userid" => self.caller.map(|c| Cow::Borrowed(c.canonical.as_str())),
            "s3:prefix" | "s3:delimiter" | "s3:max-keys" if self.listing() => {
                query_get(self.s.query, &key[3..]).map(Cow::Borrowed)
            }
            "s3:versionid" => query_get(self.s.query, "versionId").map(Cow::Borrowed),
            "s3:x-amz-copy-source" => self.header("x-amz-copy-source").map(copy_source),
            "s3:x-amz-acl"
            | "s3:x-amz-content-sha256"
            | "s3:x-amz-metadata-directive"
            | "s3:x-amz-grant-read"
            | "s3:x-amz-grant-write"
            | "s3:x-amz-grant-read-acp"
            | "s3:x-amz-grant-write-acp"
            | "s3:x-amz-grant-full-control"
            | "s3:x-amz-storage-class"
            | "s3:x-amz-server-side-encryption" => self.header(&key[3..]),
            "s3:signatureversion" => match self.s.principal {
                Some(Principal::AccessKey(_)) => Some(Cow::Borrowed("AWS4-HMAC-SHA256")),
                _ => None,
            },
            "s3:authtype" => match self.s.principal {
                Some(Principal::AccessKey(_)) if self.s.presigned => {
                    Some(Cow::Borrowed("REST-QUERY-STRING"))
                }
                Some(Principal::AccessKey(_)) => Some(Cow::Borrowed("REST-HEADER")),
                _ => None,
            },
            k if k.starts_with(REQUEST_OBJECT_TAG) => {
                self.request_tag(&k[REQUEST_OBJECT_TAG.len()..])
            }
            k => {
                let name = k.strip_prefix(EXISTING_OBJECT_TAG)?;
                self.tags?
                    .iter()
                    .find(|(t, _)| t == name)
                    .map(|(_, v)| Cow::Borrowed(v.as_str()))
            }
        }
    }
}

/// A copy source as the copy reads it, `bucket/key` decoded (and `?versionId=...` as sent):
/// the header's other spellings of the same source (a leading `/`, percent-encoded
/// characters) must meet the same conditions.
fn copy_source(raw: Cow<'_, str>) -> Cow<'_, str> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw.as_ref(), None),
    };
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut out = decoded.strip_prefix('/').unwrap_or(&decoded).to_string();
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Cow::Owned(out)
}
