//! The names NATS gives an object-store bucket `B` (as async-nats and the NATS CLI lay it
//! out) and a KV bucket, in one place:
//! - the stream `OBJ_B`, with chunks on `$O.B.C.<nuid>` and metadata on `$O.B.M.<key token>`;
//! - jets3's replaced versions of a versioned bucket, on `$O.B.V.<key token>.<version id>`
//!   in the same stream;
//! - a KV bucket `K`: the stream `KV_K`, one subject `$KV.K.<key>` a key.

use async_nats::jetstream::stream::{self, Compression, DiscardPolicy};

const STREAM_PREFIX: &str = "OBJ_";

/// The stream of object-store bucket `bucket`.
pub fn stream_name(bucket: &str) -> String {
    format!("{STREAM_PREFIX}{bucket}")
}

/// The object-store bucket a stream holds; `None` for other streams.
pub fn bucket_of_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix(STREAM_PREFIX)
}

/// The stream config of a new object-store bucket, laid out exactly as async-nats's
/// `create_object_store` does (rollup, direct get, discard new, no compression), and with
/// atomic batches allowed (a small object's chunk and metadata as one publish; servers
/// before 2.12 ignore it); storage, replicas, limits and metadata are the caller's.
pub fn object_store_stream(bucket: &str) -> stream::Config {
    stream::Config {
        name: stream_name(bucket),
        subjects: vec![chunk_filter(bucket), meta_filter(bucket)],
        discard: DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        allow_atomic_publish: true,
        compression: Some(Compression::None),
        ..Default::default()
    }
}

/// The subject of one object version's chunks.
pub fn chunk_subject(bucket: &str, nuid: &str) -> String {
    format!("{}{nuid}", chunk_prefix(bucket))
}

/// What every chunk subject of the bucket starts with.
pub fn chunk_prefix(bucket: &str) -> String {
    format!("$O.{bucket}.C.")
}

/// Every chunk subject of the bucket.
pub fn chunk_filter(bucket: &str) -> String {
    format!("$O.{bucket}.C.>")
}

/// The metadata subject of the object whose encoded key is `key_token`.
pub fn meta_subject(bucket: &str, key_token: &str) -> String {
    format!("{}{key_token}", meta_prefix(bucket))
}

/// What every metadata subject of the bucket starts with.
pub fn meta_prefix(bucket: &str) -> String {
    format!("$O.{bucket}.M.")
}

/// Every metadata subject of the bucket.
pub fn meta_filter(bucket: &str) -> String {
    format!("$O.{bucket}.M.>")
}

/// What every version subject of the bucket starts with.
pub fn version_prefix(bucket: &str) -> String {
    format!("$O.{bucket}.V.")
}

/// Every version subject of the bucket.
pub fn version_filter(bucket: &str) -> String {
    format!("$O.{bucket}.V.>")
}

/// The stream of KV bucket `kv`.
pub fn kv_stream(kv: &str) -> String {
    format!("KV_{kv}")
}

/// The subject of `key` (a subject filter, with wildcards) in KV bucket `kv`.
pub fn kv_subject(kv: &str, key: &str) -> String {
    format!("{}{key}", kv_prefix(kv))
}

/// What every subject of KV bucket `kv` starts with.
pub fn kv_prefix(kv: &str) -> String {
    format!("$KV.{kv}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_layout() {
        assert_eq!(stream_name("media"), "OBJ_media");
        assert_eq!(bucket_of_stream("OBJ_media"), Some("media"));
        assert_eq!(bucket_of_stream("KV_media"), None);
        let c = object_store_stream("media");
        assert_eq!(c.name, "OBJ_media");
        assert_eq!(c.subjects, ["$O.media.C.>", "$O.media.M.>"]);
        assert_eq!(chunk_subject("media", "N1"), "$O.media.C.N1");
        assert_eq!(meta_subject("media", "a2V5"), "$O.media.M.a2V5");
        assert_eq!(version_prefix("media"), "$O.media.V.");
    }

    #[test]
    fn kv_layout() {
        assert_eq!(kv_stream("jets3_gc"), "KV_jets3_gc");
        assert_eq!(kv_subject("jets3_gc", "b.>"), "$KV.jets3_gc.b.>");
    }
}
