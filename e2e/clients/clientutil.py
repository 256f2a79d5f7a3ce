"""Helpers shared by the client tests (and e2e/chart): running tools and processes, making files,
comparing by checksum."""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
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


# ---- processes: nats-server and jets3-gateway (shared with e2e/chart) ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail_file(path: Path, lines: int = 60) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen, grace: float = 10.0):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def cargo_binary(name: str, profile: str, env_var: str, build: str) -> Path:
    """The binary `name` from $env_var, else from the cargo target dir's `profile` folder;
    fails the test saying how to build it."""
    env_bin = os.environ.get(env_var)
    if env_bin:
        path = Path(env_bin)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        if not target.is_absolute():
            target = REPO / target
        path = target / profile / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{name} binary not found at {path}: run `{build}` or set {env_var}", pytrace=False)
    return path


def gateway_binary() -> Path:
    return cargo_binary("jets3-gateway", "release", "JETS3_GATEWAY_BIN", "make build")


def start_nats(workdir: Path) -> tuple[subprocess.Popen, str, Path]:
    nats_bin = need_tool("nats-server")
    port = free_port()
    log = workdir / "nats.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [nats_bin, "-js", "-sd", str(workdir / "jetstream"), "-a", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"nats-server exited with {proc.returncode} during start:\n{tail_file(log)}", pytrace=False)
        if "Server is ready" in log.read_text(errors="replace"):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"nats-server did not start within 20 s:\n{tail_file(log)}", pytrace=False)
        time.sleep(0.05)
    return proc, f"nats://127.0.0.1:{port}", log


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0
