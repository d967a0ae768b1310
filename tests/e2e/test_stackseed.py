"""Stacks created by stackseed (no `pulumi stack init`) with the real CLI and provider: the
second and later stacks of a backend share the first one's salt, hold secrets, update, survive a
SIGKILL during their first `up`, and are destroyed and listed like any other stack."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from jupyternetes.crd import labels, naming
from jupyternetes.engine import PROJECT, StackEngine, StackSettings
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


def test_after_the_last_stack_is_gone_the_next_is_seeded_from_the_projects_seed(
        engine, core, namespace):  # noqa: F811
    """Every server stopped (each stack removed with it): the next server's stack is still
    made without `stack init`, from the seed its predecessor left (stackseed.remember), and
    the real CLI opens it (a refresh + no-op `up`)."""
    only, only_instance = rendered_for(namespace, name="only")
    assert engine.up(namespace, "only", only,
                     secrets_of(engine, only_instance)).result == "succeeded"
    salt = salt_of(stack_file(engine, namespace, "only"))
    destroyed = engine.destroy(namespace, "only")
    assert destroyed.result == "succeeded", destroyed.message
    assert not stack_file(engine, namespace, "only").exists()
    assert not [p for p in backend_dir(engine).rglob("*.json")
                if ".pulumi" in p.parts and "stacks" in p.parts], "a stack is left"
    later, instance = rendered_for(namespace, name="later", **{"jupyterhub.api_token": TOKEN})
    created = engine.up(namespace, "later", later, secrets_of(engine, instance))
    assert created.result == "succeeded", created.message
    assert salt_of(stack_file(engine, namespace, "later")) == salt, "made by stack init"
    again = engine.up(namespace, "later", later, secrets_of(engine, instance), refresh=True)
    assert again.result == "succeeded" and set(again.change_summary) == {"same"}, again.message
    assert engine.destroy(namespace, "later").result == "succeeded"


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


# ---- only a tested CLI, only a salt that opens (issue 19 item 5) ------------------------------


def engine_with(cluster, pulumi_env, passphrase: str | None = None,
                env: dict | None = None) -> StackEngine:
    settings = StackSettings(
        backend_url=pulumi_env.backend_url, passphrase=passphrase or pulumi_env.passphrase,
        kubeconfig=str(cluster.kubeconfig), context=None,
        pulumi_home=str(pulumi_env.pulumi_home))
    return StackEngine(settings, env=env or pulumi_env.env, timeout=300)


def test_a_sibling_made_with_another_passphrase_is_not_copied(cluster, namespace, pulumi_env):
    """The admin changed the operator's passphrase; stacks of the old one are still in the
    backend. A new stack must get a salt of the new passphrase (`stack init`), not the old
    sibling's: with that, its first `up` failed (the CLI cannot open the stack's secrets)."""
    old = engine_with(cluster, pulumi_env, passphrase="the old passphrase")
    try:
        first, first_instance = rendered_for(namespace, name="first")
        made = old.up(namespace, "first", first, secrets_of(old, first_instance))
        assert made.result == "succeeded", made.message
    finally:
        old.close()
    new = engine_with(cluster, pulumi_env, passphrase="the new passphrase")
    try:
        second, instance = rendered_for(namespace, name="second")
        created = new.up(namespace, "second", second, secrets_of(new, instance))
        assert created.result == "succeeded", created.message
        assert salt_of(stack_file(new, namespace, "second")) != \
            salt_of(stack_file(new, namespace, "first"))
        # And a third stack of the new passphrase is seeded from the second (whose salt opens).
        third, instance3 = rendered_for(namespace, name="third")
        assert new.up(namespace, "third", third,
                      secrets_of(new, instance3)).result == "succeeded"
        assert salt_of(stack_file(new, namespace, "third")) == \
            salt_of(stack_file(new, namespace, "second"))
    finally:
        new.close()


def test_an_untested_cli_version_creates_stacks_with_stack_init(cluster, namespace, pulumi_env,
                                                                tmp_path):
    """The same CLI saying it is v3.999.0 (as a newer one would): stackseed writes no
    checkpoint of a format it was not tested with; `pulumi stack init` makes the stack (its
    own salt), and the stack lives a normal life."""
    real = shutil.which("pulumi", path=pulumi_env.env["PATH"])
    assert real
    wrapper = tmp_path / "bin" / "pulumi"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then echo v3.999.0; exit 0; fi\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {**pulumi_env.env, "PATH": f"{wrapper.parent}:{pulumi_env.env['PATH']}"}
    wrapped = engine_with(cluster, pulumi_env, env=env)
    try:
        first, first_instance = rendered_for(namespace, name="first")
        assert wrapped.up(namespace, "first", first,
                         secrets_of(wrapped, first_instance)).result == "succeeded"
        second, instance = rendered_for(namespace, name="second")
        created = wrapped.up(namespace, "second", second, secrets_of(wrapped, instance))
        assert created.result == "succeeded", created.message
        assert salt_of(stack_file(wrapped, namespace, "second")) != \
            salt_of(stack_file(wrapped, namespace, "first")), "seeded for an untested CLI"
        again = wrapped.up(namespace, "second", second, secrets_of(wrapped, instance),
                          refresh=True)
        assert again.result == "succeeded" and set(again.change_summary) == {"same"}
    finally:
        wrapped.close()
