"""The kind e2e's scenarios on this machine: a real etcd + kube-apiserver (scripts/tools-k8s.sh
up), `helm install` of charts/jets3 into it (with an external nats-server), then the operator and
the gateways as processes started with the ARGS OF THE INSTALLED DEPLOYMENTS (listen addresses
moved to loopback, /etc/jets3 mounts to the installed Secrets' files), the operator with a token
of its own ServiceAccount (so the chart's RBAC is what it gets), and the gateway pods created
from the gateway Deployment's pod template with their status patched as a kubelet would.

Binaries: jets3-gateway from target/release (JETS3_GATEWAY_BIN), jets3-operator from
target/debug (JETS3_OPERATOR_BIN; `cargo build -p jets3-operator`). Missing tools FAIL."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from clientutil import REPO, cargo_binary, free_port, gateway_binary, need_tool, readyz, run, start_nats, stop, tail_file  # noqa: E402

RELEASE = "jets3"
NAMESPACE = "jets3"
ETC = "/etc/jets3/"
TIMEOUT = 60.0


def operator_binary() -> Path:
    return cargo_binary("jets3-operator", "debug", "JETS3_OPERATOR_BIN", "cargo build -p jets3-operator")


def eventually(what: str, f, timeout: float = TIMEOUT, detail=lambda: ""):
    """f()'s first truthy value; fails after `timeout` with `detail()` (log tails)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = f()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting until {what}; last: {last!r}\n{detail()}", pytrace=False)


class Kube:
    """A minimal client of the kube-apiserver (JSON over HTTPS with the admin token)."""

    def __init__(self, env_file: Path):
        env = dict(line.split("=", 1) for line in env_file.read_text().split())
        self.server, self.token = env["K8S_SERVER"], env["K8S_TOKEN"]
        self.ca = env["K8S_CA"]
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def call(self, method: str, path: str, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                code, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, text = e.code, e.read()
        if code not in ok:
            pytest.fail(f"{method} {path}: {code} {text[:500]!r}", pytrace=False)
        return json.loads(text) if text else None

    def get(self, path: str):
        return self.call("GET", path)

    def secret(self, namespace: str, name: str) -> dict[str, bytes]:
        data = self.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")["data"]
        return {k: base64.b64decode(v) for k, v in data.items()}

    def kubeconfig(self, path: Path, token: str):
        ca = base64.b64encode(Path(self.ca).read_bytes()).decode()
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "local", "cluster": {"server": self.server, "certificate-authority-data": ca}}],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "local", "context": {"cluster": "local", "user": "u"}}],
                    "current-context": "local",
                }
            )
        )


def container_args(deployment: dict) -> list[str]:
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def mount_secrets(kube: Kube, deployment: dict, root: Path):
    """Writes the files the pod would see under /etc/jets3 (Secret volumes) below `root`."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in spec["containers"][0].get("volumeMounts", []):
        secret = volumes[m["name"]].get("secret")
        if not secret or not m["mountPath"].startswith(ETC):
            continue
        data = kube.secret(NAMESPACE, secret["secretName"])
        items = secret.get("items") or [{"key": k, "path": k} for k in data]
        target = root / m["mountPath"][len(ETC) :]
        target.mkdir(parents=True, exist_ok=True)
        for item in items:
            (target / item["path"]).write_bytes(data[item["key"]])


def local_args(args: list[str], root: Path, ip: str) -> list[str]:
    """The Deployment's args with /etc/jets3 below `root` and 0.0.0.0 listeners on `ip`."""
    return [a.replace(ETC, f"{root}/").replace("=0.0.0.0:", f"={ip}:") for a in args]


