"""End-to-end: the CRDs in crds/ are accepted by a real kube-apiserver, the seed template and
instance (examples/seed-*.yaml) are accepted unchanged, and invalid instances are rejected by
the apiserver's own schema validation (not by the operator)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from harness.examples import strip_server_fields
from jupyternetes.crd.definitions import GROUP, VERSION, load_crd_documents

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SEED_TEMPLATE = REPO / "examples" / "seed-template.yaml"
SEED_INSTANCE = REPO / "examples" / "seed-instance.yaml"


def _plural(kind: str) -> str:
    for doc in load_crd_documents():
        if doc["spec"]["group"] == GROUP and doc["spec"]["names"]["kind"] == kind:
            return str(doc["spec"]["names"]["plural"])
    raise AssertionError(f"no CRD for {GROUP} kind {kind} under crds/")


def _seed(path: Path, namespace: str) -> dict[str, Any]:
    """The seed object ready to create in `namespace`: server-set fields and status removed.

    The seed names the namespaces `kadense`/`default`; each test uses its own fresh namespace
    instead so tests stay independent, and points the instance's template reference at it."""
    obj = strip_server_fields(yaml.safe_load(path.read_text()))
    obj["metadata"]["namespace"] = namespace
    if obj["kind"] == "JupyterNotebookInstance":
        obj["spec"]["template"]["namespace"] = namespace
    return obj


def test_crds_are_established_with_structural_schemas(cluster, crds_installed):
    assert f"jupyternotebooktemplates.{GROUP}" in crds_installed
    assert f"jupyternotebookinstances.{GROUP}" in crds_installed
    with cluster.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        for name in crds_installed:
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in crd.status.conditions or []}
            assert conditions.get("Established") == "True", (name, conditions)
            assert conditions.get("NamesAccepted") == "True", (name, conditions)
            # apiextensions/v1 refuses non-structural schemas at create; a condition here would
            # mean the CRD slipped through an older path.
            assert "NonStructuralSchema" not in conditions, (name, conditions)
            served = [v.name for v in crd.spec.versions if v.served]
            assert VERSION in served, (name, served)


def test_seed_template_and_instance_are_accepted_unchanged(cluster, crds_installed, namespace):
    template = _seed(SEED_TEMPLATE, namespace)
    instance = _seed(SEED_INSTANCE, namespace)
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        created_t = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, _plural("JupyterNotebookTemplate"), copy.deepcopy(template))
        created_i = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, _plural("JupyterNotebookInstance"), copy.deepcopy(instance))
        read_i = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, _plural("JupyterNotebookInstance"),
            instance["metadata"]["name"])
    # Nothing pruned or defaulted away: a schema that dropped the pod spec or the variables map
    # would break the operator silently.
    assert created_t["spec"] == template["spec"]
    assert created_i["spec"] == instance["spec"]
    assert read_i["spec"] == instance["spec"]
    assert created_t["metadata"]["labels"] == template["metadata"]["labels"]


def _invalid_missing_template_name(obj: dict[str, Any]) -> str:
    del obj["spec"]["template"]["name"]
    return "spec.template.name"


def _invalid_non_string_variable(obj: dict[str, Any]) -> str:
    obj["spec"]["variables"]["jupyterhub.user.id"] = 1
    return "spec.variables"


@pytest.mark.parametrize("break_it", [_invalid_missing_template_name, _invalid_non_string_variable],
                         ids=["no-template-name", "non-string-variable"])
def test_invalid_instance_is_rejected_by_the_apiserver(cluster, crds_installed, namespace,
                                                       break_it):
    instance = _seed(SEED_INSTANCE, namespace)
    field = break_it(instance)
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        plural = _plural("JupyterNotebookInstance")
        with pytest.raises(client.ApiException) as err:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, instance)
        assert err.value.status == 422, err.value.body
        assert field in err.value.body, err.value.body
        # And nothing was stored.
        stored = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        assert stored["items"] == []
