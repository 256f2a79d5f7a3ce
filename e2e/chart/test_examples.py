"""The example S3Bucket / S3Credential objects (e2e/examples, crds/examples, and the one NOTES.txt
prints) are valid under the CRD schemas. kubeconform checks the OpenAPI schema; the CEL rules
(x-kubernetes-validations) are checked by the crds crate's tests, and server-side by the
apiserver in the kind e2e."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, helm, kubeconform, CHART

EXAMPLES = sorted((REPO / "e2e" / "examples").glob("*.yaml")) + sorted((REPO / "crds" / "examples").glob("*.yaml"))


def test_there_are_examples_of_both_kinds():
    kinds = sorted({d["kind"] for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d})
    assert kinds == ["S3Bucket", "S3Credential"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_is_valid(path, crd_schemas):
    proc = kubeconform([path], crd_schemas)
    assert "Invalid: 0, Errors: 0, Skipped: 0" in proc.stdout, proc.stdout


def test_the_notes_example_is_valid(crd_schemas, tmp_path):
    notes = helm("install", "jets3", str(CHART), "--dry-run=client", "--namespace", "storage").stdout
    found = re.search(r"kubectl apply -f - <<'YAML'\n(.*?)\n\s*YAML\n", notes, re.S)
    assert found, notes
    text = "\n".join(line[2:] for line in found.group(1).splitlines())
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in docs] == ["S3Bucket", "S3Credential"]
    path = tmp_path / "notes.yaml"
    path.write_text(text)
    proc = kubeconform([path], crd_schemas)
    assert "Valid: 2, Invalid: 0, Errors: 0" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    "spec, why",
    [
        ({"grants": [{"bucket": "b", "permission": "everything"}]}, "permission"),
        ({"grants": [{"bucket": "b", "permission": "read"}], "secretNmae": "x"}, "secretNmae"),
        ({}, "grants"),
    ],
)
def test_an_invalid_credential_is_refused(spec, why, crd_schemas, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "jets3.io/v1alpha1", "kind": "S3Credential", "metadata": {"name": "x"}, "spec": spec}))
    proc = kubeconform([path], crd_schemas, check=False)
    assert proc.returncode != 0 and why in proc.stdout, proc.stdout
