"""charts/jets3 renders to valid, complete and least-privilege objects."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import (
    ALL_FEATURES,
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    find,
    helm,
    kubeconform,
    one,
    render,
)

PUSH_NAME = f"{RELEASE}-gateway-push.{NAMESPACE}.svc"


def write(tmp_path, objects, name="rendered.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(objects))
    return path


@pytest.mark.parametrize("values", [{}, ALL_FEATURES], ids=["default", "all-features"])
def test_helm_lint_strict_is_clean(values):
    sets = [f"--set={k}={v}" for k, v in values.items()]
    out = helm("lint", str(CHART), "--strict", *sets).stdout
    assert "0 chart(s) failed" in out
    assert not re.search(r"\[(WARNING|ERROR)\]", out), out


def test_default_render_is_valid_under_kubeconform(default_objects, crd_schemas, tmp_path):
    # Everything, the CRDs included, has a schema: nothing is skipped.
    proc = kubeconform([write(tmp_path, default_objects)], crd_schemas)
    assert "Invalid: 0, Errors: 0, Skipped: 0" in proc.stdout, proc.stdout


def test_all_features_render_is_valid_under_kubeconform(full_objects, crd_schemas, tmp_path):
    # ServiceMonitor and PrometheusRule are the Prometheus Operator's CRDs: no schema here, so
    # they alone are skipped (e2e/chart/test_operations.py checks the rules).
    proc = kubeconform([write(tmp_path, full_objects)], crd_schemas, skip=("ServiceMonitor", "PrometheusRule"))
    # Two ServiceMonitors and the PrometheusRule.
    assert "Invalid: 0, Errors: 0, Skipped: 3" in proc.stdout, proc.stdout


def test_kubeconform_catches_an_invalid_object(default_objects, crd_schemas, tmp_path):
    broken = [dict(o) for o in default_objects]
    dep = next(o for o in broken if o["kind"] == "Deployment")
    dep["spec"] = {**dep["spec"], "replicaz": 2}
    proc = kubeconform([write(tmp_path, broken)], crd_schemas, check=False)
    assert proc.returncode != 0 and "replicaz" in proc.stdout, proc.stdout


def test_chart_crds_are_crds_yaml():
    chart_crds = sorted((CHART / "crds").iterdir())
    assert [p.name for p in chart_crds] == ["jets3.io_crds.yaml"]
    assert chart_crds[0].read_bytes() == (REPO / "crds" / "yaml" / "jets3.io_crds.yaml").read_bytes(), (
        "charts/jets3/crds/jets3.io_crds.yaml differs from crds/yaml/jets3.io_crds.yaml (the source): "
        "cp crds/yaml/jets3.io_crds.yaml charts/jets3/crds/"
    )


def _leaves(node, prefix=""):
    """Dotted paths of values.yaml's leaves (an empty map or any list is a leaf)."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


