"""End to end: the PostgreSQL state backend crashes and restarts while the operator works.

A real PostgreSQL server (tests/e2e/fixtures_postgres.py) is stopped twice while stack updates
hold their lock rows: first a crash (SIGKILL of the server: no clean disconnect, crash recovery
at the restart), then a fast shutdown (SIGINT: every client is disconnected). Meanwhile the
operator creates new instances and replaces the pods of running ones (a variable changed). The
engine calls that meet the outage fail; the operator retries them with backoff. Afterwards no
state is lost or doubled: every instance is Completed and Ready on its new generation with one
pod (the replaced pods really replaced) and one PVC, each stack's checkpoint holds exactly its
PVC and pod and no pending operation, and no lock row is left. What the admin saw meanwhile
names the state database and not its password.
"""

# The fixtures of test_operator.py are imported by name, which pytest needs and ruff flags.
# ruff: noqa: F811

from __future__ import annotations

import json
import signal

import pytest

from jupyternetes.crd.naming import stack_name
from tests.e2e.test_operator import (  # noqa: F401  (fixtures)
    Cluster,
    env_of,
    hub,
    provisioned,
    ready,
    volumes,
    wait_for,
)
from tests.e2e.test_postgres_backend import (  # noqa: F401  (fixtures)
    STACKS,
    lock_rows,
    pg_operator,
    table,
)

pytestmark = pytest.mark.e2e

DOWN_SECONDS = 4.0  # each outage's length: long enough for several retries to fail


def test_postgres_crashed_and_restarted_during_creates_and_updates_loses_nothing(
        hub: Cluster, namespace, volumes, pg_operator, postgres_backend, postgres_server):
    ns = namespace
    running = [f"pgout-run{i}" for i in range(4)]
    new = [f"pgout-new{i}" for i in range(4)]
    for name in running + new:
        volumes.provide(ns, name)
    op = pg_operator([ns], workers=4, log_level="debug")
    for name in running:
        hub.create_instance(ns, name)
    for name in running:
        wait_for(f"{name} Completed", provisioned(hub, ns, name),
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    old_pods = {name: hub.pods(ns, name)[0]["metadata"]["uid"] for name in running}

    # Work in flight: the running servers' pods are replaced (a changed variable), new ones
    # are created; the database goes away twice in the middle of it.
    for name in running:
        hub.patch_variables(ns, name, {"jupyterhub.user.name": f"{name}-v2"})
    for name in new:
        hub.create_instance(ns, name)
    outages: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for mode in (signal.SIGKILL, signal.SIGINT):
        # A lock row no outage has seen yet: an update running now (a CLI the last outage
        # cut off may have left its row behind; the operator clears it later).
        wait_for("a stack update holding a new lock row",
                 lambda: set(lock_rows(postgres_backend)) - seen, timeout=120,
                 describe=op.log_tail)
        held = lock_rows(postgres_backend)
        seen.update(held)
        outages.append((mode.name, held))
        postgres_server.restart(down_seconds=DOWN_SECONDS, mode=mode)
    print(f"\noutages (mode, lock rows held when it began): {outages}")

    for name in running + new:
        wait_for(f"{name} Ready after the outages", ready(hub, ns, name), timeout=300,
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    # Replaced, not doubled: one pod each, the updated ones new and on the new variable.
    for name in running + new:
        pods = hub.pods(ns, name)
        assert len(pods) == 1, f"pods of {name}: {[p['metadata']['name'] for p in pods]}"
        assert len(hub.pvcs(ns, name)) == 1, f"PVCs of {name}"
    for name in running:
        (pod,) = hub.pods(ns, name)
        assert pod["metadata"]["uid"] != old_pods[name], f"{name}'s pod was not replaced"
        assert env_of(pod)["JUPYTERHUB_USER"] == f"{name}-v2"
    # No state lost: each checkpoint holds its PVC and its pod once, nothing pending.
    rows = table(postgres_backend)
    for name in running + new:
        key = f"{STACKS}{stack_name(ns, name)}.json"
        assert key in rows, f"the stack of {name} is gone from the backend"
        latest = json.loads(rows[key])["checkpoint"]["latest"]
        types = [r["type"] for r in latest["resources"]]
        assert types.count("kubernetes:core/v1:Pod") == 1, (name, types)
        assert types.count("kubernetes:core/v1:PersistentVolumeClaim") == 1, (name, types)
        assert not latest.get("pending_operations"), (name, latest.get("pending_operations"))
    wait_for("no lock row left", lambda: not lock_rows(postgres_backend), timeout=60,
             describe=lambda: str(lock_rows(postgres_backend)))

    # What the admin saw: failures that name the state database, never its password.
    log = op.log_text()
    failures = [line for line in log.splitlines()
                if " failed (attempt " in line and "up failed" in line]
    assert failures, "the outages should have made some update fail"
    print("\n".join(sorted({line.split(": stderr: ", 1)[-1][:200] for line in failures})))
    assert postgres_server.password not in log
    events = [e for name in running + new for e in hub.events(ns, name)]
    warnings = [e for e in events if e[0] == "Warning"]
    assert warnings, "a failed update should have been an Event"
    # Said plainly: the state database is unreachable (not "could not list bucket").
    plain = f"the Pulumi state backend postgres://127.0.0.1:{postgres_server.port}/"
    assert [e for e in warnings if plain in (e[2] or "") and "unreachable" in e[2]], \
        "\n".join(sorted({str(e[2])[:300] for e in warnings}))
    assert not [e for e in events if postgres_server.password in (e[2] or "")]
    for name in running + new:
        assert postgres_server.password not in json.dumps(hub.instance(ns, name))
