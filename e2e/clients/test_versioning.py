"""S3 Versioning with boto3 and the AWS CLI against a real gateway: versions, delete markers,
the null version, paginated ListObjectVersions over more than 1000 versions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest


def versions_of(s3, bucket, page_size=1000):
    """Every (key, version id, latest, delete marker) through boto3's paginator. boto3 hands
    versions and delete markers back in two lists, so the result lists every version in the
    server's order, then every marker in the server's order."""
    versions, markers = [], []
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        vs = [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in page.get("Versions", [])]
        ms = [(m["Key"], m["VersionId"], m["IsLatest"], True) for m in page.get("DeleteMarkers", [])]
        assert len(vs) + len(ms) <= page_size
        versions += vs
        markers += ms
    return versions + markers


def in_listing_order(items):
    """`items` (S3 order) as `versions_of` returns them: versions first, then markers."""
    return [i for i in items if not i[3]] + [i for i in items if i[3]]


def test_boto3_versions_markers_and_null_version(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"null one")
    assert "Status" not in s3.get_bucket_versioning(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"

    v1 = s3.put_object(Bucket=b, Key="k", Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"second")["VersionId"]
    assert v1 < v2
    assert s3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"first"
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"null one"
    got = s3.get_object(Bucket=b, Key="k")
    assert got["VersionId"] == v2 and got["Body"].read() == b"second"

    marker = s3.delete_object(Bucket=b, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="k")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.head_object(Bucket=b, Key="k", VersionId=marker["VersionId"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405

    assert versions_of(s3, b) == in_listing_order([
        ("k", marker["VersionId"], True, True),
        ("k", v2, False, False),
        ("k", v1, False, False),
        ("k", "null", False, False),
    ])
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="k", VersionId="0" * 16 + "ZZZZZZ")
    assert e.value.response["Error"]["Code"] == "NoSuchVersion"
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket=b, Key="k", VersionId="not a version")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"

    # Suspended: writes replace the null version; older versions stay.
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=b, Key="k", Body=b"null two")["VersionId"] == "null"
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"null two"
    assert [v[1] for v in versions_of(s3, b)] == ["null", v2, v1, marker["VersionId"]]

    # Remove everything by version id; then the bucket can go.
    everything = [{"Key": k, "VersionId": v} for k, v, _, _ in versions_of(s3, b)]
    out = s3.delete_objects(Bucket=b, Delete={"Objects": everything})
    assert len(out["Deleted"]) == 4 and not out.get("Errors")
    assert versions_of(s3, b) == []
    s3.delete_bucket(Bucket=b)


def test_boto3_list_object_versions_pages_over_1000_versions(s3, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    keys = ["a", "b/c", "d"]

    def write(key):
        ids = [s3.put_object(Bucket=b, Key=key, Body=f"{key}{i}".encode())["VersionId"] for i in range(370)]
        ids.append(s3.delete_object(Bucket=b, Key=key)["VersionId"])
        return key, ids

    with ThreadPoolExecutor(3) as pool:
        written = dict(pool.map(write, keys))
    want = []
    for key in keys:
        ids = written[key]
        want += [(key, v, i == len(ids) - 1, i == len(ids) - 1) for i, v in reversed(list(enumerate(ids)))]
    assert len(want) == 1113
    assert versions_of(s3, b) == in_listing_order(want)
    assert versions_of(s3, b, page_size=250) == in_listing_order(want)
