"""The AWS CLI (v1, from `make tools`) against a real gateway: `aws s3` and `aws s3api`."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from clientutil import (
    MiB,
    assert_same_tree,
    make_tree,
    md5_hex,
    multipart_etag,
    need_tool,
    random_file,
    run,
    sha256_file,
)


@pytest.fixture
def aws(gateway):
    exe = need_tool("aws")
    env = gateway.client_env()

    def call(*args, check=True, timeout=600):
        return run([exe, "--endpoint-url", gateway.endpoint, "--output", "json",
                    "--cli-read-timeout", "30", *args],
                   env=env, check=check, timeout=timeout)

    def api(*args):
        out = call("s3api", *args).stdout
        return json.loads(out) if out.strip() else {}

    call.api = api
    return call


def etag(value: str) -> str:
    return value.strip('"')


def ls_keys(output: str) -> list[str]:
    """Keys from `aws s3 ls --recursive` lines: DATE TIME SIZE KEY (the key may hold spaces)."""
    keys = []
    for line in output.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            keys.append(parts[3])
    return keys


def test_aws_s3_small_file_roundtrip(aws, bucket_name, tmp_path):
    b = bucket_name
    assert f"make_bucket: {b}" in aws("s3", "mb", f"s3://{b}").stdout
    src = tmp_path / "small.bin"
    digest = random_file(src, 1234)
    aws("s3", "cp", "--no-progress", src, f"s3://{b}/dir/small.bin")
    dst = tmp_path / "back.bin"
    aws("s3", "cp", "--no-progress", f"s3://{b}/dir/small.bin", dst)
    assert sha256_file(dst) == digest

    listing = aws("s3", "ls", f"s3://{b}/dir/").stdout
    assert ls_keys(listing) == ["small.bin"], listing
    assert listing.split()[2] == "1234", listing

    aws("s3", "rm", f"s3://{b}/dir/small.bin")
    assert aws("s3", "ls", "--recursive", f"s3://{b}").stdout.strip() == ""
    assert f"remove_bucket: {b}" in aws("s3", "rb", f"s3://{b}").stdout
    gone = aws("s3", "ls", f"s3://{b}", check=False)
    assert gone.returncode != 0 and "NoSuchBucket" in gone.stderr, gone.stderr


def test_aws_s3_cp_multipart_110mib(aws, bucket_name, tmp_path):
    """110 MiB forces the CLI's multipart upload (8 MiB parts) and ranged/multi-request download."""
    b = bucket_name
    aws("s3", "mb", f"s3://{b}")
    size = 110 * MiB
    src = tmp_path / "big.bin"
    digest = random_file(src, size)
    parts = []
    with open(src, "rb") as f:
        while chunk := f.read(8 * MiB):
            parts.append(hashlib.md5(chunk).digest())
    expected_etag = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"

    aws("s3", "cp", "--no-progress", src, f"s3://{b}/big.bin")
    head = aws.api("head-object", "--bucket", b, "--key", "big.bin")
    assert head["ContentLength"] == size
    assert etag(head["ETag"]) == expected_etag

    dst = tmp_path / "big.back"
    aws("s3", "cp", "--no-progress", f"s3://{b}/big.bin", dst)
    assert dst.stat().st_size == size
    assert sha256_file(dst) == digest

    aws("s3", "rm", f"s3://{b}/big.bin")
    aws("s3", "rb", f"s3://{b}")


def test_aws_s3_sync_tree(aws, bucket_name, tmp_path):
    b = bucket_name
    src = tmp_path / "src"
    tree = make_tree(src, 50)
    aws("s3", "mb", f"s3://{b}")

    up = aws("s3", "sync", "--no-progress", src, f"s3://{b}/tree/").stdout
    assert up.count("upload:") == 50, up

    keys = ls_keys(aws("s3", "ls", "--recursive", f"s3://{b}").stdout)
    assert sorted(keys) == sorted(f"tree/{k}" for k in tree)

    again = aws("s3", "sync", "--no-progress", src, f"s3://{b}/tree/").stdout
    assert "upload:" not in again, f"second sync should upload nothing:\n{again}"

    down = tmp_path / "down"
    aws("s3", "sync", "--no-progress", f"s3://{b}/tree/", down)
    assert_same_tree(tree, down)

    aws("s3", "rm", "--recursive", f"s3://{b}")
    assert aws("s3", "ls", "--recursive", f"s3://{b}").stdout.strip() == ""
    aws("s3", "rb", f"s3://{b}")


