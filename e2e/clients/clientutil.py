"""Helpers shared by the client tests: running tools, making files, comparing by checksum."""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("JETS3_TOOLS_DIR") or Path.home() / ".cache" / "jets3")
TOOLS_BIN = TOOLS_DIR / "bin"

MiB = 1024 * 1024


def need_tool(name: str) -> str:
    """The path of a third-party tool from `make tools`; FAILS the test (never skips) if missing."""
    path = TOOLS_BIN / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(name) if name in ("rclone", "s3cmd") else None
    if found:
        return found
    pytest.fail(
        f"{name} is not installed (looked for {path}): run `make tools` "
        f"(scripts/tools.sh) to install the pinned test tools",
        pytrace=False,
    )


def run(cmd, *, env=None, timeout=300, check=True, cwd=None, input=None) -> subprocess.CompletedProcess:
    """Runs a client command; on failure FAILS the test showing the command and its output."""
    cmd = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout}s: {shlex.join(cmd)}\n{_tail(e.stdout)}\n{_tail(e.stderr)}", pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(
            f"exit {proc.returncode}: {shlex.join(cmd)}\n"
            f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}",
            pytrace=False,
        )
    return proc


def _tail(text, lines: int = 60) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts: list[bytes]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, then -N."""
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def random_file(path: Path, size: int) -> str:
    """Writes `size` random bytes to `path`; returns their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def make_tree(root: Path, n_files: int, seed: int = 1) -> dict[str, str]:
    """A directory tree with nested folders and `n_files` small files (a few with awkward names).

    Returns {relative posix path: sha256}."""
    rng = random.Random(seed)
    dirs = ["", "a", "a/b", "a/b/c", "d", "d/e f", "g/h/i/j"]
    special = ["with space.txt", "plus+sign.bin", "semi;colon.dat", "empty.txt"]
    tree = {}
    for i in range(n_files):
        name = special[i] if i < len(special) else f"file-{i:03d}.bin"
        rel = f"{dirs[i % len(dirs)]}/{name}".lstrip("/")
        size = 0 if name == "empty.txt" else rng.randrange(1, 64 * 1024)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        tree[rel] = sha256_bytes(data)
    return tree


def tree_digest(root: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file under root."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_same_tree(expected: dict[str, str], got_root: Path):
    got = tree_digest(got_root)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    assert not (missing or extra or differ), (
        f"trees differ under {got_root}: missing={missing[:10]} extra={extra[:10]} "
        f"different content={differ[:10]}"
    )
