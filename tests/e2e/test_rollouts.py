"""Template rollouts an admin controls (issue 21), end to end on the harness.

One namespace, one operator and one `staged` template for the whole module, 30 instances on
kwok pods (Ready as soon as they are scheduled). The tests run in order over the same fleet:

1. a bad edit (pods that never become Ready, as with an image that cannot be pulled) under
   maxUnavailable 20% and maxFailures 3 halts by itself having failed at most 3 users, the
   others keep running revision 1, `jupyternetes rollout undo` brings the failed ones back;
2. canary by label: only the labelled users move, until `jupyternetes rollout resume`;
3. approval: nothing moves until `jupyternetes rollout approve`, and the fleet preview in the
   template's status said what then happened (pods replaced); one user pinned with
   `jupyternetes rollback` stays behind (the preview said unchanged), then is rolled back to
   revision 1 while the rest run revision 4; `jupyternetes history` lists the four revisions.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from harness import pulumi_env as harness_pulumi
from harness.operator_process import OperatorProcess
from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
)
from tests.e2e.test_operator import FAST_BACKOFF, Cluster, condition, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COUNT = 30
TEMPLATE = "staged"
CANARY = ("u00", "u01")
PINNED = "u05"
ROLL_TIMEOUT = 420


@dataclass
class Fleet:
    c: Cluster
    ns: str
    operator: OperatorProcess
    kubeconfig: Path

    @property
    def names(self) -> list[str]:
        return [f"u{i:02d}" for i in range(COUNT)]

    def template(self) -> dict:
        return self.c.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns,
                                                          TEMPLATE_PLURAL, TEMPLATE)

    def edit(self, change) -> dict:
        """`kubectl edit jnt`: change(spec) in place, replace."""
        return self.c.edit_template(self.ns, TEMPLATE, lambda tpl: change(tpl["spec"]))

    def instances(self) -> dict[str, dict]:
        items = self.c.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns,
                                                            INSTANCE_PLURAL)["items"]
        return {i["metadata"]["name"]: i for i in items}

    def revisions(self) -> dict[str, int | None]:
        return {n: (i.get("status") or {}).get("templateRevision")
                for n, i in self.instances().items()}

    def ready_at(self, revision: int, names: list[str]) -> bool:
        items = self.instances()
        return all((items[n].get("status") or {}).get("templateRevision") == revision
                   and condition(items[n], "Ready").get("status") == "True" for n in names)

    def rollout(self) -> dict:
        return (self.template().get("status") or {}).get("rollout") or {}

    def wait_phase(self, phase: str, revision: int, timeout: float = ROLL_TIMEOUT) -> dict:
        return wait_for(f"rollout {phase} at revision {revision}", lambda: (
            r if (r := self.rollout()).get("phase") == phase and r.get("revision") == revision
            else None), timeout=timeout, describe=self.describe)

    def pod_uids(self) -> dict[str, str]:
        resp = self.c.core.list_namespaced_pod(self.ns, _preload_content=False)
        return {p["metadata"]["name"]: p["metadata"]["uid"]
                for p in json.loads(resp.data)["items"]}

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "jupyternetes.app.cli", *args,
                               "--kubeconfig", str(self.kubeconfig)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def describe(self) -> str:
        tpl = self.template()
        return (f"template status: {json.dumps(tpl.get('status'), indent=1)}\n"
                f"revisions: {self.revisions()}\n{self.operator.log_tail()}")


def template_body(ns: str) -> dict:
    return {"apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
            "metadata": {"name": TEMPLATE, "namespace": ns},
            "spec": {"rollout": {"strategy": "staged", "maxUnavailable": "20%",
                                 "maxFailures": 3, "readyDeadlineSeconds": 20},
                     "pods": [{"name": "notebook", "spec": {"containers": [{
                         "name": "notebook", "image": "quay.io/jupyter/base-notebook",
                         "env": [{"name": "VERSION", "value": "1"},
                                 {"name": "JUPYTERHUB_USER", "value": "{jupyterhub.user.name}"}],
                         "ports": [{"containerPort": 8888}]}]}}]}}


def instance_body(ns: str, name: str) -> dict:
    labels = {"canary": "yes"} if name in CANARY else {}
    return {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"template": {"name": TEMPLATE},
                     "variables": {"jupyterhub.user.name": name}}}


def set_version(value: str):
    def change(spec: dict) -> None:
        for item in spec["pods"][0]["spec"]["containers"][0]["env"]:
            if item["name"] == "VERSION":
                item["value"] = value
    return change


@pytest.fixture(scope="module")
def fleet(cluster, crds_installed, tmp_path_factory) -> Iterator[Fleet]:
    api = cluster.api_client()
    c = Cluster(api)
    ns = f"e2e-rollout-{secrets.token_hex(3)}"
    c.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=ns, labels={"jupyternetes.e2e/test": "true"})))
    wait_for("default ServiceAccount", lambda: c.core.list_namespaced_service_account(
        ns).items, timeout=60)
    root = tmp_path_factory.mktemp("rollouts")
    backend = harness_pulumi.backend_url(root / "pulumi-state")
    home = harness_pulumi.paths.pulumi_home()
    operator = OperatorProcess(
        cluster.kubeconfig, harness_pulumi.pulumi_env(backend, secrets.token_urlsafe(16),
                                                      pulumi_home=home),
        root / "operator-state", home, [ns], root / "operator.log", backend_url=backend,
        workers=4, extra=(*FAST_BACKOFF, "--template-status-seconds", "1")).start()
    f = Fleet(c, ns, operator, Path(cluster.kubeconfig))
    c.custom.create_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL,
                                             template_body(ns))
    for name in f.names:
        c.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL,
                                                 instance_body(ns, name))
    try:
        yield f
    finally:
        # The operator's Pulumi state is this module's temp folder: no destroy is needed (30
        # of them took 80 s). Stop it, release the instances, and let the namespace go.
        operator.terminate()
        for name in f.instances():
            c.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, INSTANCE_PLURAL, name, {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json")
        c.core.delete_namespace(ns)
        api.close()


def test_bad_edit_halts_after_max_failures_and_undo_brings_them_back(fleet):
    f = fleet
    started = time.monotonic()
    wait_for("30 servers Ready at revision 1", lambda: f.ready_at(1, f.names),
             timeout=ROLL_TIMEOUT, describe=f.describe)
    f.wait_phase("Complete", 1)
    print(f"30 servers up at revision 1 in {time.monotonic() - started:.0f}s")
    # Revision 2 schedules nowhere: pods stay Pending, as with an image that never pulls.
    started = time.monotonic()
    f.edit(lambda spec: spec["pods"][0]["spec"].update(
        nodeSelector={"jupyternetes.e2e/no-such-node": "true"}))
    halted = f.wait_phase("Halted", 2)
    print(f"halted after {time.monotonic() - started:.0f}s: {halted['failed']}")
    failed = [item["instance"].split("/")[1] for item in halted["failed"]]
    assert 1 <= len(failed) <= 3, halted
    cond = next(c for c in f.template()["status"]["conditions"] if c["type"] == "RolloutHalted")
    assert cond["status"] == "True" and all(name in cond["message"] for name in failed)
    # Nobody else moved, and the others still run revision 1, Ready.
    others = [n for n in f.names if n not in failed]
    moved = [n for n, i in f.instances().items()
             if (i["metadata"].get("annotations") or {}).get(
                 "jupyternetes.kadense.io/rollout-revision") == "2"]
    assert sorted(moved) == sorted(failed)
    assert f.ready_at(1, others)
    # Undo: the template renders revision 1 again; the failed users get it back.
    started = time.monotonic()
    out = f.cli("rollout", "undo", f"{f.ns}/{TEMPLATE}")
    assert "rolled back to revision 1" in out
    wait_for("the failed users Ready at revision 1 again", lambda: f.ready_at(1, failed),
             timeout=ROLL_TIMEOUT, describe=f.describe)
    f.wait_phase("Complete", 1)
    print(f"undo restored {len(failed)} users in {time.monotonic() - started:.0f}s")
    cond = next(c for c in f.template()["status"]["conditions"] if c["type"] == "RolloutHalted")
    assert cond["status"] == "False"
    assert f.template()["status"]["currentRevision"] == 1


def test_canary_by_label_moves_only_the_canary_until_resume(fleet):
    f = fleet
    started = time.monotonic()

    def edit(spec: dict) -> None:
        spec["rollout"]["canary"] = {"selector": {"matchLabels": {"canary": "yes"}}}
        set_version("3")(spec)
    f.edit(edit)
    wait_for("revision 3 recorded", lambda: f.template()["status"].get("currentRevision") == 3,
             timeout=60, describe=f.describe)
    f.wait_phase("CanaryPaused", 3)
    revisions = f.revisions()
    assert {n for n, r in revisions.items() if r == 3} == set(CANARY), revisions
    assert f.ready_at(3, list(CANARY))
    print(f"canary at revision 3 in {time.monotonic() - started:.0f}s")
    started = time.monotonic()
    f.cli("rollout", "resume", f"{f.ns}/{TEMPLATE}")
    f.wait_phase("Complete", 3)
    assert f.ready_at(3, f.names)
    print(f"resume: 28 more at revision 3 in {time.monotonic() - started:.0f}s")
    assert f.template()["status"]["revisions"] == {"3": COUNT}


def test_approval_gate_pin_and_rollback(fleet):
    f = fleet
    ref = f"{f.ns}/{TEMPLATE}"
    out = f.cli("rollback", f"{f.ns}/{PINNED}", "--to-revision", "3")
    assert "pinned to revision 3" in out

    def edit(spec: dict) -> None:
        spec["rollout"].pop("canary", None)
        spec["rollout"]["requireApproval"] = True
        set_version("4")(spec)
    pods_before = f.pod_uids()
    f.edit(edit)
    waiting = f.wait_phase("AwaitingApproval", 3, timeout=120)
    assert waiting["pendingRevision"] == 4
    preview = wait_for("the fleet preview of revision 4", lambda: f.rollout().get("preview"),
                       timeout=120, describe=f.describe)
    print(f"preview of revision 4: {preview}")
    assert preview["revision"] == 4 and preview["instances"] == COUNT
    assert preview["counts"] == {"pod-replaced": COUNT - 1, "unchanged": 1}, preview
    status_text = f.cli("rollout", "status", ref)
    assert "AwaitingApproval" in status_text and "pod-replaced 29" in status_text
    assert set(f.revisions().values()) == {3}  # nothing moved
    assert f.pod_uids() == pods_before
    started = time.monotonic()
    f.cli("rollout", "approve", ref, "--revision", "4")
    f.wait_phase("Complete", 4)
    others = [n for n in f.names if n != PINNED]
    assert f.ready_at(4, others)
    print(f"approved: 29 at revision 4 in {time.monotonic() - started:.0f}s")
    pods_after = f.pod_uids()
    replaced = {name for name, uid in pods_before.items() if pods_after.get(name) != uid}
    assert len(replaced) == preview["counts"]["pod-replaced"]  # what the preview said
    pinned = f.instances()[PINNED]
    assert pinned["status"]["templateRevision"] == 3
    assert condition(pinned, "TemplateCurrent")["reason"] == "Pinned"
    # One user's new environment broke: back to revision 1 for them alone.
    f.cli("rollback", f"{f.ns}/{PINNED}", "--to-revision", "1")
    wait_for(f"{PINNED} Ready at revision 1", lambda: f.ready_at(1, [PINNED]),
             timeout=ROLL_TIMEOUT, describe=f.describe)
    assert f.ready_at(4, others)
    history = f.cli("history", ref, "-o", "json")
    rows = json.loads(history)
    assert [r["revision"] for r in rows] == [1, 2, 3, 4]
    assert [r["current"] for r in rows] == [False, False, False, True]
    assert all(r["editedBy"] for r in rows)
    counts = wait_for("per-revision counts", lambda: (
        s if (s := copy.deepcopy(f.template()["status"]))["revisions"] == {
            "1": 1, "4": COUNT - 1} else None), timeout=60, describe=f.describe)
    assert counts["currentRevision"] == 4
