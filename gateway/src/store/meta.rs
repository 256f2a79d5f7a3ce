//! Object metadata: the NATS object-store `ObjectInfo` JSON and what jets3 keeps in it.
//!
//! S3 system headers and `x-amz-meta-*` go into `headers` (visible to native clients);
//! jets3's own fields go into `metadata` under `jets3.` keys.
//!
//! Everything read from NATS is untrusted: a native client (or anyone with write access to
//! the stream) may have written it. [`Record::decode`] validates every field that reaches a
//! subject, a response header or a slice bound, and refuses or drops what does not fit, so a
//! malformed message never crashes a task, never widens a purge and never sets an arbitrary
//! response header.

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
/// `jets3.seq` of a version whose one chunk sits right before its metadata message (both
/// published as one atomic batch, before the sequences were known).
const SEQ_CHUNK_BEFORE: &str = "-1";
const TAGS: &str = "jets3.tags";
const ACL: &str = "jets3.acl";
const PARTS: &str = "jets3.parts";
const CHECKSUM_PREFIX: &str = "jets3.checksum.";
const CHECKSUM_TYPE: &str = "jets3.checksum-type";
/// Each part's checksum of a composite multipart object, comma-separated.
const PART_CHECKSUMS: &str = "jets3.part-checksums";
/// The S3 version id; absent on the `null` version.
const VERSION: &str = "jets3.vid";
/// Where the version sorts among the key's versions (nanoseconds, increasing per key).
const STAMP: &str = "jets3.stamp";
/// Set on a delete marker (a `deleted` message that is an S3 version).
const MARKER: &str = "jets3.marker";
/// Set on a tombstone: a noncurrent version that was deleted by id.
const GONE: &str = "jets3.gone";
/// Where a spliced multipart version's bytes are: each part's chunks, in order
/// (`<nuid>` or `<nuid>:<first>-<last>`, comma-separated, one per entry of `jets3.parts`).
const SEGMENTS: &str = "jets3.segments";
/// The nuid a compacted version had while it was spliced.
const SPLICED: &str = "jets3.spliced";

/// Longest NUID accepted from NATS (native NUIDs have 22 characters).
const MAX_NUID: usize = 64;
/// Most parts a multipart object may list.
const MAX_PARTS: usize = 10_000;

/// System headers stored with an object and returned on GET and HEAD; with
/// `x-amz-meta-*` the only headers an object may carry.
pub const STORED_HEADERS: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
];

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
    /// Each part's checksum (base64) of a composite multipart object, else empty.
    pub part_checksums: Vec<String>,
    /// Stream sequences of the first and last chunk, when jets3 wrote the object.
    pub seq: Option<(u64, u64)>,
    /// Stream sequence of this metadata message.
    pub meta_seq: u64,
    /// A link to another object (native feature); served as NotImplemented.
    pub is_link: bool,
    /// The S3 version id; `None` for the `null` version.
    pub version: Option<String>,
    /// Order among the key's versions (larger is newer).
    pub stamp: u64,
    /// The object ACL set when it was written (or with PutObjectAcl); `None`: private.
    pub acl: Option<crate::access::acl::Acl>,
    /// A spliced multipart version's bytes: its parts' chunks, in order (`nuid` then holds
    /// no chunks). Empty for every other object.
    pub segments: Vec<Segment>,
    /// The nuid this version had while it was spliced, once it is compacted.
    pub spliced: Option<String>,
}

/// One part's chunks in a spliced version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub nuid: String,
    pub size: u64,
    /// Stream sequences of its first and last chunk, when known.
    pub seq: Option<(u64, u64)>,
}

impl Segment {
    /// A view of the segment as an object of its own, to read it.
    pub fn as_object(&self) -> ObjectMeta {
        ObjectMeta {
            key: String::new(),
            size: self.size,
            etag: String::new(),
            modified: OffsetDateTime::UNIX_EPOCH,
            nuid: self.nuid.clone(),
            chunks: self.size.div_ceil(CHUNK_SIZE as u64),
            digest: None,
            headers: Vec::new(),
            tags: Vec::new(),
            checksums: Vec::new(),
            checksum_type: None,
            parts: Vec::new(),
            part_checksums: Vec::new(),
            seq: self.seq,
            meta_seq: 0,
            is_link: false,
            version: None,
            stamp: 0,
            acl: None,
            segments: Vec::new(),
            spliced: None,
        }
    }
}

