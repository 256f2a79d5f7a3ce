"""boto3 against a real gateway: objects, listing, managed transfers, presigned URLs, conditions."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from clientutil import MiB, md5_hex, random_file, sha256_bytes, sha256_file


def status_of(err) -> int:
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


def empty_and_delete(s3, bucket):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


def test_boto3_put_get_head(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    data = os.urandom(300_000)
    put = s3.put_object(Bucket=b, Key="dir/obj.bin", Body=data, ContentType="application/x-test",
                        Metadata={"owner": "e2e", "run": "1"})
    assert put["ETag"].strip('"') == md5_hex(data)

    head = s3.head_object(Bucket=b, Key="dir/obj.bin")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"owner": "e2e", "run": "1"}
    assert head["ETag"] == put["ETag"]

    got = s3.get_object(Bucket=b, Key="dir/obj.bin")
    assert sha256_bytes(got["Body"].read()) == sha256_bytes(data)
    assert got["ETag"] == put["ETag"]

    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="dir/missing")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    empty_and_delete(s3, b)


def test_boto3_list_objects_paginators_over_1100_keys(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    expected = [f"p/{i:05d}" for i in range(1100)] + ["a/1", "a/2", "b/1", "c"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=b, Key=k, Body=k.encode()), expected))
    expected.sort()

    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=b))
    assert len(pages) == 2, "1104 keys at the default 1000 keys a page"
    assert [len(p["Contents"]) for p in pages] == [1000, 104]
    assert pages[0]["IsTruncated"] and not pages[1]["IsTruncated"]
    assert [o["Key"] for p in pages for o in p["Contents"]] == expected

    small = list(s3.get_paginator("list_objects_v2").paginate(Bucket=b, PaginationConfig={"PageSize": 300}))
    assert [len(p["Contents"]) for p in small] == [300, 300, 300, 204]
    assert [o["Key"] for p in small for o in p["Contents"]] == expected

    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=b, PaginationConfig={"PageSize": 500}))
    assert [o["Key"] for p in v1 for o in p["Contents"]] == expected

    top = s3.list_objects_v2(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/", "p/"]
    assert [o["Key"] for o in top["Contents"]] == ["c"]
    sub = s3.list_objects_v2(Bucket=b, Prefix="a/")
    assert [o["Key"] for o in sub["Contents"]] == ["a/1", "a/2"]
    empty_and_delete(s3, b)


def test_boto3_managed_multipart_transfer(s3, bucket_name, tmp_path):
    """upload_file/download_file with 8 MiB parts on a 40 MiB file (5 parts; ranged GETs back)."""
    from boto3.s3.transfer import TransferConfig

    b = bucket_name
    s3.create_bucket(Bucket=b)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4)
    src = tmp_path / "forty.bin"
    digest = random_file(src, 40 * MiB)
    s3.upload_file(str(src), b, "forty.bin", Config=cfg)

    head = s3.head_object(Bucket=b, Key="forty.bin")
    assert head["ContentLength"] == 40 * MiB
    assert head["ETag"].strip('"').endswith("-5")

    dst = tmp_path / "forty.back"
    s3.download_file(b, "forty.bin", str(dst), Config=cfg)
    assert sha256_file(dst) == digest
    empty_and_delete(s3, b)


def test_boto3_presigned_get_and_put(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    data = os.urandom(70_000)
    s3.put_object(Bucket=b, Key="shared/get.bin", Body=data)

    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "shared/get.bin"}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert sha256_bytes(r.read()) == sha256_bytes(data)

    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=30)
    assert e.value.code == 403

    upload = os.urandom(50_000)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "shared/put.bin"}, ExpiresIn=300)
    req = urllib.request.Request(put_url, data=upload, method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    got = s3.get_object(Bucket=b, Key="shared/put.bin")["Body"].read()
    assert sha256_bytes(got) == sha256_bytes(upload)
    empty_and_delete(s3, b)


def test_boto3_copy_and_delete_objects(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    data = os.urandom(123_456)
    s3.put_object(Bucket=b, Key="src.bin", Body=data, Metadata={"k": "v"})

    r = s3.copy_object(Bucket=b, Key="copy.bin", CopySource={"Bucket": b, "Key": "src.bin"})
    assert r["CopyObjectResult"]["ETag"].strip('"') == md5_hex(data)
    got = s3.get_object(Bucket=b, Key="copy.bin")
    assert sha256_bytes(got["Body"].read()) == sha256_bytes(data)
    assert got["Metadata"] == {"k": "v"}

    s3.copy_object(Bucket=b, Key="replaced.bin", CopySource={"Bucket": b, "Key": "src.bin"},
                   MetadataDirective="REPLACE", Metadata={"new": "yes"}, ContentType="text/x-new")
    head = s3.head_object(Bucket=b, Key="replaced.bin")
    assert head["Metadata"] == {"new": "yes"} and head["ContentType"] == "text/x-new"
    assert head["ETag"].strip('"') == md5_hex(data)

    r = s3.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": "src.bin"}, {"Key": "copy.bin"}, {"Key": "replaced.bin"}, {"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["copy.bin", "never-existed", "replaced.bin", "src.bin"]
    assert not r.get("Errors")
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0
    s3.delete_bucket(Bucket=b)


def test_boto3_conditional_and_ranged_get(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    data = os.urandom(1000)
    etag = s3.put_object(Bucket=b, Key="obj", Body=data)["ETag"]

    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="obj", IfNoneMatch=etag)
    assert status_of(e.value) == 304
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="obj", IfMatch='"00000000000000000000000000000000"')
    assert status_of(e.value) == 412
    assert s3.get_object(Bucket=b, Key="obj", IfMatch=etag)["Body"].read() == data
    assert s3.get_object(Bucket=b, Key="obj", IfNoneMatch='"other"')["Body"].read() == data

    r = s3.get_object(Bucket=b, Key="obj", Range="bytes=100-199")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["ContentRange"] == "bytes 100-199/1000"
    assert r["ContentLength"] == 100
    assert r["Body"].read() == data[100:200]

    r = s3.get_object(Bucket=b, Key="obj", Range="bytes=-10")
    assert r["ContentRange"] == "bytes 990-999/1000"
    assert r["Body"].read() == data[-10:]
    r = s3.get_object(Bucket=b, Key="obj", Range="bytes=995-")
    assert r["Body"].read() == data[995:]

    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="obj", Range="bytes=5000-6000")
    assert status_of(e.value) == 416
    empty_and_delete(s3, b)
