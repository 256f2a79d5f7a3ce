//! ListObjects (v1), ListObjectsV2 and ListObjectVersions over the sorted index.

use std::ops::Bound;

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond::{self, OWNER_NAME};
use crate::store::{KeyState, Need, Source, VersionEntry};
use crate::xml::XmlWriter;

/// Which listing the request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V1,
    V2,
    Versions,
}

/// One page of a listing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<(String, VersionEntry)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned, where the next page starts.
    pub last: Option<String>,
}

/// The smallest string greater than every string starting with `p`, or near enough:
/// keys with `p` followed by U+10FFFF are skipped by an explicit check.
fn after_prefix(p: &str) -> String {
    let mut s = p.to_string();
    s.push(char::MAX);
    s
}

/// The next key within `lower`; a walk that stops for a page resumes where the seek did.
fn seek(src: &dyn Source, lower: &mut Bound<String>) -> Result<Option<(String, KeyState)>, Need> {
    src.seek(lower.as_ref().map(String::as_str))
        .inspect_err(|need| *lower = need.from.clone())
}

/// The common prefix `key` rolls up into: up to the first `delimiter` after `prefix`.
fn common_prefix(key: &str, prefix: &str, delimiter: &str) -> Option<String> {
    if delimiter.is_empty() {
        return None;
    }
    key[prefix.len()..]
        .find(delimiter)
        .map(|i| key[..prefix.len() + i + delimiter.len()].to_string())
}

/// One listing page being walked over the index, from `after` (exclusive): keeps keys
/// under `prefix` and rolls up keys that contain `delimiter` after the prefix, until `max`
/// entries are taken. As on S3, `max` 0 is an empty page that is not truncated. It can stop
/// for a snapshot page and go on where it stopped.
#[derive(Clone)]
pub struct PageWalk<'a> {
    prefix: &'a str,
    delimiter: &'a str,
    after: &'a str,
    max: usize,
    lower: Bound<String>,
    taken: usize,
    pub out: Page,
}

impl<'a> PageWalk<'a> {
    pub fn new(prefix: &'a str, delimiter: &'a str, after: &'a str, max: usize) -> Self {
        let lower = if after >= prefix {
            if after.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(after.to_string())
            }
        } else {
            Bound::Included(prefix.to_string())
        };
        PageWalk {
            prefix,
            delimiter,
            after,
            max,
            lower,
            taken: 0,
            out: Page::default(),
        }
    }

    /// Walks on until the page is full or the keys end.
    pub fn run(&mut self, src: &dyn Source) -> Result<(), Need> {
        let (prefix, delimiter, after) = (self.prefix, self.delimiter, self.after);
        if self.max == 0 {
            return Ok(());
        }
        loop {
            let Some((key, state)) = seek(src, &mut self.lower)? else {
                return Ok(());
            };
            if !key.starts_with(prefix) {
                if key.as_str() > prefix {
                    return Ok(());
                }
                self.lower = Bound::Excluded(key);
                continue;
            }
            let Some(entry) = state.current() else {
                // Only a delete marker or noncurrent versions.
                self.lower = Bound::Excluded(key);
                continue;
            };
            let group = common_prefix(&key, prefix, delimiter);
            if let Some(cp) = group {
                let seen = (!after.is_empty() && cp.as_str() <= after)
                    || self.out.last.as_deref() == Some(cp.as_str());
                if seen {
                    // This group was returned already (here or on an earlier page).
                    self.lower = Bound::Excluded(after_prefix(&cp).max(key));
                    continue;
                }
                if self.taken == self.max {
                    self.out.truncated = true;
                    return Ok(());
                }
                self.lower = Bound::Excluded(after_prefix(&cp));
                self.out.prefixes.push(cp.clone());
                self.out.last = Some(cp);
                self.taken += 1;
                continue;
            }
            if self.taken == self.max {
                self.out.truncated = true;
                return Ok(());
            }
            self.out.objects.push((key.clone(), entry.clone()));
            self.out.last = Some(key.clone());
            self.taken += 1;
            self.lower = Bound::Excluded(key);
        }
    }
}

/// One page of ListObjectVersions.
#[derive(Debug, Default, Clone)]
pub struct VersionsPage {
    /// Key, version, and whether it is the key's latest.
    pub versions: Vec<(String, VersionEntry, bool)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// Where the next page starts: key and version id (`null` for the null version), or
    /// a common prefix and no version.
    pub next: Option<(String, Option<String>)>,
}

