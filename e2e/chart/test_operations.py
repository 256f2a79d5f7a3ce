"""The chart's operations kit, rendered: the Grafana dashboard ConfigMap, the PrometheusRule
and the `helm test` hook. (That their queries use only metrics the binaries export is checked
against the running pods by the cluster suite, e2e/cluster.)"""

from __future__ import annotations

import json
import re

from conftest import CHART, NAMESPACE, RELEASE, find, one, render

ALERTS = {
    "Jets3GatewayNotReady",
    "Jets3NatsCircuitOpen",
    "Jets3ConfigNotDelivered",
    "Jets3ConfigPushRefused",
    "Jets3S3ErrorRate",
    "Jets3NatsLatencyHigh",
    "Jets3OperatorNoLeader",
}


def test_the_dashboard_configmap_holds_the_dashboard_for_the_sidecar(full_objects):
    cm = one(full_objects, "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["jets3.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for p in panels:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert re.search(r"\bjets3_[a-z0-9_]+", t["expr"]), (p["title"], t["expr"])
            assert 'namespace=~"$namespace"' in t["expr"], (p["title"], t["expr"])
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace"}
    assert not find(render(), "ConfigMap", f"{RELEASE}-dashboard"), "off by default"


def test_the_prometheus_rule_alerts_on_what_breaks_jets3(full_objects):
    rule = one(full_objects, "PrometheusRule", RELEASE)
    rules = rule["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        # Every selector is scoped to the release's namespace.
        selectors = re.findall(r"jets3_[a-z0-9_]+\{([^}]*)\}", r["expr"])
        assert selectors and all(f'namespace="{NAMESPACE}"' in s for s in selectors), r["expr"]
        assert r["labels"]["severity"] in ("warning", "critical")
        assert "{{ $labels" in r["annotations"]["summary"] or "{{ $value" in r["annotations"]["summary"] or r["alert"] in ("Jets3ConfigNotDelivered", "Jets3OperatorNoLeader")
    by_name = {r["alert"]: r for r in rules}
    assert "> 0.05" in by_name["Jets3S3ErrorRate"]["expr"]
    assert "> 0.25" in by_name["Jets3NatsLatencyHigh"]["expr"]
    tuned = render({"prometheusRule.enabled": "true", "prometheusRule.s3ErrorRatio": "0.01", "prometheusRule.natsRttSeconds": "0.1", "prometheusRule.alertLabels.team": "storage"})
    tuned_rules = {r["alert"]: r for r in one(tuned, "PrometheusRule", RELEASE)["spec"]["groups"][0]["rules"]}
    assert "> 0.01" in tuned_rules["Jets3S3ErrorRate"]["expr"] and "> 0.1" in tuned_rules["Jets3NatsLatencyHigh"]["expr"]
    assert all(r["labels"]["team"] == "storage" for r in tuned_rules.values())
    assert not find(render(), "PrometheusRule", RELEASE), "off by default"


def test_helm_test_makes_a_round_trip_with_a_generated_credential(default_objects):
    name = f"{RELEASE}-helm-test"
    bucket, cred, pod = (one(default_objects, k, name) for k in ("S3Bucket", "S3Credential", "Pod"))
    for obj in (bucket, cred, pod):
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert obj["metadata"]["namespace"] == NAMESPACE
    # The bucket and credential exist before the pod starts (lower weight), and go with it.
    assert bucket["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"
    assert bucket["spec"] == {"bucketName": name, "description": f"helm test of release {RELEASE}", "deletionPolicy": "Delete"}
    assert cred["spec"] == {"grants": [{"bucket": name, "permission": "read-write"}], "secretName": f"{name}-s3"}
    (c,) = pod["spec"]["containers"]
    # The bucket named on the command line: the Secret gets BUCKET_NAME only once the operator has seen the S3Bucket.
    assert c["image"] == "jets3-e2e-client:0.1.0" and c["args"] == ["roundtrip", "--bucket", name]
    assert c["envFrom"] == [{"secretRef": {"name": f"{name}-s3"}}]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # An operator that watches other namespaces: the test runs where it looks.
    watched = render({"operator.watchNamespaces": "{apps,more}"})
    assert {o["metadata"]["namespace"] for o in watched if o["metadata"]["name"] == name} == {"apps"}
    assert not [o for o in render({"test.enabled": "false"}) if o["metadata"]["name"] == name]
