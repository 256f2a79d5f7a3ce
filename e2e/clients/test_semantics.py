"""S3 semantics real clients depend on (boto3 and the AWS CLI): a retried Complete, PUT If-Match,
checksums as current SDKs send them, listing and bucket edge cases, part reads, bodies and headers."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import urllib.error
import urllib.request
import zlib

import pytest
from botocore.exceptions import ClientError

from clientutil import MiB, md5_hex, multipart_etag, run


def code_of(err: ClientError) -> tuple[int, str]:
    return err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]["Code"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32_b64(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


_CRC64_NVME_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x9A6C9329AC4BC9B5 if _c & 1 else _c >> 1
    _CRC64_NVME_TABLE.append(_c)


def crc64nvme(data: bytes) -> bytes:
    """CRC-64/NVME (no awscrt in the test venv: boto3 cannot compute it itself)."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64_NVME_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def parts_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def bucket(s3, bucket_name):
    s3.create_bucket(Bucket=bucket_name)
    return bucket_name


# ---- 1. a retried CompleteMultipartUpload ----------------------------------------------------


def _upload(s3, b, key, parts):
    up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    done = []
    for n, body in enumerate(parts, 1):
        e = s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=n, Body=body)["ETag"]
        done.append({"PartNumber": n, "ETag": e})
    return up, done


def test_boto3_retried_complete_answers_as_the_first(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    parts = [b"a" * (5 * MiB), b"tail"]
    up, done = _upload(s3, bucket, "k", parts)
    first = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done})
    assert first["ETag"].strip('"') == multipart_etag(parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done})
    assert again["ETag"] == first["ETag"]
    assert again["VersionId"] == first["VersionId"]
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == [first["VersionId"]], "one version, committed once"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done[:1]})
    assert code_of(e.value) == (404, "NoSuchUpload")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=3, Body=b"late")
    assert code_of(e.value) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=up)
    assert code_of(e.value) == (404, "NoSuchUpload")
    got = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(b"".join(parts)).digest()


def test_aws_cli_retried_complete(gateway, s3, bucket, tmp_path):
    env = gateway.client_env()
    aws = ["aws", "--endpoint-url", gateway.endpoint, "--output", "json", "s3api"]
    up, done = _upload(s3, bucket, "cli", [b"x" * 1000])
    spec = tmp_path / "parts.json"
    spec.write_text(json.dumps({"Parts": done}))
    cmd = aws + ["complete-multipart-upload", "--bucket", bucket, "--key", "cli", "--upload-id", up,
                 "--multipart-upload", f"file://{spec}"]
    first = json.loads(run(cmd, env=env).stdout)
    again = json.loads(run(cmd, env=env).stdout)
    assert again["ETag"] == first["ETag"] == f'"{multipart_etag([b"x" * 1000])}"'


# ---- 2. PUT If-Match ---------------------------------------------------------------------------


def test_boto3_put_if_match_and_complete_conditions(s3, bucket):
    e1 = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    e2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=e1)["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=e1)
    assert code_of(e.value) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="nothing", Body=b"v", IfMatch=e1)
    assert code_of(e.value) == (404, "NoSuchKey")
    up, done = _upload(s3, bucket, "k", [b"mp"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done},
                                     IfMatch=e1)
    assert code_of(e.value) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done},
                                     IfNoneMatch="*")
    assert code_of(e.value) == (412, "PreconditionFailed")
    out = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done},
                                       IfMatch=e2)
    assert s3.get_object(Bucket=bucket, Key="k", IfMatch=out["ETag"])["Body"].read() == b"mp"


