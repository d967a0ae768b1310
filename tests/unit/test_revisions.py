"""Template revisions: the pure rules (policy/revisions.py), the store (controller/revisions.py)
over an in-memory apiserver, the reconciler rendering a pinned / staged instance's revision, and
the CLI's pure parts (admin/rollouts.py)."""

from __future__ import annotations

import copy

import pytest

from jupyternetes.admin.rollouts import RolloutError, history_rows, undo_patch, undo_target
from jupyternetes.controller import rollouts
from jupyternetes.controller.revisions import RevisionStore
from jupyternetes.policy import revisions
from tests.unit.test_reconcile_unit import (  # noqa: F401 - the env fixture, used by name
    KEY,
    NS,
    POD_NAME,
    edit_template,
    env,
    running,
    running_pod,
)

TEMPLATE_KEY = "kadense/default-template"


def template(image: str = "a", generation: int = 1, uid: str = "u1", **spec) -> dict:
    return {"metadata": {"name": "t", "namespace": "ns", "uid": uid, "generation": generation,
                         "managedFields": [
                             {"manager": "kubectl-edit", "operation": "Update",
                              "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {}}},
                             {"manager": "jupyternetes-operator", "operation": "Update",
                              "subresource": "status", "time": "2026-01-03T00:00:00Z",
                              "fieldsV1": {"f:status": {}}}]},
            "spec": {"pods": [{"name": "nb", "spec": {"containers": [{"image": image}]}}],
                     **spec}}


class RevisionApi:
    """ControllerRevisions as the apiserver keeps them (create is 409 on a taken name)."""

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}
        self.lists = 0

    def list_controller_revisions(self, namespace, selector):
        self.lists += 1
        return [copy.deepcopy(r) for r in self.items.values()
                if r["metadata"]["namespace"] == namespace]

    def create_controller_revision(self, body):
        name = body["metadata"]["name"]
        if name in self.items:
            return None
        self.items[name] = copy.deepcopy(body)
        return body

    def delete_controller_revision(self, namespace, name):
        self.items.pop(name, None)


def test_only_what_renders_makes_a_revision():
    base = template()
    assert revisions.spec_hash(base) == revisions.spec_hash(
        template(allowedNamespaces=["x"], rollout={"strategy": "staged"}))
    assert revisions.spec_hash(base) != revisions.spec_hash(template("b"))


def test_revision_object_is_owned_numbered_and_says_who_edited():
    body = revisions.revision_object(template(), 3)
    assert body["kind"] == "ControllerRevision" and body["revision"] == 3
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u1"
    annotations = body["metadata"]["annotations"]
    assert annotations[revisions.EDITED_BY] == "kubectl-edit"  # not the status writer
    assert annotations[revisions.EDITED_AT] == "2026-01-02T00:00:00Z"
    assert body["data"] == {"spec": {"pods": template()["spec"]["pods"]}}


def test_store_records_each_edit_once_and_finds_old_content_again():
    api = RevisionApi()
    store = RevisionStore(api)
    assert store.current(template("a")) == 1
    assert store.current(template("a", generation=2)) == 1  # same content: same revision
    lists = api.lists
    assert store.current(template("a")) == 1 and api.lists == lists  # from memory
    assert store.current(template("b", generation=3)) == 2
    assert store.current(template("a", generation=4)) == 1  # an undo finds revision 1
    assert sorted(r["revision"] for r in api.items.values()) == [1, 2]
    # A template made again under the same name starts its own history.
    assert store.current(template("a", uid="u2")) == 1
    at1 = revisions.template_at(template("b"), store.revision(template("b"), 1))
    assert at1["spec"]["pods"][0]["spec"]["containers"][0]["image"] == "a"


def test_store_prunes_beyond_the_limit_but_never_what_is_in_use():
    api = RevisionApi()
    store = RevisionStore(api, in_use=lambda key: {1})
    for index, image in enumerate("abcde"):
        store.current(template(image, generation=index + 1,
                               rollout={"revisionHistoryLimit": 2}))
    assert sorted(r["revision"] for r in api.items.values()) == [1, 5]


def test_store_without_rbac_renders_on_and_warns_once(caplog):
    class Denied(RevisionApi):
        def list_controller_revisions(self, namespace, selector):
            raise PermissionError("forbidden")

    store = RevisionStore(Denied())
    assert store.current(template()) is None and store.current(template()) is None
    assert len([r for r in caplog.records if "controllerrevisions" in r.getMessage()]) == 1


