"""prewarm: which request warms the pod hook's client, and that the warm-up reads that pod."""

from __future__ import annotations

from jupyternetes import prewarm, program

POD = {"group": "pods", "entry": "notebook", "manifest": {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a-notebook", "namespace": "ns"}}}
PVC = {"group": "pvcs", "entry": "workspace", "manifest": {
    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "a-workspace"}}}


def test_first_pod_of_the_request():
    assert prewarm.first_pod([PVC, POD]) == ("ns", "a-notebook")
    assert prewarm.first_pod([PVC]) is None


def test_only_an_up_with_a_pod_warms_up(monkeypatch):
    calls = []
    monkeypatch.setattr(program, "pod_reader",
                        lambda kubeconfig, context, ns, name: lambda: calls.append(
                            (kubeconfig, context, ns, name)))
    settings = {"kubeconfig": "/k", "context": None}
    assert prewarm.start({"op": "destroy", "objects": [POD], "settings": settings}) is None
    assert prewarm.start({"op": "up", "objects": [PVC], "settings": settings}) is None
    thread = prewarm.start({"op": "up", "objects": [PVC, POD], "settings": settings})
    assert thread is not None
    thread.join(5)
    assert calls == [("/k", None, "ns", "a-notebook")]


def test_a_failing_warm_up_is_silent(monkeypatch):
    def boom(*_args):
        def read():
            raise OSError("apiserver down")
        return read

    monkeypatch.setattr(program, "pod_reader", boom)
    thread = prewarm.start({"op": "up", "objects": [POD], "settings": {}})
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()
