"""jets3 on a real cluster, in the order a user meets it: helm install, kubectl apply, an app
in the cluster, then the day-two events (NATS down, a gateway replaced, an upgrade, the
operator's leader gone, a key rotated and revoked) and helm uninstall. The tests run in file
order and share one release (conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml

from clientutil import REPO
from conftest import APP_NS, CHART, CLIENT, NS, PSA, RELEASE, Kube, condition, eventually, images, median, nats_jsz, percentile, ready, record, restarts, stream_details

BUCKET = "jets3-e2e"  # the S3 name of e2e/examples/s3bucket.yaml
BUCKET_RESOURCE = "e2e"  # and its S3Bucket
GROUP = "jets3.io/v1alpha1"
LOAD_WORKERS = 2


def client_image() -> str:
    return images()[3]


def pull_policy() -> str:
    import os

    return os.environ.get("JETS3_E2E_PULL_POLICY", "Never")


def restricted_pod_spec(args: list[str], secret: str | None) -> dict:
    """A pod spec the "restricted" Pod Security Standard admits, running the suite's client."""
    container = {
        "name": "client",
        "image": client_image(),
        "imagePullPolicy": pull_policy(),
        "args": args,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }


def client_json(kube: Kube, *args, timeout: float = 120, check: bool = True) -> dict:
    """Runs the client in the long-running client pod (kubectl exec); its JSON report."""
    p = kube.run("-n", APP_NS, "exec", "client", "--", CLIENT, *map(str, args), timeout=timeout, check=False)
    try:
        report = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"client {args}: exit {p.returncode}, no JSON: {p.stdout[-2000:]} {p.stderr[-2000:]}", pytrace=False)
    if check and p.returncode != 0:
        pytest.fail(f"client {args}: exit {p.returncode}: {report}", pytrace=False)
    return report


class Load:
    """Steady S3 load from the client pod (PUT, GET compared, DELETE, 2 workers) for `seconds`."""

    def __init__(self, kube: Kube, seconds: int, keys: tuple[str, str] | None = None):
        args = [kube.kubectl, "-n", APP_NS, "exec", "client", "--", CLIENT, "load", "--bucket", BUCKET, "--seconds", str(seconds), "--workers", str(LOAD_WORKERS)]
        if keys:
            args += ["--access-key-id", keys[0], "--secret-access-key", keys[1]]
        self.seconds = seconds
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kube.env)
        time.sleep(3)  # under way before the disruption starts

    def result(self) -> dict:
        out, err = self.proc.communicate(timeout=self.seconds + 60)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            pytest.fail(f"load: exit {self.proc.returncode}, no JSON: {out[-2000:]} {err[-2000:]}", pytrace=False)

    def assert_no_failure(self, what: str) -> dict:
        r = self.result()
        record(f"{what}: failed requests", f"{r['failed']} of {r['requests']}")
        assert r["requests"] > 100, r
        assert r["failed"] == 0, f"{r['failed']} of {r['requests']} requests failed during {what}: {r['errors'][:10]}"
        return r


def gateway_endpoints(kube: Kube) -> list[str]:
    return [f"http://{p['status']['podIP']}:9000" for p in kube.pods(NS, "gateway")]


def slice_endpoints(kube: Kube) -> dict[str, bool]:
    """The S3 Service's EndpointSlice: pod IP -> ready."""
    slices = kube.json("-n", NS, "get", "endpointslices", "-l", f"kubernetes.io/service-name={RELEASE}-gateway")["items"]
    return {e["addresses"][0]: bool(e.get("conditions", {}).get("ready")) for s in slices for e in s.get("endpoints") or []}


def keys_of(kube: Kube, secret: str) -> tuple[str, str]:
    s = eventually(f"Secret {secret} exists", lambda: kube.secret(APP_NS, secret), timeout=60, interval=0.05)
    return s["AWS_ACCESS_KEY_ID"], s["AWS_SECRET_ACCESS_KEY"]