fn version_label(v: &VersionEntry) -> String {
    v.version.as_deref().unwrap_or("null").to_string()
}

/// One page of ListObjectVersions being walked: keys in order and each key's versions
/// newest first, rolling up keys under `delimiter` like [`PageWalk`] (`max` 0: empty, not
/// truncated).
#[derive(Clone)]
pub struct VersionsWalk<'a> {
    prefix: &'a str,
    delimiter: &'a str,
    key_marker: &'a str,
    version_marker: Option<&'a str>,
    max: usize,
    lower: Bound<String>,
    taken: usize,
    pub out: VersionsPage,
}

impl<'a> VersionsWalk<'a> {
    pub fn new(
        prefix: &'a str,
        delimiter: &'a str,
        key_marker: &'a str,
        version_marker: Option<&'a str>,
        max: usize,
    ) -> Self {
        let lower = if key_marker < prefix || key_marker.is_empty() {
            Bound::Included(prefix.to_string())
        } else if version_marker.is_some() {
            Bound::Included(key_marker.to_string())
        } else {
            Bound::Excluded(key_marker.to_string())
        };
        VersionsWalk {
            prefix,
            delimiter,
            key_marker,
            version_marker,
            max,
            lower,
            taken: 0,
            out: VersionsPage::default(),
        }
    }

    /// Walks on until the page is full or the keys end.
    pub fn run(&mut self, src: &dyn Source) -> Result<(), Need> {
        let (prefix, delimiter, key_marker) = (self.prefix, self.delimiter, self.key_marker);
        if self.max == 0 {
            return Ok(());
        }
        loop {
            let Some((key, state)) = seek(src, &mut self.lower)? else {
                return Ok(());
            };
            if !key.starts_with(prefix) {
                if key.as_str() > prefix {
                    return Ok(());
                }
                self.lower = Bound::Excluded(key);
                continue;
            }
            let group = common_prefix(&key, prefix, delimiter);
            if let Some(cp) = group {
                let seen = (!key_marker.is_empty() && cp.as_str() <= key_marker)
                    || self.out.prefixes.last() == Some(&cp);
                if !seen {
                    if self.taken == self.max {
                        self.out.truncated = true;
                        return Ok(());
                    }
                    self.out.prefixes.push(cp.clone());
                    self.out.next = Some((cp.clone(), None));
                    self.taken += 1;
                }
                self.lower = Bound::Excluded(after_prefix(&cp).max(key));
                continue;
            }
            let mut versions = state.versions();
            if key == key_marker {
                if let Some(vm) = self.version_marker {
                    match versions.iter().position(|(v, _)| version_label(v) == vm) {
                        Some(i) => {
                            versions.drain(..=i);
                        }
                        None => versions.clear(),
                    }
                }
            }
            for (v, latest) in versions {
                if self.taken == self.max {
                    self.out.truncated = true;
                    return Ok(());
                }
                self.out.next = Some((key.clone(), Some(version_label(&v))));
                self.out.versions.push((key.clone(), v, latest));
                self.taken += 1;
            }
            self.lower = Bound::Excluded(key);
        }
    }
}

fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn max_keys(ctx: &Ctx) -> S3Result<usize> {
    match ctx.query("max-keys") {
        None => Ok(1000),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok((n as usize).min(1000)),
            _ => Err(S3Error::invalid_argument(
                "Provided max-keys not an integer or within integer range",
            )
            .with("ArgumentName", "max-keys")
            .with("ArgumentValue", v)),
        },
    }
}

