"""Access control as S3 clients use it, with boto3 and the AWS CLI: canned ACLs, Block Public
Access, bucket policies naming a second credential, presigned URLs under a policy."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import pytest

from clientutil import need_tool, run

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
OPEN = {
    "BlockPublicAcls": False,
    "IgnorePublicAcls": False,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}


def user_arn(access_key_id: str) -> str:
    return f"arn:aws:iam::jets3:user/{access_key_id}"


def canonical_id(access_key_id: str) -> str:
    return hashlib.sha256(f"jets3:{access_key_id}".encode()).hexdigest()


def anon_status(gateway, bucket: str, key: str) -> int:
    try:
        with urllib.request.urlopen(f"{gateway.endpoint}/{bucket}/{key}", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def error_code(err) -> str:
    return err.response["Error"]["Code"]


@pytest.fixture
def reader(gateway, s3):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=gateway.reader_key_id,
        aws_secret_access_key=gateway.reader_secret,
        region_name=gateway.region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"total_max_attempts": 1}),
    )


def test_boto3_canned_acls_under_block_public_access(gateway, s3, reader, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b, ACL="private")
    owner = s3.get_bucket_acl(Bucket=b)["Owner"]["ID"]
    assert owner == canonical_id(gateway.access_key_id)
    # The gateway default blocks public ACLs: refused, nothing stored.
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.put_object(Bucket=b, Key="pub", Body=b"x", ACL="public-read")
    assert error_code(e.value) == "AccessDenied"
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=b, Key="pub")

    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=OPEN)
    s3.put_object(Bucket=b, Key="pub", Body=b"x", ACL="public-read")
    s3.put_object(Bucket=b, Key="auth", Body=b"y", ACL="authenticated-read")
    s3.put_object(Bucket=b, Key="mine", Body=b"z")
    assert anon_status(gateway, b, "pub") == 200
    assert anon_status(gateway, b, "auth") == 403
    assert anon_status(gateway, b, "mine") == 403
    assert reader.get_object(Bucket=b, Key="auth")["Body"].read() == b"y"
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.get_object(Bucket=b, Key="mine")
    assert error_code(e.value) == "AccessDenied"
    grants = s3.get_object_acl(Bucket=b, Key="pub")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants

    # IgnorePublicAcls beats the object's public-read ACL.
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={
        **OPEN, "IgnorePublicAcls": True})
    assert anon_status(gateway, b, "pub") == 403
    assert s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == {
        **OPEN, "IgnorePublicAcls": True}

    # Grants name existing credentials only.
    s3.put_object(Bucket=b, Key="shared", Body=b"s",
                  GrantRead=f'id="{canonical_id(gateway.reader_key_id)}"')
    assert reader.get_object(Bucket=b, Key="shared")["Body"].read() == b"s"
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.put_object(Bucket=b, Key="nobody", Body=b"n",
                      GrantRead=f'id="{canonical_id("JETS3NOBODY")}"')
    assert error_code(e.value) == "InvalidArgument"


def test_boto3_bucket_policy_second_credential_and_presigned(gateway, s3, reader, bucket_name):
    b = bucket_name
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="docs/a.txt", Body=b"a")
    s3.put_object(Bucket=b, Key="public/p.txt", Body=b"p")
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.get_object(Bucket=b, Key="docs/a.txt")
    assert error_code(e.value) == "AccessDenied"

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "reader", "Effect": "Allow",
             "Principal": {"AWS": user_arn(gateway.reader_key_id)},
             "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]},
            {"Sid": "public", "Effect": "Allow", "Principal": "*",
             "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/public/*"},
        ],
    }
    # BlockPublicPolicy (the default) refuses the public statement.
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
    assert error_code(e.value) == "AccessDenied"
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=OPEN)
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == policy
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is True

    assert reader.get_object(Bucket=b, Key="docs/a.txt")["Body"].read() == b"a"
    keys = [o["Key"] for o in reader.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["docs/a.txt", "public/p.txt"]
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.put_object(Bucket=b, Key="docs/b.txt", Body=b"b")
    assert error_code(e.value) == "AccessDenied"
    assert anon_status(gateway, b, "public/p.txt") == 200
    assert anon_status(gateway, b, "docs/a.txt") == 403

    url = reader.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "docs/a.txt"},
                                        ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"a"

    # A Deny statement beats the Allow; a malformed policy changes nothing.
    deny = dict(policy)
    deny["Statement"] = policy["Statement"] + [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{b}/docs/*"}]
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps(deny))
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.get_object(Bucket=b, Key="docs/a.txt")
    assert error_code(e.value) == "AccessDenied"
    with pytest.raises(urllib.error.HTTPError) as h:
        urllib.request.urlopen(url, timeout=10)
    assert h.value.code == 403
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.put_bucket_policy(Bucket=b, Policy='{"Statement": [{"Effect": "Allow"}]}')
    assert error_code(e.value) == "MalformedPolicy"
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == deny
    s3.delete_bucket_policy(Bucket=b)
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_bucket_policy(Bucket=b)
    assert error_code(e.value) == "NoSuchBucketPolicy"


def test_aws_cli_policy_acl_and_public_access_block(gateway, bucket_name, tmp_path):
    exe = need_tool("aws")
    env = gateway.client_env()
    b = bucket_name

    def aws(*args, check=True):
        return run([exe, "--endpoint-url", gateway.endpoint, "--output", "json", *args],
                   env=env, check=check)

    aws("s3api", "create-bucket", "--bucket", b, "--acl", "private")
    src = tmp_path / "site.html"
    src.write_text("<h1>hello</h1>")
    refused = aws("s3", "cp", str(src), f"s3://{b}/site.html", "--acl", "public-read", check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    aws("s3api", "put-public-access-block", "--bucket", b, "--public-access-block-configuration",
        "BlockPublicAcls=false,IgnorePublicAcls=false,BlockPublicPolicy=false,RestrictPublicBuckets=false")
    aws("s3", "cp", str(src), f"s3://{b}/site.html", "--acl", "public-read")
    acl = json.loads(aws("s3api", "get-object-acl", "--bucket", b, "--key", "site.html").stdout)
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in acl["Grants"]
    out = tmp_path / "anon.html"
    aws("s3", "cp", f"s3://{b}/site.html", str(out), "--no-sign-request")
    assert out.read_text() == "<h1>hello</h1>"

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{b}/*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))
    aws("s3api", "put-bucket-policy", "--bucket", b, "--policy", f"file://{policy}")
    got = json.loads(aws("s3api", "get-bucket-policy", "--bucket", b).stdout)
    assert json.loads(got["Policy"])["Statement"][0]["Effect"] == "Deny"
    denied = aws("s3", "cp", f"s3://{b}/site.html", str(out), "--no-sign-request", check=False)
    assert denied.returncode != 0 and "403" in denied.stderr, "plain HTTP denied by the policy"
    bad = tmp_path / "bad.json"
    bad.write_text('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:Fly", '
                   f'"Resource": "arn:aws:s3:::{b}/*"}}]}}')
    refused = aws("s3api", "put-bucket-policy", "--bucket", b, "--policy", f"file://{bad}",
                  check=False)
    assert refused.returncode != 0 and "MalformedPolicy" in refused.stderr
    aws("s3api", "delete-bucket-policy", "--bucket", b)
    aws("s3api", "delete-public-access-block", "--bucket", b)
    missing = aws("s3api", "get-public-access-block", "--bucket", b, check=False)
    assert "NoSuchPublicAccessBlockConfiguration" in missing.stderr
    # The gateway default (all blocked) applies again: the public ACL counts for nothing.
    assert anon_status(gateway, b, "site.html") == 403
