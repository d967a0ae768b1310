"""End to end: the operator on a postgres:// Pulumi state backend, with a real PostgreSQL server.

The operator gets the backend URL (with its password) in PULUMI_BACKEND_URL, as a Deployment
would from a Secret; it is on no command line. What is checked is what is in the cluster and in
the `pulumi_state` table (key = the blob's path, data = {"data": base64 of the blob}).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from harness.operator_process import OperatorProcess, process_tree
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine import PROJECT
from jupyternetes.engine.runtime.procs import pid_alive
from jupyternetes.engine.state import pgstate
from tests.e2e.test_operator import (  # noqa: F401 (fixtures)
    API_TOKEN,
    FAST_BACKOFF,
    SEED_NAME,
    Cluster,
    hub,
    provisioned,
    ready,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.e2e

# Keys without the URL path prefix (the database name, see pgstate).
LOCKS = f".pulumi/locks/organization/{PROJECT}/"
STACKS = f".pulumi/stacks/{PROJECT}/"
HISTORY = f".pulumi/history/{PROJECT}/"


def table(url: str) -> dict[str, bytes]:
    """Every row of the backend table: key (its URL path prefix removed) -> the blob's bytes."""
    prefix = pgstate.parse_url(url).key_prefix
    with pgstate.connect(url) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT to_regclass('pulumi_state')::text")
        if cursor.fetchone()[0] is None:
            return {}  # the CLI creates the table at its first login
        cursor.execute("SELECT key, data FROM pulumi_state")
        rows = {key: pgstate.decode_blob(data) or b"" for key, data in cursor.fetchall()}
    assert all(k.startswith(prefix) for k in rows), sorted(rows)
    return {k[len(prefix):]: blob for k, blob in rows.items()}


def lock_rows(url: str) -> list[str]:
    return sorted(k for k in table(url) if k.startswith(LOCKS))