/// A delete marker: an S3 version without content, current or not.
#[derive(Debug, Clone)]
pub struct Marker {
    pub key: String,
    /// `None` for the `null` version.
    pub version: Option<String>,
    pub stamp: u64,
    pub modified: OffsetDateTime,
    /// Stream sequence of the message.
    pub meta_seq: u64,
}

/// What one metadata message says about a key (or one of its versions).
#[derive(Debug, Clone)]
pub enum Record {
    Object(Box<ObjectMeta>),
    Marker(Marker),
    /// Deleted without a marker (a native delete, an unversioned delete), or never written.
    Absent,
    /// A version deleted by id (on a V subject), with the stamp it had.
    Gone {
        stamp: u64,
    },
}

/// Why a metadata message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Record {
    /// Decodes and validates a metadata message read from NATS; `key` is the key its
    /// subject names, when known (the message must name the same key).
    pub fn decode(payload: &[u8], key: Option<&str>, meta_seq: u64) -> Result<Record, Malformed> {
        let info: ObjectInfoJson = serde_json::from_slice(payload)
            .map_err(|e| Malformed(format!("not object info JSON: {e}")))?;
        if let Some(k) = key {
            if info.name != k {
                return Err(Malformed(format!(
                    "names {:?} on the subject of {k:?}",
                    info.name
                )));
            }
        }
        Record::from_info(info, meta_seq)
    }

    /// Validates decoded object info.
    pub fn from_info(info: ObjectInfoJson, meta_seq: u64) -> Result<Record, Malformed> {
        let version = info.metadata.get(VERSION).cloned();
        if let Some(v) = &version {
            if !valid_version_id(v) {
                return Err(Malformed(format!("bad version id {v:?}")));
            }
        }
        let modified = info
            .mtime
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let stamp = match info.metadata.get(STAMP) {
            Some(s) => s
                .parse()
                .map_err(|_| Malformed(format!("bad stamp {s:?}")))?,
            None => u64::try_from(modified.unix_timestamp_nanos()).unwrap_or(0),
        };
        if info.deleted {
            if info.metadata.contains_key(GONE) {
                return Ok(Record::Gone { stamp });
            }
            if info.metadata.contains_key(MARKER) {
                return Ok(Record::Marker(Marker {
                    key: info.name,
                    version,
                    stamp,
                    modified,
                    meta_seq,
                }));
            }
            return Ok(Record::Absent);
        }
        ObjectMeta::from_valid_info(info, meta_seq, version, stamp, modified)
            .map(|m| Record::Object(Box::new(m)))
    }

    /// The object, if this is one.
    pub fn object(self) -> Option<ObjectMeta> {
        match self {
            Record::Object(m) => Some(*m),
            _ => None,
        }
    }

    /// The version id (`None`: the null version) of an object or marker.
    pub fn version(&self) -> Option<Option<&str>> {
        match self {
            Record::Object(m) => Some(m.version.as_deref()),
            Record::Marker(m) => Some(m.version.as_deref()),
            Record::Absent | Record::Gone { .. } => None,
        }
    }

    /// The order stamp of an object, marker or tombstone.
    pub fn stamp(&self) -> Option<u64> {
        match self {
            Record::Object(m) => Some(m.stamp),
            Record::Marker(m) => Some(m.stamp),
            Record::Gone { stamp } => Some(*stamp),
            Record::Absent => None,
        }
    }

    /// The nuid that names an object's version (a spliced one's holds no chunks itself).
    pub fn identity(&self) -> Option<&str> {
        match self {
            Record::Object(m) if !m.is_link => Some(m.nuid.as_str()),
            _ => None,
        }
    }

    /// The chunk subjects an object's bytes are on: (nuid, bytes), one for a plain object,
    /// one per part for a spliced one, none for anything else.
    pub fn chunk_sets(&self) -> impl Iterator<Item = (&str, u64)> {
        let (whole, segments) = match self {
            Record::Object(m) if m.is_link => (None, &[][..]),
            Record::Object(m) if m.segments.is_empty() => {
                (Some((m.nuid.as_str(), m.size)), &[][..])
            }
            Record::Object(m) => (None, m.segments.as_slice()),
            _ => (None, &[][..]),
        };
        whole
            .into_iter()
            .chain(segments.iter().map(|s| (s.nuid.as_str(), s.size)))
    }

    /// Whether the object's bytes are on chunk subject `nuid`.
    pub fn uses(&self, nuid: &str) -> bool {
        matches!(self, Record::Object(m) if m.uses(nuid))
    }

    /// Whether this is an object or a delete marker (an S3 version).
    pub fn is_version(&self) -> bool {
        matches!(self, Record::Object(_) | Record::Marker(_))
    }

    /// Encodes an object or marker for a metadata message.
    pub fn to_info(&self, bucket: &str) -> Option<ObjectInfoJson> {
        match self {
            Record::Object(m) => Some(m.to_info(bucket)),
            Record::Marker(m) => Some(m.to_info(bucket)),
            Record::Absent | Record::Gone { .. } => None,
        }
    }
}

