"""The list+watch loop against a scripted event source (the loop's logic, not the apiserver)."""

from __future__ import annotations

import threading
import time

import pytest

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.kube.errors import KubeError, WatchExpired
from jupyternetes.kube.informer import ListWatcher


def obj(name: str, rv: str, ns: str = "ns") -> dict:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv}}


class Stream:
    def __init__(self, events: list) -> None:
        self.events = events
        self.closed = False

    def __iter__(self):
        for event in self.events:
            if isinstance(event, BaseException):
                raise event
            yield event

    def close(self) -> None:
        self.closed = True


class ScriptedSource:
    """list() answers from `lists`; watch() from `watches` (each a list of events or an
    exception); records the resourceVersion every call resumed from."""

    def __init__(self, lists: list, watches: list, on_exhausted=None) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.watch_calls: list[str] = []
        self.list_calls = 0
        self.streams: list[Stream] = []
        self.on_exhausted = on_exhausted

    def list(self):
        self.list_calls += 1
        item = self.lists.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def watch(self, resource_version: str, timeout_seconds: int):
        if not self.watches:
            self.on_exhausted()
            return Stream([])
        self.watch_calls.append(resource_version)
        item = self.watches.pop(0)
        if isinstance(item, BaseException):
            raise item
        stream = Stream(item)
        self.streams.append(stream)
        return stream


def run_until_exhausted(source: ScriptedSource, **kwargs):
    events: list[tuple[str, str]] = []
    watcher: ListWatcher

    def handler(event_type: str, o: dict) -> None:
        events.append((event_type, o["metadata"]["name"]))

    def stop() -> None:
        watcher._stop.set()

    source.on_exhausted = stop
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> bool:
        sleeps.append(seconds)
        return False

    watcher = ListWatcher("test", source, handler, resync_seconds=0, sleep=fake_sleep, **kwargs)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    return watcher, events, sleeps


def test_lists_then_watches_from_list_rv_and_resumes_from_last_seen_rv():
    source = ScriptedSource(
        lists=[([obj("a", "10")], "11")],
        watches=[
            [("ADDED", obj("b", "12")), ("MODIFIED", obj("a", "13"))],
            # Server-side timeout ended the first watch; the next resumes from 13.
            [("BOOKMARK", {"metadata": {"resourceVersion": "20"}})],
            [("DELETED", obj("b", "21"))],
            [],
        ])
    watcher, events, _ = run_until_exhausted(source)
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert source.watch_calls == ["11", "13", "20", "21"]
    assert source.list_calls == 1
    assert watcher.cached_keys() == ["ns/a"]
    assert watcher.get("ns/a")["metadata"]["resourceVersion"] == "13"
    assert all(s.closed for s in source.streams)


def test_410_gone_relists_and_diffs_against_the_cache():
    source = ScriptedSource(
        lists=[
            ([obj("a", "1"), obj("b", "2"), obj("c", "3")], "5"),
            # After the relist: a unchanged, b modified, c deleted, d new.
            ([obj("a", "1"), obj("b", "7"), obj("d", "8")], "9"),
        ],
        watches=[
            [("MODIFIED", obj("a", "1")), WatchExpired("too old resource version")],
            [],
        ])
    watcher, events, _ = run_until_exhausted(source)
    assert source.list_calls == 2
    assert source.watch_calls[-1] == "9"
    # The MODIFIED a from the watch carried rv 1 (same as cached); the relist then reports b
    # changed, d new and c gone.
    assert events[3:] == [("MODIFIED", "a"), ("MODIFIED", "b"), ("ADDED", "d"),
                          ("DELETED", "c")]
    assert sorted(watcher.cached_keys()) == ["ns/a", "ns/b", "ns/d"]


def test_410_on_watch_request_itself_relists():
    source = ScriptedSource(lists=[([], "1"), ([obj("x", "4")], "5")],
                            watches=[WatchExpired("gone"), []])
    _, events, _ = run_until_exhausted(source)
    assert source.list_calls == 2
    assert events == [("ADDED", "x")]
    assert source.watch_calls == ["1", "5"]