@pytest.fixture
def pg_operator(cluster, pulumi_env, tmp_path, hub, postgres_backend  # noqa: F811
                ) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: an operator whose backend is the test's database, the URL in its environment.
    On teardown: delete the instances while it runs (finalizers), then SIGTERM it."""
    started: list[tuple[OperatorProcess, list[str]]] = []

    def start(namespaces: list[str], workers: int = 4,
              log_level: str = "info", extra: tuple[str, ...] = ()) -> OperatorProcess:
        env = {**pulumi_env.env, "PULUMI_BACKEND_URL": postgres_backend}
        op = OperatorProcess(cluster.kubeconfig, env, tmp_path / "operator-state",
                             pulumi_env.pulumi_home, namespaces,
                             tmp_path / f"operator-{len(started)}.log", workers=workers,
                             resync_seconds=20, log_level=log_level,
                             extra=(*FAST_BACKOFF, *extra))
        started.append((op, namespaces))
        return op.start()

    yield start
    for op, namespaces in started:
        if not op.running():
            continue
        for ns in namespaces:
            for item in hub.custom.list_namespaced_custom_object(GROUP, VERSION, ns,
                                                                 INSTANCE_PLURAL)["items"]:
                hub.delete_instance(ns, item["metadata"]["name"])
            try:
                wait_for(f"instances in {ns} deleted", lambda ns=ns: not hub.custom
                         .list_namespaced_custom_object(GROUP, VERSION, ns,
                                                        INSTANCE_PLURAL)["items"],
                         timeout=120)
            finally:
                for item in hub.custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL)["items"]:
                    hub.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
        code = op.terminate()
        assert code == 0, f"operator exit code {code} after SIGTERM\n{op.log_tail()}"


def test_seed_instance_on_postgres_completes_and_delete_destroys_the_stack(
        hub, namespace, volumes, pg_operator, postgres_backend, postgres_server,  # noqa: F811
        pulumi_env):
    ns, name = namespace, SEED_NAME
    stack = stack_name(ns, name)
    volumes.provide(ns, name)
    op = pg_operator([ns])
    hub.create_instance(ns, name)
    inst = wait_for("Completed", provisioned(hub, ns, name),
                    describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    assert inst["status"]["stack"]["lastUpdate"]["result"] == "succeeded"

    rows = table(postgres_backend)
    assert f"{STACKS}{stack}.json" in rows, (sorted(rows), op.log_tail())
    checkpoint = json.loads(rows[f"{STACKS}{stack}.json"])
    types = {r["type"] for r in checkpoint["checkpoint"]["latest"]["resources"]}
    assert {"kubernetes:core/v1:Pod", "kubernetes:core/v1:PersistentVolumeClaim"} <= types
    history = [k for k in rows if k.startswith(f"{HISTORY}{stack}/")]
    assert history, f"no history rows for {stack}: {sorted(rows)}"
    assert lock_rows(postgres_backend) == []
    # The api token is a Pulumi secret: in no row, decoded, in plain text.
    assert not [k for k, blob in rows.items() if API_TOKEN.encode() in blob]

    # The backend password: not on the command line, in no log line, Event or status.
    password = postgres_server.password
    cmdline = Path(f"/proc/{op.pid}/cmdline").read_bytes().decode(errors="replace")
    assert password not in cmdline
    assert "postgres://" not in cmdline
    assert password not in json.dumps(hub.instance(ns, name))
    # Nor in the CLI's per-workspace settings under PULUMI_HOME (its current stack is keyed by
    # the backend URL, password included).
    leaked = [f for f in (pulumi_env.pulumi_home / "workspaces").glob("*.json")
              if password in f.read_text(errors="replace")]
    assert not leaked, leaked[:3]
    events = client.CoreV1Api(hub.api).list_namespaced_event(ns).items
    assert not [e for e in events if password in (e.message or "")]

    hub.delete_instance(ns, name)
    wait_for("instance gone (finalizer dropped)", lambda: hub.instance(ns, name) is None,
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    rows = table(postgres_backend)
    assert f"{STACKS}{stack}.json" not in rows, "the stack must be removed from the backend"
    log = op.log_text()
    assert "postgres" in log.lower() or "pulumi" in log.lower()
    assert password not in log


def test_sigkill_during_an_up_on_postgres_clears_the_stale_lock_and_converges(
        hub, namespace, volumes, pg_operator, postgres_backend, postgres_server,  # noqa: F811
        pulumi_env):
    ns = namespace
    op = pg_operator([ns], workers=3)
    names: list[str] = []
    locks_at_kill: list[str] = []
    # The kill must land while an update holds its lock row; an update can finish between the
    # row being seen and the kill, so a kill that left no row is tried again with new instances.
    for attempt in range(5):
        batch = [f"pgkill-{attempt}-{x}" for x in "abc"]
        for name in batch:
            volumes.provide(ns, name)
        names += batch
        if attempt:
            op.start()
        for name in batch:
            hub.create_instance(ns, name)
        # Frozen before the look: the update cannot drop its row between the look and the kill.
        killed = wait_for("a stack update holding its lock row",
                          lambda: op.kill_tree_while(lambda: lock_rows(postgres_backend)),
                          timeout=120)
        locks_at_kill = lock_rows(postgres_backend)
        print(f"\nattempt {attempt}: SIGKILL of {len(killed)} processes with lock rows "
              f"{locks_at_kill}")
        if locks_at_kill:
            break
    assert locks_at_kill, "the kill must leave a held lock row behind for the restart to clear"
    lock = json.loads(table(postgres_backend)[locks_at_kill[0]])
    assert {"pid", "hostname", "timestamp"} <= set(lock), lock

    op.start()
    for name in names:
        wait_for(f"{name} Ready after restart", ready(hub, ns, name),
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    for name in names:
        assert len(hub.pods(ns, name)) == 1, f"duplicate pods for {name}"
        assert len(hub.pvcs(ns, name)) == 1, f"duplicate PVCs for {name}"
    assert lock_rows(postgres_backend) == []
    restart_log = op.log_text().rsplit("===== start ", 1)[1]  # the start after the kill
    removed = [line for line in restart_log.splitlines() if "removed stale lock" in line]
    print("\n".join(removed))
    assert removed, "the restart should report the stale lock rows it removed"
    # The killed workers' CLI settings files (keyed by the backend URL) went with their
    # workspaces at the restart.
    leaked = [f for f in (pulumi_env.pulumi_home / "workspaces").glob("*.json")
              if postgres_server.password in f.read_text(errors="replace")]
    assert not leaked, leaked[:3]


def test_postgres_restarted_during_work_operations_retry_and_converge(
        hub, namespace, volumes, pg_operator, postgres_backend, postgres_server):  # noqa: F811
    ns = namespace
    names = ["pgdown-a", "pgdown-b", "pgdown-c", "pgdown-d"]
    for name in names:
        volumes.provide(ns, name)
    # Debug: the stack workers' stderr (the CLI's own errors) is in the log too.
    op = pg_operator([ns], workers=4, log_level="debug")
    for name in names:
        hub.create_instance(ns, name)

    wait_for("a stack update holding its lock row", lambda: lock_rows(postgres_backend),
             timeout=120)
    # The database goes away in the middle of the updates, for a few seconds. (From this
    # thread: the server dies with the thread that started it, PR_SET_PDEATHSIG.)
    postgres_server.restart(down_seconds=5.0)

    for name in names:
        wait_for(f"{name} Ready after the outage", ready(hub, ns, name),
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    log = op.log_text()
    failed = [line for line in log.splitlines() if "failed" in line.lower()]
    print(f"\n{len(failed)} log lines about failures during the outage; first: "
          f"{failed[:3]}")
    assert failed, "the outage should have made some operation fail"
    rows = table(postgres_backend)
    for name in names:
        assert len(hub.pods(ns, name)) == 1, f"duplicate pods for {name}"
        assert len(hub.pvcs(ns, name)) == 1, f"duplicate PVCs for {name}"
        checkpoint = json.loads(rows[f"{STACKS}{stack_name(ns, name)}.json"])
        latest = checkpoint["checkpoint"]["latest"]
        types = [r["type"] for r in latest["resources"]]
        assert types.count("kubernetes:core/v1:Pod") == 1, types
        assert not latest.get("pending_operations"), latest.get("pending_operations")
    assert lock_rows(postgres_backend) == []
    assert postgres_server.password not in log


def test_lock_row_left_by_a_dead_cli_while_the_operator_runs_is_cleared_and_the_update_runs(
        hub, namespace, volumes, pg_operator, postgres_backend):  # noqa: F811
    """A CLI whose database went away before it could unlock (or that was killed alone) leaves
    its lock row while the operator keeps running: the next operation on that stack must not
    fail forever with "the stack is currently locked"."""
    ns, name = namespace, "pglocked"
    stack = stack_name(ns, name)
    volumes.provide(ns, name)
    op = pg_operator([ns])
    hub.create_instance(ns, name)
    wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(ns, name))

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid of this host that no longer runs
    lock = {"pid": dead.pid, "username": "root", "hostname": socket.gethostname(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    key = (f"{pgstate.parse_url(postgres_backend).key_prefix}{LOCKS}{stack}/"
           f"{uuid.uuid4()}.json")
    with pgstate.connect(postgres_backend) as conn:
        conn.cursor().execute(
            "INSERT INTO pulumi_state (key, data) VALUES (%s, %s)",
            (key, json.dumps({"data": base64.b64encode(json.dumps(lock).encode()).decode()})))
    assert lock_rows(postgres_backend)

    hub.patch_variables(ns, name, {"jupyterhub.user.name": "locked2"})

    def updated() -> dict | None:
        inst = provisioned(hub, ns, name)()
        return inst if inst and inst["status"]["observedGeneration"] == 2 else None
    wait_for("the update after the stale lock", updated,
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    assert lock_rows(postgres_backend) == []
    assert f"removed stale lock {stack}/" in op.log_text()


def stack_ls_pids(pids: list[int]) -> list[int]:
    """Those of `pids` that are a live `pulumi stack ls`."""
    found = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"stack", b"ls"] and pid_alive(pid):
            found.append(pid)
    return found


def test_operator_killed_while_stack_ls_hangs_on_the_database_leaves_no_cli_behind(
        hub, namespace, pg_operator, postgres_server):  # noqa: F811
    """The orphan collector's `pulumi stack ls` hangs on a database that answers no new
    connection (its postmaster stopped); the operator is killed with SIGKILL, as a replica
    is. The CLI must die with it, not run on for hours parented to init (it ran in the
    operator itself, with no tie to its life: after a whole `make test` two of them were
    still running 72 minutes later)."""
    op = pg_operator([namespace], extra=("--orphan-check-seconds", "2"))
    postmaster = postgres_server.proc.pid
    hung: list[int] = []
    os.kill(postmaster, signal.SIGSTOP)
    try:
        # A list started after the stop hangs; seen twice 3s apart, it is not just slow.
        def hanging() -> list[int]:
            first = stack_ls_pids(process_tree(op.pid))
            time.sleep(3)  # what "hangs" means here, not a wait for a condition
            return [p for p in first if p in stack_ls_pids(process_tree(op.pid))]
        hung = wait_for("a hanging `pulumi stack ls` under the operator", hanging,
                        timeout=120, describe=op.log_tail)
        op.kill()
        started = time.monotonic()
        wait_for("the CLI gone with the operator", lambda: not stack_ls_pids(hung),
                 timeout=90, describe=lambda: f"still running: {stack_ls_pids(hung)}")
        print(f"\n`pulumi stack ls` {hung} gone {time.monotonic() - started:.1f}s after the "
              "operator's SIGKILL")
    finally:
        os.kill(postmaster, signal.SIGCONT)
        for pid in stack_ls_pids(hung):  # the old code's leftovers: not into the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