def test_values_table_lists_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^\| `([^`]+)` \|", readme, re.M)
    assert len(table) == len(set(table)), "a value is listed twice in charts/jets3/README.md"
    leaves = set(_leaves(values))
    assert set(table) == leaves, (
        f"README table and values.yaml disagree: not in the table {sorted(leaves - set(table))}, "
        f"not in values.yaml {sorted(set(table) - leaves)}"
    )
    defaults = dict(re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", readme, re.M))
    for key in leaves:
        value = values
        for part in key.split("."):
            value = value[part]
        shown = yaml.safe_load(defaults[key]) if key in defaults else None
        assert shown == value, f"README shows {key} = {defaults.get(key)!r}, values.yaml has {value!r}"


def _pod(objects, kind, name):
    return one(objects, kind, name)["spec"]["template"]["spec"]


def _args(container) -> dict[str, str]:
    out = {}
    for a in container["args"]:
        k, _, v = a.partition("=")
        out[k] = v
    return out


def test_gateway_flags_follow_the_push_contract(default_objects):
    pod = _pod(default_objects, "Deployment", f"{RELEASE}-gateway")
    (c,) = pod["containers"]
    assert _args(c) == {
        "--listen": "0.0.0.0:9000",
        "--admin-listen": "0.0.0.0:9001",
        "--push-listen": "0.0.0.0:9443",
        "--push-tls-cert": "/etc/jets3/push-tls/tls.crt",
        "--push-tls-key": "/etc/jets3/push-tls/tls.key",
        "--push-verify-key": "/etc/jets3/push-verify/cert.pem",
        "--push-issuer": "jets3-operator",
        "--push-audience": "jets3-gateway",
        "--nats-url": "nats://nats:4222",
        "--s3-max-connections": "4096",
        "--cache-max-bytes": "67108864",
        "--cache-max-entries": "10000",
        "--cache-index-pages-bytes": "67108864",
        "--cache-replay-max-subjects": "2000000",
        "--cache-small-reads-bytes": "33554432",
        "--collector-grace-seconds": "30",
        "--collector-interval-seconds": "5",
        "--collector-orphan-after-seconds": "3600",
        "--collector-scan-interval-seconds": "600",
        "--collector-scan-batch-objects": "4000000",
        "--collector-max-purges-per-pass": "1000",
        "--collector-completed-upload-seconds": "3600",
        "--collector-snapshot-interval-seconds": "300",
        "--collector-snapshot-min-subjects": "20000",
        "--collector-snapshot-batch-keys": "200000",
        "--shutdown-grace-seconds": "25",
        "--shutdown-drain-seconds": "3",
        "--log-format": "json",
        "--log": "info",
    }
    probes = {p: c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    assert volumes[mounts["/etc/jets3/push-tls"]] == {
        "secretName": f"{RELEASE}-push-tls",
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
    }
    assert volumes[mounts["/etc/jets3/push-verify"]] == {"secretName": f"{RELEASE}-push-verify"}
    # A terminating gateway serves on until it is out of every EndpointSlice, then drains.
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert pod["terminationGracePeriodSeconds"] >= 5 + 3 + 25


def test_gateway_grace_period_must_cover_the_prestop_sleep_and_the_drain():
    p = helm("template", RELEASE, str(CHART), "--set", "gateway.preStopSleepSeconds=8", check=False)
    assert p.returncode != 0 and "at least gateway.preStopSleepSeconds + gateway.shutdownDrainSeconds + gateway.shutdownGraceSeconds" in p.stderr, p.stderr
    objects = render({"gateway.preStopSleepSeconds": "0", "gateway.shutdownDrainSeconds": "0", "gateway.terminationGracePeriodSeconds": "25"})
    assert "lifecycle" not in _pod(objects, "Deployment", f"{RELEASE}-gateway")["containers"][0]


def test_operator_flags_follow_the_push_contract(default_objects):
    pod = _pod(default_objects, "Deployment", f"{RELEASE}-operator")
    (c,) = pod["containers"]
    assert _args(c) == {
        "--nats-url": "nats://nats:4222",
        "--gateway-endpoint": f"http://{RELEASE}-gateway.{NAMESPACE}.svc:9000",
        "--region": "us-east-1",
        "--config-state": f"{RELEASE}-config-state",
        "--metrics-listen": "0.0.0.0:8080",
        "--leader-election": "",
        "--lease-name": f"{RELEASE}-operator",
        "--push-signing-key": "/etc/jets3/push-signing/key.pem",
        "--push-issuer": "jets3-operator",
        "--push-audience": "jets3-gateway",
        "--push-ca": "/etc/jets3/push-ca/ca.crt",
        "--push-server-name": PUSH_NAME,
        "--gateway-selector": f"app.kubernetes.io/name=jets3,app.kubernetes.io/instance={RELEASE},"
        "app.kubernetes.io/component=gateway",
        "--gateway-namespace": NAMESPACE,
        "--gateway-push-port": "9443",
        "--log-format": "json",
        "--log": "info",
    }
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert one(default_objects, "Deployment", f"{RELEASE}-operator")["spec"]["replicas"] == 2
    # The selector the operator uses matches the gateway pods' labels.
    gw_labels = _pod_labels(default_objects, f"{RELEASE}-gateway")
    for term in _args(c)["--gateway-selector"].split(","):
        k, v = term.split("=")
        assert gw_labels[k] == v
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    assert volumes["push-signing"] == {"secretName": f"{RELEASE}-push-signing"}
    assert volumes["push-ca"] == {"secretName": f"{RELEASE}-push-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def _pod_labels(objects, deployment):
    return one(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def test_watch_namespaces_give_roles_instead_of_a_cluster_role():
    objects = render({"operator.watchNamespaces": "{team-a,team-b}"})
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(objects, "Role")}
    assert roles == {
        (NAMESPACE, f"{RELEASE}-operator"),
        ("team-a", f"{RELEASE}-operator-resources"),
        ("team-b", f"{RELEASE}-operator-resources"),
    }
    (c,) = _pod(objects, "Deployment", f"{RELEASE}-operator")["containers"]
    assert _args(c)["--watch-namespaces"] == "team-a,team-b"


def test_adoption_across_namespaces_is_opt_in(default_objects):
    (c,) = _pod(default_objects, "Deployment", f"{RELEASE}-operator")["containers"]
    assert "--adopt-across-namespaces" not in _args(c), "off by default"
    objects = render({"operator.adoptAcrossNamespaces": "{platform,data-moves}"})
    (c,) = _pod(objects, "Deployment", f"{RELEASE}-operator")["containers"]
    assert _args(c)["--adopt-across-namespaces"] == "platform,data-moves"


def _rules(role):
    return {
        (g, r, tuple(sorted(role_rule.get("resourceNames", []))), v)
        for role_rule in role["rules"]
        for g in role_rule["apiGroups"]
        for r in role_rule["resources"]
        for v in role_rule["verbs"]
    }


def test_rbac_is_least_privilege(default_objects):
    gw_sa = one(default_objects, "ServiceAccount", f"{RELEASE}-gateway")
    assert gw_sa["automountServiceAccountToken"] is False
    assert _pod(default_objects, "Deployment", f"{RELEASE}-gateway")["automountServiceAccountToken"] is False
    subjects = [
        s["name"] for b in find(default_objects, "RoleBinding") + find(default_objects, "ClusterRoleBinding")
        for s in b["subjects"]
    ]
    assert subjects == [f"{RELEASE}-operator", f"{RELEASE}-operator"], "only the operator is bound to any role"

    own = _rules(one(default_objects, "Role", f"{RELEASE}-operator"))
    lease, state = (f"{RELEASE}-operator",), (f"{RELEASE}-config-state",)
    assert own == {
        ("", "pods", (), "get"), ("", "pods", (), "list"), ("", "pods", (), "watch"),
        *{("coordination.k8s.io", "leases", lease, v) for v in ("get", "watch", "update", "patch")},
        *{("", "configmaps", state, v) for v in ("get", "watch", "update", "patch")},
        ("coordination.k8s.io", "leases", (), "create"), ("", "configmaps", (), "create"),
    }
    cluster = _rules(one(default_objects, "ClusterRole", f"{RELEASE}-{NAMESPACE}-operator"))
    crs = {("jets3.io", r, (), v) for r in ("s3buckets", "s3credentials") for v in ("get", "list", "watch", "patch", "update")}
    status = {("jets3.io", f"{r}/status", (), v) for r in ("s3buckets", "s3credentials") for v in ("get", "patch", "update")}
    fin = {("jets3.io", f"{r}/finalizers", (), "update") for r in ("s3buckets", "s3credentials")}
    secrets = {("", "secrets", (), v) for v in ("get", "list", "watch", "create", "patch", "delete")}
    events = {(g, "events", (), v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    assert cluster == crs | status | fin | secrets | events
    assert not any("*" in str(r) for r in own | cluster)


def _containers(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            pod = o["spec"]["template"]["spec"]
            yield o["metadata"]["name"], pod, pod["containers"]


@pytest.mark.parametrize("which", ["default", "all-features"])
def test_every_pod_runs_non_root_read_only_without_capabilities(which, default_objects, full_objects):
    objects = default_objects if which == "default" else full_objects
    seen = []
    for name, pod, containers in _containers(objects):
        seen.append(name)
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in containers:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert "resources" in c and c["resources"]["requests"], name
            assert c["readinessProbe"] and c["livenessProbe"], name
    expected = {f"{RELEASE}-gateway", f"{RELEASE}-operator"} | ({f"{RELEASE}-nats"} if which != "default" else set())
    assert set(seen) == expected


def test_push_service_and_certificate_name_agree(default_objects, tmp_path):
    svc = one(default_objects, "Service", f"{RELEASE}-gateway-push")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"push": 9443, "admin": 9001}
    tls = one(default_objects, "Secret", f"{RELEASE}-push-tls")
    assert tls["type"] == "kubernetes.io/tls" and set(tls["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    import base64

    crt = tmp_path / "tls.crt"
    crt.write_bytes(base64.b64decode(tls["data"]["tls.crt"]))
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(tls["data"]["ca.crt"]))
    san = subprocess.run(
        ["openssl", "x509", "-in", crt, "-noout", "-ext", "subjectAltName"], capture_output=True, text=True, check=True
    ).stdout
    assert f"DNS:{PUSH_NAME}" in san and san.count("DNS:") == 1, san
    verify = subprocess.run(["openssl", "verify", "-CAfile", ca, crt], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    s3 = one(default_objects, "Service", f"{RELEASE}-gateway")
    assert [p["targetPort"] for p in s3["spec"]["ports"]] == ["s3"], "the S3 Service exposes S3 only"


def test_network_policy_lets_only_the_operator_reach_the_push_port(full_objects):
    pol = one(full_objects, "NetworkPolicy", f"{RELEASE}-gateway")
    rules = {r["ports"][0]["port"]: r.get("from") for r in pol["spec"]["ingress"]}
    assert set(rules) == {9000, 9001, 9443}
    assert rules[9000] is None and rules[9001] is None, "S3 and probes/metrics are open"
    assert rules[9443] == [
        {"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "jets3",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "operator",
        }}}
    ]
    operator_labels = _pod_labels(full_objects, f"{RELEASE}-operator")
    assert rules[9443][0]["podSelector"]["matchLabels"].items() <= operator_labels.items()
    nats = one(full_objects, "NetworkPolicy", f"{RELEASE}-nats")
    clients = nats["spec"]["ingress"][0]["from"]
    assert [c["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for c in clients] == ["gateway", "operator"]


def test_optional_features(default_objects, full_objects):
    for kind in ("HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "StatefulSet"):
        assert not find(default_objects, kind), f"{kind} is off by default"
    assert one(default_objects, "Deployment", f"{RELEASE}-gateway")["spec"]["replicas"] == 2
    assert {p["metadata"]["name"] for p in find(default_objects, "PodDisruptionBudget")} == {
        f"{RELEASE}-gateway",
        f"{RELEASE}-operator",
    }
    gw = one(full_objects, "Deployment", f"{RELEASE}-gateway")
    assert "replicas" not in gw["spec"], "the HPA owns the replica count"
    hpa = one(full_objects, "HorizontalPodAutoscaler", f"{RELEASE}-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-gateway"
    mons = {m["metadata"]["name"]: m["spec"]["endpoints"][0]["port"] for m in find(full_objects, "ServiceMonitor")}
    assert mons == {f"{RELEASE}-gateway-push": "admin", f"{RELEASE}-operator": "metrics"}
    svc = one(full_objects, "Service", f"{RELEASE}-gateway")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30900
    spread = gw["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert spread["maxSkew"] == 1


def test_nats_settings_reach_both_processes(full_objects):
    url = f"nats://{RELEASE}-nats.{NAMESPACE}.svc:4222"
    for name in (f"{RELEASE}-gateway", f"{RELEASE}-operator"):
        pod = _pod(full_objects, "Deployment", name)
        (c,) = pod["containers"]
        args = _args(c)
        assert args["--nats-url"] == url, name
        assert args["--nats-creds"] == "/etc/jets3/nats-creds/app.creds", name
        assert args["--nats-tls-ca"] == "/etc/jets3/nats-tls/ca.crt", name
        assert args["--nats-tls-cert"] == "/etc/jets3/nats-tls/tls.crt", name
        assert "--nats-tls-required" in args, name
        secret_env = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert secret_env == {
            "JETS3_NATS_USER": {"name": "nats-auth", "key": "user"},
            "JETS3_NATS_PASSWORD": {"name": "nats-auth", "key": "password"},
        }, name
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/etc/jets3/nats-creds", "/etc/jets3/nats-tls"} <= mounted, name


def test_embedded_nats_config_is_accepted_by_nats_server(full_objects, tmp_path):
    from clientutil import need_tool

    conf = one(full_objects, "ConfigMap", f"{RELEASE}-nats")["data"]["nats.conf"]
    (tmp_path / "nats.conf").write_text(conf.replace("/data", str(tmp_path / "data")))
    proc = subprocess.run([need_tool("nats-server"), "-c", tmp_path / "nats.conf", "-t"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sts = one(full_objects, "StatefulSet", f"{RELEASE}-nats")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_more_operator_replicas_need_leader_election():
    proc = helm("template", RELEASE, str(CHART), "--set", "operator.leaderElection=false", check=False)
    assert proc.returncode != 0 and "leaderElection" in proc.stderr


def test_admin_listener_is_on_the_pod_ip_as_the_readmes_say():
    """The kubelet probes (and Prometheus scrapes) the pod IP, so the admin listener cannot be on
    loopback; in the pod's network namespace 0.0.0.0 is the pod IP (and loopback). What keeps it
    safe: it is on no Service clients use, it serves nothing secret, /cache/purge needs a token
    from a Secret, and networkPolicy.adminFrom narrows who connects. docs/protection.md and the chart README say so."""
    for service_type in ("ClusterIP", "NodePort", "LoadBalancer"):
        objects = render({"gateway.ports.admin": "9101", "gateway.service.type": service_type})
        pod = _pod(objects, "Deployment", f"{RELEASE}-gateway")
        (c,) = pod["containers"]
        assert _args(c)["--admin-listen"] == "0.0.0.0:9101"
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["admin"] == 9101
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] == "admin", probe
        s3 = one(objects, "Service", f"{RELEASE}-gateway")
        assert [p["targetPort"] for p in s3["spec"]["ports"]] == ["s3"], f"{service_type}: only S3 on the client Service"
        headless = one(objects, "Service", f"{RELEASE}-gateway-push")["spec"]
        assert headless["clusterIP"] == "None" and "type" not in headless
    # The purge token never appears in the pod spec: it comes from a Secret.
    objects = render({"gateway.adminToken.enabled": "true"})
    (c,) = _pod(objects, "Deployment", f"{RELEASE}-gateway")["containers"]
    assert not any("token" in a.lower() for a in c["args"])
    (env,) = [e for e in c["env"] if e["name"] == "JETS3_ADMIN_TOKEN"]
    assert set(env) == {"name", "valueFrom"} and "secretKeyRef" in env["valueFrom"]
    # networkPolicy.adminFrom narrows the admin port to the peers given.
    peers = {"networkPolicy.enabled": "true", "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.team": "monitoring"}
    pol = one(render(peers), "NetworkPolicy", f"{RELEASE}-gateway")
    rules = {r["ports"][0]["port"]: r.get("from") for r in pol["spec"]["ingress"]}
    assert rules[9001] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    # What the docs say agrees.
    readme = " ".join((REPO / "docs" / "protection.md").read_text().split())
    assert "private address (the chart's default)" not in readme
    assert "In the chart the admin listener listens on `0.0.0.0`" in readme
    row = next(line for line in (CHART / "README.md").read_text().splitlines() if line.startswith("| `gateway.ports.admin`"))
    assert "0.0.0.0" in row and "adminFrom" in row, row


def test_embedded_nats_cluster(crd_schemas, tmp_path):
    """nats.embedded.replicas=3: pods that route to each other by their stable DNS names, a
    config nats-server accepts, one pod down at a time, routes open under the NetworkPolicy."""
    from clientutil import need_tool

    objects = render({"nats.embedded.enabled": "true", "nats.embedded.replicas": "3", "networkPolicy.enabled": "true"})
    kubeconform([write(tmp_path, objects)], crd_schemas)
    sts = one(objects, "StatefulSet", f"{RELEASE}-nats")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == f"{RELEASE}-nats-cluster"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["cluster"] == 6222
    headless = one(objects, "Service", f"{RELEASE}-nats-cluster")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert one(objects, "PodDisruptionBudget", f"{RELEASE}-nats")["spec"]["maxUnavailable"] == 1
    conf = one(objects, "ConfigMap", f"{RELEASE}-nats")["data"]["nats.conf"]
    routes = re.findall(r"nats://(\S+):6222", conf)
    assert routes == [f"{RELEASE}-nats-{i}.{RELEASE}-nats-cluster.{NAMESPACE}.svc" for i in range(3)], conf
    (tmp_path / "nats.conf").write_text(conf.replace("/data", str(tmp_path / "data")))
    env = {"POD_NAME": f"{RELEASE}-nats-1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([need_tool("nats-server"), "-c", tmp_path / "nats.conf", "-t"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    policy = one(objects, "NetworkPolicy", f"{RELEASE}-nats")["spec"]
    route_rule = [r for r in policy["ingress"] if r["ports"] == [{"port": 6222, "protocol": "TCP"}]]
    assert len(route_rule) == 1 and route_rule[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nats"
    # One server keeps the single-server shape (an installed StatefulSet's serviceName cannot change).
    single = one(render({"nats.embedded.enabled": "true"}), "StatefulSet", f"{RELEASE}-nats")["spec"]
    assert single["replicas"] == 1 and single["serviceName"] == f"{RELEASE}-nats"
    proc = helm("template", RELEASE, str(CHART), "--set", "nats.embedded.enabled=true", "--set", "nats.embedded.replicas=2", check=False)
    assert proc.returncode != 0 and "1, 3 or 5" in proc.stderr


def test_names_the_operator_uses_follow_the_release_name():
    """A release not named "jets3": the operator's state ConfigMap and Lease are the ones the chart
    makes and its Role names (a second release once left its operator unready, forbidden to read
    "jets3-config-state")."""
    out = helm("template", "other", str(CHART), "--namespace", NAMESPACE).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    (c,) = _pod(objects, "Deployment", "other-operator")["containers"]
    args = _args(c)
    assert one(objects, "ConfigMap", args["--config-state"])["metadata"]["name"] == "other-config-state"
    names = {n for r in one(objects, "Role", "other-operator")["rules"] for n in r.get("resourceNames", [])}
    assert {args["--config-state"], args["--lease-name"]} <= names, (args, names)
