"""Stacks created by stackseed (no `pulumi stack init`) with the real CLI and provider: the
second and later stacks of a backend share the first one's salt, hold secrets, update, survive a
SIGKILL during their first `up`, and are destroyed and listed like any other stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from jupyternetes.crd import labels, naming
from jupyternetes.engine import PROJECT
from jupyternetes.engine.state import locks, statedirs
from tests.e2e.test_stacks import (  # noqa: F401 (fixtures)
    TOKEN,
    assert_no_plain_token,
    backend_dir,
    core,
    engine,
    rendered_for,
    secrets_of,
    stack_file,
    worker_pgids,
)

pytestmark = pytest.mark.e2e


def salt_of(path) -> str:
    data = json.loads(path.read_text())
    return data["checkpoint"]["latest"]["secrets_providers"]["state"]["salt"]


def cli_stacks(pulumi_env, stack: str) -> list[str]:
    """`pulumi stack ls` of the backend holding `stack`, run as an admin would."""
    url = statedirs.stack_url(pulumi_env.backend_url, PROJECT, stack)
    env = {**pulumi_env.env, "PULUMI_BACKEND_URL": url, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(["pulumi", "stack", "ls", "--all", "--json"], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [entry["name"].split("/")[-1] for entry in json.loads(done.stdout)]


def test_second_stack_is_seeded_and_lives_a_normal_life(engine, core, namespace,  # noqa: F811
                                                       pulumi_env):
    first, first_instance = rendered_for(namespace, name="first")
    made = engine.up(namespace, "first", first, secrets_of(engine, first_instance))
    assert made.result == "succeeded", made.message
    second, instance = rendered_for(namespace, name="second", **{"jupyterhub.api_token": TOKEN})
    created = engine.up(namespace, "second", second, secrets_of(engine, instance))
    assert created.result == "succeeded", created.message
    # Same salt as the first stack: `stack init` would have made a new one.
    assert salt_of(stack_file(engine, namespace, "second")) == \
        salt_of(stack_file(engine, namespace, "first"))
    pod = core.read_namespaced_pod("second-notebook", namespace)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["JUPYTERHUB_API_TOKEN"] == TOKEN
    assert_no_plain_token(backend_dir(engine), TOKEN)
    # The encrypted state reads back: a refresh + no-op up, then an update that replaces the pod.
    again = engine.up(namespace, "second", second, secrets_of(engine, instance), refresh=True)
    assert again.result == "succeeded" and set(again.change_summary) == {"same"}, again.message
    changed, instance2 = rendered_for(namespace, name="second",
                                      **{"jupyterhub.api_token": TOKEN + "x"})
    updated = engine.up(namespace, "second", changed, secrets_of(engine, instance2))
    assert updated.result == "succeeded", updated.message
    assert naming.stack_name(namespace, "second") in engine.list_stacks()
    # The real CLI lists it in its hash bucket, a backend of its own (statedirs), whose
    # meta.yaml stackseed wrote when the stack was that bucket's first.
    stack = naming.stack_name(namespace, "second")
    assert stack in cli_stacks(pulumi_env, stack)
    assert stack_file(engine, namespace, "second").is_relative_to(
        statedirs.bucket_dir(backend_dir(engine), stack))
    destroyed = engine.destroy(namespace, "second")
    assert destroyed.result == "succeeded", destroyed.message
    assert naming.stack_name(namespace, "second") not in engine.list_stacks()


def test_seeded_stack_killed_during_its_first_up_converges(engine, core, namespace):  # noqa: F811
    """As test_stacks' SIGKILL test, for a stack that stackseed created."""
    first, first_instance = rendered_for(namespace, name="first")
    assert engine.up(namespace, "first", first,
                     secrets_of(engine, first_instance)).result == "succeeded"
    rendered, instance = rendered_for(namespace, name="crash")
    lock_root = locks.lock_dir(statedirs.stack_dir(backend_dir(engine), PROJECT,
                                                   naming.stack_name(namespace, "crash")),
                               PROJECT)
    killed = threading.Event()

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.is_set():
            if list(lock_root.glob("*/*.json")):
                for pid in worker_pgids():
                    os.killpg(pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer)
    thread.start()
    result = engine.up(namespace, "crash", rendered, secrets_of(engine, instance))
    killed.set()
    thread.join()
    assert result.result == "failed"
    engine.clear_stale_locks()
    converged = engine.up(namespace, "crash", rendered, secrets_of(engine, instance))
    assert converged.result == "succeeded", converged.message
    assert salt_of(stack_file(engine, namespace, "crash")) == \
        salt_of(stack_file(engine, namespace, "first"))
    pods = core.list_namespaced_pod(namespace, label_selector=f"{labels.LABEL_INSTANCE}=crash")
    assert [p.metadata.name for p in pods.items] == ["crash-notebook"]
    again = engine.up(namespace, "crash", rendered, secrets_of(engine, instance))
    assert set(again.change_summary) == {"same"}, again.change_summary