def test_aws_s3api_objects(aws, bucket_name, tmp_path):
    """put/head/get/copy, tagging, list-objects-v2, delete-objects."""
    b = bucket_name
    aws.api("create-bucket", "--bucket", b)
    body = tmp_path / "one.txt"
    body.write_bytes(b"hello from the aws cli\n" * 100)
    data = body.read_bytes()

    put = aws.api("put-object", "--bucket", b, "--key", "obj/one.txt", "--body", body,
                  "--content-type", "text/plain", "--metadata", "color=blue,size=small")
    assert etag(put["ETag"]) == md5_hex(data)

    head = aws.api("head-object", "--bucket", b, "--key", "obj/one.txt")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"color": "blue", "size": "small"}
    assert etag(head["ETag"]) == md5_hex(data)

    out = tmp_path / "one.back"
    got = aws.api("get-object", "--bucket", b, "--key", "obj/one.txt", out)
    assert got["ContentLength"] == len(data)
    assert out.read_bytes() == data

    copy = aws.api("copy-object", "--bucket", b, "--key", "obj/two.txt",
                   "--copy-source", f"{b}/obj/one.txt")
    assert etag(copy["CopyObjectResult"]["ETag"]) == md5_hex(data)
    out2 = tmp_path / "two.back"
    aws.api("get-object", "--bucket", b, "--key", "obj/two.txt", out2)
    assert out2.read_bytes() == data
    assert aws.api("head-object", "--bucket", b, "--key", "obj/two.txt")["Metadata"] == {
        "color": "blue", "size": "small"}

    tags = {"TagSet": [{"Key": "team", "Value": "storage"}, {"Key": "env", "Value": "test"}]}
    aws.api("put-object-tagging", "--bucket", b, "--key", "obj/one.txt", "--tagging", json.dumps(tags))
    got_tags = aws.api("get-object-tagging", "--bucket", b, "--key", "obj/one.txt")["TagSet"]
    assert sorted(got_tags, key=lambda t: t["Key"]) == sorted(tags["TagSet"], key=lambda t: t["Key"])

    aws.api("put-object", "--bucket", b, "--key", "obj/three.txt", "--body", body)
    listed = aws.api("list-objects-v2", "--bucket", b)
    assert [o["Key"] for o in listed["Contents"]] == ["obj/one.txt", "obj/three.txt", "obj/two.txt"]
    assert all(o["Size"] == len(data) for o in listed["Contents"])

    deleted = aws.api("delete-objects", "--bucket", b, "--delete", json.dumps(
        {"Objects": [{"Key": k} for k in ("obj/one.txt", "obj/two.txt", "obj/three.txt")]}))
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["obj/one.txt", "obj/three.txt", "obj/two.txt"]
    assert not deleted.get("Errors")
    assert not aws.api("list-objects-v2", "--bucket", b).get("Contents")
    aws.api("delete-bucket", "--bucket", b)


