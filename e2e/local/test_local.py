"""The kind e2e (e2e/kind/e2e.sh) here: the chart installed into a real kube-apiserver, the
operator and two gateways run with the installed Deployments' args, the e2e/examples bucket and
credential Ready, a 12 MiB AWS CLI round trip with the keys of the generated Secret, then a
gateway restart that gets its config again without any resource change."""

from __future__ import annotations

import json
import os
import time

import yaml

from clientutil import MiB, REPO, need_tool, random_file, run, sha256_file, tail_file
from conftest import NAMESPACE, RELEASE, eventually

APP_NS = "jets3-e2e"
GROUP = "/apis/jets3.io/v1alpha1"


def condition(obj: dict, type_: str):
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def aws(gateway, *args, keys):
    env = {**os.environ, **keys, "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    return run([need_tool("aws"), "--endpoint-url", gateway.endpoint, *args], env=env)


def test_examples_become_ready_and_work_through_every_gateway_and_a_restart(release, tmp_path):
    kube = release.kube
    for gw in release.gateways:
        eventually(f"gateway {gw.ip} is ready (config pushed)", gw.ready, detail=lambda: f"gateway log:\n{tail_file(gw.log)}\noperator log:\n{tail_file(release.operator_log)}")

    # The operator runs exactly the installed Deployment's flags, push included.
    flags = {a.split("=", 1)[0] for a in release.operator_args}
    for flag in ("--push-signing-key", "--push-ca", "--push-server-name", "--gateway-selector", "--gateway-namespace", "--gateway-push-port", "--leader-election"):
        assert flag in flags, release.operator_args

    kube.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS}})
    t0 = time.monotonic()
    for name, plural in (("s3bucket.yaml", "s3buckets"), ("s3credential.yaml", "s3credentials")):
        obj = yaml.safe_load((REPO / "e2e" / "examples" / name).read_text())
        kube.call("POST", f"{GROUP}/namespaces/{APP_NS}/{plural}", obj)

    def ready(plural, name):
        def check():
            obj = kube.get(f"{GROUP}/namespaces/{APP_NS}/{plural}/{name}")
            c = condition(obj, "Ready")
            return obj if c and c["status"] == "True" else None

        return eventually(f"{plural}/{name} is Ready", check, detail=lambda: tail_file(release.operator_log))

    ready("s3buckets", "e2e")
    cred = ready("s3credentials", "e2e-app")
    release.timings["apply to Ready"] = time.monotonic() - t0
    assert condition(cred, "Served")["status"] == "True"
    config = json.loads(release.operator_get("/config", release.debug_port))
    assert config["gateways"] == {"pods": 2, "in_sync": 2}, config["gateways"]

    secret = kube.secret(APP_NS, "e2e-app-s3")
    assert secret["AWS_ENDPOINT_URL"].decode() == f"http://{RELEASE}-gateway.{NAMESPACE}.svc:9000"
    keys = {k: secret[k].decode() for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    upload = tmp_path / "upload.bin"
    digest = random_file(upload, 12 * MiB)  # multipart with the CLI's 8 MiB parts
    first, second = release.gateways
    aws(first, "s3", "cp", upload, "s3://jets3-e2e/dir/upload.bin", keys=keys)
    assert " upload.bin" in aws(second, "s3", "ls", "s3://jets3-e2e/dir/", keys=keys).stdout
    download = tmp_path / "download.bin"
    aws(second, "s3", "cp", "s3://jets3-e2e/dir/upload.bin", download, keys=keys)
    assert sha256_file(download) == digest

    # A gateway restarts (the kubelet reports the container's restart): it gets the config
    # again, no resource changes.
    first.stop()
    first.start()
    t0 = time.monotonic()
    release.pod_status(f"{RELEASE}-gateway-local-1", first.ip, restarts=1)
    eventually("the restarted gateway is ready again", first.ready, detail=lambda: tail_file(first.log))
    release.timings["restarted gateway ready"] = time.monotonic() - t0
    again = tmp_path / "again.bin"
    aws(first, "s3", "cp", "s3://jets3-e2e/dir/upload.bin", again, keys=keys)
    assert sha256_file(again) == digest
    print("local e2e timings:", {k: f"{v:.2f}s" for k, v in release.timings.items()})
