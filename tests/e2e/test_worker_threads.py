"""One long-lived worker process runs several stacks' operations at once (engine/runtime/worker.py).

Pulumi's Python runtime keeps each inline program's state in contextvars; these tests check with
the real CLI, provider and apiserver that programs running at the same time in one process do
not see each other's objects, and that an operator killed while such a worker runs seeded
stacks' first `up`s converges after its restart.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine import OperationResult
from jupyternetes.engine.state import statedirs
from tests.e2e.test_operator import (  # noqa: F401 (fixtures)
    all_lock_files,
    hub,
    ready,
    start_operator,
    volumes,
    wait_for,
)
from tests.e2e.test_stacks import (  # noqa: F401 (fixtures)
    backend_dir,
    core,
    engine,
    rendered_for,
    secrets_of,
    stack_file,
)

pytestmark = pytest.mark.e2e

PARALLEL = 4


def resources_of(path: Path) -> list[str]:
    """URNs of the resources in a stack's checkpoint."""
    data = json.loads(path.read_text())
    return [r["urn"] for r in data["checkpoint"]["latest"].get("resources") or []]


def salt_of(path: Path) -> str:
    data = json.loads(path.read_text())
    return data["checkpoint"]["latest"]["secrets_providers"]["state"]["salt"]


def test_concurrent_programs_in_one_worker_each_get_their_own_objects(
        engine, core, namespace):  # noqa: F811
    base, base_instance = rendered_for(namespace, name="base")
    first = engine.up(namespace, "base", base, secrets_of(engine, base_instance))
    assert first.succeeded, first.message
    names = [f"par{i}" for i in range(PARALLEL)]
    # Each instance its own user and token: a program that saw another's values would show.
    work = {name: rendered_for(namespace, name=name,
                               **{"jupyterhub.user.name": f"user-{name}",
                                  "jupyterhub.api_token": f"tok-{name}"})
            for name in names}
    results: dict[str, OperationResult] = {}
    spans: dict[str, tuple[float, float]] = {}
    go = threading.Barrier(PARALLEL)

    def up(name: str) -> None:
        rendered, instance = work[name]
        go.wait()
        started = time.monotonic()
        results[name] = engine.up(namespace, name, rendered, secrets_of(engine, instance))
        spans[name] = (started, time.monotonic())

    threads = [threading.Thread(target=up, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    for name in names:
        assert results[name].succeeded, (name, results[name].message)
    # One process ran them all, and they ran at the same time.
    assert {r.worker_pid for r in results.values()} == {first.worker_pid}
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())
    for name in names:
        result = results[name]
        assert sorted(o["name"] for o in result.objects) == \
            sorted([f"{name}-workspace", f"{name}-notebook"]), result.objects
        urns = resources_of(stack_file(engine, namespace, name))
        own = f"{stack_name(namespace, name)}::"
        assert urns and all(own in urn for urn in urns), urns
        assert not [u for u in urns if any(f"{other}-" in u.rsplit("::", 1)[-1]
                                           for other in names if other != name)]
        pod = core.read_namespaced_pod(f"{name}-notebook", namespace)
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["JUPYTERHUB_USER"] == f"user-{name}"
        assert env["JUPYTERHUB_API_TOKEN"] == f"tok-{name}"
        assert pod.metadata.labels[LABEL_INSTANCE] == name
    pods = core.list_namespaced_pod(namespace).items
    assert sorted(p.metadata.name for p in pods) == sorted(
        f"{n}-notebook" for n in ["base", *names])


def test_operator_killed_during_seeded_ups_in_a_shared_worker_converges(
        hub, namespace, volumes, start_operator):  # noqa: F811
    """The operator's defaults: stacks seeded from a sibling (no `stack init`), several `up`s
    in one long-lived worker. SIGKILL of the operator's whole process tree while one holds its
    stack lock; the restarted operator clears the lock and converges every instance."""
    ns = namespace
    names = ["shared-a", "shared-b", "shared-c"]
    for name in ["seed", *names]:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=3)
    hub.create_instance(ns, "seed")  # the sibling the next stacks are seeded from
    wait_for("seed Ready", ready(hub, ns, "seed"),
             describe=lambda: hub.describe(ns, "seed") + op.log_tail())
    for name in names:
        hub.create_instance(ns, name)
    ours = {stack_name(ns, n) for n in names}

    def locked() -> list[Path]:
        return [p for p in all_lock_files(op.backend_dir) if p.parent.name in ours]
    # Killed with the tree frozen before the look, so that the update cannot finish in between.
    killed = wait_for("an update of a seeded stack holding its lock",
                      lambda: op.kill_tree_while(locked), timeout=180)
    held = locked()
    print(f"\nSIGKILL of {len(killed)} processes with {len(held)} lock(s) held")
    assert held, "the kill must leave a held lock behind for the restart to clear"
    def checkpoint(stack: str) -> Path:
        return statedirs.checkpoint_file(op.backend_dir, "jupyternetes-instances", stack)
    seed_salt = salt_of(checkpoint(stack_name(ns, "seed")))
    for lock in held:  # created by stackseed: the sibling's salt, no `stack init`
        assert salt_of(checkpoint(lock.parent.name)) == seed_salt

    op.start()
    for name in names:
        wait_for(f"{name} Ready after restart", ready(hub, ns, name),
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
        assert len(hub.pods(ns, name)) == 1, f"duplicate pods for {name}"
        assert len(hub.pvcs(ns, name)) == 1, f"duplicate PVCs for {name}"
    assert all_lock_files(op.backend_dir) == []
    restart_log = op.log_path.read_text().split("===== start 2 =====")[1]
    assert "stale lock" in restart_log or "pending operations" in restart_log
