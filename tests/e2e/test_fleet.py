"""Template changes an admin can see coming, end to end on the harness.

20 instances on one template, the operator running with `--template-rollout immediate`:
`jupyternetes preview --template NS/NAME -f proposed.yaml` classifies every instance for an image
change and for a renamed variable, then the edit is applied and what the operator does (pods
replaced or not, render failures) is compared with what the preview said, per instance. The
template's status counts are followed as instances are created, rolled and deleted. `jupyternetes
lint` is run against the same apiserver (server-side dry run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.examples import load_example, shared_template
from jupyternetes.crd.definitions import API_VERSION, GROUP, TEMPLATE_KIND, TEMPLATE_PLURAL, VERSION
from tests.e2e.test_operator import (  # noqa: F401 - fixtures used by name
    HUB_NAMESPACE,
    Cluster,
    condition,
    hub,
    own_template,
    provisioned,
    start_operator,
    volumes,
    wait_for,
)
from tests.e2e.test_preview import state_dir

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COUNT = 20
# These instances carry the variable the second edit renames to; the others do not.
RENAMED_READY = 4
NEW_IMAGE = "quay.io/jupyter/base-notebook:2026-01-01"


def cli(pulumi_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyternetes.app.cli", *args],
                          env=pulumi_env.env if pulumi_env is not None else None, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def template_doc(c: Cluster, name: str) -> dict:
    return c.custom.get_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   name)


def template_counts(c: Cluster, name: str) -> dict:
    return template_doc(c, name).get("status") or {}


def wait_counts(c: Cluster, name: str, **wanted: int) -> dict:
    return wait_for(f"template status {wanted}", lambda: (
        lambda s: s if all(s.get(k) == v for k, v in wanted.items()) else None)(
            template_counts(c, name)), timeout=300,
        describe=lambda: str(template_counts(c, name)))


def replace_spec(c: Cluster, name: str, spec: dict) -> int:
    return c.edit_template(HUB_NAMESPACE, name, lambda doc: doc.update(spec=spec))[
        "metadata"]["generation"]


def fleet_preview(pulumi_env, cluster, ref: str, proposed: dict | None, tmp_path: Path,
                  *extra: str) -> tuple[dict, str]:
    args = ["preview", "--template", ref, "--kubeconfig", str(cluster.kubeconfig),
            "--state-dir", str(state_dir(pulumi_env)), "--backend-url", pulumi_env.backend_url,
            "--pulumi-home", str(pulumi_env.pulumi_home), *extra]
    if proposed is not None:
        path = tmp_path / "proposed.yaml"
        path.write_text(yaml.safe_dump(proposed))
        args += ["-f", str(path)]
    as_json = cli(pulumi_env, *args, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    text = cli(pulumi_env, *args, "--exit-code")
    assert text.returncode in (0, 1), text.stderr
    return json.loads(as_json.stdout), text.stdout


def outcomes(doc: dict) -> dict[str, str]:
    return {p["instance"].split("/", 1)[1]: p["outcome"] for p in doc["plans"]}


# Fixture parameters share the names of the imported fixtures (that is how pytest finds them).
def test_fleet_preview_predicts_what_the_operator_does(
        hub, cluster, pulumi_env, namespace,  # noqa: F811
        volumes, start_operator, tmp_path):  # noqa: F811
    ns = namespace
    names = [f"user{i:02d}" for i in range(COUNT)]
    for name in names:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=2, extra=("--template-rollout", "immediate",
                                                "--template-status-seconds", "1"))
    with own_template(hub, ns, "fleet") as template:
        ref = f"{HUB_NAMESPACE}/{template}"
        seed_variables = load_example("seed-instance.yaml")["spec"]["variables"]
        wait_counts(hub, template, instances=0, current=0)
        for index, name in enumerate(names):
            variables = {**seed_variables, "jupyterhub.user.name": name,
                         "jupyternetes.instance.name": name,
                         "jupyternetes.instance.namespace": ns}
            if index < RENAMED_READY:
                variables["hub.login"] = f"login-{name}"
            hub.create_instance(ns, name, variables=variables, template=template)
        for name in names:
            wait_for(f"{name} provisioned", provisioned(hub, ns, name),
                     describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
        live = template_doc(hub, template)
        first_gen = live["metadata"]["generation"]
        counts = wait_counts(hub, template, instances=COUNT, current=COUNT, pods=COUNT,
                             pvcs=COUNT)
        assert counts["observedGeneration"] == first_gen
        pods_before = {n: hub.pod(ns, f"{n}-notebook")["metadata"]["uid"] for n in names}

        # 1. The image edit: every server's pod is replaced; one instance checked by the engine.
        image_spec = json.loads(json.dumps(live["spec"]))
        image_spec["pods"][0]["spec"]["containers"][0]["image"] = NEW_IMAGE
        proposed = {"apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
                    "metadata": {"name": template}, "spec": image_spec}
        doc, text = fleet_preview(pulumi_env, cluster, ref, proposed, tmp_path, "--sample", "1")
        print(text)
        assert doc["instances"] == COUNT
        assert set(outcomes(doc).values()) == {"pod-replaced"}, text
        assert doc["counts"]["pod-replaced"] == COUNT
        paths = doc["plans"][0]["objects"][0]["paths"]
        assert paths == ["spec.containers[0].image"]
        assert f"pod-replaced       {COUNT}  pod replaced" in text, text
        [(_key, exact)] = doc["exact"].items()
        assert exact["result"] == "succeeded" and exact["agrees"], exact
        assert "pods/notebook" in exact["replaced"]

        image_gen = replace_spec(hub, template, image_spec)
        for name in names:
            pod = wait_for(f"{name}'s pod replaced", lambda name=name: (
                lambda p: p if p and p["metadata"]["uid"] != pods_before[name] else None)(
                    hub.pod(ns, f"{name}-notebook")), timeout=600,
                describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
            assert pod["spec"]["containers"][0]["image"] == NEW_IMAGE
        wait_counts(hub, template, instances=COUNT, current=COUNT, observedGeneration=image_gen)
        for name in names:
            wait_for(f"{name} provisioned", provisioned(hub, ns, name))

        # Nothing pending: without -f the live template against what runs is all unchanged.
        doc, text = fleet_preview(pulumi_env, cluster, ref, None, tmp_path)
        assert doc["counts"]["unchanged"] == COUNT, text

        # 2. A renamed variable: JUPYTERHUB_USER now comes from {hub.login}.
        renamed = json.loads(json.dumps(image_spec))
        env = renamed["pods"][0]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == "JUPYTERHUB_USER")["value"] = "{hub.login}"
        proposed["spec"] = renamed
        doc, text = fleet_preview(pulumi_env, cluster, ref, proposed, tmp_path)
        print(text)
        predicted = outcomes(doc)
        ready_names, failing = names[:RENAMED_READY], names[RENAMED_READY:]
        assert {n: predicted[n] for n in ready_names} == dict.fromkeys(ready_names,
                                                                       "pod-replaced")
        assert {n: predicted[n] for n in failing} == dict.fromkeys(failing, "render-error")
        for plan in doc["plans"]:
            if plan["outcome"] == "render-error":
                assert [m["variable"] for m in plan["missing"]] == ["hub.login"]
        assert f"render-error       {COUNT - RENAMED_READY}" in text
        for name in failing:  # the users who would break are named, with what is missing
            assert f"render-error   {ns}/{name}" in text
        assert "missing hub.login" in text

        pods_before = {n: hub.pod(ns, f"{n}-notebook")["metadata"]["uid"] for n in names}
        renamed_gen = replace_spec(hub, template, renamed)
        for name in ready_names:
            pod = wait_for(f"{name}'s pod replaced", lambda name=name: (
                lambda p: p if p and p["metadata"]["uid"] != pods_before[name] else None)(
                    hub.pod(ns, f"{name}-notebook")), timeout=600,
                describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
            user = next(e for e in pod["spec"]["containers"][0]["env"]
                        if e["name"] == "JUPYTERHUB_USER")
            assert user["value"] == f"login-{name}"
        for name in failing:
            inst = wait_for(f"{name} RenderFailed", lambda name=name: (
                lambda i: i if condition(i, "Provisioned").get("reason") == "RenderFailed"
                else None)(hub.instance(ns, name)),
                describe=lambda name=name: hub.describe(ns, name))
            assert "hub.login" in condition(inst, "Provisioned")["message"]
            # The running server was not touched.
            assert hub.pod(ns, f"{name}-notebook")["metadata"]["uid"] == pods_before[name]
        wait_counts(hub, template, instances=COUNT, current=RENAMED_READY,
                    observedGeneration=renamed_gen)

        # Without -f: the live template against what each server runs now. The failing ones
        # still run the image generation; the live one cannot render for them.
        doc, text = fleet_preview(pulumi_env, cluster, ref, None, tmp_path)
        assert doc["counts"]["render-error"] == COUNT - RENAMED_READY, text
        assert doc["counts"]["unchanged"] == RENAMED_READY, text

        # Deleting instances moves the counts down.
        for name in names[-2:]:
            hub.delete_instance(ns, name)
        wait_counts(hub, template, instances=COUNT - 2, current=RENAMED_READY)
        _, metrics = op.http("/metrics")
        events = op.metric(metrics, "jupyternetes_template_status_events_total")
        writes = op.metric(metrics, "jupyternetes_template_status_writes_total")
        print(f"template status: {events:.0f} events marked it, {writes:.0f} writes")
        assert 0 < writes < events


def lint(cluster, namespace: str, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli(None, "lint", str(path), "--kubeconfig", str(cluster.kubeconfig), "-n",
               namespace, *extra)


def test_lint_reports_what_the_apiserver_rejects(cluster, namespace, tmp_path):
    # The seed template lives in `kadense`; the sample instance is in the test's namespace, so
    # the template allows it (spec.allowedNamespaces), as an admin sharing it would.
    shared = shared_template(yaml.safe_load((REPO / "examples" / "seed-template.yaml").read_text()),
                             (namespace,))
    shared_path = tmp_path / "seed.yaml"
    shared_path.write_text(yaml.safe_dump(shared))
    seed = lint(cluster, namespace, shared_path)
    assert seed.returncode == 0, seed.stdout + seed.stderr
    assert "ok (offline checks and server-side dry run" in seed.stdout

    bad = yaml.safe_load(shared_path.read_text())
    container = bad["spec"]["pods"][0]["spec"]["containers"][0]
    container["name"] = "Note_Book"
    container["resources"] = {"limits": {"cpu": "lots"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = lint(cluster, namespace, path, "-o", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    problems = json.loads(result.stdout)["problems"]
    print(json.dumps(problems, indent=1))
    # The offline check names the path; the apiserver refuses to decode the pod at all.
    assert {"path": "spec.pods[notebook].spec.containers[0].resources.limits.cpu",
            "message": "'lots' is not a Kubernetes quantity (like 500m, 2, 1Gi, 1G)",
            "source": "offline"} in problems, problems
    assert any(p["source"] == "apiserver" and "quantities must match" in p["message"]
               for p in problems), problems
    # Nothing was created by the dry run.
    assert hub_free_of_pods(cluster, namespace)

    name_only = yaml.safe_load(shared_path.read_text())
    name_only["spec"]["pods"][0]["spec"]["containers"][0]["name"] = "Note_Book"
    path.write_text(yaml.safe_dump(name_only))
    result = lint(cluster, namespace, path)
    print(result.stdout)
    assert result.returncode == 1
    assert "spec.pods[notebook].spec.containers[0].name" in result.stdout, result.stdout
    assert "Note_Book" in result.stdout and "RFC 1123" in result.stdout

    offline = lint(cluster, namespace, path, "--offline")
    assert offline.returncode == 0 and "offline checks only" in offline.stdout


def hub_free_of_pods(cluster, namespace: str) -> bool:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client()).list_namespaced_pod(namespace).items == []


def test_kubectl_explain_reads_the_descriptions(cluster, crds_installed):
    """What `kubectl explain jnt.spec.pods.spec` prints comes from the apiserver's OpenAPI v3
    document of the group: the descriptions reach it, placeholder grammar included."""
    api = cluster.api_client()
    url = f"{api.configuration.host}/openapi/v3/apis/kadense.io/v1"

    def published() -> dict | None:
        # The harness's kubeconfig authenticates with a client certificate, held by the pool.
        # A just-installed CRD's document is published after a few seconds.
        response = api.rest_client.pool_manager.request("GET", url)
        return json.loads(response.data) if response.status == 200 else None

    data = wait_for("the OpenAPI v3 document of kadense.io/v1", published, timeout=120)
    schemas = data["components"]["schemas"]
    template = next(v for k, v in schemas.items() if k.endswith("JupyterNotebookTemplate"))
    pod_spec = template["properties"]["spec"]["properties"]["pods"]["items"]["properties"]["spec"]
    assert "{name:int}" in pod_spec["description"] and "Example" in pod_spec["description"]
    instance = next(v for k, v in schemas.items() if k.endswith("JupyterNotebookInstance"))
    assert "8888" in instance["properties"]["status"]["properties"]["pods"][
        "additionalProperties"]["properties"]["portNumber"]["description"]


def test_kubectl_get_jnt_shows_the_counts(cluster, crds_installed, namespace):
    """`kubectl get jnt` asks the apiserver for a Table: the printer columns read the status
    subresource the operator writes."""
    from kubernetes import client

    api = cluster.api_client()
    custom = client.CustomObjectsApi(api)
    body = load_example("seed-template.yaml")
    body = {"apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
            "metadata": {"name": "columns", "namespace": namespace}, "spec": body["spec"]}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, TEMPLATE_PLURAL, body)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, TEMPLATE_PLURAL, "columns",
        {"status": {"instances": 7, "current": 5, "observedGeneration": 1, "pods": 7,
                    "pvcs": 7, "otherResources": 0}},
        _content_type="application/merge-patch+json")
    url = (f"{api.configuration.host}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/"
           f"{TEMPLATE_PLURAL}")
    response = api.rest_client.pool_manager.request(
        "GET", url, headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"})
    table = json.loads(response.data)
    names = [c["name"] for c in table["columnDefinitions"]]
    row = dict(zip(names, table["rows"][0]["cells"], strict=True))
    assert {k: row[k] for k in ("Name", "Instances", "Current", "Pods", "PVCs")} == {
        "Name": "columns", "Instances": 7, "Current": 5, "Pods": 7, "PVCs": 7}
