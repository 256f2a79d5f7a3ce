"""The gateway's protection values (S3 TLS and mTLS, audit log, OpenTelemetry, trusted
proxies, admin token, gateway-wide limits) reach the gateway and operator pods."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, find, helm, kubeconform, one, render

GATEWAY = f"{RELEASE}-gateway"
OPERATOR = f"{RELEASE}-operator"


def _container(objects, name):
    (c,) = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return c


def _pod(objects, name):
    return one(objects, "Deployment", name)["spec"]["template"]["spec"]


def _args(c) -> dict[str, str]:
    return {k: v for k, _, v in (a.partition("=") for a in c["args"])}


def test_defaults_add_no_protection_flags(default_objects):
    gw = _args(_container(default_objects, GATEWAY))
    for flag in ("--tls-cert", "--tls-client-ca", "--audit-log", "--trusted-proxies", "--otlp-endpoint"):
        assert flag not in gw, flag
    op = _args(_container(default_objects, OPERATOR))
    assert "--gateway-limits" not in op and "--audit-reads" not in op
    assert op["--gateway-endpoint"].startswith("http://")
    assert not find(default_objects, "Secret", f"{RELEASE}-gateway-admin-token")


def test_s3_tls_and_mtls_mount_the_secrets_and_switch_the_endpoint_to_https():
    objects = render({"gateway.tls.secretName": "s3-cert", "gateway.tls.clientCaSecretName": "clients-ca"})
    c = _container(objects, GATEWAY)
    args = _args(c)
    assert args["--tls-cert"] == "/etc/jets3/tls/tls.crt"
    assert args["--tls-key"] == "/etc/jets3/tls/tls.key"
    assert args["--tls-client-ca"] == "/etc/jets3/client-ca/ca.crt"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v.get("secret") for v in _pod(objects, GATEWAY)["volumes"]}
    assert volumes[mounts["/etc/jets3/tls"]]["secretName"] == "s3-cert"
    assert volumes[mounts["/etc/jets3/client-ca"]] == {"secretName": "clients-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    endpoint = _args(_container(objects, OPERATOR))["--gateway-endpoint"]
    assert endpoint == f"https://{RELEASE}-gateway.{NAMESPACE}.svc:9000"


def test_mtls_needs_tls():
    proc = helm("template", RELEASE, str(CHART), "--set", "gateway.tls.clientCaSecretName=ca", check=False)
    assert proc.returncode != 0 and "needs gateway.tls.secretName" in proc.stderr


@pytest.mark.parametrize(
    "target,flag,volume",
    [("stdout", "stdout", False), ("stderr", "stderr", False), ("file", "/var/log/jets3/audit.jsonl", True)],
)
def test_audit_log_targets(target, flag, volume):
    objects = render({"gateway.audit.enabled": "true", "gateway.audit.target": target})
    c = _container(objects, GATEWAY)
    assert _args(c)["--audit-log"] == flag
    mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert ("/var/log/jets3" in mounted) == volume
    if volume:
        (v,) = [v for v in _pod(objects, GATEWAY)["volumes"] if v["name"] == mounted["/var/log/jets3"]]
        assert v["emptyDir"] == {}


def test_audit_target_is_checked_and_reads_go_to_the_operator():
    proc = helm("template", RELEASE, str(CHART), "--set", "gateway.audit.target=syslog", check=False)
    assert proc.returncode != 0 and "stdout, stderr or file" in proc.stderr
    objects = render({"gateway.audit.enabled": "true", "gateway.audit.reads": "false"})
    assert _args(_container(objects, OPERATOR))["--audit-reads"] == "false"


def test_otel_endpoint_and_trusted_proxies():
    objects = render(
        {"gateway.otel.endpoint": "http://otel-collector.obs:4318", "gateway.trustedProxies": "{10.0.0.0/8,fd00::/8}"}
    )
    args = _args(_container(objects, GATEWAY))
    assert args["--otlp-endpoint"] == "http://otel-collector.obs:4318"
    assert args["--trusted-proxies"] == "10.0.0.0/8,fd00::/8"


def _admin_env(objects):
    (e,) = [e for e in _container(objects, GATEWAY)["env"] if e["name"] == "JETS3_ADMIN_TOKEN"]
    return e["valueFrom"]["secretKeyRef"]


def test_admin_token_generated_or_from_an_existing_secret():
    objects = render({"gateway.adminToken.enabled": "true"})
    secret = one(objects, "Secret", f"{RELEASE}-gateway-admin-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    assert _admin_env(objects) == {"name": f"{RELEASE}-gateway-admin-token", "key": "token"}
    objects = render(
        {"gateway.adminToken.enabled": "true", "gateway.adminToken.existingSecret": "ops", "gateway.adminToken.key": "purge"}
    )
    assert not find(objects, "Secret", f"{RELEASE}-gateway-admin-token")
    assert _admin_env(objects) == {"name": "ops", "key": "purge"}


def test_gateway_limits_are_passed_to_the_operator(tmp_path):
    limits = {
        "rateLimits": {"global": {"requestsPerSecond": 1000, "burst": 2000}, "perClientIp": {"requestsPerSecond": 50}},
        "timeouts": {"headerReadSeconds": 10, "idleBodySeconds": 20, "requestSeconds": 600},
        "circuitBreaker": {"failureThreshold": 3, "cooldownSeconds": 2},
        "maxInFlightRequests": 512,
    }
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"gateway": {"limits": limits}}))
    objects = render(None, "-f", str(values))
    assert json.loads(_args(_container(objects, OPERATOR))["--gateway-limits"]) == limits


def test_everything_on_is_valid_under_kubeconform(crd_schemas, tmp_path):
    objects = render(
        {
            "gateway.tls.secretName": "s3-cert",
            "gateway.tls.clientCaSecretName": "ca",
            "gateway.audit.enabled": "true",
            "gateway.audit.target": "file",
            "gateway.otel.endpoint": "http://otel:4318",
            "gateway.trustedProxies": "{10.0.0.0/8}",
            "gateway.adminToken.enabled": "true",
            "gateway.limits.rateLimits.global.requestsPerSecond": "100",
        }
    )
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    proc = kubeconform([path], crd_schemas)
    assert "Invalid: 0, Errors: 0, Skipped: 0" in proc.stdout, proc.stdout


def test_connection_cap_reaches_the_gateway():
    assert _args(_container(render(), GATEWAY))["--s3-max-connections"] == "4096"
    args = _args(_container(render({"gateway.maxConnections": "20000"}), GATEWAY))
    assert args["--s3-max-connections"] == "20000"


def test_cache_memory_reaches_the_gateway():
    args = _args(_container(render({"gateway.cache.maxBytes": "268435456", "gateway.cache.maxEntries": "50000"}), GATEWAY))
    assert (args["--cache-max-bytes"], args["--cache-max-entries"]) == ("268435456", "50000")
