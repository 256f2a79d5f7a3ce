"""rclone (Debian's) against a real gateway, configured only through RCLONE_CONFIG_J3_* variables."""

from __future__ import annotations

import pytest

from clientutil import MiB, assert_same_tree, make_tree, need_tool, random_file, run, sha256_file


@pytest.fixture
def rclone(gateway, tmp_path):
    exe = need_tool("rclone")
    env = gateway.client_env()
    empty_conf = tmp_path / "rclone.conf"
    empty_conf.write_text("")
    env.update(
        RCLONE_CONFIG=str(empty_conf),
        RCLONE_CONFIG_J3_TYPE="s3",
        RCLONE_CONFIG_J3_PROVIDER="Other",
        RCLONE_CONFIG_J3_ENV_AUTH="false",
        RCLONE_CONFIG_J3_ENDPOINT=gateway.endpoint,
        RCLONE_CONFIG_J3_ACCESS_KEY_ID=gateway.access_key_id,
        RCLONE_CONFIG_J3_SECRET_ACCESS_KEY=gateway.secret_access_key,
        RCLONE_CONFIG_J3_REGION=gateway.region,
    )

    def call(*args, check=True):
        # One try each, so a gateway error is not hidden by rclone's retries.
        return run([exe, "--retries", "1", "--low-level-retries", "1", *args], env=env, check=check)

    return call


def test_rclone_copy_check_lsf_delete(rclone, bucket_name, tmp_path):
    b = bucket_name
    src = tmp_path / "src"
    tree = make_tree(src, 30, seed=7)
    tree["big/six-mib.bin"] = random_file(src / "big" / "six-mib.bin", 6 * MiB)

    rclone("mkdir", f"j3:{b}")
    rclone("copy", src, f"j3:{b}/tree")
    # check compares sizes and MD5s (the ETags) both ways.
    rclone("check", src, f"j3:{b}/tree")

    files = rclone("lsf", "-R", "--files-only", f"j3:{b}/tree").stdout.splitlines()
    assert sorted(files) == sorted(tree)

    down = tmp_path / "down"
    rclone("copy", f"j3:{b}/tree", down)
    assert_same_tree(tree, down)
    assert sha256_file(down / "big" / "six-mib.bin") == tree["big/six-mib.bin"]

    rclone("delete", f"j3:{b}/tree")
    assert rclone("lsf", "-R", "--files-only", f"j3:{b}").stdout.strip() == ""
    rclone("rmdir", f"j3:{b}")
    listed = rclone("lsd", "j3:").stdout
    assert b not in listed, listed
