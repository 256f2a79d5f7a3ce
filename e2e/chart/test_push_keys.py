"""The push keys and certificates the chart generates work with a real jets3-gateway started
with the chart's own flags: TLS verified with the chart's CA against the push Service name,
ES256 tokens signed with the chart's SEC1 key (here by openssl) for one request to this pod
(127.0.0.1 here), checked against the chart's verify certificate."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import ssl
import subprocess
import time

import pytest

from clientutil import free_port, gateway_binary, readyz, start_nats, stop, tail_file
from conftest import RELEASE, one

SECRETS = {
    f"{RELEASE}-push-signing": ["key.pem"],
    f"{RELEASE}-push-verify": ["cert.pem"],
    f"{RELEASE}-push-tls": ["ca.crt", "tls.crt", "tls.key"],
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def es256_token(key_pem, claims: dict) -> str:
    """A JWS signed by `openssl dgst` (DER ECDSA signature, turned into JWS's r || s)."""
    message = f"{b64url(json.dumps({'alg': 'ES256', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    der = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key_pem)], input=message.encode(), capture_output=True, check=True
    ).stdout
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    ints = []
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        ints.append(int.from_bytes(der[i + 2 : i + 2 + n], "big"))
        i += 2 + n
    return f"{message}.{b64url(b''.join(v.to_bytes(32, 'big') for v in ints))}"


def claims(method: str = "GET", body: bytes = b"") -> dict:
    """What the operator signs for `method /v1/config` with `body` to the pod at 127.0.0.1."""
    now = int(time.time())
    return {
        "iss": "jets3-operator",
        "aud": "jets3-gateway",
        "iat": now,
        "exp": now + 30,
        "jti": secrets.token_urlsafe(16),
        "pod": "127.0.0.1",
        "req": f"{method} /v1/config",
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }


def https(port: int, ca, server_name: str, method: str, path: str, token: str, body: bytes = b"", headers=()):
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            head = [f"{method} {path} HTTP/1.1", f"Host: {server_name}", f"Authorization: Bearer {token}"]
            head += [f"{k}: {v}" for k, v in headers]
            head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            tls.sendall("\r\n".join(head).encode() + body)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


@pytest.fixture
def chart_gateway(default_objects, tmp_path):
    """The gateway binary with the rendered Deployment's flags (paths and addresses made local),
    a config file, and the chart's generated push Secrets as files."""
    files = {}
    for name, keys in SECRETS.items():
        data = one(default_objects, "Secret", name)["data"]
        for key in keys:
            files[key] = tmp_path / key
            files[key].write_bytes(base64.b64decode(data[key]))
    (c,) = one(default_objects, "Deployment", f"{RELEASE}-gateway")["spec"]["template"]["spec"]["containers"]
    (op,) = one(default_objects, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]["containers"]
    server_name = next(a.split("=", 1)[1] for a in op["args"] if a.startswith("--push-server-name="))
    nats, nats_url, nats_log = start_nats(tmp_path)
    ports = {"--listen": free_port(), "--admin-listen": free_port(), "--push-listen": free_port()}
    args = []
    for a in c["args"]:
        flag, _, value = a.partition("=")
        if flag in ports:
            value = f"127.0.0.1:{ports[flag]}"
        elif flag == "--nats-url":
            value = nats_url
        elif value.startswith("/etc/jets3/"):
            value = str(files[value.rsplit("/", 1)[1]])
        args.append(f"{flag}={value}")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"region": "us-east-1", "buckets": [{"name": "chart-keys"}]}))
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        gw = subprocess.Popen(
            [str(gateway_binary()), *args, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    admin = f"http://127.0.0.1:{ports['--admin-listen']}"
    deadline = time.monotonic() + 30
    while readyz(admin + "/readyz") != 200:
        if gw.poll() is not None or time.monotonic() > deadline:
            stop(gw)
            stop(nats)
            pytest.fail(f"gateway with the chart's flags did not get ready:\n{tail_file(log)}", pytrace=False)
        time.sleep(0.1)
    yield ports["--push-listen"], files, server_name, json.loads(config.read_text())
    stop(gw)
    stop(nats)


def test_generated_push_keys_work_with_the_gateway(chart_gateway, tmp_path):
    port, files, server_name, content = chart_gateway
    token = es256_token(files["key.pem"], claims())
    status, body = https(port, files["ca.crt"], server_name, "GET", "/v1/config", token)
    assert status == 200, body
    held = json.loads(body)
    assert held["generation"] == 0
    # The same content at generation 1 has the same hash (the hash leaves the generation out).
    pushed = json.dumps({**content, "generation": 1}).encode()
    status, body = https(
        port,
        files["ca.crt"],
        server_name,
        "PUT",
        "/v1/config",
        es256_token(files["key.pem"], claims("PUT", pushed)),
        pushed,
        [("Content-Type", "application/json"), ("X-Jets3-Config-Hash", held["hash"])],
    )
    assert (status, json.loads(body)) == (200, {"generation": 1, "hash": held["hash"]})

    # A key the chart did not make is refused.
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(other)], check=True)
    status, body = https(port, files["ca.crt"], server_name, "GET", "/v1/config", es256_token(other, claims()))
    assert (status, json.loads(body)) == (401, {"error": "unauthorized"})
    # A token is good once.
    status, body = https(port, files["ca.crt"], server_name, "GET", "/v1/config", token)
    assert (status, json.loads(body)) == (401, {"error": "unauthorized"})
    # The serving certificate is not valid for another name.
    with pytest.raises(ssl.SSLCertVerificationError):
        https(port, files["ca.crt"], "jets3-gateway.storage.svc", "GET", "/v1/config", es256_token(files["key.pem"], claims()))
