//! Object metadata: the NATS object-store `ObjectInfo` JSON and what jets3 keeps in it.
//!
//! S3 system headers and `x-amz-meta-*` go into `headers` (visible to native clients);
//! jets3's own fields go into `metadata` under `jets3.` keys.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The object store's chunk size; native clients use the same default.
pub const CHUNK_SIZE: usize = 128 * 1024;

const ETAG: &str = "jets3.etag";
const SEQ: &str = "jets3.seq";
const TAGS: &str = "jets3.tags";
const PARTS: &str = "jets3.parts";
const CHECKSUM_PREFIX: &str = "jets3.checksum.";
const CHECKSUM_TYPE: &str = "jets3.checksum-type";

/// The JSON document stored on `$O.<bucket>.M.<name>`, field for field as NATS clients write it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectInfoJson {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<OptionsJson>,
    pub bucket: String,
    #[serde(default)]
    pub nuid: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub chunks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// `options` of an object: chunk size, or a link to another object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OptionsJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chunk_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<serde_json::Value>,
}

/// An object as the gateway sees it.
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// ETag without quotes.
    pub etag: String,
    pub modified: OffsetDateTime,
    pub nuid: String,
    pub chunks: u64,
    /// `SHA-256=<base64url>` as NATS stores it.
    pub digest: Option<String>,
    /// Content-Type, Cache-Control, ..., and `x-amz-meta-*`, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Object tags, in order.
    pub tags: Vec<(String, String)>,
    /// S3 checksums: algorithm name in upper case (`CRC32`) and base64 value.
    pub checksums: Vec<(String, String)>,
    /// `FULL_OBJECT` or `COMPOSITE` for the stored checksums.
    pub checksum_type: Option<String>,
    /// Part sizes of a multipart object.
    pub parts: Vec<u64>,
    /// Stream sequences of the first and last chunk, when jets3 wrote the object.
    pub seq: Option<(u64, u64)>,
    /// Stream sequence of this metadata message.
    pub meta_seq: u64,
    /// A link to another object (native feature); served as NotImplemented.
    pub is_link: bool,
}

impl ObjectMeta {
    /// The value of a stored header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Content-Type, defaulting as S3 does.
    pub fn content_type(&self) -> &str {
        self.header("content-type")
            .unwrap_or("application/octet-stream")
    }

    /// Decodes a metadata message; `None` for deleted objects.
    pub fn from_info(info: ObjectInfoJson, meta_seq: u64) -> Option<ObjectMeta> {
        if info.deleted {
            return None;
        }
        let modified = info
            .mtime
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let etag = match info.metadata.get(ETAG) {
            Some(e) => e.clone(),
            None => fallback_etag(&info),
        };
        let seq = info.metadata.get(SEQ).and_then(|s| {
            let (a, b) = s.split_once(',')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        });
        let tags = info
            .metadata
            .get(TAGS)
            .map(|t| decode_tags(t))
            .unwrap_or_default();
        let parts = info
            .metadata
            .get(PARTS)
            .map(|p| p.split(',').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        let checksums = info
            .metadata
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(CHECKSUM_PREFIX)
                    .map(|a| (a.to_ascii_uppercase(), v.clone()))
            })
            .collect();
        let mut headers = Vec::new();
        for (name, values) in info.headers.iter().flatten() {
            if let Some(v) = values.first() {
                headers.push((name.to_ascii_lowercase(), v.clone()));
            }
        }
        let is_link = info.options.as_ref().is_some_and(|o| o.link.is_some());
        Some(ObjectMeta {
            key: info.name,
            size: info.size,
            etag,
            modified,
            nuid: info.nuid,
            chunks: info.chunks,
            digest: info.digest,
            headers,
            tags,
            checksums,
            checksum_type: info.metadata.get(CHECKSUM_TYPE).cloned(),
            parts,
            seq,
            meta_seq,
            is_link,
        })
    }

    /// Encodes the object for its metadata message.
    pub fn to_info(&self, bucket: &str) -> ObjectInfoJson {
        let mut metadata = BTreeMap::new();
        metadata.insert(ETAG.to_string(), self.etag.clone());
        if let Some((a, b)) = self.seq {
            metadata.insert(SEQ.to_string(), format!("{a},{b}"));
        }
        if !self.tags.is_empty() {
            metadata.insert(TAGS.to_string(), encode_tags(&self.tags));
        }
        if !self.parts.is_empty() {
            let parts: Vec<String> = self.parts.iter().map(|p| p.to_string()).collect();
            metadata.insert(PARTS.to_string(), parts.join(","));
        }
        for (algo, value) in &self.checksums {
            metadata.insert(
                format!("{CHECKSUM_PREFIX}{}", algo.to_ascii_lowercase()),
                value.clone(),
            );
        }
        if let Some(t) = &self.checksum_type {
            metadata.insert(CHECKSUM_TYPE.to_string(), t.clone());
        }
        let headers = if self.headers.is_empty() {
            None
        } else {
            Some(
                self.headers
                    .iter()
                    .map(|(n, v)| (canonical_header_name(n), vec![v.clone()]))
                    .collect(),
            )
        };
        ObjectInfoJson {
            name: self.key.clone(),
            description: None,
            metadata,
            headers,
            options: Some(OptionsJson {
                max_chunk_size: Some(CHUNK_SIZE as u64),
                link: None,
            }),
            bucket: bucket.to_string(),
            nuid: self.nuid.clone(),
            size: self.size,
            chunks: self.chunks,
            mtime: self.modified.format(&Rfc3339).ok(),
            digest: self.digest.clone(),
            deleted: false,
        }
    }
}