def probe_everywhere(kube: Kube, keys: tuple[str, str], until: str, timeout: int = 30) -> list[dict]:
    """The key's outcome on every gateway pod directly (not through the Service)."""
    reports = []
    for endpoint in gateway_endpoints(kube):
        r = client_json(kube, "--endpoint", endpoint, "--access-key-id", keys[0], "--secret-access-key", keys[1], "probe", "--bucket", BUCKET, "--until", until, "--timeout-seconds", timeout, check=False)
        assert r["outcome"] == until, f"key {keys[0]} on {endpoint}: {r}"
        reports.append(r)
    return reports


def credential(name: str, grants=((BUCKET_RESOURCE, "read-write"),), annotations=None) -> dict:
    meta = {"name": name, "namespace": APP_NS}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": GROUP,
        "kind": "S3Credential",
        "metadata": meta,
        "spec": {"grants": [{"bucket": b, "permission": p} for b, p in grants], "secretName": f"{name}-s3"},
    }


def wait_ready(kube: Kube, kind: str, name: str, timeout: float = 60) -> dict:
    def check():
        obj = kube.try_json("-n", APP_NS, "get", kind, name)
        c = obj and condition(obj, "Ready")
        return obj if c and c["status"] == "True" else None

    return eventually(f"{kind}/{name} is Ready", check, timeout=timeout, detail=kube.diagnose)


# ---- install -------------------------------------------------------------------------------------


def test_helm_install_brings_every_pod_ready_through_its_probes_under_restricted_pod_security(release: Kube):
    kube = release
    operators, gateways, nats = (kube.pods(NS, c) for c in ("operator", "gateway", "nats"))
    assert (len(operators), len(gateways), len(nats)) == (2, 2, 1), [p["metadata"]["name"] for p in operators + gateways + nats]
    for pod in operators + gateways + nats:
        name = pod["metadata"]["name"]
        assert ready(pod), f"{name} is not Ready: {pod['status']}"
        assert restarts(pod) == 0, f"{name} restarted: {pod['status']['containerStatuses']}"
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 65532, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, (name, sc)
            assert sc["capabilities"]["drop"] == ["ALL"], (name, sc)
            # The readiness gate is the real endpoint of the binary, on the port it listens on.
            assert c["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/healthz?js-enabled-only=true"), (name, c["readinessProbe"])
    # The namespace enforces "restricted": the apiserver itself admitted these pods under it.
    labels = kube.json("get", "namespace", NS)["metadata"]["labels"]
    assert {k: labels.get(k) for k in PSA} == PSA

    # One operator leads (the Lease holder), the other stands by and is Ready too.
    lease = kube.json("-n", NS, "get", "lease", f"{RELEASE}-operator")
    assert lease["spec"]["holderIdentity"] in {p["metadata"]["name"] for p in operators}, lease["spec"]
    # With a default StorageClass the embedded NATS keeps JetStream on a volume.
    pvc = kube.json("-n", NS, "get", "pvc", f"data-{RELEASE}-nats-0")
    assert pvc["status"]["phase"] == "Bound", pvc["status"]


# ---- an app --------------------------------------------------------------------------------------