def test_aws_cli_put_if_match(gateway, s3, bucket, tmp_path):
    env = gateway.client_env()
    aws = ["aws", "--endpoint-url", gateway.endpoint, "--output", "json", "s3api"]
    body = tmp_path / "body"
    body.write_bytes(b"one")
    e1 = json.loads(run(aws + ["put-object", "--bucket", bucket, "--key", "k", "--body", str(body)], env=env).stdout)["ETag"]
    body.write_bytes(b"two")
    run(aws + ["put-object", "--bucket", bucket, "--key", "k", "--body", str(body), "--if-match", e1], env=env)
    failed = run(aws + ["put-object", "--bucket", bucket, "--key", "k", "--body", str(body), "--if-match", e1],
                 env=env, check=False)
    assert failed.returncode != 0 and "PreconditionFailed" in failed.stderr
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


# ---- 3. checksums ------------------------------------------------------------------------------


def test_boto3_default_checksums(s3, bucket):
    data = b"checksummed by default" * 1000
    put = s3.put_object(Bucket=bucket, Key="k", Body=data)
    assert put["ChecksumCRC32"] == crc32_b64(data), "boto3 sends CRC32 by default"
    assert put["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data) and head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == crc32_b64(data)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=data, ChecksumCRC32=crc32_b64(b"other"))
    assert code_of(e.value) == (400, "BadDigest")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")


def test_boto3_crc64nvme_everywhere(s3, bucket):
    data = b"nvme" * 5000
    want = b64(crc64nvme(data))
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumCRC64NVME=want)
    assert put["ChecksumCRC64NVME"] == want
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == want and head["ChecksumType"] == "FULL_OBJECT"
    attrs = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert attrs["Checksum"] == {"ChecksumCRC64NVME": want, "ChecksumType": "FULL_OBJECT"}
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=data, ChecksumCRC64NVME=b64(crc64nvme(b"x")))
    assert code_of(e.value) == (400, "BadDigest")
    # Multipart: CRC64NVME is a full-object checksum.
    parts = [b"p" * (5 * MiB), b"q" * 1000]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC64NVME")
    assert up.get("ChecksumType") == "FULL_OBJECT"
    done = []
    for n, body in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=body,
                           ChecksumCRC64NVME=b64(crc64nvme(body)))
        assert r["ChecksumCRC64NVME"] == b64(crc64nvme(body))
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC64NVME": r["ChecksumCRC64NVME"]})
    whole = b64(crc64nvme(b"".join(parts)))
    out = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                       MultipartUpload={"Parts": done}, ChecksumCRC64NVME=whole,
                                       ChecksumType="FULL_OBJECT")
    assert out["ChecksumCRC64NVME"] == whole and out["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == whole and head["ChecksumType"] == "FULL_OBJECT"


def test_boto3_composite_and_full_object_multipart(s3, bucket):
    parts = [bytes([i]) * (5 * MiB) for i in range(2)] + [b"end"]
    crcs = [zlib.crc32(p).to_bytes(4, "big") for p in parts]
    composite = b64(zlib.crc32(b"".join(crcs)).to_bytes(4, "big")) + f"-{len(parts)}"
    full = crc32_b64(b"".join(parts))
    for kind, want in (("COMPOSITE", composite), ("FULL_OBJECT", full)):
        key = kind.lower()
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", ChecksumType=kind)
        assert up["ChecksumAlgorithm"] == "CRC32" and up["ChecksumType"] == kind
        done = []
        for n, body in enumerate(parts, 1):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body,
                               ChecksumAlgorithm="CRC32")
            assert r["ChecksumCRC32"] == b64(crcs[n - 1])
            done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=up["UploadId"])
        assert listed["ChecksumType"] == kind
        out = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                           MultipartUpload={"Parts": done})
        assert (out["ChecksumCRC32"], out["ChecksumType"]) == (want, kind)
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert (head["ChecksumCRC32"], head["ChecksumType"]) == (want, kind)
        attrs = s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=["Checksum", "ObjectParts"])
        assert attrs["Checksum"] == {"ChecksumCRC32": want, "ChecksumType": kind}
        assert attrs["ObjectParts"]["TotalPartsCount"] == 3
        if kind == "COMPOSITE":
            assert [p["ChecksumCRC32"] for p in attrs["ObjectParts"]["Parts"]] == [b64(c) for c in crcs]
            part = s3.head_object(Bucket=bucket, Key=key, PartNumber=2, ChecksumMode="ENABLED")
            assert part["ChecksumCRC32"] == b64(crcs[1])
        # boto3 validates what it reads back (a composite value is skipped by design).
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)
    # A part checksum in Complete that is not the part's: InvalidPart.
    up = s3.create_multipart_upload(Bucket=bucket, Key="wrong", ChecksumAlgorithm="CRC32")
    r = s3.upload_part(Bucket=bucket, Key="wrong", UploadId=up["UploadId"], PartNumber=1, Body=b"abc",
                       ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="wrong", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": crc32_b64(b"xyz")}]})
    assert code_of(e.value) == (400, "InvalidPart")
    # Types S3 refuses.
    for algo, kind in (("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")):
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="x", ChecksumAlgorithm=algo, ChecksumType=kind)
        assert code_of(e.value) == (400, "InvalidRequest")