/// Native objects carry no MD5: derive a stable ETag from their SHA-256 digest.
fn fallback_etag(info: &ObjectInfoJson) -> String {
    let hex_digest = info
        .digest
        .as_deref()
        .and_then(|d| d.strip_prefix("SHA-256="))
        .and_then(|b| URL_SAFE.decode(b).ok())
        .map(hex::encode);
    match hex_digest {
        Some(h) => h[..32].to_string(),
        None => format!("{:0>32}", info.nuid.to_ascii_lowercase()),
    }
}

/// `content-type` -> `Content-Type`, `x-amz-meta-foo` -> `X-Amz-Meta-Foo`.
fn canonical_header_name(n: &str) -> String {
    n.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Tags as a URL query string (`k1=v1&k2=v2`), the form of `x-amz-tagging`.
pub fn encode_tags(tags: &[(String, String)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses a query-string tag set; `+` means space as in forms.
pub fn decode_tags(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The metadata subject of an object.
pub fn meta_subject(bucket: &str, key: &str) -> String {
    format!("$O.{bucket}.M.{}", URL_SAFE.encode(key))
}

/// The chunk subject of an object version.
pub fn chunk_subject(bucket: &str, nuid: &str) -> String {
    format!("$O.{bucket}.C.{nuid}")
}

/// The `digest` field for a SHA-256.
pub fn digest_string(sha256: &[u8]) -> String {
    format!("SHA-256={}", URL_SAFE.encode(sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectMeta {
        ObjectMeta {
            key: "dir/a b.txt".into(),
            size: 5,
            etag: "5d41402abc4b2a76b9719d911017c592".into(),
            modified: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time"),
            nuid: "NUID1".into(),
            chunks: 1,
            digest: Some(digest_string(&[1u8; 32])),
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x-amz-meta-color".into(), "blue".into()),
            ],
            tags: vec![("k 1".into(), "v&=".into())],
            checksums: vec![("CRC32".into(), "NhCmhg==".into())],
            checksum_type: Some("FULL_OBJECT".into()),
            parts: vec![],
            seq: Some((4, 4)),
            meta_seq: 5,
            is_link: false,
        }
    }

    #[test]
    fn round_trips_through_object_info() {
        let m = sample();
        let json = serde_json::to_string(&m.to_info("b")).expect("json");
        let info: ObjectInfoJson = serde_json::from_str(&json).expect("parse");
        assert_eq!(
            info.headers
                .as_ref()
                .map(|h| h.contains_key("X-Amz-Meta-Color")),
            Some(true)
        );
        let back = ObjectMeta::from_info(info, 5).expect("not deleted");
        assert_eq!(back.key, m.key);
        assert_eq!(back.etag, m.etag);
        assert_eq!(back.headers, m.headers);
        assert_eq!(back.tags, m.tags);
        assert_eq!(back.checksums, m.checksums);
        assert_eq!(back.seq, Some((4, 4)));
        assert_eq!(back.modified, m.modified);
        assert_eq!(back.content_type(), "text/plain");
    }

    #[test]
    fn native_objects_get_an_etag_from_their_digest() {
        let info: ObjectInfoJson = serde_json::from_str(
            r#"{"name":"x","bucket":"b","nuid":"N","size":3,"chunks":1,"mtime":"2024-01-01T00:00:00.123456789Z","digest":"SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="}"#,
        )
        .expect("parse");
        let m = ObjectMeta::from_info(info, 1).expect("meta");
        assert_eq!(m.etag, "ba7816bf8f01cfea414140de5dae2223");
        assert_eq!(m.content_type(), "application/octet-stream");
        assert!(m.seq.is_none());
    }

    #[test]
    fn deleted_objects_decode_to_none() {
        let info: ObjectInfoJson =
            serde_json::from_str(r#"{"name":"x","bucket":"b","deleted":true}"#).expect("parse");
        assert!(ObjectMeta::from_info(info, 1).is_none());
    }
}
