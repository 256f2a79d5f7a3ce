"""Renders charts/jets3 with helm (fixtures), and the tools the checks need.

helm, kubeconform, the Kubernetes JSON schemas and nats-server come from `make tools`; a missing
one FAILS the tests (nothing skips)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from clientutil import REPO, TOOLS_DIR, need_tool, run  # noqa: E402

CHART = REPO / "charts" / "jets3"
K8S_SCHEMAS = TOOLS_DIR / "k8s-schemas" / "v1.33.0-local-strict"
RELEASE = "jets3"
NAMESPACE = "storage"

# Every optional feature on, the way a production install would set them.
ALL_FEATURES = {
    "nats.embedded.enabled": "true",
    "nats.embedded.persistence.enabled": "true",
    "networkPolicy.enabled": "true",
    "serviceMonitor.enabled": "true",
    "prometheusRule.enabled": "true",
    "grafanaDashboard.enabled": "true",
    "gateway.autoscaling.enabled": "true",
    "gateway.service.type": "NodePort",
    "gateway.service.nodePort": "30900",
    "nats.auth.existingSecret": "nats-auth",
    "nats.auth.userKey": "user",
    "nats.auth.passwordKey": "password",
    "nats.auth.credsKey": "app.creds",
    "nats.tls.existingSecret": "nats-tls",
    "nats.tls.clientCert": "true",
    "nats.tls.required": "true",
    "gateway.topologySpreadConstraints[0].maxSkew": "1",
    "gateway.topologySpreadConstraints[0].topologyKey": "topology.kubernetes.io/zone",
    "gateway.topologySpreadConstraints[0].whenUnsatisfiable": "ScheduleAnyway",
    "gateway.tls.secretName": "s3-tls",
    "gateway.tls.clientCaSecretName": "s3-clients-ca",
    "gateway.audit.enabled": "true",
    "gateway.audit.target": "file",
    "gateway.otel.endpoint": "http://otel-collector.observability:4318",
    "gateway.trustedProxies": "{10.0.0.0/8}",
    "gateway.limits.rateLimits.perClientIp.requestsPerSecond": "50",
}


def helm(*args: str, check: bool = True):
    return run([need_tool("helm"), *args], check=check)


def render(values: dict[str, str] | None = None, *extra: str) -> list[dict]:
    """`helm template` of the chart (with its CRDs) as a list of objects."""
    sets = [f"--set={k}={v}" for k, v in (values or {}).items()]
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", *sets, *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="session")
def default_objects() -> list[dict]:
    return render()


@pytest.fixture(scope="session")
def full_objects() -> list[dict]:
    return render(ALL_FEATURES)


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _strict_json_schema(node):
    """A CRD's openAPIV3Schema as a JSON schema kubeconform checks strictly: objects with listed
    properties refuse others (as the apiserver prunes them), `nullable` allows null,
    `x-kubernetes-int-or-string` allows both."""
    if isinstance(node, list):
        return [_strict_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_json_schema(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="session")
def crd_schemas(tmp_path_factory) -> Path:
    """kubeconform schemas (<kind>-<group>-<version>.json) of the jets3 CRDs in crds/yaml."""
    out = tmp_path_factory.mktemp("crd-schemas")
    import json

    for crd in yaml.safe_load_all((REPO / "crds" / "yaml" / "jets3.io_crds.yaml").read_text()):
        if not crd:
            continue
        group = crd["spec"]["group"].split(".")[0]
        kind = crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            schema = _strict_json_schema(version["schema"]["openAPIV3Schema"])
            # The apiserver adds these to every CRD schema.
            schema["properties"] |= {
                "apiVersion": {"enum": [f"{crd['spec']['group']}/{version['name']}"]},
                "kind": {"enum": [crd["spec"]["names"]["kind"]]},
                "metadata": {"type": "object"},
            }
            (out / f"{kind}-{group}-{version['name']}.json").write_text(json.dumps(schema))
    return out


def kubeconform(files: list[Path], crd_schemas: Path, *, skip: tuple[str, ...] = (), check: bool = True):
    """kubeconform -strict against the Kubernetes v1.33 schemas and the jets3 CRD schemas."""
    if not (K8S_SCHEMAS / "_definitions.json").is_file():
        pytest.fail(f"Kubernetes JSON schemas missing at {K8S_SCHEMAS}: run `make tools`", pytrace=False)
    args = [
        need_tool("kubeconform"),
        "-strict",
        "-summary",
        "-schema-location",
        f"{K8S_SCHEMAS}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        "-schema-location",
        f"{crd_schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
    ]
    if skip:
        args += ["-skip", ",".join(skip)]
    return run([*args, *map(str, files)], check=check)