/// Records in a version's metadata that its one chunk sits right before the metadata
/// message (they go as one atomic batch).
pub fn mark_chunk_before(info: &mut ObjectInfoJson) {
    info.metadata
        .insert(SEQ.to_string(), SEQ_CHUNK_BEFORE.to_string());
}

/// The message of a key deleted without a marker, as native clients write it.
pub fn absent_info(bucket: &str, key: &str, nuid: &str) -> ObjectInfoJson {
    ObjectInfoJson {
        name: key.to_string(),
        bucket: bucket.to_string(),
        nuid: nuid.to_string(),
        mtime: OffsetDateTime::now_utc().format(&Rfc3339).ok(),
        deleted: true,
        ..Default::default()
    }
}

/// The tombstone of a version deleted by id.
pub fn tombstone_info(
    bucket: &str,
    key: &str,
    version: Option<&str>,
    stamp: u64,
) -> ObjectInfoJson {
    let mut metadata = BTreeMap::new();
    metadata.insert(GONE.to_string(), "1".to_string());
    metadata.insert(STAMP.to_string(), stamp.to_string());
    if let Some(v) = version {
        metadata.insert(VERSION.to_string(), v.to_string());
    }
    ObjectInfoJson {
        name: key.to_string(),
        bucket: bucket.to_string(),
        metadata,
        mtime: OffsetDateTime::now_utc().format(&Rfc3339).ok(),
        deleted: true,
        ..Default::default()
    }
}

impl Marker {
    /// Encodes the marker for its metadata message.
    pub fn to_info(&self, bucket: &str) -> ObjectInfoJson {
        let mut metadata = BTreeMap::new();
        metadata.insert(MARKER.to_string(), "1".to_string());
        metadata.insert(STAMP.to_string(), self.stamp.to_string());
        if let Some(v) = &self.version {
            metadata.insert(VERSION.to_string(), v.clone());
        }
        ObjectInfoJson {
            name: self.key.clone(),
            bucket: bucket.to_string(),
            metadata,
            mtime: self.modified.format(&Rfc3339).ok(),
            deleted: true,
            ..Default::default()
        }
    }
}

/// A NUID from NATS that is safe as a subject token: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn valid_nuid(nuid: &str) -> bool {
    !nuid.is_empty()
        && nuid.len() <= MAX_NUID
        && nuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A version id jets3 could have made: 16 hex digits of stamp then a few letters or digits.
pub fn valid_version_id(v: &str) -> bool {
    v.len() >= 17 && v.len() <= 40 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The stored header names an object may carry: the S3 system headers and
/// `x-amz-meta-*` names that are valid HTTP tokens.
pub fn allowed_header(name: &str) -> bool {
    if STORED_HEADERS.contains(&name) {
        return true;
    }
    name.strip_prefix("x-amz-meta-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    })
}

/// A header value that is safe to send: visible ASCII, spaces and tabs, no line breaks.
fn allowed_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// The SHA-256 in a `digest` field, when it is well formed.
fn digest_bytes(digest: &str) -> Option<[u8; 32]> {
    let b64 = digest.strip_prefix("SHA-256=")?;
    let raw = URL_SAFE
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64))
        .ok()?;
    raw.try_into().ok()
}