@pytest.mark.parametrize("obj,pin", [
    ({"spec": {"templateRevision": 3}}, 3),
    ({"metadata": {"annotations": {revisions.PIN_ANNOTATION: "4"}},
      "spec": {"templateRevision": 3}}, 4),
    ({"spec": {"templateRevision": 0}}, None), ({"spec": {}}, None)])
def test_pins(obj, pin):
    assert revisions.pinned(obj) == pin


def test_wanted_under_staged():
    tpl = {"status": {"rollout": {"stableRevision": 2}}}
    up = {"stack": {"lastUpdate": {"result": "succeeded"}}, "templateRevision": 1}
    assert revisions.wanted({"status": up}, tpl, "staged") == (1, "running")
    moved = {"metadata": {"annotations": {revisions.ROLLOUT_REVISION: "3"}}, "status": up}
    assert revisions.wanted(moved, tpl, "staged") == (3, "moved")
    assert revisions.wanted({}, tpl, "staged") == (2, "stable")
    assert revisions.wanted({}, {}, "staged") == (None, "current")
    assert revisions.wanted(moved, tpl, "next-start") == (None, "current")


# ---- the reconciler ---------------------------------------------------------------------------


@pytest.fixture
def renv(request):
    """test_reconcile_unit's `env`, with a revision store over an in-memory apiserver."""
    kube, engine, reconciler, pods = request.getfixturevalue("env")
    api = RevisionApi()
    reconciler.revisions = RevisionStore(api)
    return kube, engine, reconciler, pods, api


def image_of(engine) -> str:
    rendered = engine.ups()[-1][3]
    pod = next(o for o in rendered.objects() if o.kind == "Pod").manifest
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}[
        "JUPYTERHUB_BASE_URL"]


def test_status_says_which_revision_runs_and_a_pin_renders_its_revision(renv):
    kube, engine, reconciler, pods, _api = renv
    running((kube, engine, reconciler, pods))
    assert kube.status["templateRevision"] == 1
    edit_template(kube)  # next-start: revision 2 is recorded, the server keeps revision 1
    assert reconciler.reconcile(KEY).action == "template-pending"
    assert "generation 5, revision 2" in kube.condition("TemplateCurrent")["message"]
    assert reconciler.revisions.current(kube.templates[TEMPLATE_KEY]) == 2
    assert kube.status["templateRevision"] == 1
    # The admin pins revision 1 (rollback): nothing to do, it runs it already.
    kube.instances[KEY]["metadata"].setdefault("annotations", {})[
        revisions.PIN_ANNOTATION] = "1"
    assert reconciler.reconcile(KEY).action == "unchanged"
    # Pinned to 2: applied at once even under next-start (the admin asked for it).
    kube.instances[KEY]["metadata"]["annotations"][revisions.PIN_ANNOTATION] = "2"
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert image_of(engine) == "/custom/" and kube.status["templateRevision"] == 2
    # Back to 1: the stored revision renders, whatever the template says now.
    kube.instances[KEY]["metadata"]["annotations"][revisions.PIN_ANNOTATION] = "1"
    pods[f"{NS}/{POD_NAME}"] = running_pod("p2")
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert image_of(engine) != "/custom/" and kube.status["templateRevision"] == 1
    assert kube.condition("TemplateCurrent")["reason"] == "Pinned"


def test_a_pin_to_a_missing_revision_is_reported_and_the_server_left_alone(renv):
    kube, engine, reconciler, pods, _api = renv
    running((kube, engine, reconciler, pods))
    kube.instances[KEY]["spec"]["templateRevision"] = 9
    kube.instances[KEY]["metadata"]["generation"] = 2
    result = reconciler.reconcile(KEY)
    assert result.action == "revision-missing" and len(engine.ups()) == 1
    cond = kube.condition("TemplateCurrent")
    assert cond["reason"] == "RevisionNotFound" and "revision 9" in cond["message"]
    assert "jupyternetes history" in cond["message"]


def test_staged_instances_keep_their_revision_until_the_rollout_moves_them(renv):
    kube, engine, reconciler, pods, _api = renv
    kube.templates[TEMPLATE_KEY]["spec"]["rollout"] = {"strategy": "staged"}
    running((kube, engine, reconciler, pods))
    edit_template(kube)
    assert reconciler.reconcile(KEY).action == "unchanged"  # it renders its revision 1
    assert len(engine.ups()) == 1
    assert kube.condition("TemplateCurrent")["reason"] == "RolloutPending"
    kube.instances[KEY]["metadata"].setdefault("annotations", {})[
        revisions.ROLLOUT_REVISION] = "2"
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert image_of(engine) == "/custom/" and kube.status["templateRevision"] == 2
    assert kube.condition("TemplateCurrent")["status"] == "True"


