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

/// How a multipart object's checksum derives from its parts (`x-amz-checksum-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A checksum of the parts' checksums, shown with `-<number of parts>`.
    Composite,
    /// A checksum of the whole object.
    FullObject,
}

impl Kind {
    /// `COMPOSITE` or `FULL_OBJECT`, any case.
    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Composite, Kind::FullObject]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Composite => "COMPOSITE",
            Kind::FullObject => "FULL_OBJECT",
        }
    }

    /// S3's type when an upload names only the algorithm.
    pub fn default_for(algo: Algo) -> Kind {
        match algo {
            Algo::Crc64Nvme => Kind::FullObject,
            _ => Kind::Composite,
        }
    }

    /// Whether S3 allows this type with `algo`: the SHA digests of parts cannot be combined
    /// into the object's, and CRC64NVME has no composite form.
    pub fn allows(self, algo: Algo) -> bool {
        match self {
            Kind::Composite => algo != Algo::Crc64Nvme,
            Kind::FullObject => matches!(algo, Algo::Crc32 | Algo::Crc32c | Algo::Crc64Nvme),
        }
    }
}

/// The checksum of a multipart object, computed as its bytes stream by in part order: one
/// running checksum (full object), or one per part (composite).
pub struct Assembly {
    algo: Algo,
    kind: Kind,
    sizes: Vec<u64>,
    /// The part after the current one.
    next: usize,
    /// Bytes left in the current part.
    left: u64,
    current: Hasher,
    parts: Vec<Vec<u8>>,
}

impl Assembly {
    pub fn new(algo: Algo, kind: Kind, sizes: &[u64]) -> Assembly {
        Assembly {
            algo,
            kind,
            sizes: sizes.to_vec(),
            next: 1,
            left: sizes.first().copied().unwrap_or(0),
            current: algo.hasher(),
            parts: Vec::new(),
        }
    }

    /// Closes the parts that are complete (a composite checksum only).
    fn roll(&mut self) {
        while self.left == 0 {
            let Some(&next) = self.sizes.get(self.next) else {
                break;
            };
            self.next += 1;
            let done = std::mem::replace(&mut self.current, self.algo.hasher());
            self.parts.push(done.finish_raw());
            self.left = next;
        }
    }

    /// Adds the next bytes of the object.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.kind == Kind::FullObject {
            self.current.update(data);
            return;
        }
        while !data.is_empty() {
            self.roll();
            let n = self.left.min(data.len() as u64) as usize;
            if n == 0 {
                // More bytes than the parts hold: they count to the last part.
                self.current.update(data);
                return;
            }
            self.current.update(&data[..n]);
            self.left -= n as u64;
            data = &data[n..];
        }
    }

    /// The object's value (composite: `<checksum of the part checksums>-<parts>`) and, for
    /// a composite one, each part's value.
    pub fn finish(mut self) -> (String, Vec<String>) {
        if self.kind == Kind::FullObject {
            return (self.current.finish(), Vec::new());
        }
        self.roll();
        self.parts.push(self.current.finish_raw());
        (
            composite(self.algo, &self.parts),
            self.parts.iter().map(|p| STANDARD.encode(p)).collect(),
        )
    }
}

/// S3's composite checksum of raw part digests: the checksum of their concatenation, then
/// `-<number of parts>`.
pub fn composite(algo: Algo, parts: &[Vec<u8>]) -> String {
    let mut h = algo.hasher();
    for p in parts {
        h.update(p);
    }
    format!("{}-{}", h.finish(), parts.len())
}

/// A multipart object's checksum from its parts' own values (base64) and sizes, equal to
/// what an [`Assembly`] computes over the bytes: `None` when a part has no well-formed
/// value, or the type cannot be combined (a full-object SHA).
pub fn from_parts(
    algo: Algo,
    kind: Kind,
    parts: &[(Option<&str>, u64)],
) -> Option<(String, Vec<String>)> {
    let raw: Vec<Vec<u8>> = parts
        .iter()
        .map(|(v, _)| {
            let raw = STANDARD.decode((*v)?).ok()?;
            (raw.len() == algo.digest_len()).then_some(raw)
        })
        .collect::<Option<_>>()?;
    if kind == Kind::Composite {
        let each = raw.iter().map(|r| STANDARD.encode(r)).collect();
        return Some((composite(algo, &raw), each));
    }
    let combined = match algo {
        Algo::Crc32 => crc_fast::CrcAlgorithm::Crc32IsoHdlc,
        Algo::Crc32c => crc_fast::CrcAlgorithm::Crc32Iscsi,
        Algo::Crc64Nvme => crc_fast::CrcAlgorithm::Crc64Nvme,
        Algo::Sha1 | Algo::Sha256 => return None,
    };
    // The CRC of nothing is 0 for all three.
    let mut crc = 0u64;
    for (r, (_, len)) in raw.iter().zip(parts) {
        let mut be = [0u8; 8];
        be[8 - r.len()..].copy_from_slice(r);
        crc = crc_fast::checksum_combine(combined, crc, u64::from_be_bytes(be), *len);
    }
    let be = crc.to_be_bytes();
    Some((STANDARD.encode(&be[8 - algo.digest_len()..]), Vec::new()))
}