def test_aws_s3api_list_pagination_1100_keys(aws, s3, bucket_name):
    """list-objects-v2 with --max-items/--page-size over 1100 keys (more than one 1000-key page)."""
    b = bucket_name
    aws("s3", "mb", f"s3://{b}")
    expected = [f"k/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=b, Key=k, Body=k.encode()), expected))

    keys, token, calls = [], None, 0
    while True:
        args = ["list-objects-v2", "--bucket", b, "--max-items", "500", "--page-size", "300"]
        if token:
            args += ["--starting-token", token]
        page = aws.api(*args)
        calls += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextToken")
        if not token:
            break
        assert calls < 10, "pagination does not end"
    assert keys == expected
    assert calls == 3

    listed = ls_keys(aws("s3", "ls", "--recursive", f"s3://{b}").stdout)
    assert sorted(listed) == expected

    for start in range(0, len(expected), 1000):
        batch = expected[start:start + 1000]
        r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        assert not r.get("Errors")
    aws("s3", "rb", f"s3://{b}")


def test_aws_s3api_multipart_upload(aws, bucket_name, tmp_path):
    """create-multipart-upload, upload-part, list-parts, complete; and an aborted upload."""
    b = bucket_name
    aws.api("create-bucket", "--bucket", b)
    p1, p2 = tmp_path / "p1", tmp_path / "p2"
    random_file(p1, 5 * MiB)
    random_file(p2, 1 * MiB + 123)
    d1, d2 = p1.read_bytes(), p2.read_bytes()

    upload_id = aws.api("create-multipart-upload", "--bucket", b, "--key", "mp.bin",
                        "--metadata", "purpose=test")["UploadId"]
    e1 = aws.api("upload-part", "--bucket", b, "--key", "mp.bin", "--upload-id", upload_id,
                 "--part-number", "1", "--body", p1)["ETag"]
    e2 = aws.api("upload-part", "--bucket", b, "--key", "mp.bin", "--upload-id", upload_id,
                 "--part-number", "2", "--body", p2)["ETag"]
    assert etag(e1) == md5_hex(d1) and etag(e2) == md5_hex(d2)

    parts = aws.api("list-parts", "--bucket", b, "--key", "mp.bin", "--upload-id", upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], etag(p["ETag"])) for p in parts] == [
        (1, len(d1), md5_hex(d1)), (2, len(d2), md5_hex(d2))]
    uploads = aws.api("list-multipart-uploads", "--bucket", b).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp.bin", upload_id)]

    done = aws.api("complete-multipart-upload", "--bucket", b, "--key", "mp.bin",
                   "--upload-id", upload_id, "--multipart-upload", json.dumps(
                       {"Parts": [{"ETag": e1, "PartNumber": 1}, {"ETag": e2, "PartNumber": 2}]}))
    assert etag(done["ETag"]) == multipart_etag([d1, d2])

    head = aws.api("head-object", "--bucket", b, "--key", "mp.bin")
    assert head["ContentLength"] == len(d1) + len(d2)
    assert head["Metadata"] == {"purpose": "test"}
    out = tmp_path / "mp.back"
    aws.api("get-object", "--bucket", b, "--key", "mp.bin", out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(d1 + d2).digest()

    aborted = aws.api("create-multipart-upload", "--bucket", b, "--key", "aborted.bin")["UploadId"]
    aws.api("upload-part", "--bucket", b, "--key", "aborted.bin", "--upload-id", aborted,
            "--part-number", "1", "--body", p2)
    aws.api("abort-multipart-upload", "--bucket", b, "--key", "aborted.bin", "--upload-id", aborted)
    assert not aws.api("list-multipart-uploads", "--bucket", b).get("Uploads")
    missing = aws("s3api", "head-object", "--bucket", b, "--key", "aborted.bin", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr, missing.stderr

    aws.api("delete-object", "--bucket", b, "--key", "mp.bin")
    aws.api("delete-bucket", "--bucket", b)


def test_aws_s3_tree_keys_with_prefix_listing(aws, bucket_name, tmp_path):
    """`aws s3 ls` without --recursive shows PRE lines for common prefixes (delimiter listing)."""
    b = bucket_name
    aws("s3", "mb", f"s3://{b}")
    src = tmp_path / "src"
    tree = make_tree(src, 12)
    aws("s3", "cp", "--no-progress", "--recursive", src, f"s3://{b}/")
    top = aws("s3", "ls", f"s3://{b}/").stdout
    prefixes = sorted(line.split(None, 1)[1] for line in top.splitlines() if line.split()[0] == "PRE")
    expected_prefixes = sorted({k.split("/", 1)[0] + "/" for k in tree if "/" in k})
    assert prefixes == expected_prefixes, top
    top_files = sorted(k for k in tree if "/" not in k)
    assert sorted(ls_keys(top)) == top_files, top
    aws("s3", "rm", "--recursive", "--quiet", f"s3://{b}")
    aws("s3", "rb", f"s3://{b}")


def test_aws_s3api_versioning(aws, bucket_name, tmp_path):
    b = bucket_name
    aws.api("create-bucket", "--bucket", b)
    aws.api("put-bucket-versioning", "--bucket", b, "--versioning-configuration", "Status=Enabled")
    assert aws.api("get-bucket-versioning", "--bucket", b)["Status"] == "Enabled"
    src = tmp_path / "f"
    ids = []
    for i in range(3):
        src.write_bytes(f"v{i}".encode())
        ids.append(aws.api("put-object", "--bucket", b, "--key", "k", "--body", str(src))["VersionId"])
    listed = aws.api("list-object-versions", "--bucket", b)
    assert [v["VersionId"] for v in listed["Versions"]] == list(reversed(ids))
    assert [v["IsLatest"] for v in listed["Versions"]] == [True, False, False]
    out = tmp_path / "out"
    aws("s3api", "get-object", "--bucket", b, "--key", "k", "--version-id", ids[0], str(out))
    assert out.read_bytes() == b"v0"
    marker = aws.api("delete-object", "--bucket", b, "--key", "k")
    assert marker["DeleteMarker"] is True
    aws.api("delete-object", "--bucket", b, "--key", "k", "--version-id", marker["VersionId"])
    aws("s3", "cp", "--no-progress", f"s3://{b}/k", str(out))
    assert out.read_bytes() == b"v2"