/// Serves the three listing flavors.
pub async fn list_objects(ctx: &Ctx, flavor: Flavor) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    let owner_id = crate::s3::ops::access::bucket_owner_id(ctx).await?;
    let prefix = ctx.query("prefix").unwrap_or_default().to_string();
    let delimiter = ctx.query("delimiter").unwrap_or_default().to_string();
    let encode = match ctx.query("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => {
            return Err(
                S3Error::invalid_argument("Invalid Encoding Method specified in Request")
                    .with("ArgumentName", "encoding-type")
                    .with("ArgumentValue", other),
            )
        }
    };
    let max = max_keys(ctx)?;
    let (after, token) = match flavor {
        Flavor::V1 => (ctx.query("marker").unwrap_or_default().to_string(), None),
        Flavor::Versions => (
            ctx.query("key-marker").unwrap_or_default().to_string(),
            None,
        ),
        Flavor::V2 => match crate::s3::ops::common::continuation_token(ctx)? {
            Some(decoded) => {
                let raw = ctx.query("continuation-token").map(str::to_string);
                (decoded, raw)
            }
            None => (
                ctx.query("start-after").unwrap_or_default().to_string(),
                None,
            ),
        },
    };
    let bucket = ctx.store_bucket()?;
    if flavor == Flavor::Versions {
        let version_marker = ctx.query("version-id-marker").filter(|v| !v.is_empty());
        if version_marker.is_some() && after.is_empty() {
            return Err(S3Error::invalid_argument(
                "A version-id marker cannot be specified without a key marker.",
            )
            .with("ArgumentName", "version-id-marker"));
        }
        let walk = VersionsWalk::new(&prefix, &delimiter, &after, version_marker, max);
        let page = bucket.walk(walk, |w, v| w.run(v)).await?.out;
        return Ok(respond::xml(versions_xml(
            ctx, &b.s3, &prefix, &delimiter, &after, max, encode, &page, &owner_id,
        )));
    }
    let walk = PageWalk::new(&prefix, &delimiter, &after, max);
    let page = bucket.walk(walk, |w, v| w.run(v)).await?.out;
    let enc = |s: &str| if encode { url_encode(s) } else { s.to_string() };
    let root = "ListBucketResult";
    let mut w = XmlWriter::new(root);
    w.elem("Name", &b.s3).elem("Prefix", enc(&prefix));
    match flavor {
        Flavor::V1 => {
            w.elem("Marker", enc(&after));
            if page.truncated && !delimiter.is_empty() {
                w.opt("NextMarker", page.last.as_deref().map(enc));
            }
        }
        Flavor::V2 => {
            // Both are echoed; the token decides where the page starts.
            if let Some(t) = &token {
                w.elem("ContinuationToken", t);
            }
            if let Some(sa) = ctx.query("start-after") {
                w.elem("StartAfter", enc(sa));
            }
            if page.truncated {
                if let Some(last) = &page.last {
                    w.elem("NextContinuationToken", URL_SAFE_NO_PAD.encode(last));
                }
            }
            w.elem(
                "KeyCount",
                (page.objects.len() + page.prefixes.len()).to_string(),
            );
        }
        Flavor::Versions => {}
    }
    w.elem("MaxKeys", max.to_string());
    if !delimiter.is_empty() {
        w.elem("Delimiter", enc(&delimiter));
    }
    if encode {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", page.truncated.to_string());
    let owner = flavor != Flavor::V2 || ctx.query("fetch-owner") == Some("true");
    let item = "Contents";
    for (key, e) in &page.objects {
        w.open(item).elem("Key", enc(key));
        w.elem("LastModified", respond::iso8601(e.modified()))
            .elem("ETag", respond::quote(&e.etag))
            .elem("Size", e.size.to_string());
        if owner {
            w.open("Owner")
                .elem("ID", &owner_id)
                .elem("DisplayName", OWNER_NAME)
                .close("Owner");
        }
        w.elem("StorageClass", "STANDARD").close(item);
    }
    for p in &page.prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", enc(p))
            .close("CommonPrefixes");
    }
    Ok(respond::xml(w.finish(root)))
}