def test_boto3_managed_upload_default_checksums(s3, bucket, tmp_path):
    """s3transfer's multipart upload with the default checksum settings, read back validated."""
    from boto3.s3.transfer import TransferConfig

    data = bytes(range(256)) * (48 * 1024)  # 12 MiB
    path = tmp_path / "f"
    path.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(path), bucket, "managed", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="managed", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    # s3transfer names CRC32 on CreateMultipartUpload and no type: S3's default, COMPOSITE.
    crcs = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts_of(data, 5 * MiB))
    assert head["ChecksumType"] == "COMPOSITE"
    assert head["ChecksumCRC32"] == b64(zlib.crc32(crcs).to_bytes(4, "big")) + "-3"
    assert head["ETag"].strip('"') == multipart_etag(parts_of(data, 5 * MiB))
    out = tmp_path / "back"
    s3.download_file(bucket, "managed", str(out), Config=cfg)
    assert out.read_bytes() == data


# ---- 4. listing and bucket edge cases ----------------------------------------------------------


def test_boto3_listing_edges(s3, bucket):
    for k in ("a", "b", "c", "d"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    zero = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert zero["KeyCount"] == 0 and not zero["IsTruncated"] and "Contents" not in zero
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=0)
    assert not v1["IsTruncated"] and "Contents" not in v1
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    token = page["NextContinuationToken"]
    both = s3.list_objects_v2(Bucket=bucket, ContinuationToken=token, StartAfter="c")
    assert [o["Key"] for o in both["Contents"]] == ["b", "c", "d"], "the token wins over start-after"
    assert both["StartAfter"] == "c" and both["ContinuationToken"] == token


def test_boto3_list_buckets_pagination(s3, bucket_name):
    names = [f"{bucket_name[:50]}-{i}" for i in range(5)]
    for n in names:
        s3.create_bucket(Bucket=n)
    first = s3.list_buckets(MaxBuckets=2, Prefix=bucket_name[:50])
    assert [b["Name"] for b in first["Buckets"]] == names[:2]
    assert first["Prefix"] == bucket_name[:50]
    got = [b["Name"] for b in first["Buckets"]]
    token = first["ContinuationToken"]
    while token:
        page = s3.list_buckets(MaxBuckets=2, Prefix=bucket_name[:50], ContinuationToken=token)
        got += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
    assert got == names
    paged = [b["Name"] for p in s3.get_paginator("list_buckets").paginate(
        Prefix=bucket_name[:50], PaginationConfig={"PageSize": 3}) for b in p["Buckets"]]
    assert paged == names
    region = s3.list_buckets(Prefix=bucket_name[:50], BucketRegion="us-east-1")
    assert [b["Name"] for b in region["Buckets"]] == names
    assert all(b["BucketRegion"] == "us-east-1" for b in region["Buckets"])
    assert s3.list_buckets(Prefix=bucket_name[:50], BucketRegion="eu-west-1")["Buckets"] == []


