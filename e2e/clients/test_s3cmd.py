"""s3cmd (Debian's) against a real gateway, with its own config file passed by -c."""

from __future__ import annotations

import pytest

from clientutil import MiB, assert_same_tree, make_tree, need_tool, random_file, run, sha256_file


@pytest.fixture
def s3cmd(gateway, tmp_path):
    exe = need_tool("s3cmd")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {gateway.access_key_id}\n"
        f"secret_key = {gateway.secret_access_key}\n"
        f"host_base = {gateway.host_port}\n"
        f"host_bucket = {gateway.host_port}\n"
        f"bucket_location = {gateway.region}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "progress_meter = False\n"
        "check_ssl_certificate = False\n"
        "multipart_chunk_size_mb = 15\n"
        "max_retries = 0\n"  # a failed request fails the test, not a retry later
    )
    env = gateway.client_env()
    env["HOME"] = str(tmp_path)  # no ~/.s3cfg of the user's

    def call(*args, check=True):
        return run([exe, "-c", cfg, *args], env=env, check=check)

    return call


def uris(output: str) -> list[str]:
    """The s3:// URIs of `s3cmd ls` lines (the part from s3:// on: keys may hold spaces)."""
    return [line[line.index("s3://"):] for line in output.splitlines() if "s3://" in line]


def test_s3cmd_mb_put_get_ls_del_rb(s3cmd, bucket_name, tmp_path):
    b = bucket_name
    s3cmd("mb", f"s3://{b}")
    assert f"s3://{b}" in uris(s3cmd("ls").stdout)

    small = tmp_path / "small.txt"
    small_digest = random_file(small, 4321)
    big = tmp_path / "big.bin"  # 20 MiB: s3cmd uploads it in 15 MiB parts
    big_digest = random_file(big, 20 * MiB)
    s3cmd("put", small, f"s3://{b}/docs/small.txt")
    s3cmd("put", big, f"s3://{b}/big.bin")

    assert sorted(uris(s3cmd("ls", "-r", f"s3://{b}").stdout)) == [
        f"s3://{b}/big.bin", f"s3://{b}/docs/small.txt"]
    top = s3cmd("ls", f"s3://{b}").stdout
    assert "DIR" in top and f"s3://{b}/docs/" in top, top

    s3cmd("get", "--force", f"s3://{b}/docs/small.txt", tmp_path / "small.back")
    s3cmd("get", "--force", f"s3://{b}/big.bin", tmp_path / "big.back")
    assert sha256_file(tmp_path / "small.back") == small_digest
    assert sha256_file(tmp_path / "big.back") == big_digest

    s3cmd("del", f"s3://{b}/docs/small.txt", f"s3://{b}/big.bin")
    assert uris(s3cmd("ls", "-r", f"s3://{b}").stdout) == []
    s3cmd("rb", f"s3://{b}")
    assert f"s3://{b}" not in uris(s3cmd("ls").stdout)


def test_s3cmd_sync_tree(s3cmd, bucket_name, tmp_path):
    b = bucket_name
    src = tmp_path / "src"
    tree = make_tree(src, 25, seed=3)
    s3cmd("mb", f"s3://{b}")
    s3cmd("sync", f"{src}/", f"s3://{b}/tree/")
    listed = sorted(uris(s3cmd("ls", "-r", f"s3://{b}").stdout))
    assert listed == sorted(f"s3://{b}/tree/{k}" for k in tree)

    down = tmp_path / "down"
    down.mkdir()
    s3cmd("sync", f"s3://{b}/tree/", f"{down}/")
    assert_same_tree(tree, down)

    s3cmd("del", "--recursive", "--force", f"s3://{b}")
    s3cmd("rb", f"s3://{b}")
