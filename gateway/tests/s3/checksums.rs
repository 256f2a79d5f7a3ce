//! Multipart checksums as S3 defines them: COMPOSITE (a checksum of the part checksums,
//! `-N`) and FULL_OBJECT (of the whole object), for every algorithm where S3 allows it, with
//! CRC64NVME everywhere, the refusals, and the SDK's default checksum behaviour.

use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes,
};
use aws_sdk_s3::Client;
use base64::Engine;
use sha2::Digest;

use crate::common::*;
use crate::multipart::{completed, create_upload, upload_part};

const MIB: usize = 1024 * 1024;

/// The raw digest of `data` with `algo`.
fn raw(algo: &ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    match algo {
        ChecksumAlgorithm::Crc32 => crc32fast::hash(data).to_be_bytes().to_vec(),
        ChecksumAlgorithm::Crc32C => crc32c::crc32c(data).to_be_bytes().to_vec(),
        ChecksumAlgorithm::Crc64Nvme => crc::Crc::<u64>::new(&crc::CRC_64_NVME)
            .checksum(data)
            .to_be_bytes()
            .to_vec(),
        ChecksumAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
        ChecksumAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        other => panic!("no such algorithm {other:?}"),
    }
}

fn b64s(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// The value S3 returns for `algo` in a response of this shape.
fn value_of(algo: &ChecksumAlgorithm, c: &dyn Checksums) -> Option<String> {
    match algo {
        ChecksumAlgorithm::Crc32 => c.crc32(),
        ChecksumAlgorithm::Crc32C => c.crc32c(),
        ChecksumAlgorithm::Crc64Nvme => c.crc64nvme(),
        ChecksumAlgorithm::Sha1 => c.sha1(),
        ChecksumAlgorithm::Sha256 => c.sha256(),
        _ => None,
    }
}

/// The checksum fields the SDK's outputs share.
trait Checksums {
    fn crc32(&self) -> Option<String>;
    fn crc32c(&self) -> Option<String>;
    fn crc64nvme(&self) -> Option<String>;
    fn sha1(&self) -> Option<String>;
    fn sha256(&self) -> Option<String>;
}

macro_rules! checksums {
    ($($t:ty),*) => {$(
        impl Checksums for $t {
            fn crc32(&self) -> Option<String> { self.checksum_crc32().map(str::to_string) }
            fn crc32c(&self) -> Option<String> { self.checksum_crc32_c().map(str::to_string) }
            fn crc64nvme(&self) -> Option<String> { self.checksum_crc64_nvme().map(str::to_string) }
            fn sha1(&self) -> Option<String> { self.checksum_sha1().map(str::to_string) }
            fn sha256(&self) -> Option<String> { self.checksum_sha256().map(str::to_string) }
        }
    )*};
}

checksums!(
    aws_sdk_s3::operation::upload_part::UploadPartOutput,
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    aws_sdk_s3::operation::head_object::HeadObjectOutput,
    aws_sdk_s3::types::Checksum,
    aws_sdk_s3::types::ObjectPart,
    aws_sdk_s3::types::Part
);

fn part_with(algo: &ChecksumAlgorithm, n: i32, etag: &str, value: &str) -> CompletedPart {
    let b = CompletedPart::builder().part_number(n).e_tag(etag);
    match algo {
        ChecksumAlgorithm::Crc32 => b.checksum_crc32(value),
        ChecksumAlgorithm::Crc32C => b.checksum_crc32_c(value),
        ChecksumAlgorithm::Crc64Nvme => b.checksum_crc64_nvme(value),
        ChecksumAlgorithm::Sha1 => b.checksum_sha1(value),
        ChecksumAlgorithm::Sha256 => b.checksum_sha256(value),
        _ => b,
    }
    .build()
}

/// Uploads `parts` with `algo` (and `kind`, if given); returns the upload id and the
/// completed parts with their checksums.
async fn upload_with(
    s3: &Client,
    b: &str,
    key: &str,
    algo: &ChecksumAlgorithm,
    kind: Option<ChecksumType>,
    parts: &[Vec<u8>],
) -> (String, Vec<CompletedPart>) {
    let created = ok(
        s3.create_multipart_upload()
            .bucket(b)
            .key(key)
            .checksum_algorithm(algo.clone())
            .set_checksum_type(kind.clone())
            .send()
            .await,
        "CreateMultipartUpload",
    );
    assert_eq!(created.checksum_algorithm(), Some(algo));
    let id = created.upload_id().unwrap().to_string();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            s3.upload_part()
                .bucket(b)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .checksum_algorithm(algo.clone())
                .body(p.clone().into())
                .send()
                .await,
            "UploadPart",
        );
        let value = value_of(algo, &out).expect("the part's checksum");
        assert_eq!(value, b64s(&raw(algo, p)), "part {n}");
        done.push(part_with(algo, n, out.e_tag().unwrap(), &value));
    }
    (id, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_and_full_object_multipart_checksums() {
    let b = unique_bucket("mpsum");
    // No collector: its compactions would write beside the byte counts below.
    let env = Env::start_with(config_with(&[&b]), |s| s.collector.enabled = false).await;
    let s3 = env.client();
    let parts = vec![data(5 * MIB, 7), data(5 * MIB, 8), data(4321, 9)];
    let whole: Vec<u8> = parts.concat();
    let cases = [
        (ChecksumAlgorithm::Crc32, None, ChecksumType::Composite),
        (
            ChecksumAlgorithm::Crc32,
            Some(ChecksumType::FullObject),
            ChecksumType::FullObject,
        ),
        (
            ChecksumAlgorithm::Crc32C,
            Some(ChecksumType::Composite),
            ChecksumType::Composite,
        ),
        (
            ChecksumAlgorithm::Crc32C,
            Some(ChecksumType::FullObject),
            ChecksumType::FullObject,
        ),
        (ChecksumAlgorithm::Crc64Nvme, None, ChecksumType::FullObject),
        (ChecksumAlgorithm::Sha1, None, ChecksumType::Composite),
        (
            ChecksumAlgorithm::Sha256,
            Some(ChecksumType::Composite),
            ChecksumType::Composite,
        ),
    ];
    for (i, (algo, asked, kind)) in cases.iter().enumerate() {
        let key = format!("obj{i}");
        let what = format!("{algo:?} {kind:?}");
        let (id, done) = upload_with(&s3, &b, &key, algo, asked.clone(), &parts).await;
        let listed = ok(
            s3.list_parts()
                .bucket(&b)
                .key(&key)
                .upload_id(&id)
                .send()
                .await,
            "ListParts",
        );
        assert_eq!(listed.checksum_type(), Some(kind), "{what}: ListParts type");
        for (p, want) in listed.parts().iter().zip(&parts) {
            assert_eq!(value_of(algo, p), Some(b64s(&raw(algo, want))), "{what}");
        }
        let want = match kind {
            ChecksumType::Composite => {
                let cat: Vec<u8> = parts.iter().flat_map(|p| raw(algo, p)).collect();
                format!("{}-{}", b64s(&raw(algo, &cat)), parts.len())
            }
            _ => b64s(&raw(algo, &whole)),
        };
        let stored = || async {
            let streams = env.obj_streams().await;
            streams.values().map(|(_, bytes)| *bytes).sum::<u64>()
        };
        let before = stored().await;
        let out = ok(
            s3.complete_multipart_upload()
                .bucket(&b)
                .key(&key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(done))
                        .build(),
                )
                .send()
                .await,
            "Complete",
        );
        assert_eq!(value_of(algo, &out), Some(want.clone()), "{what}: Complete");
        let after = stored().await;
        assert!(
            after < before + 64 * 1024,
            "{what}: the checksum came from the parts' values, nothing was copied ({before} -> {after} bytes)"
        );
        assert_eq!(out.checksum_type(), Some(kind), "{what}: Complete type");
        let head = ok(
            s3.head_object()
                .bucket(&b)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await,
            "HeadObject",
        );
        assert_eq!(value_of(algo, &head), Some(want.clone()), "{what}: HEAD");
        assert_eq!(head.checksum_type(), Some(kind), "{what}: HEAD type");
        let attrs = ok(
            s3.get_object_attributes()
                .bucket(&b)
                .key(&key)
                .object_attributes(ObjectAttributes::Checksum)
                .object_attributes(ObjectAttributes::ObjectParts)
                .send()
                .await,
            "GetObjectAttributes",
        );
        let sum = attrs.checksum().expect("Checksum");
        assert_eq!(value_of(algo, sum), Some(want), "{what}: attributes");
        assert_eq!(sum.checksum_type(), Some(kind), "{what}: attributes type");
        let listed_parts = attrs.object_parts().expect("ObjectParts");
        assert_eq!(listed_parts.total_parts_count(), Some(3));
        if *kind == ChecksumType::Composite {
            for (p, want) in listed_parts.parts().iter().zip(&parts) {
                assert_eq!(value_of(algo, p), Some(b64s(&raw(algo, want))), "{what}");
            }
        }
        // Read back whole, with the SDK validating what it can.
        let got = ok(
            s3.get_object()
                .bucket(&b)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await,
            "GetObject",
        );
        assert!(got.body.collect().await.unwrap().into_bytes() == whole);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_checksum_refusals() {
    let b = unique_bucket("mpsumbad");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    // Combinations S3 refuses, and a type without an algorithm.
    for (algo, kind) in [
        (Some("SHA256"), "FULL_OBJECT"),
        (Some("SHA1"), "FULL_OBJECT"),
        (Some("CRC64NVME"), "COMPOSITE"),
        (Some("CRC32"), "PARTIAL"),
        (None, "COMPOSITE"),
    ] {
        let mut req =
            RawRequest::new("POST", &format!("/{b}/x?uploads")).header("x-amz-checksum-type", kind);
        if let Some(a) = algo {
            req = req.header("x-amz-checksum-algorithm", a);
        }
        env.send_signed(req)
            .await
            .assert_error(400, "InvalidRequest");
    }
    let parts = vec![data(5 * MIB, 1), data(10, 2)];
    let algo = ChecksumAlgorithm::Crc32;
    // A part checksum in Complete that is not the stored part's: InvalidPart.
    let (id, mut done) = upload_with(&s3, &b, "k", &algo, None, &parts).await;
    let good = done[1].clone();
    done[1] = part_with(&algo, 2, good.e_tag().unwrap(), &crc32_b64(b"not it"));
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done.clone()))
                .build(),
        )
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "InvalidPart".into()));
    done[1] = good;
    // A checksum type other than the upload's: InvalidRequest.
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .checksum_type(ChecksumType::FullObject)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done.clone()))
                .build(),
        )
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "InvalidRequest".into()));
    // A composite value that is not the object's: BadDigest, nothing stored.
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .checksum_crc32(format!("{}-2", crc32_b64(b"wrong")))
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done.clone()))
                .build(),
        )
        .send()
        .await;
    // A Complete that takes over 2 s answers 200 and puts its error in the body.
    assert_eq!(sdk_err(r).1, "BadDigest");
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404, "nothing was stored");
    // A full-object upload checks the whole-object value it is given.
    let (id, done) =
        upload_with(&s3, &b, "full", &ChecksumAlgorithm::Crc64Nvme, None, &parts).await;
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("full")
        .upload_id(&id)
        .checksum_crc64_nvme(crc64nvme_b64(b"wrong"))
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done.clone()))
                .build(),
        )
        .send()
        .await;
    // A Complete that takes over 2 s answers 200 and puts its error in the body.
    assert_eq!(sdk_err(r).1, "BadDigest");
    let out = ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("full")
            .upload_id(&id)
            .checksum_crc64_nvme(crc64nvme_b64(&parts.concat()))
            .checksum_type(ChecksumType::FullObject)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await,
        "Complete with the right full-object value",
    );
    assert_eq!(
        out.checksum_crc64_nvme(),
        Some(crc64nvme_b64(&parts.concat()).as_str())
    );
}

