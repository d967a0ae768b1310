"""orphans.py: which stacks are orphaned, and that the collector lists stacks before instances."""

from __future__ import annotations

from dataclasses import dataclass

from jupyternetes.controller.orphans import OrphanCollector, orphaned_stacks, stack_namespace
from jupyternetes.crd.naming import stack_name


def test_a_stack_no_instance_names_is_orphaned():
    stacks = [stack_name("a", "x"), stack_name("a", "y"), stack_name("b", "z")]
    assert orphaned_stacks(stacks, [("a", "x"), ("b", "z")]) == ["a.y"]
    assert orphaned_stacks(stacks, [("a", "x"), ("a", "y"), ("b", "z")]) == []


def test_only_stacks_of_served_namespaces_are_considered():
    stacks = ["a.x", "b.y", "ab.z"]
    assert orphaned_stacks(stacks, [], namespaces=["a"]) == ["a.x"]
    assert orphaned_stacks(stacks, [], namespaces=()) == ["a.x", "ab.z", "b.y"]


def test_shortened_stack_names_match_their_instance_and_namespace():
    long_name = "n" * 120
    stack = stack_name("team", long_name)
    assert ".." in stack and stack_namespace(stack) == "team"
    assert orphaned_stacks([stack], [("team", long_name)], ["team"]) == []
    assert orphaned_stacks([stack], [], ["team"]) == [stack]


@dataclass
class Done:
    result: str
    message: str = ""


class Engine:
    def __init__(self, stacks: list[str], log: list[str]) -> None:
        self.stacks, self.log, self.destroyed = stacks, log, []

    def list_stacks(self) -> list[str]:
        self.log.append("stacks")
        return list(self.stacks)

    def destroy(self, namespace, name, stack=None):
        self.destroyed.append((namespace, name, stack))
        return Done("succeeded")


def test_collector_lists_stacks_before_instances_and_destroys_only_orphans():
    log: list[str] = []
    engine = Engine(["ns.gone", "ns.kept", "other.x"], log)

    def instances():
        log.append("instances")
        # Created between the two lists: its stack may exist already; it must be kept.
        return [("ns", "kept")]

    seen = []
    collector = OrphanCollector(engine, instances, namespaces=["ns"],
                                observe=lambda op, result, s: seen.append((op, result)))
    assert collector.collect() == ["ns.gone"]
    assert log == ["stacks", "instances"]
    assert engine.destroyed == [("ns", "", "ns.gone")]
    assert seen == [("destroy", "succeeded")]


def test_collector_does_nothing_when_listing_fails():
    class Broken(Engine):
        def list_stacks(self):
            raise RuntimeError("backend unreachable")

    engine = Broken([], [])
    assert OrphanCollector(engine, lambda: []).collect() == []
    assert engine.destroyed == []


def test_collector_rechecks_each_stacks_namespace_right_before_destroying_it():
    """An instance created while earlier orphans were destroyed keeps its stack; a namespace
    whose instances cannot be listed again keeps its stacks until the next round."""
    created: list[tuple[str, str]] = []

    class Slow(Engine):
        def destroy(self, namespace, name, stack=None):
            if stack == "ns.a":  # while this one goes, a user starts server `b` again
                created.append(("ns", "b"))
            return super().destroy(namespace, name, stack)

    engine = Slow(["ns.a", "ns.b", "ns.c", "down.d"], [])
    asked: list[str] = []

    def recheck(namespace: str) -> list[tuple[str, str]]:
        asked.append(namespace)
        if namespace == "down":
            raise RuntimeError("apiserver unreachable")
        return [i for i in created if i[0] == namespace]

    collector = OrphanCollector(engine, lambda: [], recheck=recheck)
    assert collector.collect() == ["ns.a", "ns.c"]
    assert [d[2] for d in engine.destroyed] == ["ns.a", "ns.c"]
    assert asked == ["down", "ns", "ns", "ns"]
