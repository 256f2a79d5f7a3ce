"""The embedded NATS as a three-server cluster (`nats.embedded.replicas=3`): buckets get three
stream replicas without asking, and one NATS pod killed under load costs clients only retryable
errors, never an acknowledged object. Runs after test_cluster.py has uninstalled its release
(one jets3 operator per cluster), with a release of its own."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import CHART, CLIENT, PSA, Kube, chart_values, condition, eventually, nats_jsz, ready, record, stream_details
from test_cluster import restricted_pod_spec

HA_RELEASE = "jets3-ha"
HA_NS = "jets3-ha"
GROUP = "jets3.io/v1alpha1"
BUCKET = "jets3-e2e-ha"
# Errors a client may see while a stream elects a new leader: S3's retryable ones.
RETRYABLE = {"ServiceUnavailable", "SlowDown"}


def pods(kube: Kube, component: str) -> list[dict]:
    sel = f"app.kubernetes.io/instance={HA_RELEASE},app.kubernetes.io/component={component}"
    return [p for p in kube.json("-n", HA_NS, "get", "pods", "-l", sel)["items"] if not p["metadata"].get("deletionTimestamp")]


def diagnose(kube: Kube) -> str:
    out = [kube.run("-n", HA_NS, "get", "pods", "-o", "wide", check=False).stdout]
    out.append(kube.run("-n", HA_NS, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-4000:])
    out.append(kube.run("-n", HA_NS, "logs", "-l", f"app.kubernetes.io/instance={HA_RELEASE}", "--all-containers", "--tail=30", "--prefix", check=False).stdout[-6000:])
    return "\n".join(out)


def stream(kube: Kube, name: str) -> dict | None:
    """The stream's monitoring detail (config and cluster) as its leader reports it (only the
    leader knows whether the other replicas are current), or None."""
    for pod in filter(ready, pods(kube, "nats")):
        pod_name = pod["metadata"]["name"]
        found = [s for s in stream_details(nats_jsz(kube, HA_NS, f"pod/{pod_name}")) if s["name"] == name]
        if found and found[0].get("cluster", {}).get("leader") == pod_name:
            return found[0]
    return None


def client(kube: Kube, *args, timeout: float = 120) -> dict:
    p = kube.run("-n", HA_NS, "exec", "client", "--", CLIENT, *map(str, args), timeout=timeout, check=False)
    try:
        report = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"client {args}: exit {p.returncode}, no JSON: {p.stdout[-2000:]} {p.stderr[-2000:]}", pytrace=False)
    assert p.returncode == 0, f"client {args}: {report}"
    return report


@pytest.fixture(scope="module")
def ha(kube: Kube):
    if kube.try_json("get", "namespace", HA_NS):
        pytest.fail(f"namespace {HA_NS} exists already", pytrace=False)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": HA_NS, "labels": PSA}})
    t0 = time.monotonic()
    values = ["nats.embedded.replicas=3", "operator.replicas=1", "gateway.replicas=1"]
    kube.helm("install", HA_RELEASE, CHART, "--namespace", HA_NS, *chart_values(), *[a for v in values for a in ("--set", v)], "--wait", "--timeout", "5m")
    record("NATS cluster: helm install -> 3 NATS servers, operator, gateway Ready (s)", round(time.monotonic() - t0, 1))
    try:
        yield kube
    finally:
        kube.run("-n", HA_NS, "delete", "pod/client", "--wait=true", "--grace-period=1", check=False)
        for kind in ("s3credentials", "s3buckets"):
            kube.run("-n", HA_NS, "delete", kind, "--all", "--wait=true", "--timeout=60s", check=False)
        kube.helm("uninstall", HA_RELEASE, "-n", HA_NS, "--wait", "--timeout", "2m", check=False)
        kube.run("delete", "namespace", HA_NS, "--wait=true", "--timeout=120s", check=False)


def test_a_bucket_on_the_embedded_cluster_has_three_replicas_and_survives_a_killed_server(ha: Kube):
    kube = ha
    nats = pods(kube, "nats")
    assert len(nats) == 3 and all(ready(p) for p in nats), [p["metadata"]["name"] for p in nats]

    # An S3Bucket that does not say how many replicas: the cluster's size, three.
    kube.apply(
        [
            {"apiVersion": GROUP, "kind": "S3Bucket", "metadata": {"name": "ha", "namespace": HA_NS}, "spec": {"bucketName": BUCKET}},
            {
                "apiVersion": GROUP,
                "kind": "S3Credential",
                "metadata": {"name": "ha-app", "namespace": HA_NS},
                "spec": {"grants": [{"bucket": "ha", "permission": "read-write"}], "secretName": "ha-app-s3"},
            },
        ]
    )
    for kind, name in (("s3bucket", "ha"), ("s3credential", "ha-app")):
        eventually(
            f"{kind}/{name} is Ready",
            lambda kind=kind, name=name: (lambda o: o and (condition(o, "Ready") or {}).get("status") == "True")(kube.try_json("-n", HA_NS, "get", kind, name)),
            # JetStream of a new cluster answers once its routes have formed (pod DNS names can
            # take ~30 s); the operator retries with backoff until then.
            timeout=180,
            detail=lambda: diagnose(kube),
        )
    stream_name = "OBJ_" + BUCKET.replace(".", "_")
    detail = eventually(
        "the bucket's stream has three current replicas",
        lambda: (lambda s: s if s and s["config"]["num_replicas"] == 3 and len([r for r in s.get("cluster", {}).get("replicas", []) if r.get("current")]) == 2 else None)(stream(kube, stream_name)),
        timeout=60,
        detail=lambda: diagnose(kube),
    )
    leader = detail["cluster"]["leader"]
    assert leader in {p["metadata"]["name"] for p in nats}, detail["cluster"]

    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": HA_NS}, "spec": restricted_pod_spec(["idle"], "ha-app-s3")})
    kube.run("-n", HA_NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    before = client(kube, "put", "--bucket", BUCKET, "--key", "kept", "--size", 8 << 20)

    # Steady load, then the stream leader's pod killed (no grace): its StatefulSet brings it back.
    seconds = 45
    load = subprocess.Popen(
        [kube.kubectl, "-n", HA_NS, "exec", "client", "--", CLIENT, "load", "--bucket", BUCKET, "--seconds", str(seconds), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kube.env,
    )
    time.sleep(5)
    t0 = time.monotonic()
    kube.run("-n", HA_NS, "delete", "pod", leader, "--grace-period=0", "--force", "--wait=false")
    eventually(
        f"{leader} is back and Ready",
        lambda: next((p for p in pods(kube, "nats") if p["metadata"]["name"] == leader and ready(p)), None),
        timeout=120,
        detail=lambda: diagnose(kube),
    )
    record("NATS cluster: a killed NATS pod until it is Ready again (s)", round(time.monotonic() - t0, 1))
    out, err = load.communicate(timeout=seconds + 60)
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"load: exit {load.returncode}, no JSON: {out[-2000:]} {err[-2000:]}", pytrace=False)
    record("NATS cluster: failed requests while the stream leader's pod was killed", f"{report['failed']} of {report['requests']}")
    assert report["requests"] > 100, report
    # Nothing acknowledged lost or wrong (GET after each acknowledged PUT), and every error retryable.
    not_retryable = [e for e in report["errors"] if e["code"] not in RETRYABLE]
    assert not not_retryable, f"errors a client would not retry during the failover: {not_retryable[:10]}"
    # The gateway was not restarted, and the object written before is whole.
    (gw,) = pods(kube, "gateway")
    assert sum(c.get("restartCount", 0) for c in gw["status"]["containerStatuses"]) == 0, gw["status"]
    after = client(kube, "get", "--bucket", BUCKET, "--key", "kept")
    assert (after["size"], after["sha256"]) == (before["size"], before["sha256"]), (before, after)
    new_leader = eventually(
        "the stream is whole again (three current replicas)",
        lambda: (lambda s: s if s and len([r for r in s.get("cluster", {}).get("replicas", []) if r.get("current")]) == 2 else None)(stream(kube, stream_name)),
        timeout=120,
        detail=lambda: diagnose(kube),
    )
    record("NATS cluster: stream leader before / after the kill", f"{leader} / {new_leader['cluster']['leader']}")