def test_boto3_create_bucket_again_in_us_east_1(s3, bucket):
    s3.create_bucket(Bucket=bucket)  # 200: S3's us-east-1 legacy behaviour for the owner
    s3.head_bucket(Bucket=bucket)


def test_boto3_deleted_bucket_is_no_such_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key="k"),
        lambda: s3.head_object(Bucket=bucket, Key="k"),
        lambda: s3.delete_object(Bucket=bucket, Key="k"),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"v"),
        lambda: s3.list_objects_v2(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] in ("NoSuchBucket", "404")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 404 and b"<Code>NoSuchBucket</Code>" in e.value.read()


# ---- 5. part reads -----------------------------------------------------------------------------


def test_boto3_part_reads(s3, bucket):
    parts = [b"1" * (5 * MiB), b"2" * (5 * MiB), b"3" * 100]
    up, done = _upload(s3, bucket, "mp", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    start = 0
    for n, p in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3 and got["ContentLength"] == len(p)
        assert got["ContentRange"] == f"bytes {start}-{start + len(p) - 1}/{sum(map(len, parts))}"
        assert got["Body"].read() == p
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert head["PartsCount"] == 3 and head["ContentLength"] == len(p)
        start += len(p)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert code_of(e.value) == (416, "InvalidPartNumber")
    s3.put_object(Bucket=bucket, Key="simple", Body=b"whole")
    one = s3.get_object(Bucket=bucket, Key="simple", PartNumber=1)
    assert one["Body"].read() == b"whole" and one["ContentLength"] == 5
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="simple", PartNumber=2)
    assert code_of(e.value) == (416, "InvalidPartNumber")


def test_boto3_upload_part_copy_bad_ranges(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    for rng, want in (
        ("bytes=5-20", (416, "InvalidRange")),
        ("bytes=10-11", (416, "InvalidRange")),
        ("bytes=3-1", (400, "InvalidArgument")),
        ("bytes=-5", (400, "InvalidArgument")),
        ("5-9", (400, "InvalidArgument")),
        ("bytes=a-b", (400, "InvalidArgument")),
    ):
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=rng)
        assert code_of(e.value) == want, rng
    r = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=2-4")
    assert r["CopyPartResult"]["ETag"].strip('"') == md5_hex(b"234")


# ---- 6. bodies and headers ---------------------------------------------------------------------


def test_boto3_single_small_part_and_content_encoding(s3, bucket):
    up, done = _upload(s3, bucket, "small", [b"tiny"])
    s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=up, MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"tiny"
    s3.put_object(Bucket=bucket, Key="gz", Body=b"gzipped?", ContentEncoding="gzip")
    assert s3.head_object(Bucket=bucket, Key="gz")["ContentEncoding"] == "gzip"


def _raw(gateway, request: bytes) -> bytes:
    host, port = gateway.host_port.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        first = s.recv(65536)
        return first


def test_expect_100_continue_only_after_auth(gateway, bucket):
    body = b"x" * 1000
    head = (f"PUT /{bucket}/k HTTP/1.1\r\nHost: {gateway.host_port}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
            "Authorization: AWS4-HMAC-SHA256 Credential=NOPE/20250101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=00\r\nx-amz-date: 20250101T000000Z\r\n"
            "x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n").encode()
    first = _raw(gateway, head)
    assert first.startswith(b"HTTP/1.1 403"), first[:200]
    assert b"100 Continue" not in first


def test_boto3_refused_puts_leave_the_connection_usable(s3, bucket):
    """botocore sends Expect: 100-continue with its (checksummed, streamed) bodies; a refusal
    comes before the body, and the client's next request must not land on the closed
    connection."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    for i in range(30):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 2048, IfNoneMatch="*")
        assert code_of(e.value) == (412, "PreconditionFailed"), i
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first", i