class Gateway:
    def __init__(self, args: list[str], ip: str, workdir: Path):
        self.args, self.ip, self.log = args, ip, workdir / f"gateway-{ip}.log"
        self.proc = None

    def start(self):
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([str(gateway_binary()), *self.args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc:
            stop(self.proc)

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:9000"

    def ready(self) -> bool:
        return readyz(f"http://{self.ip}:9001/readyz") == 200


class Release:
    """The installed chart and the processes running its Deployments."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.gateways: list[Gateway] = []
        self.timings: dict[str, float] = {}

    def operator_get(self, path: str, port: int | None = None):
        """GET on the operator's metrics listener (or on `port`: its loopback debug listener)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port or self.metrics_port}{path}", timeout=5) as r:
            return r.read().decode()

    def add_pod(self, name: str, ip: str):
        template = self.gateway_deployment["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": template["metadata"]["labels"]}, "spec": template["spec"]}
        self.kube.call("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
        self.pod_status(name, ip, restarts=0)

    def pod_status(self, name: str, ip: str, restarts: int):
        """What the kubelet reports: Running at `ip`, the container's restart count."""
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "containerStatuses": [{"name": "gateway", "image": "jets3-gateway", "imageID": "", "ready": False, "restartCount": restarts}],
        }
        self.kube.call("PATCH", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/status", {"status": status}, "application/merge-patch+json")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    need_tool("etcd")
    need_tool("kube-apiserver")
    helm = need_tool("helm")
    work = tmp_path_factory.mktemp("local")
    cp = work / "cp"
    cp.mkdir()
    r = Release(work)
    t0 = time.monotonic()
    k8s = ["bash", REPO / "scripts" / "tools-k8s.sh"]
    # `up` picks free ports, which someone else may take before etcd binds them: retry.
    for attempt in range(3):
        up = run([*k8s, "up", cp], timeout=180, check=attempt == 2)
        if up.returncode == 0:
            break
        run([*k8s, "down", cp], check=False)
    try:
        r.timings["control plane up"] = time.monotonic() - t0
        r.kube = kube = Kube(cp / "env")
        nats, nats_url, _ = start_nats(work)
        r.procs.append(nats)

        t0 = time.monotonic()
        env = {**os.environ, "KUBECONFIG": str(cp / "kubeconfig"), "HELM_CACHE_HOME": str(work / "helm"), "HELM_CONFIG_HOME": str(work / "helm")}
        run([helm, "install", RELEASE, REPO / "charts" / "jets3", "--namespace", NAMESPACE, "--create-namespace", "--set", f"nats.url={nats_url}"], env=env)
        r.timings["helm install"] = time.monotonic() - t0
        apps = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
        operator = kube.get(f"{apps}/{RELEASE}-operator")
        r.gateway_deployment = gateway = kube.get(f"{apps}/{RELEASE}-gateway")
        files = work / "etc"
        mount_secrets(kube, operator, files)
        mount_secrets(kube, gateway, files)

        # The operator, as its Deployment runs it, with its ServiceAccount's token.
        sa = operator["spec"]["template"]["spec"]["serviceAccountName"]
        token = kube.call(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
        )["status"]["token"]
        kube.kubeconfig(work / "operator.kubeconfig", token)
        r.metrics_port = free_port()
        args = local_args(container_args(operator), files, "127.0.0.1")
        args = [f"--metrics-listen=127.0.0.1:{r.metrics_port}" if a.startswith("--metrics-listen=") else a for a in args]
        # The debug listener (/config) stays on loopback as in the pod, on a port of its own here.
        r.debug_port = free_port()
        args.append(f"--debug-listen=127.0.0.1:{r.debug_port}")
        r.operator_args = args
        r.operator_log = work / "operator.log"
        op_env = {"KUBECONFIG": str(work / "operator.kubeconfig"), "POD_NAMESPACE": NAMESPACE, "POD_NAME": f"{RELEASE}-operator-local", "PATH": os.environ["PATH"]}
        with open(r.operator_log, "wb") as out:
            r.procs.append(subprocess.Popen([str(operator_binary()), *args], env=op_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

        # Two gateways, as the gateway Deployment runs them, each its own pod IP.
        base = 20 + os.getpid() % 200
        for i in (1, 2):
            ip = f"127.0.0.{base + i}"
            gw = Gateway(local_args(container_args(gateway), files, ip), ip, work)
            gw.start()
            r.gateways.append(gw)
            r.add_pod(f"{RELEASE}-gateway-local-{i}", ip)
        yield r
    finally:
        for gw in r.gateways:
            gw.stop()
        for p in reversed(r.procs):
            stop(p)
        if getattr(r, "operator_log", None) and os.environ.get("JETS3_TEST_SHOW_LOG"):
            print(tail_file(r.operator_log, 200))
        run([*k8s, "down", cp], check=False)