/// The ListVersionsResult document.
#[allow(clippy::too_many_arguments)]
fn versions_xml(
    ctx: &Ctx,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    key_marker: &str,
    max: usize,
    encode: bool,
    page: &VersionsPage,
    owner_id: &str,
) -> String {
    let enc = |s: &str| if encode { url_encode(s) } else { s.to_string() };
    let root = "ListVersionsResult";
    let mut w = XmlWriter::new(root);
    w.elem("Name", bucket)
        .elem("Prefix", enc(prefix))
        .elem("KeyMarker", enc(key_marker))
        .elem(
            "VersionIdMarker",
            ctx.query("version-id-marker").unwrap_or_default(),
        );
    if page.truncated {
        if let Some((k, v)) = &page.next {
            w.elem("NextKeyMarker", enc(k));
            w.opt("NextVersionIdMarker", v.as_deref());
        }
    }
    w.elem("MaxKeys", max.to_string());
    if !delimiter.is_empty() {
        w.elem("Delimiter", enc(delimiter));
    }
    if encode {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", page.truncated.to_string());
    for (key, v, latest) in &page.versions {
        let item = if v.marker { "DeleteMarker" } else { "Version" };
        w.open(item)
            .elem("Key", enc(key))
            .elem("VersionId", version_label(v))
            .elem("IsLatest", latest.to_string())
            .elem("LastModified", respond::iso8601(v.modified()));
        if !v.marker {
            w.elem("ETag", respond::quote(&v.etag))
                .elem("Size", v.size.to_string())
                .elem("StorageClass", "STANDARD");
        }
        w.open("Owner")
            .elem("ID", owner_id)
            .elem("DisplayName", OWNER_NAME)
            .close("Owner")
            .close(item);
    }
    for p in &page.prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", enc(p))
            .close("CommonPrefixes");
    }
    w.finish(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyState;
    use std::collections::BTreeMap;

    fn map(keys: &[&str]) -> BTreeMap<String, KeyState> {
        keys.iter()
            .map(|k| {
                let latest = VersionEntry {
                    version: None,
                    stamp: 0,
                    marker: false,
                    size: 1,
                    etag: "e".into(),
                    modified_ns: 0,
                };
                (
                    k.to_string(),
                    KeyState {
                        latest: Some(latest),
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn page(
        m: &BTreeMap<String, KeyState>,
        prefix: &str,
        delimiter: &str,
        after: &str,
        max: usize,
    ) -> Page {
        let mut w = PageWalk::new(prefix, delimiter, after, max);
        w.run(m).expect("a map needs no pages");
        w.out
    }

    fn keys(p: &Page) -> Vec<&str> {
        p.objects.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn pages_through_keys_in_byte_order() {
        let m = map(&["b", "a", "é", "Z", "a/b"]);
        let p = page(&m, "", "", "", 2);
        assert_eq!(keys(&p), ["Z", "a"]);
        assert!(p.truncated);
        let p2 = page(&m, "", "", "a", 10);
        assert_eq!(keys(&p2), ["a/b", "b", "é"]);
        assert!(!p2.truncated);
    }

    #[test]
    fn exact_page_is_not_truncated() {
        let m = map(&["a", "b"]);
        let p = page(&m, "", "", "", 2);
        assert!(!p.truncated);
        assert_eq!(p.last.as_deref(), Some("b"));
    }

    #[test]
    fn rolls_up_common_prefixes_and_resumes_after_them() {
        let m = map(&["a/1", "a/2", "a/3", "b", "c/1", "c/2", "d"]);
        let p = page(&m, "", "/", "", 2);
        assert_eq!(p.prefixes, ["a/"]);
        assert_eq!(keys(&p), ["b"]);
        assert!(p.truncated);
        let p = page(&m, "", "/", "b", 2);
        assert_eq!(p.prefixes, ["c/"]);
        assert_eq!(keys(&p), ["d"]);
        assert!(!p.truncated);
        let p = page(&m, "", "/", "a/", 10);
        assert_eq!(p.prefixes, ["c/"]);
        assert_eq!(keys(&p), ["b", "d"]);
    }

    #[test]
    fn prefix_and_delimiter_together() {
        let m = map(&[
            "photos/2024/a",
            "photos/2024/b",
            "photos/2025/a",
            "photos/x",
            "pics",
        ]);
        let p = page(&m, "photos/", "/", "", 1000);
        assert_eq!(p.prefixes, ["photos/2024/", "photos/2025/"]);
        assert_eq!(keys(&p), ["photos/x"]);
        let p = page(&m, "photos/2024/", "", "photos/2024/a", 1000);
        assert_eq!(keys(&p), ["photos/2024/b"]);
        let p = page(&m, "zzz", "", "", 1000);
        assert!(p.objects.is_empty() && !p.truncated);
    }

    #[test]
    fn multi_character_delimiter_and_zero_max() {
        let m = map(&["a--b", "a--c", "ab"]);
        let p = page(&m, "", "--", "", 10);
        assert_eq!(p.prefixes, ["a--"]);
        assert_eq!(keys(&p), ["ab"]);
        let p = page(&m, "", "", "", 0);
        assert!(p.objects.is_empty());
        assert!(!p.truncated, "max-keys 0 is not truncated on S3");
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(url_encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
    }
}
