"""The cluster scenario suite: jets3 as users run it, on any Kubernetes cluster with the images
loaded. `make e2e-cluster` runs it on the single-node cluster of e2e/cluster/cluster.sh, `make
e2e-kind` on kind; by hand:

    KUBECONFIG=... $JETS3_TOOLS_DIR/venv/bin/python -m pytest -q e2e/cluster

Inputs (environment):
  KUBECONFIG                  the cluster (required; the suite installs release "jets3" into
                              namespace "jets3" and uses namespace "jets3-e2e": both must not exist)
  JETS3_E2E_IMAGES            gateway, operator, NATS and client image, space-separated (default:
                              `scripts/images.sh --list`); they must be on the node already
  JETS3_E2E_PULL_POLICY       imagePullPolicy of every image (default Never)
kubectl and helm come from $JETS3_TOOLS_DIR/bin, else PATH. Timings go to the test log and to
$JETS3_E2E_TIMINGS (a JSON file) when set."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from clientutil import REPO, TOOLS_BIN  # noqa: E402

RELEASE = "jets3"
NS = "jets3"
APP_NS = "jets3-e2e"
CHART = REPO / "charts" / "jets3"
CLIENT = "/usr/local/bin/jets3-e2e-client"
# Pod Security Admission "restricted" on both namespaces: the apiserver refuses any pod of the
# chart (or of the suite) that runs as root, may escalate, keeps capabilities or lacks seccomp.
PSA = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}

TIMINGS: dict[str, object] = {}


def find_tool(name: str) -> str:
    path = TOOLS_BIN / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found in {TOOLS_BIN} or PATH (scripts/tools-k8s.sh node builds kubectl; make tools installs helm)", pytrace=False)
    return found


def record(name: str, value):
    """Keeps a figure for the summary (and $JETS3_E2E_TIMINGS)."""
    TIMINGS[name] = value
    print(f"e2e timing: {name} = {value}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def eventually(what: str, f, timeout: float = 60.0, interval: float = 0.2, detail=lambda: ""):
    """f()'s first truthy value; fails after `timeout` seconds with `detail()`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = f()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting until {what}; last: {last!r}\n{detail()}", pytrace=False)


class Kube:
    """kubectl and helm against the suite's cluster."""

    def __init__(self, kubeconfig: str):
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        self.kubectl = find_tool("kubectl")
        self.helm_bin = find_tool("helm")

    def run(self, *args, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [self.kubectl, *map(str, args)]
        try:
            p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"timed out after {timeout}s: {shlex.join(cmd)}\n{e.stdout}\n{e.stderr}", pytrace=False)
        if check and p.returncode != 0:
            pytest.fail(f"exit {p.returncode}: {shlex.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}", pytrace=False)
        return p

    def json(self, *args) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def try_json(self, *args) -> dict | None:
        p = self.run(*args, "-o", "json", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def apply(self, objects: list[dict] | dict, ns: str | None = None):
        items = objects if isinstance(objects, list) else [objects]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        self.run(*(["-n", ns] if ns else []), "apply", "-f", "-", input=json.dumps(doc))

    def helm(self, *args, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.helm_bin, *map(str, args)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and p.returncode != 0:
            pytest.fail(f"exit {p.returncode}: {shlex.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}\n{self.diagnose()}", pytrace=False)
        return p

    def pods(self, ns: str, component: str) -> list[dict]:
        """The release's pods of one component that are not being deleted."""
        sel = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        items = self.json("-n", ns, "get", "pods", "-l", sel)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def secret(self, ns: str, name: str) -> dict[str, str] | None:
        import base64

        s = self.try_json("-n", ns, "get", "secret", name)
        if s is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}

    def diagnose(self) -> str:
        out = [self.run("get", "pods", "-A", "-o", "wide", check=False).stdout]
        out.append(self.run("-n", NS, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-4000:])
        out.append(self.run("-n", NS, "logs", "-l", f"app.kubernetes.io/instance={RELEASE}", "--all-containers", "--tail=30", "--prefix", check=False).stdout[-6000:])
        return "\n".join(out)


def nats_jsz(kube: Kube, namespace: str, target: str) -> dict:
    """JetStream monitoring (`/jsz` with streams and their config) of an embedded NATS, through
    kubectl port-forward to `target` (`svc/<name>` or `pod/<name>`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pf = subprocess.Popen([kube.kubectl, "-n", namespace, "port-forward", target, f"{port}:8222"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kube.env)
    try:

        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz?streams=true&config=true", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        return eventually("NATS monitoring answers through port-forward", fetch, timeout=30)
    finally:
        pf.terminate()
        pf.wait(timeout=10)


def stream_details(jsz: dict) -> list[dict]:
    return [s for a in jsz.get("account_details", []) for s in a.get("stream_detail", [])]


def ready(pod: dict) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return pod.get("status", {}).get("phase") == "Running" and any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", []))


def condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def images() -> list[str]:
    given = os.environ.get("JETS3_E2E_IMAGES")
    if given:
        imgs = given.split()
    else:
        imgs = subprocess.run(["bash", str(REPO / "scripts" / "images.sh"), "--list"], capture_output=True, text=True, check=True).stdout.split()
    if len(imgs) != 4:
        pytest.fail(f"JETS3_E2E_IMAGES must name 4 images (gateway operator nats client), got {imgs}", pytrace=False)
    return imgs


def split_image(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    return repo, tag


def chart_values() -> list[str]:
    gateway, operator, nats, client = images()
    policy = os.environ.get("JETS3_E2E_PULL_POLICY", "Never")
    values = ["nats.embedded.enabled=true"]
    for key, ref in (("gateway.image", gateway), ("operator.image", operator), ("nats.embedded.image", nats), ("test.image", client)):
        repo, tag = split_image(ref)
        values += [f"{key}.repository={repo}", f"{key}.tag={tag}", f"{key}.pullPolicy={policy}"]
    return [a for v in values for a in ("--set", v)]


@pytest.fixture(scope="session")
def kube() -> Kube:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.fail("KUBECONFIG is not set: the suite needs a cluster (make e2e-cluster starts one)", pytrace=False)
    k = Kube(kubeconfig)
    k.run("get", "--raw", "/readyz")
    return k


@pytest.fixture(scope="session")
def release(kube: Kube):
    """The chart installed with the embedded NATS, every pod Ready; uninstalled at the end."""
    for ns in (NS, APP_NS):
        if kube.try_json("get", "namespace", ns):
            pytest.fail(f"namespace {ns} exists already: the suite needs a cluster without it", pytrace=False)
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": PSA}})
    t0 = time.monotonic()
    kube.helm("install", RELEASE, CHART, "--namespace", NS, *chart_values(), "--wait", "--timeout", "5m")
    record("helm install -> all pods Ready (s)", round(time.monotonic() - t0, 1))
    try:
        yield kube
    finally:
        if os.environ.get("JETS3_E2E_KEEP") != "1":
            cleanup(kube)


def cleanup(kube: Kube):
    """Whatever a failed test left: the release, the namespaces, the NATS volume claim."""
    for kind in ("s3credentials", "s3buckets"):
        kube.run("-n", APP_NS, "delete", kind, "--all", "--wait=true", "--timeout=60s", check=False)
    if kube.helm("status", RELEASE, "-n", NS, check=False).returncode == 0:
        kube.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "2m", check=False)
    for ns in (APP_NS, NS):
        kube.run("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)
    path = os.environ.get("JETS3_E2E_TIMINGS")
    if path:
        Path(path).write_text(json.dumps(TIMINGS, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("e2e cluster figures:")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"  {k}: {v}")
