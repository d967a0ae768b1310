# The fixtures of test_operator.py are imported by name and then taken as test arguments.
# ruff: noqa: F811
"""End to end: secrets through the operator (spec.variablesFrom, secrets in pod metadata, masking).

The real operator (subprocess), the real apiserver and the real Pulumi engine, as in
test_operator.py (whose fixtures and helpers this module reuses). What is checked is what exists:
the live objects, the instance's status and Events, the operator's log and every file of the
Pulumi state folder.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from harness.examples import load_example, shared_template, strip_server_fields
from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
)
from tests.e2e.test_operator import (  # noqa: F401  (fixtures are used by name)
    HUB_NAMESPACE,
    Cluster,
    condition,
    env_of,
    hub,
    provisioned,
    start_operator,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.e2e

TOKEN = "5ecre7t0ken5ecre7t0ken5ecre7t0k1"  # unique enough to grep for
NEW_TOKEN = "n3wt0kenn3wt0kenn3wt0kenn3wt0ke2"


# ---- helpers ---------------------------------------------------------------------------------


def create_secret(hub: Cluster, ns: str, name: str, data: dict[str, str]) -> None:
    hub.core.create_namespaced_secret(ns, {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def replace_secret_data(hub: Cluster, ns: str, name: str, data: dict[str, str]) -> None:
    hub.core.patch_namespaced_secret(name, ns, {"data": {
        k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def seed_instance_from_secret(hub: Cluster, ns: str, name: str,
                              template: str = "default-template") -> dict:
    """The seed instance with its token taken from the Secret `<name>-hub` instead of
    spec.variables, as the spawner creates it."""
    body = strip_server_fields(load_example("seed-instance.yaml"))
    body["metadata"] = {"name": name, "namespace": ns}
    body["spec"]["template"] = {"name": template, "namespace": HUB_NAMESPACE}
    variables = body["spec"]["variables"]
    del variables["jupyterhub.api_token"]
    variables["jupyternetes.instance.name"] = name
    variables["jupyternetes.instance.namespace"] = ns
    body["spec"]["variablesFrom"] = [{"secretRef": {"name": f"{name}-hub"}}]
    return hub.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, body)


def ensure_template(hub: Cluster, body: dict) -> None:
    """Create or replace a template of the hub namespace, usable from every namespace."""
    body = shared_template(strip_server_fields(copy.deepcopy(body)))
    name = body["metadata"]["name"]
    try:
        hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        hub.edit_template(HUB_NAMESPACE, name, lambda current: current.update(spec=body["spec"]))


def files_containing(root: Path, *needles: str) -> list[str]:
    """Every file under `root` holding one of `needles` (plain or base64-encoded)."""
    forms = [n.encode() for n in needles] + [base64.b64encode(n.encode()) for n in needles]
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {f.decode()}" for f in forms if f in data]
    return found


def reason_is(hub: Cluster, ns: str, name: str, reason: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        inst = hub.instance(ns, name)
        return inst if condition(inst, "Provisioned").get("reason") == reason else None
    return check


# ---- spec.variablesFrom ----------------------------------------------------------------------


def test_variables_from_secret_reaches_completed_without_plain_token_and_follows_the_secret(
        hub, namespace, volumes, start_operator):
    ns, name = namespace, "sec-alice"
    volumes.provide(ns, name)
    op = start_operator([ns])
    create_secret(hub, ns, f"{name}-hub", {"jupyterhub.api_token": TOKEN,
                                           "JUPYTERHUB_API_TOKEN": TOKEN})
    seed_instance_from_secret(hub, ns, name)
    inst = wait_for("Completed", provisioned(hub, ns, name),
                    describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    pod = wait_for("the pod", lambda: hub.pod(ns, f"{name}-notebook"))
    # The template put the token into the pod's env (seed template): there, and only there.
    assert env_of(pod)["JUPYTERHUB_API_TOKEN"] == TOKEN
    assert TOKEN not in json.dumps(inst)
    assert inst["status"]["stack"]["variablesFromHash"].startswith("sha256:")
    assert files_containing(op.backend_dir, TOKEN) == []
    assert not [e for e in hub.events(ns, name) if TOKEN in (e[2] or "")]

    # A changed Secret value is the instance's own change: the pod is replaced with it (at the
    # instance's next reconcile: the resync, 20 s here).
    first_uid = pod["metadata"]["uid"]
    replace_secret_data(hub, ns, f"{name}-hub", {"jupyterhub.api_token": NEW_TOKEN,
                                                 "JUPYTERHUB_API_TOKEN": NEW_TOKEN})

    def replaced() -> dict | None:
        p = hub.pod(ns, f"{name}-notebook")
        return p if p and p["metadata"]["uid"] != first_uid else None
    pod = wait_for("the pod replaced with the new token", replaced, timeout=120,
                   describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    assert env_of(pod)["JUPYTERHUB_API_TOKEN"] == NEW_TOKEN
    inst = wait_for("Completed again", lambda: (
        (i := provisioned(hub, ns, name)()) and i["status"]["stack"]["variablesFromHash"]
        != inst["status"]["stack"]["variablesFromHash"] and i),
        describe=lambda: hub.describe(ns, name))
    assert condition(inst, "TemplateCurrent").get("status") != "False"
    assert files_containing(op.backend_dir, TOKEN, NEW_TOKEN) == []


def test_hub_example_token_only_in_the_secret_and_user_id_typed(hub, namespace, volumes,
                                                               start_operator):
    ns = namespace
    ensure_template(hub, load_example("hub-template.yaml"))
    instance = strip_server_fields(load_example("hub-instance.yaml"))
    secret = load_example("hub-secret.yaml")
    name = instance["metadata"]["name"]
    instance["metadata"]["namespace"] = secret["metadata"]["namespace"] = ns
    token = secret["stringData"]["JUPYTERHUB_API_TOKEN"]
    volumes.provide(ns, name)
    op = start_operator([ns])
    hub.core.create_namespaced_secret(ns, secret)
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, instance)
    wait_for("Completed", provisioned(hub, ns, name),
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    pod = wait_for("the pod", lambda: hub.pod(ns, f"{name}-notebook"))
    assert token not in json.dumps(pod)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{name}-hub", "key": "JUPYTERHUB_API_TOKEN"}
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert files_containing(op.backend_dir, token) == []


def test_missing_secret_is_reported_and_heals_quickly_once_created(hub, namespace, volumes,
                                                                   start_operator):
    ns, name = namespace, "sec-late"
    volumes.provide(ns, name)
    # The operator's default backoff (1 s base), not the fast one of the other tests.
    op = start_operator([ns], extra=("--backoff-base", "1", "--backoff-cap", "300"))
    seed_instance_from_secret(hub, ns, name)
    inst = wait_for("SecretMissing", reason_is(hub, ns, name, "SecretMissing"),
                    describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    message = condition(inst, "Provisioned")["message"]
    assert f"Secret {ns}/{name}-hub (spec.variablesFrom[0].secretRef.name) not found" in message
    assert "Create it in namespace" in message
    assert condition(inst, "Provisioned")["status"] == "False"
    assert inst["status"]["podsProvisioned"] == "Pending"
    hub.wait_event(ns, name, "Warning", "SecretMissing", f"{name}-hub")

    created = time.monotonic()
    create_secret(hub, ns, f"{name}-hub", {"jupyterhub.api_token": TOKEN})
    # Healed = the operator read the Secret and went on to provision (no longer SecretMissing).
    wait_for("the instance past SecretMissing", lambda: (
        (i := hub.instance(ns, name)) and condition(i, "Provisioned").get("reason")
        not in ("SecretMissing", None) and i), timeout=15,
        describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    healed = time.monotonic() - created
    wait_for("Completed", provisioned(hub, ns, name),
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    print(f"\nSecret created -> instance past SecretMissing in {healed:.1f}s")
    assert files_containing(op.backend_dir, TOKEN) == []


def test_variable_in_spec_and_in_secret_is_a_clear_error(hub, namespace, start_operator):
    ns, name = namespace, "sec-dup"
    start_operator([ns])
    create_secret(hub, ns, f"{name}-hub", {"Jupyterhub.User.Name": "from-secret"})
    seed_instance_from_secret(hub, ns, name)
    inst = wait_for("DuplicateVariable", reason_is(hub, ns, name, "DuplicateVariable"),
                    describe=lambda: hub.describe(ns, name))
    message = condition(inst, "Provisioned")["message"]
    assert "spec.variables" in message and "spec.variablesFrom[0]" in message
    assert "'Jupyterhub.User.Name'" in message and "from-secret" not in message


# ---- secrets in pod metadata -----------------------------------------------------------------


def metadata_template(name: str) -> dict:
    """The seed template with the token in a pod label, a pod annotation and a PVC annotation."""
    body = strip_server_fields(load_example("seed-template.yaml"))
    body["metadata"] = {"name": name, "namespace": HUB_NAMESPACE}
    pod = body["spec"]["pods"][0]
    pod["labels"]["example.com/token"] = "{jupyterhub.api_token}"
    pod["annotations"] = {"example.com/auth": "token {jupyterhub.api_token}"}
    body["spec"]["pvcs"][0]["annotations"] = {"example.com/auth": "{jupyterhub.api_token}"}
    return body


def test_secret_in_pod_labels_and_annotations_is_applied_and_the_label_is_flagged(
        hub, namespace, volumes, start_operator):
    ns, name = namespace, "sec-meta"
    ensure_template(hub, metadata_template("secret-metadata"))
    volumes.provide(ns, name)
    op = start_operator([ns])
    create_secret(hub, ns, f"{name}-hub", {"jupyterhub.api_token": TOKEN})
    seed_instance_from_secret(hub, ns, name, template="secret-metadata")
    inst = wait_for("Completed", provisioned(hub, ns, name),
                    describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    pod = wait_for("the pod", lambda: hub.pod(ns, f"{name}-notebook"))
    # Where the template put it, the value is: that is what the admin asked for.
    assert pod["metadata"]["labels"]["example.com/token"] == TOKEN
    assert pod["metadata"]["annotations"]["example.com/auth"] == f"token {TOKEN}"
    pvc = hub.pvcs(ns, name)[0]
    assert pvc["metadata"]["annotations"]["example.com/auth"] == TOKEN
    # ... and nowhere else: not in the state, the status or the Events.
    assert files_containing(op.backend_dir, TOKEN) == []
    assert TOKEN not in json.dumps(inst)
    assert not [e for e in hub.events(ns, name) if TOKEN in (e[2] or "")]
    # A label is shown to everyone who can list pods and indexed by selectors: flagged.
    exposed = condition(inst, "SecretExposed")
    assert exposed.get("status") == "True", hub.describe(ns, name)
    assert 'spec.pods[notebook].labels["example.com/token"]' in exposed["message"]
    assert "annotations" not in exposed["message"].split("labels")[0]
    hub.wait_event(ns, name, "Warning", "SecretExposed", "example.com/token")


def test_no_secret_in_labels_means_secret_exposed_false(hub, namespace, volumes,
                                                         start_operator):
    ns, name = namespace, "sec-clean"
    volumes.provide(ns, name)
    start_operator([ns])
    create_secret(hub, ns, f"{name}-hub", {"jupyterhub.api_token": TOKEN})
    seed_instance_from_secret(hub, ns, name)
    inst = wait_for("Completed", provisioned(hub, ns, name),
                    describe=lambda: hub.describe(ns, name))
    assert condition(inst, "SecretExposed").get("status") == "False"


# ---- no secret in logs -----------------------------------------------------------------------


def failing_template(name: str) -> dict:
    """The seed template plus a ConfigMap the apiserver rejects, with the token in its rejected
    key: the apiserver's error message quotes the key, so the engine's error holds the token."""
    body = strip_server_fields(load_example("seed-template.yaml"))
    body["metadata"] = {"name": name, "namespace": HUB_NAMESPACE}
    body["spec"]["pods"][0]["annotations"] = {"example.com/password": "{extra.password}"}
    body["spec"]["otherResources"] = [{
        "name": "settings", "apiVersion": "v1", "kind": "ConfigMap",
        "data": {"{jupyterhub.api_token}!not-a-key": "x"}}]
    return body


def test_no_secret_value_in_logs_events_status_or_state_at_debug_level(
        hub, namespace, volumes, start_operator):
    ns = namespace
    ensure_template(hub, failing_template("secret-fail"))
    # The same with a valid key: the good instance's ConfigMap holds its token as a key.
    passing = failing_template("secret-ok")
    passing["spec"]["otherResources"][0]["data"] = {"{jupyterhub.api_token}": "x"}
    ensure_template(hub, passing)
    good, bad = "sec-log-good", "sec-log-bad"
    tokens = {good: ("g00dt0keng00dt0keng00dt0keng00d1", "g00dpassw0rd-1"),
              bad: ("badt0kenbadt0kenbadt0kenbadt0ke9", "badpassw0rd-9")}
    secrets = [v for pair in tokens.values() for v in pair]
    for name in (good, bad):
        volumes.provide(ns, name)
    op = start_operator([ns], extra=("--log-level", "debug",
                                     "--other-resource-kind", "configmaps"))
    for name, (token, password) in tokens.items():
        create_secret(hub, ns, f"{name}-hub", {"jupyterhub.api_token": token,
                                               "extra.password": password})
    seed_instance_from_secret(hub, ns, good, template="secret-ok")
    seed_instance_from_secret(hub, ns, bad, template="secret-fail")

    good_inst = wait_for("the good one Completed", provisioned(hub, ns, good),
                         describe=lambda: hub.describe(ns, good) + "\n" + op.log_tail())
    bad_inst = wait_for("the bad one failed", lambda: (
        (i := hub.instance(ns, bad)) and condition(i, "Provisioned").get("reason") == "UpFailed"
        and (i.get("status") or {}).get("otherResourcesProvisioned") == "Failed" and i),
        describe=lambda: hub.describe(ns, bad) + "\n" + op.log_tail())
    message = condition(bad_inst, "Provisioned")["message"]
    # The apiserver did quote the key, and it was masked: this test can fail.
    assert "[secret]!not-a-key" in message, message
    # Where the template put them, the values are (the live objects).
    assert env_of(hub.pod(ns, f"{good}-notebook"))["JUPYTERHUB_API_TOKEN"] == tokens[good][0]
    assert hub.core.read_namespaced_config_map(f"{good}-settings", ns).data == {
        tokens[good][0]: "x"}
    statuses = json.dumps([good_inst, bad_inst, hub.instance(ns, bad)])
    for name in (good, bad):
        hub.delete_instance(ns, name)
    for name in (good, bad):
        wait_for(f"{name} deleted", lambda name=name: hub.instance(ns, name) is None,
                 timeout=120, describe=lambda name=name: hub.describe(ns, name) + op.log_tail())

    log = op.log_text()
    # The most verbose level really ran: the workers' own stderr lines are in the log.
    worker_line = r" DEBUG jupyternetes\.engine\.runtime\.pool: worker \d+: "
    assert re.search(worker_line, log), op.log_tail()
    assert "[secret]" in log
    events = json.dumps(json.loads(hub.core.list_namespaced_event(
        ns, _preload_content=False).data)["items"])
    for value in secrets:
        b64 = base64.b64encode(value.encode()).decode()
        for where, text in (("operator log", log), ("Events", events), ("status", statuses)):
            assert value not in text and b64 not in text, f"{value} in the {where}"
    assert files_containing(op.backend_dir, *secrets) == []
    assert files_containing(op.state_dir, *secrets) == []


def test_stack_worker_masks_its_traceback_and_answer(pulumi_env, tmp_path):
    """The worker subprocess itself (not the operator) masks what it writes: an unexpected
    exception whose message holds a secret is printed as a masked traceback."""
    import subprocess
    import sys

    from jupyternetes.engine import StackSettings

    settings = StackSettings(backend_url=pulumi_env.backend_url,
                             passphrase=pulumi_env.passphrase, kubeconfig=None, context=None,
                             pulumi_home=str(pulumi_env.pulumi_home))
    request = {"op": f"op-{TOKEN}", "stack": "ns.worker-mask",
               "instance": {"namespace": "ns", "name": "worker-mask"},
               "settings": settings.to_request(), "objects": [], "secret_values": [TOKEN],
               "refresh": False}
    env = {**pulumi_env.env, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "JUPYTERNETES_WORKER_LOG": "DEBUG"}
    # One request, then end of input: the worker answers it and exits (protocol.py).
    done = subprocess.run([sys.executable, "-m", "jupyternetes.engine.runtime.worker"],
                          input=json.dumps({"id": 1, "request": request}) + "\n", env=env,
                          capture_output=True, text=True, timeout=120)
    [line] = done.stdout.splitlines()
    message = json.loads(line)
    assert message["id"] == 1
    answer = message["answer"]
    assert answer["result"] == "failed"
    assert "Traceback" in done.stderr and "ValueError: unknown operation 'op-[secret]'" in (
        done.stderr), done.stderr
    assert TOKEN not in done.stderr and TOKEN not in done.stdout
    assert "op-[secret]" in answer["message"]


def test_preview_from_the_cluster_reads_variables_from_and_masks_them(
        cluster, pulumi_env, namespace, crds_installed):
    """`jupyternetes preview NS/NAME` renders with the instance's Secrets, as the operator does,
    and shows their values as [secret]; a missing Secret is a clear error."""
    import subprocess
    import sys

    from jupyternetes.engine.state import backendurl
    from tests.e2e.test_stacks import seed_docs

    template, instance = seed_docs(namespace, name="pvsec")
    del instance["spec"]["variables"]["jupyterhub.api_token"]
    instance["spec"]["variablesFrom"] = [{"secretRef": {"name": "pvsec-hub"}}]
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        template.update(apiVersion=API_VERSION, kind=TEMPLATE_KIND)
        instance.update(apiVersion=API_VERSION, kind=INSTANCE_KIND)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TEMPLATE_PLURAL,
                                                template)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, INSTANCE_PLURAL,
                                                instance)
        core = client.CoreV1Api(api)

        def preview() -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "jupyternetes.app.cli", "preview", f"{namespace}/pvsec",
                 "--kubeconfig", str(cluster.kubeconfig), "--state-dir",
                 str(backendurl.file_backend_path(pulumi_env.backend_url))],
                env=pulumi_env.env, cwd=Path(__file__).resolve().parents[2],
                capture_output=True, text=True, timeout=300)

        missing = preview()
        assert missing.returncode == 2
        assert (f"Secret {namespace}/pvsec-hub (spec.variablesFrom[0].secretRef.name) not found"
                in missing.stderr), missing.stderr
        core.create_namespaced_secret(namespace, {
            "metadata": {"name": "pvsec-hub"},
            "data": {"jupyterhub.api_token": base64.b64encode(TOKEN.encode()).decode()}})
        shown = preview()
    assert shown.returncode == 0, shown.stderr
    assert "pvsec-notebook" in shown.stdout and "create" in shown.stdout
    assert TOKEN not in shown.stdout + shown.stderr


# ---- the log mask is bounded by the live instances' secrets (issue 19 item 5) -----------------


MASK_GAUGE = "jupyternetes_log_mask_values"


def mask_size(op) -> float:
    snapshot = op.metrics()
    assert any(name == MASK_GAUGE for name, _, _ in snapshot.samples), "no log mask gauge"
    return snapshot.value(MASK_GAUGE)


def test_log_mask_drops_a_deleted_instances_values_and_a_rotated_token(
        hub, namespace, start_operator):
    """Three instances, each with its own token in a Secret (variablesFrom): the operator's
    log mask holds their values (each with its base64 form) while they exist, the new token
    and not the old one once a Secret changes, and nothing of them once they are deleted.
    It used to keep every value it had ever seen for the process's life, and each log record
    cost one replace per value: both grew with every user ever served."""
    ns = namespace
    template = f"mask-{ns}"[:63]
    ensure_template(hub, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "JupyterNotebookTemplate",
        "metadata": {"name": template, "namespace": HUB_NAMESPACE},
        "spec": {"otherResources": [{"name": "settings", "apiVersion": "v1",
                                     "kind": "ConfigMap", "data": {"user": "{user}"}}]}})
    names = ["mask-a", "mask-b", "mask-c"]
    try:
        op = start_operator([ns], extra=("--other-resource-kind", "configmaps"))
        baseline = mask_size(op)
        for n, name in enumerate(names):
            create_secret(hub, ns, f"{name}-hub", {"token": f"{TOKEN[:-1]}{n}"})
            hub.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "JupyterNotebookInstance",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"template": {"name": template, "namespace": HUB_NAMESPACE},
                         "variables": {"user": name},
                         "variablesFrom": [{"secretRef": {"name": f"{name}-hub"}}]}})
        for name in names:
            wait_for(f"{name} provisioned", lambda name=name: condition(
                hub.instance(ns, name), "Provisioned").get("status") == "True", timeout=240,
                describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
        wait_for("three tokens masked", lambda: mask_size(op) == baseline + 6, timeout=60,
                 describe=lambda: f"mask size {mask_size(op)}, baseline {baseline}")

        # A rotated token: the new value replaces the old one (applied at the next resync).
        before = hub.instance(ns, names[0])["status"]["stack"]["variablesFromHash"]
        replace_secret_data(hub, ns, f"{names[0]}-hub", {"token": NEW_TOKEN})
        wait_for("the new token applied", lambda: hub.instance(ns, names[0])["status"][
            "stack"].get("variablesFromHash") != before, timeout=120,
            describe=lambda: hub.describe(ns, names[0]) + op.log_tail())
        assert mask_size(op) == baseline + 6, "the old token is still in the mask"

        for name in names:
            hub.delete_instance(ns, name)
        wait_for("instances gone", lambda: not any(hub.instance(ns, n) for n in names),
                 timeout=120, describe=op.log_tail)
        wait_for("their values out of the mask", lambda: mask_size(op) == baseline,
                 timeout=60, describe=lambda: f"mask size {mask_size(op)}, baseline {baseline}")
        assert TOKEN[:-1] not in op.log_text() and NEW_TOKEN not in op.log_text()
    finally:
        hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   template)