def test_other_errors_retry_with_growing_backoff_without_relisting():
    source = ScriptedSource(
        lists=[([], "1")],
        watches=[KubeError(500, "boom"), KubeError(500, "boom"),
                 [("ADDED", obj("x", "3"))], KubeError(None, "stream broke"), []])
    _, events, sleeps = run_until_exhausted(source, retry_seconds=1.0)
    assert source.list_calls == 1
    assert source.watch_calls == ["1", "1", "1", "3", "3"]
    assert sleeps == [1.0, 2.0, 1.0]  # reset after a successful watch
    assert events == [("ADDED", "x")]


def test_failed_initial_list_is_retried():
    source = ScriptedSource(lists=[KubeError(503, "unavailable"), ([obj("a", "1")], "2")],
                            watches=[[]])
    _, events, sleeps = run_until_exhausted(source)
    assert source.list_calls == 2
    assert sleeps == [1.0]
    assert events == [("ADDED", "a")]


def test_handler_errors_do_not_stop_the_watch():
    source = ScriptedSource(lists=[([], "1")],
                            watches=[[("ADDED", obj("bad", "2")), ("ADDED", obj("ok", "3"))]])
    seen = []

    def handler(event_type, o):
        if o["metadata"]["name"] == "bad":
            raise RuntimeError("handler bug")
        seen.append(o["metadata"]["name"])

    watcher = ListWatcher("t", source, handler, resync_seconds=0)
    source.on_exhausted = watcher._stop.set
    watcher.run()
    assert seen == ["ok"]
    assert sorted(watcher.cached_keys()) == ["ns/bad", "ns/ok"]


def test_resync_redelivers_every_cached_object_periodically():
    resynced = []
    gate = threading.Event()

    class Idle:
        def list(self):
            return [obj("a", "1"), obj("b", "2")], "3"

        def watch(self, rv, timeout):
            class Blocking:
                def __iter__(self_inner):
                    gate.wait(5)
                    return iter(())

                def close(self_inner):
                    gate.set()
            return Blocking()

    def handler(event_type, o):
        if event_type == "RESYNC":
            resynced.append(o["metadata"]["name"])

    watcher = ListWatcher("t", Idle(), handler, resync_seconds=0.05)
    watcher.start()
    assert watcher.wait_synced(2)
    deadline = time.monotonic() + 3
    while len(resynced) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    watcher.stop()
    assert resynced.count("a") >= 2 and resynced.count("b") >= 2
    assert not watcher.alive()


def test_stop_closes_the_open_stream():
    opened = threading.Event()
    closed = threading.Event()

    class Source:
        def list(self):
            return [], "1"

        def watch(self, rv, timeout):
            class Blocking:
                def __iter__(self_inner):
                    opened.set()
                    closed.wait(5)
                    return iter(())

                def close(self_inner):
                    closed.set()
            return Blocking()

    watcher = ListWatcher("t", Source(), lambda *_: None, resync_seconds=0)
    watcher.start()
    assert opened.wait(2)
    started = time.monotonic()
    watcher.stop()
    assert closed.is_set()
    assert time.monotonic() - started < 2
    assert not watcher.alive()


# ---- kubelistwatch.WatchStream: the apiserver's watch wire format -> events ------------------