# ---- the rollout driver's reading of an instance, and the CLI ---------------------------------


def test_member_of_reads_failures_after_the_move_only():
    obj = {"metadata": {"namespace": "ns", "name": "a", "annotations": {
        revisions.ROLLOUT_REVISION: "2", revisions.ROLLOUT_MOVED_AT: "1767225600"}},
        "status": {"templateRevision": 1, "conditions": [
            {"type": "Ready", "status": "False", "message": "pod pending"},
            {"type": "Provisioned", "status": "False", "reason": "UpFailed",
             "message": "image refused", "lastTransitionTime": "2026-01-01T00:00:10Z"}]}}
    member = rollouts.member_of(obj)
    assert member.assigned == 2 and member.failed and member.message == "image refused"
    obj["status"]["conditions"][1]["lastTransitionTime"] = "2025-12-31T00:00:00Z"
    assert not rollouts.member_of(obj).failed  # from before the move (undo)


def test_halted_status_names_the_failing_users():
    from jupyternetes.policy import staged
    decision = staged.Decision(target=2, phase=staged.HALTED, failed=(("ns/a", "boom"),),
                               stable=1, message="halted: 1 instance(s) failed")
    status = rollouts.rollout_status(decision, None, "2026-01-01T00:00:00Z")
    cond = status["conditions"][0]
    assert cond["type"] == "RolloutHalted" and cond["status"] == "True"
    assert "ns/a (boom)" in cond["message"] and "rollout undo" in cond["message"]
    assert status["rollout"]["failed"] == [{"instance": "ns/a", "message": "boom"}]


def test_history_and_undo():
    api = RevisionApi()
    store = RevisionStore(api)
    for index, image in enumerate("abc"):
        store.current(template(image, generation=index + 1))
    tpl = template("c", generation=3)
    tpl["status"] = {"revisions": {"2": 5, "3": 1}}
    rows = history_rows(tpl, store.history(tpl))
    assert [(r["revision"], r["current"], r["instances"], r["editedBy"]) for r in rows] == [
        (1, False, 0, "kubectl-edit"), (2, False, 5, "kubectl-edit"),
        (3, True, 1, "kubectl-edit")]
    kept = store.history(tpl)
    assert undo_target(tpl, kept, None)["revision"] == 2
    assert undo_target(tpl, kept, 1)["revision"] == 1
    tpl["status"]["rollout"] = {"stableRevision": 1}
    assert undo_target(tpl, kept, None)["revision"] == 1
    with pytest.raises(RolloutError, match="revision 7 is not kept"):
        undo_target(tpl, kept, 7)
    patch = undo_patch(tpl, undo_target(tpl, kept, 1))
    assert patch["spec"]["pods"][0]["spec"]["containers"][0]["image"] == "a"
    assert patch["spec"]["pvcs"] is None
    assert patch["metadata"]["annotations"][rollouts.APPROVED] == "1"


def test_pending_preview_counts_what_the_pending_revision_does_and_pinned_stay():
    api = RevisionApi()
    store = RevisionStore(api)
    for index, image in enumerate("abc"):
        store.current(template(image, generation=index + 1))
    tpl = {"apiVersion": "kadense.io/v1", "kind": "JupyterNotebookTemplate",
           **template("c", generation=3)}

    def inst(name: str, runs: int, pin: int | None = None) -> dict:
        obj = {"apiVersion": "kadense.io/v1", "kind": "JupyterNotebookInstance",
               "metadata": {"name": name, "namespace": "ns", "annotations": {}},
               "spec": {"template": {"name": "t"}},
               "status": {"templateRevision": runs, "stack": {
                   "desiredHash": "x", "lastUpdate": {"result": "succeeded"}}}}
        if pin:
            obj["metadata"]["annotations"][revisions.PIN_ANNOTATION] = str(pin)
        return obj

    fleet = [inst("a", 2), inst("b", 2), inst("c", 3), inst("p", 2, pin=2)]
    preview = rollouts.pending_preview(tpl, store, 3, fleet, lambda ns, name: None, None)
    assert preview == {"revision": 3, "instances": 4, "renderErrors": [],
                       "counts": {"unchanged": 2, "pod-replaced": 2}}
