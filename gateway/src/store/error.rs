//! The store's errors, in its own words: what NATS answered, what is not there, a condition
//! that did not hold. `crate::error` maps them to S3 errors.

use super::NatsError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// NATS failed or refused, on the bucket named (as S3 names it, for NoSuchBucket).
    #[error("nats ({bucket}): {error:?}")]
    Nats { bucket: String, error: NatsError },
    /// Not connected to NATS.
    #[error("not connected to NATS")]
    Unavailable,
    #[error("no bucket {0}")]
    NoSuchBucket(String),
    #[error("no key {0}")]
    NoSuchKey(String),
    #[error("no upload {0}")]
    NoSuchUpload(String),
    /// A conditional write found another state than it expected.
    #[error("condition not met: {0:?}")]
    Unmet(Unmet),
    /// A bucket's listing index is still reading the bucket's metadata (NATS answers; the
    /// bucket is large and has no usable snapshot).
    #[error("the listing index is loading")]
    Loading,
    /// The body came too slowly (its chunks could be taken for orphans).
    #[error("{0}")]
    TooSlow(&'static str),
    /// The body is larger than `max` bytes.
    #[error("larger than {max} bytes")]
    TooLarge { max: u64 },
    /// A bug or a corrupt record.
    #[error("internal: {0}")]
    Internal(String),
    /// An error of the caller's (its body stream or its check of the finished body),
    /// passed back as it came.
    #[error("{0}")]
    Caller(Box<dyn std::error::Error + Send + Sync>),
}

/// The condition of a write that did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// [`super::Expect::Absent`]: an object is there.
    Exists,
    /// [`super::Expect::Etag`]: the object's ETag is none of those expected.
    EtagDiffers,
}

impl StoreError {
    /// No such bucket or key (nor version).
    pub fn not_found(&self) -> bool {
        matches!(
            self,
            StoreError::NoSuchBucket(_)
                | StoreError::NoSuchKey(_)
                | StoreError::Nats {
                    error: NatsError::NoStream,
                    ..
                }
        )
    }

    /// An internal error (logged when it becomes an S3 error).
    pub fn internal(e: impl std::fmt::Display) -> StoreError {
        StoreError::Internal(e.to_string())
    }
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;
