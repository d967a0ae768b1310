"""prewarm: which request warms the create guard's client, and that the warm-up reads the
first object the guard will read."""

from __future__ import annotations

from jupyternetes.engine.runtime import prewarm, program

POD = {"group": "pods", "entry": "notebook", "manifest": {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a-notebook", "namespace": "ns"}}}
PVC = {"group": "pvcs", "entry": "workspace", "manifest": {
    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "a-workspace"}}}


def test_first_object_of_the_request():
    assert prewarm.first_object([PVC, POD]) == ("v1", "PersistentVolumeClaim", "default",
                                                "a-workspace")
    assert prewarm.first_object([POD]) == ("v1", "Pod", "ns", "a-notebook")
    assert prewarm.first_object([{"group": "pods", "manifest": {"kind": "Pod"}}]) is None


def test_only_an_up_with_objects_warms_up(monkeypatch):
    calls = []
    monkeypatch.setattr(program, "object_reader",
                        lambda kubeconfig, context, *target: lambda: calls.append(
                            (kubeconfig, context, *target)))
    settings = {"kubeconfig": "/k", "context": None}
    assert prewarm.start({"op": "destroy", "objects": [POD], "settings": settings}) is None
    assert prewarm.start({"op": "up", "objects": [], "settings": settings}) is None
    thread = prewarm.start({"op": "up", "objects": [PVC, POD], "settings": settings})
    assert thread is not None
    thread.join(5)
    assert calls == [("/k", None, "v1", "PersistentVolumeClaim", "default", "a-workspace")]


def test_a_failing_warm_up_is_silent(monkeypatch):
    def boom(*_args):
        def read():
            raise OSError("apiserver down")
        return read

    monkeypatch.setattr(program, "object_reader", boom)
    thread = prewarm.start({"op": "up", "objects": [POD], "settings": {}})
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()
