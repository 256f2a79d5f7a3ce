"""A real nats-server (JetStream) and a real jets3-gateway for the whole session.

The gateway binary is target/release/jets3-gateway (build it with `make build`), or the path in
JETS3_GATEWAY_BIN. Tools come from `make tools` (JETS3_TOOLS_DIR, default ~/.cache/jets3).
A missing binary or tool FAILS the tests; nothing here skips.
Set JETS3_E2E_KEEP=1 to keep the temporary folder (configs, logs, JetStream data).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clientutil import REPO, free_port, gateway_binary, need_tool, readyz, start_nats, stop, tail_file

REGION = "us-east-1"

_LOGS: list[tuple[str, Path]] = []


@dataclass
class Gateway:
    endpoint: str  # http://127.0.0.1:<s3 port>
    host_port: str  # 127.0.0.1:<s3 port>
    admin_url: str
    nats_url: str
    access_key_id: str
    secret_access_key: str
    # A credential with no grant at all: what it may do, bucket policies and ACLs give it.
    reader_key_id: str
    reader_secret: str
    region: str
    workdir: Path
    gateway_log: Path
    nats_log: Path
    _procs: list = field(default_factory=list, repr=False)

    def client_env(self) -> dict[str, str]:
        """Environment for CLI clients: these keys and region, nothing from the user's ~/.aws."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("AWS_") or k.startswith("RCLONE_") or k.startswith("BOTO_"))
        }
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key_id,
            AWS_SECRET_ACCESS_KEY=self.secret_access_key,
            AWS_DEFAULT_REGION=self.region,
            AWS_REGION=self.region,
            AWS_CONFIG_FILE=str(self.workdir / "aws-config-none"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "aws-credentials-none"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
            # One attempt: a failed or stalled request fails the test instead of hiding behind
            # a retry (rclone and s3cmd are set up the same way).
            AWS_MAX_ATTEMPTS="1",
            AWS_RETRY_MODE="standard",
        )
        return env


def _random(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture(scope="session")
def gateway() -> Gateway:
    """nats-server + jets3-gateway with one admin credential (grant "*"), for the session."""
    gw_bin = gateway_binary()
    workdir = Path(tempfile.mkdtemp(prefix="jets3-clients-"))
    procs: list[subprocess.Popen] = []
    try:
        nats, nats_url, nats_log = start_nats(workdir)
        procs.append(nats)
        _LOGS.append(("nats-server", nats_log))

        s3_port = free_port()
        admin_port = free_port()
        while admin_port == s3_port:
            admin_port = free_port()
        access_key_id = "JETS3" + _random(15, string.ascii_uppercase + string.digits)
        secret = _random(40, string.ascii_letters + string.digits)
        reader_key_id = "JETS3" + _random(15, string.ascii_uppercase + string.digits)
        reader_secret = _random(40, string.ascii_letters + string.digits)
        config = {
            "server": {
                "listen": [f"127.0.0.1:{s3_port}"],
                "adminListen": f"127.0.0.1:{admin_port}",
                "nats": {"servers": [nats_url]},
                "shutdownGraceSeconds": 2,
            },
            "region": REGION,
            "credentials": [
                {
                    "accessKeyId": access_key_id,
                    "secretAccessKey": secret,
                    "description": "e2e/clients admin",
                    "grants": [{"bucket": "*", "permission": "admin"}],
                },
                {
                    "accessKeyId": reader_key_id,
                    "secretAccessKey": reader_secret,
                    "description": "e2e/clients, no grants",
                },
            ],
        }
        config_path = workdir / "gateway.yaml"
        # JSON is YAML: no YAML library needed here.
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        config_path.chmod(0o600)

        gw_log = workdir / "gateway.log"
        # The gateway reads JETS3_* variables as flags: keep only the log settings.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("JETS3_") or k in ("JETS3_LOG", "JETS3_LOG_FORMAT")}
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"  # the log is a file
        with open(gw_log, "wb") as out:
            gw = subprocess.Popen(
                [str(gw_bin), "--config", str(config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        procs.append(gw)
        _LOGS.append(("jets3-gateway", gw_log))

        admin_url = f"http://127.0.0.1:{admin_port}"
        deadline = time.monotonic() + 60
        status = 0
        while True:
            if gw.poll() is not None:
                pytest.fail(
                    f"jets3-gateway exited with {gw.returncode} before it was ready:\n{tail_file(gw_log)}",
                    pytrace=False,
                )
            status = readyz(admin_url + "/readyz")
            if status == 200:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"jets3-gateway not ready within 60 s (last /readyz: {status}):\n{tail_file(gw_log)}",
                    pytrace=False,
                )
            time.sleep(0.1)

        yield Gateway(
            endpoint=f"http://127.0.0.1:{s3_port}",
            host_port=f"127.0.0.1:{s3_port}",
            admin_url=admin_url,
            nats_url=nats_url,
            access_key_id=access_key_id,
            secret_access_key=secret,
            reader_key_id=reader_key_id,
            reader_secret=reader_secret,
            region=REGION,
            workdir=workdir,
            gateway_log=gw_log,
            nats_log=nats_log,
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        _LOGS.clear()
        if os.environ.get("JETS3_E2E_KEEP"):
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(gateway):
    """A boto3 S3 client on the gateway: path style, SigV4, no retries (errors show as they are)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        pytest.fail("boto3 is not importable: run `make tools` and use its python "
                    "($JETS3_TOOLS_DIR/venv/bin/python -m pytest)", pytrace=False)
    # Keep the user's ~/.aws out of this process's clients too.
    for k, v in gateway.client_env().items():
        if k.startswith("AWS_"):
            os.environ[k] = v
    return boto3.client(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=gateway.access_key_id,
        aws_secret_access_key=gateway.secret_access_key,
        region_name=gateway.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            max_pool_connections=16,
        ),
    )


@pytest.fixture
def bucket_name(request) -> str:
    """A fresh, valid S3 bucket name derived from the test's name (not created)."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    base = base.removeprefix("test-")[:40].strip("-")
    return f"e2e-{base}-{secrets.token_hex(4)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _LOGS:
        for name, path in _LOGS:
            rep.sections.append((f"{name} log (last lines of {path})", tail_file(path, 40)))