/// An ETag jets3 stores: 32 hex digits, optionally `-<parts>`.
fn valid_etag(etag: &str) -> bool {
    let (md5, parts) = match etag.split_once('-') {
        Some((m, n)) => (m, Some(n)),
        None => (etag, None),
    };
    md5.len() == 32
        && md5.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.is_none_or(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
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

    /// Whether the object's bytes are on chunk subject `nuid`.
    pub fn uses(&self, nuid: &str) -> bool {
        match self.segments.is_empty() {
            true => !self.is_link && self.nuid == nuid,
            false => self.segments.iter().any(|s| s.nuid == nuid),
        }
    }

    /// Decodes a metadata message; `None` for deleted objects and malformed ones.
    pub fn from_info(info: ObjectInfoJson, meta_seq: u64) -> Option<ObjectMeta> {
        Record::from_info(info, meta_seq).ok()?.object()
    }

    fn from_valid_info(
        info: ObjectInfoJson,
        meta_seq: u64,
        version: Option<String>,
        stamp: u64,
        modified: OffsetDateTime,
    ) -> Result<ObjectMeta, Malformed> {
        let segments = match info.metadata.get(SEGMENTS) {
            Some(v) => decode_segments(v, info.metadata.get(PARTS), info.size)?,
            None => Vec::new(),
        };
        // A spliced version is a link for native clients, and not one for jets3.
        let is_link =
            segments.is_empty() && info.options.as_ref().is_some_and(|o| o.link.is_some());
        if !is_link && !valid_nuid(&info.nuid) {
            return Err(Malformed(format!("bad nuid {:?}", info.nuid)));
        }
        // A digest that does not decode is dropped (the ETag then comes from the nuid).
        let digest = info.digest.clone().filter(|d| digest_bytes(d).is_some());
        let etag = match info.metadata.get(ETAG).filter(|e| valid_etag(e)) {
            Some(e) => e.clone(),
            None => fallback_etag(digest.as_deref(), &info.nuid),
        };
        let seq = info.metadata.get(SEQ).and_then(|s| {
            if s == SEQ_CHUNK_BEFORE {
                return (meta_seq > 1).then(|| (meta_seq - 1, meta_seq - 1));
            }
            let (a, b) = s.split_once(',')?;
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            (a >= 1 && a <= b).then_some((a, b))
        });
        let tags = info
            .metadata
            .get(TAGS)
            .map(|t| decode_tags(t))
            .unwrap_or_default();
        let parts: Vec<u64> = match info.metadata.get(PARTS) {
            Some(p) => {
                let parts: Vec<u64> = p.split(',').filter_map(|n| n.parse().ok()).collect();
                let sum = parts.iter().try_fold(0u64, |a, b| a.checked_add(*b));
                if parts.len() > MAX_PARTS || sum != Some(info.size) {
                    Vec::new()
                } else {
                    parts
                }
            }
            None => Vec::new(),
        };
        let checksums = info
            .metadata
            .iter()
            .filter_map(|(k, v)| {
                let algo = k.strip_prefix(CHECKSUM_PREFIX)?;
                let ok = algo.bytes().all(|b| b.is_ascii_alphanumeric())
                    && crate::checksum::stored_value_ok(v);
                ok.then(|| (algo.to_ascii_uppercase(), v.clone()))
            })
            .collect();
        let mut headers = Vec::new();
        for (name, values) in info.headers.iter().flatten() {
            let name = name.to_ascii_lowercase();
            match values.first() {
                Some(v) if allowed_header(&name) && allowed_value(v) => {
                    headers.push((name, v.clone()))
                }
                _ => {}
            }
        }
        let checksum_type = info
            .metadata
            .get(CHECKSUM_TYPE)
            .filter(|t| matches!(t.as_str(), "FULL_OBJECT" | "COMPOSITE"))
            .cloned();
        // One plain base64 value per part, or none at all.
        let part_checksums: Vec<String> = info
            .metadata
            .get(PART_CHECKSUMS)
            .map(|v| v.split(',').map(str::to_string).collect())
            .filter(|v: &Vec<String>| {
                v.len() == parts.len()
                    && v.iter().all(|c| {
                        base64::engine::general_purpose::STANDARD
                            .decode(c)
                            .is_ok_and(|raw| raw.len() <= 64)
                    })
            })
            .unwrap_or_default();
        Ok(ObjectMeta {
            key: info.name,
            size: info.size,
            etag,
            modified,
            nuid: info.nuid,
            chunks: info.chunks,
            digest,
            headers,
            tags,
            checksums,
            checksum_type,
            parts,
            part_checksums,
            seq,
            meta_seq,
            is_link,
            version,
            stamp,
            acl: info
                .metadata
                .get(ACL)
                .and_then(|a| crate::access::acl::Acl::decode(a)),
            segments,
            spliced: info
                .metadata
                .get(SPLICED)
                .filter(|n| valid_nuid(n))
                .cloned(),
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
        if !self.part_checksums.is_empty() {
            metadata.insert(PART_CHECKSUMS.to_string(), self.part_checksums.join(","));
        }
        metadata.insert(STAMP.to_string(), self.stamp.to_string());
        if let Some(acl) = &self.acl {
            metadata.insert(ACL.to_string(), acl.encode());
        }
        if let Some(v) = &self.version {
            metadata.insert(VERSION.to_string(), v.clone());
        }
        if !self.segments.is_empty() {
            metadata.insert(SEGMENTS.to_string(), encode_segments(&self.segments));
        }
        if let Some(n) = &self.spliced {
            metadata.insert(SPLICED.to_string(), n.clone());
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
                // Native clients refuse to read a link to a whole bucket: a spliced version
                // is not theirs to read until it is compacted.
                link: (!self.segments.is_empty()).then(|| serde_json::json!({ "bucket": bucket })),
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

/// `jets3.segments` of a spliced version.
fn encode_segments(segments: &[Segment]) -> String {
    let mut out = String::with_capacity(segments.len() * 48);
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&s.nuid);
        if let Some((a, b)) = s.seq {
            out.push_str(&format!(":{a}-{b}"));
        }
    }
    out
}

/// Decodes `jets3.segments` against the part sizes in `jets3.parts`: one valid segment per
/// part, summing to the object's size, or the message is refused (its bytes could not be
/// found).
fn decode_segments(v: &str, parts: Option<&String>, size: u64) -> Result<Vec<Segment>, Malformed> {
    let bad = || Malformed("bad segments".into());
    let sizes: Vec<u64> = parts
        .ok_or_else(bad)?
        .split(',')
        .map(|n| n.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let entries: Vec<&str> = v.split(',').collect();
    if entries.len() != sizes.len() || sizes.len() > MAX_PARTS {
        return Err(bad());
    }
    let total = sizes.iter().try_fold(0u64, |a, b| a.checked_add(*b));
    if total != Some(size) {
        return Err(bad());
    }
    entries
        .iter()
        .zip(sizes)
        .map(|(e, size)| {
            let (nuid, seq) = match e.split_once(':') {
                None => (*e, None),
                Some((nuid, range)) => {
                    let (a, b) = range.split_once('-').ok_or_else(bad)?;
                    let (a, b): (u64, u64) =
                        (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                    if a < 1 || a > b {
                        return Err(bad());
                    }
                    (nuid, Some((a, b)))
                }
            };
            if !valid_nuid(nuid) {
                return Err(bad());
            }
            Ok(Segment {
                nuid: nuid.to_string(),
                size,
                seq,
            })
        })
        .collect()
}

/// Native objects carry no MD5: derive a stable ETag from their SHA-256 digest (or, without
/// a valid one, from the nuid).
fn fallback_etag(digest: Option<&str>, nuid: &str) -> String {
    match digest.and_then(digest_bytes) {
        Some(d) => hex::encode(&d[..16]),
        None => hex::encode(md5_many::md5(nuid.as_bytes())),
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

/// A key as a subject token (base64url, as native clients encode names).
pub fn key_token(key: &str) -> String {
    URL_SAFE.encode(key)
}

/// The key a subject token names; `None` if it is not one.
pub fn token_key(token: &str) -> Option<String> {
    let raw = URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .ok()?;
    String::from_utf8(raw).ok()
}

pub use jets3_nats::names::chunk_subject;

/// The metadata subject of an object.
pub fn meta_subject(bucket: &str, key: &str) -> String {
    jets3_nats::names::meta_subject(bucket, &key_token(key))
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
            part_checksums: vec![],
            seq: Some((4, 4)),
            meta_seq: 5,
            is_link: false,
            version: Some("00000001234567890abcdef".into()),
            stamp: 42,
            acl: None,
            segments: vec![],
            spliced: None,
        }
    }

    fn decode(json: &str) -> Result<Record, Malformed> {
        Record::decode(json.as_bytes(), Some("x"), 1)
    }

    #[test]
    fn refuses_nuids_that_are_not_one_subject_token() {
        for nuid in [">", "*", "a.b", "a b", "", "a\\u0000", &"n".repeat(65)] {
            let json =
                format!(r#"{{"name":"x","bucket":"b","nuid":"{nuid}","size":1,"chunks":1}}"#);
            assert!(decode(&json).is_err(), "nuid {nuid:?} accepted");
        }
        let ok = decode(r#"{"name":"x","bucket":"b","nuid":"ABC_def-123","size":1,"chunks":1}"#);
        assert!(matches!(ok, Ok(Record::Object(_))));
    }

    #[test]
    fn short_or_odd_digests_do_not_panic_and_give_a_stable_etag() {
        for digest in [
            "SHA-256=",
            "SHA-256=AAAA",
            "SHA-256=!!",
            "MD5=abc",
            "SHA-256=ungWv48",
        ] {
            let json = format!(
                r#"{{"name":"x","bucket":"b","nuid":"N1","size":3,"chunks":1,"digest":"{digest}"}}"#
            );
            let m = decode(&json).expect("kept").object().expect("object");
            assert_eq!(m.digest, None, "{digest}");
            assert_eq!(m.etag.len(), 32);
            assert!(m.etag.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn only_object_headers_reach_responses() {
        let m = decode(
            r#"{"name":"x","bucket":"b","nuid":"N1","size":1,"chunks":1,"headers":{
                "Content-Type":["text/plain"],"Set-Cookie":["a=b"],"Location":["http://evil"],
                "Content-Length":["9"],"X-Amz-Meta-Ok":["v"],"X-Amz-Meta-Bad":["a\r\nb"],
                "X-Amz-Meta-":["e"],"Transfer-Encoding":["chunked"]}}"#,
        )
        .expect("kept")
        .object()
        .expect("object");
        let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "x-amz-meta-ok"]);
    }

    #[test]
    fn a_message_naming_another_key_is_refused() {
        let r = Record::decode(br#"{"name":"y","bucket":"b","nuid":"N1"}"#, Some("x"), 1);
        assert!(r.is_err());
        assert!(Record::decode(b"not json", Some("x"), 1).is_err());
    }

    #[test]
    fn a_chunk_before_its_metadata_is_found_by_the_metadatas_sequence() {
        let mut m = sample();
        m.seq = None;
        let mut info = m.to_info("b");
        mark_chunk_before(&mut info);
        let back = ObjectMeta::from_info(info.clone(), 10).expect("object");
        assert_eq!(back.seq, Some((9, 9)));
        // Written out again (a noncurrent copy elsewhere in the stream): absolute.
        let again = ObjectMeta::from_info(back.to_info("b"), 40).expect("object");
        assert_eq!(again.seq, Some((9, 9)));
        assert_eq!(ObjectMeta::from_info(info, 1).expect("object").seq, None);
    }

    #[test]
    fn composite_checksums_round_trip_and_bad_ones_are_dropped() {
        let mut m = sample();
        m.size = 10;
        m.parts = vec![6, 4];
        m.checksums = vec![("CRC32".into(), "NhCmhg==-2".into())];
        m.checksum_type = Some("COMPOSITE".into());
        m.part_checksums = vec!["AAAAAA==".into(), "AQEBAQ==".into()];
        let back = ObjectMeta::from_info(m.to_info("b"), 5).expect("object");
        assert_eq!(back.checksums, m.checksums);
        assert_eq!(back.part_checksums, m.part_checksums);
        let m = decode(
            r#"{"name":"x","bucket":"b","nuid":"N1","size":10,"chunks":1,"metadata":{
                "jets3.parts":"6,4","jets3.part-checksums":"AAAAAA==",
                "jets3.checksum.crc32":"NhCmhg==-0"}}"#,
        )
        .expect("kept")
        .object()
        .expect("object");
        assert!(m.part_checksums.is_empty(), "one checksum for two parts");
        assert!(m.checksums.is_empty(), "a composite value of zero parts");
    }

    #[test]
    fn bad_etags_parts_and_seqs_are_dropped() {
        let m = decode(
            r#"{"name":"x","bucket":"b","nuid":"N1","size":10,"chunks":1,"metadata":{
                "jets3.etag":"<script>","jets3.parts":"3,3","jets3.seq":"9,2",
                "jets3.checksum-type":"EVIL"}}"#,
        )
        .expect("kept")
        .object()
        .expect("object");
        assert_eq!(m.etag.len(), 32);
        assert!(m.parts.is_empty(), "parts that do not add up to the size");
        assert_eq!(m.seq, None);
        assert_eq!(m.checksum_type, None);
    }

    #[test]
    fn markers_and_tombstones_decode() {
        let mk = Marker {
            key: "x".into(),
            version: Some("0000000000000001abcdef".into()),
            stamp: 1,
            modified: OffsetDateTime::UNIX_EPOCH,
            meta_seq: 0,
        };
        let json = serde_json::to_vec(&mk.to_info("b")).expect("json");
        assert!(matches!(
            Record::decode(&json, Some("x"), 1),
            Ok(Record::Marker(m)) if m.stamp == 1
        ));
        let t = serde_json::to_vec(&tombstone_info("b", "x", None, 7)).expect("json");
        assert!(matches!(
            Record::decode(&t, Some("x"), 1),
            Ok(Record::Gone { stamp: 7 })
        ));
        let a = serde_json::to_vec(&absent_info("b", "x", "N")).expect("json");
        assert!(matches!(
            Record::decode(&a, Some("x"), 1),
            Ok(Record::Absent)
        ));
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
        assert_eq!(back.version, m.version);
        assert_eq!(back.stamp, 42);
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

    fn spliced() -> ObjectMeta {
        let mut m = sample();
        m.nuid = "SPLICE".into();
        m.size = 300;
        m.chunks = 0;
        m.seq = None;
        m.digest = None;
        m.parts = vec![200, 100];
        m.segments = vec![
            Segment {
                nuid: "P1".into(),
                size: 200,
                seq: Some((3, 4)),
            },
            Segment {
                nuid: "P2".into(),
                size: 100,
                seq: None,
            },
        ];
        m
    }

    #[test]
    fn a_spliced_version_round_trips_and_is_a_bucket_link_to_native_clients() {
        let m = spliced();
        let info = m.to_info("b");
        let link = info.options.as_ref().and_then(|o| o.link.clone());
        assert_eq!(link, Some(serde_json::json!({ "bucket": "b" })));
        let back = ObjectMeta::from_info(info, 9).expect("decodes");
        assert_eq!(back.segments, m.segments);
        assert!(!back.is_link, "jets3 reads it");
        let r = Record::Object(Box::new(back));
        let sets: Vec<(&str, u64)> = r.chunk_sets().collect();
        assert_eq!(sets, vec![("P1", 200), ("P2", 100)]);
        assert_eq!(r.identity(), Some("SPLICE"));
        assert!(r.uses("P2") && !r.uses("SPLICE"));
    }

    #[test]
    fn segments_that_do_not_fit_the_parts_are_refused() {
        let good = serde_json::to_value(spliced().to_info("x")).expect("json");
        for (parts, segments) in [
            ("200,100", "P1:3-4"),
            ("200,100", "P1:3-4,P2,P3"),
            ("200,99", "P1:3-4,P2"),
            ("200,100", "P1:4-3,P2"),
            ("200,100", "P1:0-3,P2"),
            ("200,100", "P1:3,P2"),
            ("200,100", "a.b,P2"),
            ("200,100", "P1:x-4,P2"),
            ("", "P1"),
        ] {
            let mut v = good.clone();
            v["name"] = "x".into();
            v["metadata"][PARTS] = parts.into();
            v["metadata"][SEGMENTS] = segments.into();
            let json = serde_json::to_string(&v).expect("json");
            assert!(
                decode(&json).is_err(),
                "parts {parts:?} segments {segments:?} accepted"
            );
        }
    }
}