class FakeResponse:
    """What urllib3 gives for a watch: chunks that do not align with lines."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def stream(self, amt=None, decode_content=False):
        yield from self.chunks

    def close(self):
        self.closed = True

    def release_conn(self):
        pass


def test_watch_stream_parses_split_lines_and_closes():
    import json as _json

    from jupyternetes.kube.listwatch import WatchStream

    lines = [_json.dumps({"type": "ADDED", "object": obj("a", "5")}),
             _json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})]
    wire = ("\n".join(lines) + "\n").encode()
    resp = FakeResponse([wire[:7], wire[7:40], wire[40:]])
    events = list(WatchStream(resp, "watch test"))
    assert [e[0] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[0][1]["metadata"]["name"] == "a"
    assert resp.closed


def test_watch_stream_error_events():
    import json as _json

    import pytest

    from jupyternetes.kube.listwatch import WatchStream

    gone = _json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "code": 410, "reason": "Expired",
        "message": "too old resource version: 5 (80)"}}) + "\n"
    with pytest.raises(WatchExpired, match="too old"):
        list(WatchStream(FakeResponse([gone.encode()]), "w"))
    forbidden = _json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "code": 403, "message": "pods is forbidden"}}) + "\n"
    with pytest.raises(KubeError, match="pods is forbidden") as info:
        list(WatchStream(FakeResponse([forbidden.encode()]), "w"))
    assert info.value.status == 403


def test_api_message_prefers_the_status_message():
    from kubernetes.client.exceptions import ApiException

    from jupyternetes.kube.errors import api_message

    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = ('{"kind":"Status","message":"Pod \\"x\\" is invalid: spec.containers[0].name: '
                'Invalid value: \\"A_B\\""}')
    assert api_message(exc) == 'Pod "x" is invalid: spec.containers[0].name: Invalid value: "A_B"'
    bare = ApiException(status=503, reason="Service Unavailable")
    assert api_message(bare) == "HTTP 503 Service Unavailable"


# ---- template watch: which instances a template event re-queues ------------------------------


def instance(name: str, ns: str, template: str, template_ns: str | None = "hub",
             generation: int = 1) -> dict:
    ref = {"name": template} | ({"namespace": template_ns} if template_ns else {})
    return {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
            "metadata": {"namespace": ns, "name": name, "generation": generation,
                         "resourceVersion": "1"},
            "spec": {"template": ref, "variables": {}}}


def template(name: str, ns: str = "hub", generation: int = 1, rv: str = "1") -> dict:
    return {"metadata": {"namespace": ns, "name": name, "generation": generation,
                         "resourceVersion": rv}, "spec": {}}


def operator(**kwargs):
    from jupyternetes.controller.controller import Operator

    class NoEngine:
        def up(self, *args, **kw):
            raise AssertionError("no engine call expected")

        def destroy(self, *args, **kw):
            raise AssertionError("no engine call expected")

    return Operator(kube=None, engine=NoEngine(), workers=1, **kwargs)  # type: ignore[arg-type]


def drain(queue) -> list[str]:
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return sorted(keys)


def test_template_index_follows_instance_events():
    from jupyternetes.controller.templates import TemplateIndex, template_key_of

    assert template_key_of(instance("a", "default", "t", template_ns=None)) == "default/t"
    assert template_key_of(instance("a", "default", "t")) == "hub/t"
    assert template_key_of({"metadata": {"name": "x"}, "spec": {}}) is None
    index = TemplateIndex()
    index.update("default/a", "hub/t")
    index.update("default/b", "hub/t")
    index.update("other/c", "hub/u")
    assert index.instances_of("hub/t") == ["default/a", "default/b"]
    index.update("default/a", "hub/u")  # spec.template edited
    assert index.instances_of("hub/t") == ["default/b"]
    assert index.instances_of("hub/u") == ["default/a", "other/c"]
    index.update("default/b", None)  # instance deleted
    assert index.instances_of("hub/t") == []


def test_template_edit_requeues_exactly_the_instances_that_use_it():
    op = operator()
    a, b = instance("a", "default", "t"), instance("b", "team", "t")
    c = instance("c", "default", "u")
    for obj in (a, b, c):
        op.on_instance("ADDED", obj)
    op.on_template("ADDED", template("t"))
    op.on_template("ADDED", template("u"))
    drain(op.queue)
    op.on_template("MODIFIED", template("t", generation=2, rv="2"))
    assert drain(op.queue) == ["default/a", "team/b"]
    # Metadata-only edits (labels, annotations) keep the generation: no render changes.
    op.on_template("MODIFIED", template("t", generation=2, rv="3"))
    assert drain(op.queue) == []
    op.on_template("DELETED", template("u", generation=1, rv="4"))
    assert drain(op.queue) == ["default/c"]
    op.on_template("ADDED", template("u", generation=1, rv="5"))  # recreated
    assert drain(op.queue) == ["default/c"]
    # An instance that now points elsewhere, or is gone, is not re-queued by its old template.
    moved = instance("a", "default", "u", generation=2)
    op.on_instance("MODIFIED", moved)
    op.on_instance("DELETED", b)
    drain(op.queue)
    op.on_template("MODIFIED", template("t", generation=3, rv="6"))
    assert drain(op.queue) == []
    op.on_template("MODIFIED", template("u", generation=2, rv="7"))
    assert drain(op.queue) == ["default/a", "default/c"]


def test_templates_are_watched_cluster_wide_even_when_instances_are_scoped():
    op = operator(namespaces=["default"])
    assert [w.name for w in op.instance_watchers] == ["instances@default"]
    assert [w.name for w in op.templates.watchers] == ["templates@*"]
    op = operator(namespaces=["default"], template_namespaces=["kadense", "kadense", "x"])
    assert [w.name for w in op.templates.watchers] == ["templates@kadense", "templates@x"]
    assert set(op.all_watchers()) >= set(op.templates.watchers)


def test_a_template_watch_event_reaches_the_queue_through_the_list_watch_loop():
    """The template watcher is the generic loop: a MODIFIED on the wire re-queues users."""
    op = operator()
    op.on_instance("ADDED", instance("a", "default", "t"))
    drain(op.queue)
    source = ScriptedSource(lists=[([template("t")], "1")],
                            watches=[[("MODIFIED", template("t", generation=2, rv="2"))]])
    watcher = ListWatcher("templates@*", source, op.on_template, resync_seconds=0,
                          sleep=lambda s: False)
    source.on_exhausted = watcher._stop.set
    thread = threading.Thread(target=watcher.run)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert source.watch_calls[0] == "1"
    assert drain(op.queue) == ["default/a"]


def test_operator_cli_flags_for_templates():
    import argparse

    from jupyternetes.app.operator import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["operator"])
    assert args.template_rollout == "next-start" and args.template_namespace == []
    args = parser.parse_args(["operator", "--template-rollout", "immediate",
                              "--template-namespace", "kadense"])
    assert args.template_rollout == "immediate" and args.template_namespace == ["kadense"]


def test_a_transform_trims_every_listed_and_watched_object_before_cache_and_handler():
    def slim(o: dict) -> dict:
        return {"metadata": {k: v for k, v in o["metadata"].items() if k != "managedFields"}}

    def fat(name: str, rv: str) -> dict:
        o = obj(name, rv)
        o["metadata"]["managedFields"] = [{"manager": "x"}]
        return o

    delivered: list[dict] = []
    source = ScriptedSource(lists=[([fat("a", "1")], "1")],
                            watches=[[("ADDED", fat("b", "2")), ("MODIFIED", fat("a", "3"))]])
    watcher = ListWatcher("t", source, lambda _t, o: delivered.append(o), resync_seconds=0,
                          sleep=lambda _s: False, transform=slim)
    source.on_exhausted = watcher._stop.set
    watcher.run()
    assert [o["metadata"]["name"] for o in delivered] == ["a", "b", "a"]
    assert all("managedFields" not in o["metadata"] for o in delivered + watcher.items())
    assert watcher.get("ns/a") == {"metadata": {"namespace": "ns", "name": "a",
                                                "resourceVersion": "3"}}
    assert watcher.resource_version == "3"


def test_keep_filters_listed_and_watched_objects_and_forgets_a_refused_one():
    def wanted(o: dict) -> bool:
        return not o["metadata"]["name"].startswith("other")

    delivered: list[tuple[str, str]] = []
    flip = obj("a", "4")
    flip["metadata"]["name"] = "other-a"  # not the same key: a new, refused object
    source = ScriptedSource(
        lists=[([obj("a", "1"), obj("other-x", "1")], "1")],
        watches=[[("ADDED", obj("other-y", "2")), ("ADDED", obj("b", "3")),
                  ("MODIFIED", flip)]])
    watcher = ListWatcher("t", source, lambda t, o: delivered.append((t, o["metadata"]["name"])),
                          resync_seconds=0, sleep=lambda _s: False, keep=wanted)
    source.on_exhausted = watcher._stop.set
    watcher.run()
    assert sorted(watcher.cached_keys()) == ["ns/a", "ns/b"]
    assert delivered == [("ADDED", "a"), ("ADDED", "b")]
    assert watcher.resource_version == "4"  # refused events still advance the watch


def labelled(name: str, rv: str, owner: str | None) -> dict:
    o = obj(name, rv)
    if owner is not None:
        o["metadata"]["labels"] = {"owner": owner}
    return o


def test_the_index_follows_adds_relabels_deletes_relists_and_discards():
    def owner(o: dict) -> str | None:
        return (o["metadata"].get("labels") or {}).get("owner")

    source = ScriptedSource(
        lists=[([labelled("p1", "1", "alice"), labelled("p2", "1", "bob"),
                 labelled("p3", "1", None)], "1"),
               # After a 410: p1 gone, p2 relabelled to alice, p4 new for bob.
               ([labelled("p2", "6", "alice"), labelled("p4", "6", "bob")], "6")],
        watches=[[("ADDED", labelled("p5", "2", "alice")),
                  ("MODIFIED", labelled("p1", "3", "carol")),  # relabelled: moves index
                  ("DELETED", labelled("p5", "4", "alice"))]])
    seen: dict[str, list] = {}
    watcher = ListWatcher("t", source, lambda t, o: None, resync_seconds=0, index=owner)

    def names(value: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in watcher.indexed(value))

    watcher.relist()
    seen["listed"] = [names("alice"), names("bob"), names("carol")]
    watcher.watch_once()
    seen["watched"] = [names("alice"), names("bob"), names("carol")]
    watcher.relist()  # as after a 410
    seen["relisted"] = [names("alice"), names("bob"), names("carol")]
    assert seen == {"listed": [["p1"], ["p2"], []],
                    "watched": [[], ["p2"], ["p1"]],
                    "relisted": [["p2"], ["p4"], []]}
    assert watcher.forget("bob") == 1
    assert names("bob") == []
    assert watcher.cached_keys() == ["ns/p2"]
    assert watcher._indexed == {"alice": {"ns/p2"}}  # nothing left under an empty value
    assert watcher.forget("nobody") == 0


def test_a_limit_per_index_value_drops_the_oldest_on_watch_and_relist():
    """At most `limit` objects per index value: the oldest by `age` go, others stay."""
    def stamped(name: str, rv: str, owner: str, at: str) -> dict:
        o = labelled(name, rv, owner)
        o["at"] = at
        return o

    source = ScriptedSource(
        lists=[([stamped("a1", "1", "a", "01"), stamped("a2", "1", "a", "03"),
                 stamped("a3", "1", "a", "02"), stamped("b1", "1", "b", "00")], "1")],
        watches=[[("ADDED", stamped("a4", "2", "a", "04")),
                  ("ADDED", stamped("a0", "3", "a", "00")),  # older than all: not kept
                  ("MODIFIED", stamped("a2", "4", "a", "05"))]])
    delivered: list[str] = []
    watcher = ListWatcher("t", source, lambda t, o: delivered.append(o["metadata"]["name"]),
                          resync_seconds=0, index=lambda o: o["metadata"]["labels"]["owner"],
                          limit=2, age=lambda o: o["at"])

    def names(value: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in watcher.indexed(value))

    watcher.relist()
    assert names("a") == ["a2", "a3"] and names("b") == ["b1"]
    watcher.watch_once()
    assert names("a") == ["a2", "a4"] and names("b") == ["b1"]
    assert sorted(watcher.cached_keys()) == ["ns/a2", "ns/a4", "ns/b1"]
    assert delivered[-3:] == ["a4", "a0", "a2"]  # the handler still hears of each
    with pytest.raises(ValueError, match="a limit needs an index"):
        ListWatcher("t", source, lambda t, o: None, limit=2)


def test_a_stop_while_the_watch_is_starting_joins_no_unstarted_thread(monkeypatch):
    """SIGTERM right as the leader starts its watches: stop() runs on another thread between
    the watch thread's creation and its start. It must not join a thread that has not started
    (RuntimeError, and the operator died with SIGABRT instead of exiting 0)."""
    blocked = threading.Event()

    class Blocking:
        def list(self):
            blocked.wait(5)
            return [], "1"

        def watch(self, resource_version, timeout_seconds):
            blocked.wait(5)
            return Stream([])

    watcher = ListWatcher("t", Blocking(), lambda t, o: None, resync_seconds=30)
    real_start = threading.Thread.start
    errors: list[BaseException] = []

    def start_after_a_stop(thread):
        if thread.name.startswith(("watch-t", "resync-t")):
            stopper = threading.Thread(target=lambda: _stop_catching(watcher, errors))
            real_start(stopper)
            stopper.join(5)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_after_a_stop)
    watcher.start()
    monkeypatch.undo()
    blocked.set()
    watcher.stop(timeout=5)
    assert errors == []
    assert not watcher.alive()


def _stop_catching(watcher: ListWatcher, errors: list) -> None:
    try:
        watcher.stop(timeout=0.1)
    except BaseException as exc:  # the test reports what stop() raised
        errors.append(exc)