/// What the SDK does by default: CRC32 on PutObject and UploadPart, no algorithm on
/// CreateMultipartUpload, checksum validation on GetObject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_default_checksums() {
    let b = unique_bucket("sumdefault");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(300_000, 3);
    let out = ok(
        s3.put_object()
            .bucket(&b)
            .key("put")
            .body(body.clone().into())
            .send()
            .await,
        "PutObject",
    );
    assert_eq!(out.checksum_crc32(), Some(crc32_b64(&body).as_str()));
    assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject));
    let got = ok(
        s3.get_object()
            .bucket(&b)
            .key("put")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
        "GetObject",
    );
    assert_eq!(got.checksum_crc32(), Some(crc32_b64(&body).as_str()));
    assert!(got.body.collect().await.unwrap().into_bytes() == body);
    // A wrong value is BadDigest.
    let r = s3
        .put_object()
        .bucket(&b)
        .key("bad")
        .checksum_crc64_nvme(crc64nvme_b64(b"other"))
        .body(body.clone().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "BadDigest".into()));
    let parts = [data(5 * MIB, 4), data(100, 5)];
    let id = create_upload(&s3, &b, "mp").await;
    let e1 = upload_part(&s3, &b, "mp", &id, 1, &parts[0]).await;
    let e2 = upload_part(&s3, &b, "mp", &id, 2, &parts[1]).await;
    let listed = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    assert_eq!(
        listed.parts()[0].checksum_crc32(),
        Some(crc32_b64(&parts[0]).as_str()),
        "the SDK's default part checksum is kept"
    );
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
            .send()
            .await,
        "Complete",
    );
    let got = ok(
        s3.get_object()
            .bucket(&b)
            .key("mp")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
        "GetObject",
    );
    assert!(got.body.collect().await.unwrap().into_bytes() == parts.concat());
}
