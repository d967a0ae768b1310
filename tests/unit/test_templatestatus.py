"""controller/templates.py: pure counts and the debounced writer."""

from __future__ import annotations

from jupyternetes.controller.controller import Operator
from jupyternetes.controller.templates import (
    TemplateStatusWriter,
    merge_patch,
    template_status,
)


def inst(generation: int | None, pods: int = 1, up: bool = True) -> dict:
    stack = {"desiredHash": "sha256:x", "templateGeneration": generation,
             "lastUpdate": {"result": "succeeded" if up else "failed"}}
    return {"status": {
        "stack": stack,
        "pods": {f"p{i}": {"resourceName": f"pod{i}", "state": "Completed"}
                 for i in range(pods)},
        "pvcs": {"w": {"resourceName": "claim", "state": "Completed"}},
        "otherResources": {"s": {"resourceName": "svc", "state": "Failed"}}}}


def test_counts_instances_current_generation_and_objects() -> None:
    status = template_status([inst(4), inst(3), inst(4, pods=2), inst(4, up=False), {}], 4)
    assert status == {"instances": 5, "current": 2, "pods": 5, "pvcs": 4,
                      "otherResources": 0, "observedGeneration": 4, "revisions": {}}


def test_counts_instances_per_revision() -> None:
    one, two, none = inst(4), inst(4), inst(4)
    one["status"]["templateRevision"] = 1
    two["status"]["templateRevision"] = 2
    status = template_status([one, two, dict(two), none], 4, revision=2)
    assert status["revisions"] == {"1": 1, "2": 2} and status["currentRevision"] == 2


def test_a_revision_nobody_runs_leaves_the_status() -> None:
    written = {"instances": 2, "revisions": {"1": 1, "2": 1}}
    assert merge_patch(written, {"instances": 2, "revisions": {"2": 2}}) == {
        "instances": 2, "revisions": {"1": None, "2": 2}}


def test_no_instances() -> None:
    assert template_status([], 1) == {"instances": 0, "current": 0, "pods": 0, "pvcs": 0,
                                      "otherResources": 0, "observedGeneration": 1,
                                      "revisions": {}}


def test_many_marks_make_one_write_and_unchanged_counts_none() -> None:
    writes: list[tuple[str, dict]] = []
    state = {"status": None}

    def compute(key: str) -> tuple[dict, dict | None]:
        return {"instances": 5000}, state["status"]

    def write(key: str, status: dict) -> None:
        writes.append((key, status))
        state["status"] = status

    writer = TemplateStatusWriter(compute, write, interval=0.01)
    for _ in range(5000):
        writer.mark("kadense/t")
    assert writer.flush() == 1
    assert writes == [("kadense/t", {"instances": 5000})]
    writer.mark("kadense/t")
    assert writer.flush() == 0  # the template already says so
    assert writer.flush() == 0  # nothing dirty


def test_write_errors_are_logged_once_and_do_not_stop_the_writer(caplog) -> None:
    def compute(key: str) -> tuple[dict, dict | None]:
        return {"instances": 1}, None

    def write(key: str, status: dict) -> None:
        raise PermissionError("forbidden")

    writer = TemplateStatusWriter(compute, write)
    writer.mark("a/t")
    writer.mark("a/t")
    assert writer.flush() == 0
    writer.mark("a/t")
    assert writer.flush() == 0
    assert sum("jupyternotebooktemplates/status" in r.message for r in caplog.records) == 1


def test_operator_marks_old_and_new_template_of_an_instance() -> None:
    class NoKube:
        pass

    operator = Operator(NoKube(), engine=None, template_status_seconds=60)  # type: ignore[arg-type]
    marked: list[str | None] = []
    operator.templates.status.mark = marked.append  # type: ignore[method-assign]
    obj = {"metadata": {"name": "i", "namespace": "u", "generation": 1},
           "spec": {"template": {"name": "t1", "namespace": "hub"}}}
    operator.on_instance("ADDED", obj)
    moved = {**obj, "spec": {"template": {"name": "t2", "namespace": "hub"}}}
    operator.on_instance("MODIFIED", moved)
    operator.on_instance("DELETED", moved)
    assert marked == ["hub/t1", "hub/t1", "hub/t2", "hub/t2"]
