"""Kube request patterns without an apiserver: paged lists (listwatch.py) and
read-modify-write on 409 (writes.py)."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from jupyternetes.kube import listwatch, writes
from jupyternetes.kube.errors import KubeError
from jupyternetes.kube.listwatch import list_pages


class Response:
    def __init__(self, doc: dict) -> None:
        self.data = json.dumps(doc).encode()


def pages(*docs: dict):
    """A client list method answering `docs` in turn; records the kwargs of every call."""
    calls: list[dict] = []
    answers = list(docs)

    def call(**kwargs):
        calls.append(kwargs)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Response(answer)
    return call, calls


def page(names: list[str], rv: str = "42", token: str | None = None) -> dict:
    meta = {"resourceVersion": rv, **({"continue": token} if token else {})}
    return {"metadata": meta, "items": [{"metadata": {"name": n}, "big": "x" * 10}
                                        for n in names]}


def test_a_list_is_read_page_by_page_and_each_page_is_transformed():
    call, calls = pages(page(["a", "b"], token="t1"), page(["c"], token="t2"), page(["d"]))
    seen: list[str] = []

    def slim(obj: dict) -> dict:
        seen.append(obj["metadata"]["name"])
        return {"metadata": obj["metadata"]}

    items, rv = list_pages(call, "list things", slim)
    assert [i["metadata"]["name"] for i in items] == ["a", "b", "c", "d"]
    assert all("big" not in i for i in items) and seen == ["a", "b", "c", "d"]
    assert rv == "42"
    assert [c["_continue"] for c in calls] == [None, "t1", "t2"]
    assert all(c["limit"] == listwatch.LIST_PAGE and c["_preload_content"] is False
               for c in calls)


def test_an_expired_continue_token_lists_again_from_the_start():
    call, calls = pages(page(["a"], token="t1"), ApiException(status=410, reason="Gone"),
                        page(["a", "b"], rv="50"))
    items, rv = list_pages(call, "list things")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"] and rv == "50"
    assert [c["_continue"] for c in calls] == [None, "t1", None]


def test_other_list_errors_carry_the_apiserver_message():
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"message": "pods is forbidden: no list"})
    call, _ = pages(error)
    with pytest.raises(KubeError) as err:
        list_pages(call, "list pods in ns")
    assert err.value.status == 403 and "list pods in ns: pods is forbidden" in str(err.value)


class Store:
    """One object with a resourceVersion; `write` fails with 409 while `conflicts` > 0 (someone
    else wrote in between) and checks the precondition like the apiserver."""

    def __init__(self, conflicts: int = 0) -> None:
        self.obj: dict | None = {"metadata": {"resourceVersion": "1", "finalizers": ["other"]}}
        self.conflicts = conflicts
        self.writes: list[dict] = []

    def read(self) -> dict | None:
        return json.loads(json.dumps(self.obj)) if self.obj is not None else None

    def write(self, body: dict) -> dict:
        self.writes.append(body)
        assert self.obj is not None
        if self.conflicts:
            self.conflicts -= 1
            self.obj["metadata"]["resourceVersion"] = str(int(
                self.obj["metadata"]["resourceVersion"]) + 1)
            self.obj["metadata"]["finalizers"].append(f"late-{self.conflicts}")
            raise ApiException(status=409, reason="Conflict")
        if body["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.obj["metadata"]["finalizers"] = body["metadata"]["finalizers"]
        return self.read()  # type: ignore[return-value]


def add_ours(current: dict) -> dict | None:
    present = current["metadata"]["finalizers"]
    return None if "ours" in present else {"metadata": {"finalizers": [*present, "ours"]}}


def test_read_modify_write_rereads_after_a_conflict_and_keeps_the_other_writers_edit(
        monkeypatch):
    monkeypatch.setattr(writes.time, "sleep", lambda _s: None)
    store = Store(conflicts=2)
    conflicts: list[int] = []
    result = writes.read_modify_write("add finalizer", store.read, add_ours, store.write,
                                          pause=0.01, on_conflict=conflicts.append)
    assert result is not None
    assert result["metadata"]["finalizers"] == ["other", "late-1", "late-0", "ours"]
    assert conflicts == [0, 1]
    assert [w["metadata"]["resourceVersion"] for w in store.writes] == ["1", "2", "3"]


def test_read_modify_write_writes_nothing_when_nothing_changes_and_none_when_gone():
    store = Store()
    store.obj["metadata"]["finalizers"].append("ours")  # type: ignore[index]
    assert writes.read_modify_write("x", store.read, add_ours, store.write, pause=0) is not None
    assert store.writes == []
    store.obj = None
    assert writes.read_modify_write("x", store.read, add_ours, store.write, pause=0) is None


def test_read_modify_write_gives_up_after_conflicts_on_every_retry(monkeypatch):
    monkeypatch.setattr(writes.time, "sleep", lambda _s: None)
    store = Store(conflicts=writes.CONFLICT_RETRIES)
    with pytest.raises(KubeError) as err:
        writes.read_modify_write("add finalizer", store.read, add_ours, store.write, pause=0)
    assert err.value.status == 409 and "add finalizer" in str(err.value)
    assert len(store.writes) == writes.CONFLICT_RETRIES