/// Whether a stored checksum value is well formed: base64, with `-<parts>` when composite.
pub fn stored_value_ok(value: &str) -> bool {
    let (b64, parts) = match value.rsplit_once('-') {
        Some((v, n)) => (v, Some(n)),
        None => (value, None),
    };
    STANDARD.decode(b64).is_ok() && parts.is_none_or(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
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

    #[test]
    fn composite_and_full_object_assemblies() {
        let data = b"0123456789abcdefghij";
        let sizes = [7u64, 0, 10, 3];
        let parts: Vec<&[u8]> = vec![&data[..7], &data[7..7], &data[7..17], &data[17..]];
        for (kind, pieces) in [
            (Kind::Composite, [3usize, 9, 8]),
            (Kind::FullObject, [20, 0, 0]),
        ] {
            let mut a = Assembly::new(Algo::Crc32, kind, &sizes);
            let mut at = 0;
            for n in pieces {
                a.update(&data[at..at + n]);
                at += n;
            }
            let (value, part_values) = a.finish();
            match kind {
                Kind::FullObject => {
                    assert_eq!(value, of(Algo::Crc32, data));
                    assert!(part_values.is_empty());
                }
                Kind::Composite => {
                    let raw: Vec<Vec<u8>> = parts
                        .iter()
                        .map(|p| {
                            let mut h = Algo::Crc32.hasher();
                            h.update(p);
                            h.finish_raw()
                        })
                        .collect();
                    assert_eq!(value, composite(Algo::Crc32, &raw));
                    assert!(value.ends_with("-4"));
                    let want: Vec<String> = raw.iter().map(|r| STANDARD.encode(r)).collect();
                    assert_eq!(part_values, want);
                }
            }
        }
        assert!(stored_value_ok("DUoRhQ==") && stored_value_ok("DUoRhQ==-3"));
        assert!(!stored_value_ok("DUoRhQ==-0") && !stored_value_ok("DUo!hQ=="));
        assert_eq!(Kind::parse("full_object"), Some(Kind::FullObject));
        assert!(!Kind::FullObject.allows(Algo::Sha256) && !Kind::Composite.allows(Algo::Crc64Nvme));
        assert_eq!(Kind::default_for(Algo::Crc64Nvme), Kind::FullObject);
    }

    #[test]
    fn checksums_from_the_parts_values_equal_those_over_the_bytes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for sizes in [
            vec![0],
            vec![1],
            vec![100_000, 100_000, 99_999, 1],
            vec![5, 0, 7],
        ] {
            let mut at = 0;
            let parts: Vec<&[u8]> = sizes
                .iter()
                .map(|n| {
                    at += n;
                    &data[at - n..at]
                })
                .collect();
            for algo in ALL {
                for kind in [Kind::Composite, Kind::FullObject] {
                    let values: Vec<String> = parts
                        .iter()
                        .map(|p| {
                            let mut h = algo.hasher();
                            h.update(p);
                            h.finish()
                        })
                        .collect();
                    let named: Vec<(Option<&str>, u64)> = values
                        .iter()
                        .zip(&sizes)
                        .map(|(v, n)| (Some(v.as_str()), *n as u64))
                        .collect();
                    let got = from_parts(algo, kind, &named);
                    if !kind.allows(algo) && kind == Kind::FullObject {
                        assert!(got.is_none(), "{algo:?} full object");
                        continue;
                    }
                    let mut a = Assembly::new(
                        algo,
                        kind,
                        &sizes.iter().map(|n| *n as u64).collect::<Vec<_>>(),
                    );
                    for p in &parts {
                        a.update(p);
                    }
                    assert_eq!(got, Some(a.finish()), "{algo:?} {kind:?} {sizes:?}");
                }
            }
            let missing = [(None, 1u64)];
            assert!(from_parts(Algo::Crc32, Kind::Composite, &missing).is_none());
            let wrong = [(Some("AAAA"), 1u64)];
            assert!(from_parts(Algo::Crc64Nvme, Kind::FullObject, &wrong).is_none());
        }
    }
}
