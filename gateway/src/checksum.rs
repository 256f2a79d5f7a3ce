//! The S3 additional checksums: CRC32, CRC32C, CRC64NVME, SHA-1 and SHA-256.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::{Arc, Mutex};

use sha1::Digest;

/// A checksum algorithm S3 supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// All algorithms, in S3's order.
pub const ALL: [Algo; 5] = [
    Algo::Crc32,
    Algo::Crc32c,
    Algo::Crc64Nvme,
    Algo::Sha1,
    Algo::Sha256,
];

const CRC64_NVME: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

impl Algo {
    /// `CRC32`, `SHA256` ... as in `x-amz-checksum-algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Crc64Nvme => "CRC64NVME",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
        }
    }

    /// The header carrying the value: `x-amz-checksum-crc32` ...
    pub fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algo::Sha1 => "x-amz-checksum-sha1",
            Algo::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The XML element in responses: `ChecksumCRC32` ...
    pub fn element(self) -> &'static str {
        match self {
            Algo::Crc32 => "ChecksumCRC32",
            Algo::Crc32c => "ChecksumCRC32C",
            Algo::Crc64Nvme => "ChecksumCRC64NVME",
            Algo::Sha1 => "ChecksumSHA1",
            Algo::Sha256 => "ChecksumSHA256",
        }
    }

    /// Parses an algorithm name, any case.
    pub fn parse(s: &str) -> Option<Algo> {
        ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(s))
    }

    /// The algorithm of a header name like `x-amz-checksum-crc32`.
    pub fn from_header(h: &str) -> Option<Algo> {
        ALL.into_iter().find(|a| a.header().eq_ignore_ascii_case(h))
    }

    /// Length in bytes of the raw digest.
    pub fn digest_len(self) -> usize {
        match self {
            Algo::Crc32 | Algo::Crc32c => 4,
            Algo::Crc64Nvme => 8,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
        }
    }

    /// Starts a running checksum.
    pub fn hasher(self) -> Hasher {
        match self {
            Algo::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            Algo::Crc32c => Hasher::Crc32c(0),
            Algo::Crc64Nvme => Hasher::Crc64(Box::new(CRC64_NVME.digest())),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }
}

/// A running checksum.
pub enum Hasher {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64(Box<crc::Digest<'static, u64>>),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// Adds data.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(v) => *v = crc32c::crc32c_append(*v, data),
            Hasher::Crc64(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// The raw digest bytes.
    pub fn finish_raw(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Crc32c(v) => v.to_be_bytes().to_vec(),
            Hasher::Crc64(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }

    /// The base64 value as S3 shows it.
    pub fn finish(self) -> String {
        STANDARD.encode(self.finish_raw())
    }
}

/// Checksums computed while a body streams by; cheap to clone and share with the stream.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<Vec<(Algo, Hasher)>>>);

impl Running {
    /// Starts one running checksum per algorithm.
    pub fn new(algos: &[Algo]) -> Running {
        Running(Arc::new(Mutex::new(
            algos.iter().map(|a| (*a, a.hasher())).collect(),
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Algo, Hasher)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds data to every checksum.
    pub fn update(&self, data: &[u8]) {
        for (_, h) in self.lock().iter_mut() {
            h.update(data);
        }
    }

    /// The finished values (base64), once; later calls return nothing.
    pub fn finish(&self) -> Vec<(Algo, String)> {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .map(|(a, h)| (a, h.finish()))
            .collect()
    }
}

/// Compares computed checksums with the expected values (from headers, form fields or
/// trailers); returns those to store as (algorithm name, base64 value).
pub fn verify(
    expected: &[(Algo, Option<String>)],
    computed: Vec<(Algo, String)>,
    trailers: &[(String, String)],
) -> Result<Vec<(String, String)>, crate::error::S3Error> {
    let mut out = Vec::new();
    for (algo, got) in computed {
        let want = expected
            .iter()
            .find(|(a, _)| *a == algo)
            .and_then(|(_, v)| v.clone())
            .or_else(|| {
                trailers
                    .iter()
                    .find(|(n, _)| n == algo.header())
                    .map(|(_, v)| v.trim().to_string())
            });
        if want.is_some_and(|w| w != got) {
            return Err(crate::error::S3Error::new(
                crate::error::S3Code::BadDigest,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    algo.name().to_lowercase()
                ),
            ));
        }
        out.push((algo.name().to_string(), got));
    }
    Ok(out)
}

/// Checks that a header value is base64 of the algorithm's digest length.
pub fn well_formed(algo: Algo, value: &str) -> bool {
    STANDARD
        .decode(value)
        .map(|b| b.len() == algo.digest_len())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(algo: Algo, data: &[u8]) -> String {
        let mut h = algo.hasher();
        h.update(&data[..3]);
        h.update(&data[3..]);
        h.finish()
    }

    #[test]
    fn known_values() {
        let data = b"hello world";
        assert_eq!(of(Algo::Crc32, data), "DUoRhQ==");
        assert_eq!(of(Algo::Crc32c, data), "yZRlqg==");
        assert_eq!(of(Algo::Sha1, data), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(
            of(Algo::Sha256, data),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        assert_eq!(of(Algo::Crc64Nvme, data).len(), 12);
        assert!(well_formed(Algo::Crc32, "DUoRhQ=="));
        assert!(!well_formed(Algo::Crc32, "DUoRhQDUoRhQ"));
        assert_eq!(Algo::parse("crc64nvme"), Some(Algo::Crc64Nvme));
        assert_eq!(Algo::from_header("X-Amz-Checksum-Sha1"), Some(Algo::Sha1));
    }
}