def test_examples_ready_and_an_in_cluster_job_writes_and_reads_through_the_service_name(release: Kube):
    kube = release
    t0 = time.monotonic()
    kube.run("-n", APP_NS, "apply", "-f", REPO / "e2e" / "examples" / "s3bucket.yaml", "-f", REPO / "e2e" / "examples" / "s3credential.yaml")
    wait_ready(kube, "s3bucket", "e2e")
    cred = wait_ready(kube, "s3credential", "e2e-app")
    record("kubectl apply e2e/examples -> both Ready (s)", round(time.monotonic() - t0, 1))
    assert condition(cred, "Served")["status"] == "True"
    secret = kube.secret(APP_NS, "e2e-app-s3")
    assert secret["AWS_ENDPOINT_URL"] == f"http://{RELEASE}-gateway.{NS}.svc:9000", secret["AWS_ENDPOINT_URL"]

    # An app as users write one: a Job with the Secret as envFrom, a real S3 client (aws-sdk-s3),
    # the Service's DNS name (CoreDNS), a 12 MiB PUT and a multipart upload read back.
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "roundtrip", "namespace": APP_NS},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", **restricted_pod_spec(["roundtrip", "--bucket", BUCKET, "--size", str(12 << 20)], "e2e-app-s3")}},
        },
    }
    kube.apply(job)
    done = eventually(
        "the roundtrip Job finished",
        lambda: (lambda j: j if condition(j, "Complete") or condition(j, "Failed") else None)(kube.json("-n", APP_NS, "get", "job", "roundtrip")),
        timeout=120,
        detail=kube.diagnose,
    )
    logs = kube.run("-n", APP_NS, "logs", "job/roundtrip").stdout
    assert condition(done, "Complete"), f"the Job failed: {logs}"
    report = json.loads(logs.strip().splitlines()[-1])
    assert report["ok"] is True and report["bytes"] == (12 << 20) + (6 << 20), report
    assert len(report["listed"]) == 2, report

    # The pod the later scenarios exec their client in (same Secret, same image).
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": APP_NS}, "spec": restricted_pod_spec(["idle"], "e2e-app-s3")})
    kube.run("-n", APP_NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")


def test_helm_test_makes_an_s3_round_trip_and_cleans_up(release: Kube):
    kube = release
    t0 = time.monotonic()
    p = kube.helm("test", RELEASE, "--namespace", NS, "--timeout", "3m")
    record("helm test (bucket, credential, round trip) (s)", round(time.monotonic() - t0, 1))
    assert "Phase:          Succeeded" in p.stdout, p.stdout
    # hook-succeeded: the test's bucket, credential, Secret and pod are gone again.
    name = f"{RELEASE}-helm-test"
    eventually(
        "the helm test resources are deleted",
        lambda: all(kube.try_json("-n", NS, "get", kind, name) is None for kind in ("s3bucket", "s3credential", "pod")) and kube.secret(NS, f"{name}-s3") is None,
        timeout=60,
    )


def test_an_applied_credential_works_from_the_cluster_within_a_second_or_two(release: Kube):
    """S3Credential apply -> its key works for the in-cluster client: 20 times, p50."""
    kube = release
    to_secret, to_works = [], []
    for i in range(20):
        name = f"latency-{i:02d}"
        t0 = time.time()
        kube.apply(credential(name))
        keys = keys_of(kube, f"{name}-s3")
        to_secret.append(time.time() - t0)
        r = client_json(kube, "--access-key-id", keys[0], "--secret-access-key", keys[1], "probe", "--bucket", BUCKET, "--until", "ok", "--timeout-seconds", 30)
        to_works.append(r["at_unix_ms"] / 1000 - t0)
    record("S3Credential apply -> Secret written, p50 of 20 (s)", round(median(to_secret), 2))
    record("S3Credential apply -> key works from the in-cluster client, p50 / p90 / max of 20 (s)", f"{median(to_works):.2f} / {percentile(to_works, 90):.2f} / {max(to_works):.2f}")
    kube.run("-n", APP_NS, "delete", "s3credentials", *[f"latency-{i:02d}" for i in range(20)], "--wait=true", "--timeout=60s")
    assert median(to_works) < 5, to_works


# ---- day two -------------------------------------------------------------------------------------


def test_nats_down_takes_gateways_out_of_the_service_and_back_without_a_restart(release: Kube):
    kube = release
    before = client_json(kube, "put", "--bucket", BUCKET, "--key", "kept/over-nats-restart.bin", "--size", 300_000)
    gateways = {p["metadata"]["name"]: p for p in kube.pods(NS, "gateway")}
    probe = kube.pods(NS, "gateway")[0]["spec"]["containers"][0]["readinessProbe"]
    window = probe["periodSeconds"] * probe["failureThreshold"]

    # NATS killed and kept down (the StatefulSet would start it again at once).
    kube.run("-n", NS, "scale", "statefulset", f"{RELEASE}-nats", "--replicas=0")
    t0 = time.monotonic()
    kube.run("-n", NS, "delete", "pod", f"{RELEASE}-nats-0", "--grace-period=0", "--force", "--wait=false")

    def all_out():
        pods = kube.pods(NS, "gateway")
        eps = slice_endpoints(kube)
        return all(not ready(p) for p in pods) and not any(eps.get(p["status"]["podIP"]) for p in pods)

    eventually("both gateways are NotReady and out of the EndpointSlice", all_out, timeout=window + 20, detail=kube.diagnose)
    out_after = time.monotonic() - t0
    record("NATS killed -> gateways NotReady and out of the EndpointSlice (s)", round(out_after, 1))
    assert out_after <= window + 10, f"took {out_after:.1f}s, the probe window is {window}s"

    kube.run("-n", NS, "scale", "statefulset", f"{RELEASE}-nats", "--replicas=1")
    t1 = time.monotonic()

    def all_back():
        pods = kube.pods(NS, "gateway")
        eps = slice_endpoints(kube)
        return len(pods) == 2 and all(ready(p) and eps.get(p["status"]["podIP"]) for p in pods)

    eventually("both gateways are Ready again", all_back, timeout=120, detail=kube.diagnose)
    record("NATS back -> gateways Ready and in the EndpointSlice (s)", round(time.monotonic() - t1, 1))
    after = {p["metadata"]["name"]: p for p in kube.pods(NS, "gateway")}
    assert after.keys() == gateways.keys(), "the gateway pods were replaced"
    assert all(restarts(p) == 0 for p in after.values()), [p["status"]["containerStatuses"] for p in after.values()]
    # The embedded NATS keeps JetStream on its volume: the object written before is still there.
    got = client_json(kube, "get", "--bucket", BUCKET, "--key", "kept/over-nats-restart.bin")
    assert got["sha256"] == before["sha256"], (before, got)
    bucket = kube.json("-n", APP_NS, "get", "s3bucket", "e2e")
    assert condition(bucket, "Ready")["status"] == "True"


def test_a_deleted_gateway_pod_is_replaced_without_a_failed_request(release: Kube):
    kube = release
    old = {p["metadata"]["name"] for p in kube.pods(NS, "gateway")}
    victim = sorted(old)[0]
    load = Load(kube, 40)
    t0 = time.monotonic()
    kube.run("-n", NS, "delete", "pod", victim, "--wait=false")

    def replaced():
        pods = kube.pods(NS, "gateway")
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == 2 and victim not in names and all(ready(p) for p in pods)

    eventually("a replacement gateway is Ready (config pushed)", replaced, timeout=60, detail=kube.diagnose)
    record("gateway pod deleted -> replacement Ready (s)", round(time.monotonic() - t0, 1))
    load.assert_no_failure("the replacement of one of two gateways")


def test_helm_upgrade_of_a_gateway_value_under_load_fails_no_request(release: Kube):
    kube = release
    old = {p["metadata"]["name"] for p in kube.pods(NS, "gateway")}
    operators = {p["metadata"]["name"] for p in kube.pods(NS, "operator")}
    load = Load(kube, 75)
    t0 = time.monotonic()
    kube.helm("upgrade", RELEASE, CHART, "--namespace", NS, "--reuse-values", "--set", "gateway.logLevel=debug", "--wait", "--timeout", "3m")

    def rolled():
        pods = kube.pods(NS, "gateway")
        return len(pods) == 2 and not old & {p["metadata"]["name"] for p in pods} and all(ready(p) for p in pods) and pods

    pods = eventually("every gateway pod is new and Ready", rolled, timeout=120, detail=kube.diagnose)
    record("helm upgrade (gateway rollout) -> done (s)", round(time.monotonic() - t0, 1))
    for p in pods:
        assert "--log=debug" in p["spec"]["containers"][0]["args"], p["spec"]["containers"][0]["args"]
    assert {p["metadata"]["name"] for p in kube.pods(NS, "operator")} == operators, "the operators were restarted"
    load.assert_no_failure("helm upgrade")


def test_the_standby_operator_takes_over_and_new_credentials_reach_every_gateway(release: Kube):
    kube = release
    lease = lambda: kube.json("-n", NS, "get", "lease", f"{RELEASE}-operator")["spec"].get("holderIdentity")  # noqa: E731
    leader = lease()
    standby = next(p["metadata"]["name"] for p in kube.pods(NS, "operator") if p["metadata"]["name"] != leader)
    # The nodes take no new pod meanwhile: the leader's replacement cannot race the standby.
    nodes = [n["metadata"]["name"] for n in kube.json("get", "nodes")["items"] if not n["spec"].get("unschedulable")]
    for n in nodes:
        kube.run("cordon", n)
    try:
        t0 = time.monotonic()
        kube.run("-n", NS, "delete", "pod", leader, "--wait=false")
        eventually(f"the standby {standby} holds the Lease", lambda: lease() == standby, timeout=60, detail=kube.diagnose)
        record("operator leader deleted -> standby leads (s)", round(time.monotonic() - t0, 1))
    finally:
        for n in nodes:
            kube.run("uncordon", n)

    t1 = time.monotonic()
    kube.apply(credential("after-failover"))
    wait_ready(kube, "s3credential", "after-failover")
    keys = keys_of(kube, "after-failover-s3")
    probe_everywhere(kube, keys, "ok", timeout=5)
    record("S3Credential after failover -> works on every gateway (s)", round(time.monotonic() - t1, 1))
    # The replacement operator pod comes up as the new standby.
    eventually("two operator pods Ready", lambda: len([p for p in kube.pods(NS, "operator") if ready(p)]) == 2, timeout=60)


def test_a_key_rotates_while_a_client_uses_it_and_a_deleted_credential_is_refused_everywhere(release: Kube):
    kube = release
    kube.apply(credential("rotating"))
    cred = wait_ready(kube, "s3credential", "rotating")
    uid = cred["metadata"]["uid"]
    first = keys_of(kube, "rotating-s3")
    load = Load(kube, 30, keys=first)
    kube.run("-n", APP_NS, "annotate", "s3credential", "rotating", f"jets3.io/rotate={time.time()}", "--overwrite")

    def rotated():
        obj = kube.json("-n", APP_NS, "get", "s3credential", "rotating")
        c = condition(obj, "Ready")
        return obj if obj["status"].get("accessKeyId") not in (None, first[0]) and c and c["status"] == "True" else None

    eventually("a new key is in force", rotated, timeout=60, detail=kube.diagnose)
    second = keys_of(kube, "rotating-s3")
    assert second[0] != first[0]
    probe_everywhere(kube, second, "ok", timeout=10)
    load.assert_no_failure("a key rotation (the client keeps the previous key)")
    probe_everywhere(kube, first, "ok", timeout=5)  # within the overlap
    assert kube.secret(APP_NS, f"jets3-previous-key-{uid}"), "no previous-key Secret during the overlap"

    t0 = time.monotonic()
    kube.run("-n", APP_NS, "delete", "s3credential", "rotating", "--wait=true", "--timeout=60s")
    for keys in (first, second):
        probe_everywhere(kube, keys, "refused", timeout=30)
    record("S3Credential deleted -> both keys refused on every gateway (s)", round(time.monotonic() - t0, 1))
    # Both Secrets were the credential's: the garbage collector removes them.
    eventually(
        "the app and previous-key Secrets are gone",
        lambda: kube.secret(APP_NS, "rotating-s3") is None and kube.secret(APP_NS, f"jets3-previous-key-{uid}") is None,
        timeout=60,
    )


# ---- operations kit ------------------------------------------------------------------------------


def exported_metrics(kube: Kube, pod: dict, port: int) -> set[str]:
    """Sample names on a pod's /metrics, through the apiserver's pod proxy."""
    name = pod["metadata"]["name"]
    text = kube.run("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}:{port}/proxy/metrics").stdout
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def used_metrics(kube: Kube) -> dict[str, set[str]]:
    """Metric names in the chart's dashboard and in its PrometheusRule's expressions."""
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    exprs = {"dashboard": [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]}
    out = kube.helm("template", RELEASE, CHART, "--namespace", NS, "--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml")
    rule = yaml.safe_load(out.stdout)
    exprs["rules"] = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return {k: {m for e in v for m in re.findall(r"\bjets3_[a-z0-9_]+", e)} for k, v in exprs.items()}


def test_the_dashboard_and_the_alerts_use_only_metrics_the_pods_export(release: Kube):
    kube = release
    exported: set[str] = set()
    for pod in kube.pods(NS, "gateway"):
        exported |= exported_metrics(kube, pod, 9001)
    for pod in kube.pods(NS, "operator"):
        exported |= exported_metrics(kube, pod, 8080)
    assert "jets3_collector_pending_bytes" in exported and "jets3_operator_leader" in exported, sorted(exported)
    for where, names in used_metrics(kube).items():
        assert names, where
        missing = names - exported
        assert not missing, f"the chart's {where} uses metrics no pod exports: {sorted(missing)}"


# ---- uninstall -----------------------------------------------------------------------------------


def nats_streams(kube: Kube) -> set[str]:
    """Stream names, from the embedded NATS's monitoring port."""
    return {s["name"] for s in stream_details(nats_jsz(kube, NS, f"svc/{RELEASE}-nats"))}


def test_helm_uninstall_leaves_buckets_per_deletion_policy_and_no_secret(release: Kube):
    kube = release
    kube.apply({"apiVersion": GROUP, "kind": "S3Bucket", "metadata": {"name": "kept", "namespace": APP_NS}, "spec": {"bucketName": "jets3-e2e-kept", "deletionPolicy": "Retain"}})
    wait_ready(kube, "s3bucket", "kept")
    assert {"OBJ_jets3-e2e", "OBJ_jets3-e2e-kept"} <= nats_streams(kube)

    # What the chart's NOTES tell users to do before uninstalling: delete the resources.
    kube.run("-n", APP_NS, "delete", "pod/client", "job/roundtrip", "--cascade=foreground", "--wait=true")
    kube.run("-n", APP_NS, "delete", "s3credentials", "--all", "--wait=true", "--timeout=60s")
    kube.run("-n", APP_NS, "delete", "s3buckets", "--all", "--wait=true", "--timeout=60s")
    streams = nats_streams(kube)
    assert "OBJ_jets3-e2e-kept" in streams, streams  # deletionPolicy: Retain
    assert "OBJ_jets3-e2e" not in streams, streams  # deletionPolicy: Delete

    kube.helm("uninstall", RELEASE, "--namespace", NS, "--wait", "--timeout", "2m")
    for ns in (NS, APP_NS):
        eventually(f"no pod left in {ns}", lambda ns=ns: not kube.json("-n", ns, "get", "pods")["items"], timeout=60, detail=kube.diagnose)
        secrets = [s["metadata"]["name"] for s in kube.json("-n", ns, "get", "secrets")["items"]]
        assert secrets == [], f"Secrets left in {ns}: {secrets}"
    assert yaml.safe_load(kube.run("get", "crd", "s3buckets.jets3.io", "-o", "yaml").stdout), "helm keeps the CRDs"
