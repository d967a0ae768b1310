"""StackEngine end to end: the real Pulumi CLI and Kubernetes provider against the real apiserver.

Every test renders the seed template for the seed instance moved into a fresh namespace, runs
stack operations through StackEngine (worker subprocesses, as the operator does), and checks the
objects in the cluster and the files of the state backend.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from jupyternetes.crd import labels, naming
from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine import StackEngine, StackSettings
from jupyternetes.engine.state import backendurl, diystate, locks, statedirs
from jupyternetes.render.objects import render

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "852dc4bd4e4e4360b7ae94cffa4f1c76"


def seed_docs(namespace: str, name: str | None = None, **variables: str) -> tuple[dict, dict]:
    template = yaml.safe_load((EXAMPLES / "seed-template.yaml").read_text())
    instance = yaml.safe_load((EXAMPLES / "seed-instance.yaml").read_text())
    template["metadata"] = {"name": "default-template", "namespace": namespace}
    instance["metadata"] = {"name": name or instance["metadata"]["name"],
                            "namespace": namespace}
    instance.pop("status", None)
    instance["spec"]["template"]["namespace"] = namespace
    instance["spec"]["variables"].update(variables)
    return template, instance


def rendered_for(namespace: str, name: str | None = None, **variables: str):
    template_doc, instance_doc = seed_docs(namespace, name, **variables)
    instance = Instance.from_dict(instance_doc)
    return render(Template.from_dict(template_doc), instance), instance


@pytest.fixture
def engine(cluster, pulumi_env) -> StackEngine:
    settings = StackSettings(
        backend_url=pulumi_env.backend_url, passphrase=pulumi_env.passphrase,
        kubeconfig=str(cluster.kubeconfig), context=None,
        pulumi_home=str(pulumi_env.pulumi_home))
    return StackEngine(settings, env=pulumi_env.env, timeout=300)


@pytest.fixture
def core(cluster):
    with cluster.api_client() as api:
        yield client.CoreV1Api(api)


def secrets_of(engine: StackEngine, instance: Instance) -> frozenset[str]:
    return engine.settings.secret_values(instance.variables)


def backend_dir(engine: StackEngine) -> Path:
    path = backendurl.file_backend_path(engine.settings.backend_url)
    assert path is not None
    return path


def stack_backend(engine: StackEngine, stack: str) -> Path:
    """The backend folder of one stack: its hash bucket (statedirs)."""
    return statedirs.stack_dir(backend_dir(engine), engine.settings.project, stack)


def stack_file(engine: StackEngine, namespace: str, name: str) -> Path:
    return statedirs.checkpoint_file(backend_dir(engine), engine.settings.project,
                                     naming.stack_name(namespace, name))


def read_or_none(fn, *args):
    try:
        return fn(*args)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_gone(fn, *args, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_or_none(fn, *args) is None:
            return True
        time.sleep(0.3)
    return False


def assert_no_plain_token(root: Path, token: str) -> None:
    leaks = []
    for path in root.rglob("*"):
        if path.is_file() and token.encode() in path.read_bytes():
            leaks.append(str(path))
    assert leaks == [], f"API token in plain text in {leaks}"


def test_lifecycle_up_noop_replace_destroy_adopt(engine, core, namespace):
    rendered, instance = rendered_for(namespace)
    name = instance.name
    pvc_name, pod_name = f"{name}-workspace", f"{name}-notebook"

    # 1. First up: PVC and pod exist, with the rendered values and our annotations.
    first = engine.up(namespace, name, rendered, secrets_of(engine, instance))
    assert first.result == "succeeded", first.message
    # Pulumi counts the stack and the provider too: 2 objects + 2.
    assert first.change_summary == {"create": 4}, first.change_summary
    pvc = core.read_namespaced_persistent_volume_claim(pvc_name, namespace)
    pod = core.read_namespaced_pod(pod_name, namespace)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["JUPYTERHUB_USER"] == "jovyan"
    assert env["JUPYTERHUB_API_TOKEN"] == TOKEN  # the cluster gets the real value
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == pvc_name
    assert pod.metadata.annotations["pulumi.com/skipAwait"] == "true"
    assert pod.metadata.labels[labels.LABEL_ENTRY] == "notebook"
    by_entry = {o["entry"]: o for o in first.objects}
    assert by_entry["workspace"]["uid"] == pvc.metadata.uid
    assert by_entry["notebook"]["uid"] == pod.metadata.uid
    assert by_entry["notebook"] == {
        "group": "pods", "entry": "notebook", "apiVersion": "v1", "kind": "Pod",
        "name": pod_name, "namespace": namespace, "uid": pod.metadata.uid}
    assert 0 < first.engine_seconds < first.wall_seconds

    # 2. The same desired state again: nothing changes.
    second = engine.up(namespace, name, rendered, secrets_of(engine, instance))
    assert second.result == "succeeded", second.message
    assert set(second.change_summary) == {"same"}, second.change_summary
    assert core.read_namespaced_pod(pod_name, namespace).metadata.uid == pod.metadata.uid

    # 3. A variable change: the pod is replaced (new uid), the PVC stays (same uid).
    changed, instance2 = rendered_for(namespace, **{"jupyterhub.user.name": "alice"})
    third = engine.up(namespace, name, changed, secrets_of(engine, instance2))
    assert third.result == "succeeded", third.message
    assert third.change_summary.get("replace") == 1, third.change_summary
    new_pod = core.read_namespaced_pod(pod_name, namespace)
    assert new_pod.metadata.uid != pod.metadata.uid
    assert {e.name: e.value for e in new_pod.spec.containers[0].env}["JUPYTERHUB_USER"] == "alice"
    assert core.read_namespaced_persistent_volume_claim(pvc_name, namespace).metadata.uid == \
        pvc.metadata.uid
    assert {o["entry"]: o["uid"] for o in third.objects}["notebook"] == new_pod.metadata.uid

    # 4. Destroy: the pod goes, the PVC stays, the stack is removed from the backend.
    assert stack_file(engine, namespace, name).exists()
    gone = engine.destroy(namespace, name)
    assert gone.result == "succeeded", gone.message
    assert wait_gone(core.read_namespaced_pod, pod_name, namespace)
    assert core.read_namespaced_persistent_volume_claim(pvc_name, namespace).metadata.uid == \
        pvc.metadata.uid
    assert not stack_file(engine, namespace, name).exists()
    # Destroying again is harmless.
    assert engine.destroy(namespace, name).result == "succeeded"

    # 5. A new stack for the same instance adopts the retained PVC without error.
    again = engine.up(namespace, name, changed, secrets_of(engine, instance2))
    assert again.result == "succeeded", again.message
    adopted = core.read_namespaced_persistent_volume_claim(pvc_name, namespace)
    assert adopted.metadata.uid == pvc.metadata.uid
    assert {o["entry"]: o["uid"] for o in again.objects}["workspace"] == pvc.metadata.uid
    assert core.read_namespaced_pod(pod_name, namespace).metadata.uid != new_pod.metadata.uid

    # The token was in every up; it is nowhere in plain text in the state backend.
    assert_no_plain_token(backend_dir(engine), TOKEN)


def test_rejected_object_fails_with_the_apiserver_message(engine, core, namespace):
    rendered, instance = rendered_for(namespace, name="broken")
    pod = copy.deepcopy(rendered.pods[0].manifest)
    del pod["spec"]["containers"][0]["image"]
    objects = [rendered.pvcs[0], {"group": "pods", "entry": "notebook", "manifest": pod}]
    result = engine.up(namespace, "broken", objects, secrets_of(engine, instance))
    assert result.result == "failed"
    assert 'Pod "broken-notebook" is invalid' in result.message
    assert "spec.containers[0].image: Required value" in result.message
    assert TOKEN not in result.message
    assert "spec.containers[0].image: Required value" in result.errors["pods/notebook"]
    # What did get applied is reported with its uid: the PVC.
    pvc = core.read_namespaced_persistent_volume_claim("broken-workspace", namespace)
    assert [o["uid"] for o in result.objects if o["entry"] == "workspace"] == [pvc.metadata.uid]
    # Fixing the object converges the same stack.
    fixed = engine.up(namespace, "broken", rendered, secrets_of(engine, instance))
    assert fixed.result == "succeeded", fixed.message
    assert core.read_namespaced_pod("broken-notebook", namespace).spec.containers[0].image


def test_pod_deleted_out_of_band_comes_back_with_refresh(engine, core, namespace):
    rendered, instance = rendered_for(namespace, name="drift")
    first = engine.up(namespace, "drift", rendered, secrets_of(engine, instance))
    assert first.succeeded, first.message
    old_uid = core.read_namespaced_pod("drift-notebook", namespace).metadata.uid
    core.delete_namespaced_pod("drift-notebook", namespace, grace_period_seconds=0)
    assert wait_gone(core.read_namespaced_pod, "drift-notebook", namespace)
    result = engine.up(namespace, "drift", rendered, secrets_of(engine, instance), refresh=True)
    assert result.result == "succeeded", result.message
    assert result.change_summary.get("create") == 1, result.change_summary
    assert core.read_namespaced_pod("drift-notebook", namespace).metadata.uid != old_uid


def test_four_stacks_up_in_parallel(engine, core, namespace):
    names = [f"par-{i}" for i in range(4)]

    def up(name: str):
        rendered, instance = rendered_for(namespace, name=name,
                                          **{"jupyterhub.user.name": f"user-{name}"})
        return engine.up(namespace, name, rendered, secrets_of(engine, instance))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(up, names))
    wall = time.monotonic() - started
    for name, result in zip(names, results, strict=True):
        assert result.result == "succeeded", f"{name}: {result.message}"
        pod = core.read_namespaced_pod(f"{name}-notebook", namespace)
        assert {e.name: e.value for e in pod.spec.containers[0].env}["JUPYTERHUB_USER"] == \
            f"user-{name}"
        assert {o["entry"]: o["uid"] for o in result.objects}["notebook"] == pod.metadata.uid
    # Parallel, not serialised: less wall time than the sum of the operations.
    assert wall < sum(r.wall_seconds for r in results)
    print(json.dumps({"parallel_4_wall_s": round(wall, 2),
                      "per_op_wall_s": [round(r.wall_seconds, 2) for r in results],
                      "per_op_engine_s": [round(r.engine_seconds, 2) for r in results]}))


def test_a_live_writers_lock_blocks_and_a_dead_writers_lock_is_cleared(engine, core, namespace):
    """locks.py's rule at the moment an operation meets a lock: a lock whose holder still runs
    on this host blocks the update (it is never removed); a lock whose holder is provably gone
    (its pid no longer runs on this host) is removed and the update goes through."""
    rendered, instance = rendered_for(namespace, name="locked")
    first = engine.up(namespace, "locked", rendered, secrets_of(engine, instance))
    assert first.succeeded, first.message
    stack = naming.stack_name(namespace, "locked")
    lock = (locks.lock_dir(stack_backend(engine, stack), engine.settings.project)
            / stack / "crashed-operator.json")
    lock.parent.mkdir(parents=True, exist_ok=True)

    def write_lock(pid: int) -> None:
        lock.write_text(json.dumps({"pid": pid, "username": "root",
                                    "hostname": os.uname().nodename,
                                    "timestamp": "2026-01-01T00:00:00Z"}))

    write_lock(os.getpid())  # a live holder: this test process
    blocked = engine.up(namespace, "locked", rendered, secrets_of(engine, instance))
    assert blocked.result == "failed"
    assert "locked" in blocked.message
    assert lock.exists()
    assert not any("crashed-operator.json" in line for line in engine.clear_stale_locks())
    assert lock.exists()

    write_lock(999_999_999)  # a holder that is gone
    unlocked = engine.up(namespace, "locked", rendered, secrets_of(engine, instance))
    assert unlocked.succeeded, unlocked.message
    assert not lock.exists()


def test_worker_killed_during_up_converges_after_restart(engine, core, namespace):
    """SIGKILL the worker's whole process group (worker + pulumi CLI) in the middle of `up`,
    as a node crash would; then clear_stale_locks + up converge: one PVC, one pod."""
    rendered, instance = rendered_for(namespace, name="crash")
    lock_root = locks.lock_dir(stack_backend(engine, naming.stack_name(namespace, "crash")),
                               engine.settings.project)
    killed = threading.Event()

    def killer() -> None:
        # The lock file appears when the engine starts the update; kill right then.
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
    actions = engine.clear_stale_locks()
    print("clear_stale_locks:", actions)
    assert not list(lock_root.glob("*/*.json"))
    converged = engine.up(namespace, "crash", rendered, secrets_of(engine, instance))
    assert converged.result == "succeeded", converged.message
    pods = core.list_namespaced_pod(namespace, label_selector=f"{labels.LABEL_INSTANCE}=crash")
    pvcs = core.list_namespaced_persistent_volume_claim(
        namespace, label_selector=f"{labels.LABEL_INSTANCE}=crash")
    assert [p.metadata.name for p in pods.items] == ["crash-notebook"]
    assert [p.metadata.name for p in pvcs.items] == ["crash-workspace"]
    again = engine.up(namespace, "crash", rendered, secrets_of(engine, instance))
    assert set(again.change_summary) == {"same"}, again.change_summary


def worker_pgids() -> list[int]:
    """Process groups of running stack workers started by this test process."""
    me = os.getpid()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"jupyternetes.engine.runtime.worker" in cmdline:
            found.append(os.getpgid(int(proc.name)))
    return found


def test_replacement_waits_for_the_old_pod_to_terminate(engine, core, namespace):
    """A pod that takes time to terminate (here: held by a finalizer for ~4 s, as a kubelet
    grace period would) is not overwritten by its replacement of the same name."""
    rendered, instance = rendered_for(namespace, name="slow")
    first = engine.up(namespace, "slow", rendered, secrets_of(engine, instance))
    assert first.succeeded, first.message
    old_uid = core.read_namespaced_pod("slow-notebook", namespace).metadata.uid
    core.patch_namespaced_pod("slow-notebook", namespace,
                              {"metadata": {"finalizers": ["e2e.jupyternetes/hold"]}})

    def release() -> None:
        # Wait until the engine has asked for the deletion, hold a little, then let it go.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pod = read_or_none(core.read_namespaced_pod, "slow-notebook", namespace)
            if pod is not None and pod.metadata.deletion_timestamp:
                time.sleep(4)
                core.patch_namespaced_pod("slow-notebook", namespace,
                                          {"metadata": {"finalizers": None}})
                return
            time.sleep(0.1)

    releaser = threading.Thread(target=release)
    releaser.start()
    changed, instance2 = rendered_for(namespace, name="slow", **{"jupyterhub.user.name": "eve"})
    started = time.monotonic()
    result = engine.up(namespace, "slow", changed, secrets_of(engine, instance2))
    releaser.join()
    assert result.result == "succeeded", result.message
    assert time.monotonic() - started >= 4
    pod = core.read_namespaced_pod("slow-notebook", namespace)
    assert pod.metadata.uid != old_uid and pod.metadata.deletion_timestamp is None
    assert {e.name: e.value for e in pod.spec.containers[0].env}["JUPYTERHUB_USER"] == "eve"


def test_pending_create_left_by_a_crash_is_repaired(engine, core, namespace):
    """The state a crash in the middle of creating the pod leaves: the pod exists in the cluster,
    the checkpoint lists it only as a pending CREATE. clear_stale_locks repairs the stack and
    the next up adopts the pod: one pod, same uid, nothing pending."""
    rendered, instance = rendered_for(namespace, name="pending")
    first = engine.up(namespace, "pending", rendered, secrets_of(engine, instance))
    assert first.succeeded, first.message
    uid = core.read_namespaced_pod("pending-notebook", namespace).metadata.uid
    path = stack_file(engine, namespace, "pending")
    checkpoint = json.loads(path.read_text())
    latest = checkpoint["checkpoint"]["latest"]
    pod_state = next(r for r in latest["resources"] if r["urn"].endswith("::pods/notebook"))
    latest["resources"].remove(pod_state)
    latest["pending_operations"] = [{"resource": pod_state, "type": "creating"}]
    path.write_text(json.dumps(checkpoint))
    stack = naming.stack_name(namespace, "pending")
    assert diystate.stacks_with_pending_operations(stack_backend(engine, stack),
                                                   engine.settings.project) == [stack]

    actions = engine.clear_stale_locks()
    assert any("cleared pending operations (succeeded" in a for a in actions), actions
    assert diystate.stacks_with_pending_operations(stack_backend(engine, stack),
                                                   engine.settings.project) == []
    result = engine.up(namespace, "pending", rendered, secrets_of(engine, instance))
    assert result.result == "succeeded", result.message
    pods = core.list_namespaced_pod(namespace,
                                    label_selector=f"{labels.LABEL_INSTANCE}=pending").items
    assert [(p.metadata.name, p.metadata.uid) for p in pods] == [("pending-notebook", uid)]
    assert {o["entry"]: o["uid"] for o in result.objects}["notebook"] == uid


def test_existing_pvc_made_outside_pulumi_is_adopted_only_with_the_admins_opt_in(
        engine, core, namespace):
    """A PVC that already exists (e.g. from the original system, created by kubectl) is not
    this instance's: the engine's create refuses it and leaves it untouched. Once an admin
    annotates it `jupyternetes.kadense.io/adopt: <instance>`, the stack takes it over and it
    keeps its uid: user data survives the migration. A PVC labelled as another instance's is
    refused even with that annotation."""
    rendered, instance = rendered_for(namespace, name="legacy")
    pvc = copy.deepcopy(rendered.pvcs[0].manifest)
    pvc["metadata"]["labels"] = {"owner": "someone-else"}
    pvc["metadata"]["annotations"] = {}
    created = core.create_namespaced_persistent_volume_claim(namespace, pvc)

    refused = engine.up(namespace, "legacy", rendered, secrets_of(engine, instance))
    assert refused.result == "failed"
    assert "legacy-workspace" in refused.message and "adopt" in refused.message, \
        refused.message
    untouched = core.read_namespaced_persistent_volume_claim("legacy-workspace", namespace)
    assert untouched.metadata.resource_version == created.metadata.resource_version
    assert untouched.metadata.labels == {"owner": "someone-else"}
    assert not core.list_namespaced_pod(
        namespace, label_selector=f"{labels.LABEL_INSTANCE}=legacy").items

    core.patch_namespaced_persistent_volume_claim("legacy-workspace", namespace, {
        "metadata": {"annotations": {"jupyternetes.kadense.io/adopt": "legacy"}}})
    result = engine.up(namespace, "legacy", rendered, secrets_of(engine, instance))
    assert result.result == "succeeded", result.message
    adopted = core.read_namespaced_persistent_volume_claim("legacy-workspace", namespace)
    assert adopted.metadata.uid == created.metadata.uid
    assert adopted.metadata.labels[labels.LABEL_INSTANCE] == "legacy"
    assert {o["entry"]: o["uid"] for o in result.objects}["workspace"] == created.metadata.uid

    # Another instance's claim: refused at create time even when annotated for this one.
    other, other_instance = rendered_for(namespace, name="legacy2")
    theirs = copy.deepcopy(other.pvcs[0].manifest)
    theirs["metadata"]["labels"] = {labels.LABEL_INSTANCE: "someone",
                                    labels.LABEL_INSTANCE_NAMESPACE: namespace}
    theirs["metadata"]["annotations"] = {"jupyternetes.kadense.io/adopt": "legacy2"}
    made = core.create_namespaced_persistent_volume_claim(namespace, theirs)
    refused = engine.up(namespace, "legacy2", other, secrets_of(engine, other_instance))
    assert refused.result == "failed"
    assert "legacy2-workspace" in refused.message and f"{namespace}/someone" in refused.message
    assert core.read_namespaced_persistent_volume_claim(
        "legacy2-workspace", namespace).metadata.resource_version == made.metadata.resource_version


# -- files a SIGKILL in the middle of a checkpoint write leaves (see jupyternetes/diystate.py) --


def uids_of(core, namespace: str, name: str) -> dict[str, str]:
    return {"pod": core.read_namespaced_pod(f"{name}-notebook", namespace).metadata.uid,
            "pvc": core.read_namespaced_persistent_volume_claim(
                f"{name}-workspace", namespace).metadata.uid}


def corrupt_state(checkpoint: Path, corruption: str) -> None:
    """What fileblob leaves when killed at each point of a write of `checkpoint`: an empty
    .attrs (killed in setAttrs) with the complete new content in a tmp file next to it, a tmp
    file alone (killed while writing it), an empty or truncated checkpoint."""
    attrs = checkpoint.with_name(checkpoint.name + ".attrs")
    tmp = checkpoint.with_name(f"{checkpoint.name}.{time.time_ns():x}.tmp")
    if corruption in ("empty-attrs", "empty-attrs-and-tmp"):
        attrs.write_bytes(b"")
    if corruption == "empty-attrs-and-tmp":
        tmp.write_bytes(checkpoint.read_bytes())
    if corruption == "tmp":
        tmp.write_bytes(checkpoint.read_bytes()[:100])
    if corruption == "empty-checkpoint":
        checkpoint.write_bytes(b"")
    if corruption == "truncated-checkpoint":
        checkpoint.write_bytes(checkpoint.read_bytes()[:200])


def leftovers(checkpoint: Path) -> list[str]:
    return sorted(p.name for p in checkpoint.parent.iterdir()
                  if p.name.endswith(".tmp") or (p.name.endswith(".attrs")
                                                 and p.stat().st_size == 0))


@pytest.mark.parametrize("corruption", ["empty-attrs", "empty-attrs-and-tmp",
                                        "empty-checkpoint", "truncated-checkpoint"])
def test_interrupted_checkpoint_write_heals_on_the_next_up(engine, core, namespace, corruption):
    """The next up repairs the files itself (no operator restart) and converges on the same
    objects: same pod and PVC uids, nothing changed, no leftovers."""
    name = "torn"
    rendered, instance = rendered_for(namespace, name=name)
    first = engine.up(namespace, name, rendered, secrets_of(engine, instance))
    assert first.succeeded, first.message
    before = uids_of(core, namespace, name)
    checkpoint = stack_file(engine, namespace, name)
    corrupt_state(checkpoint, corruption)

    result = engine.up(namespace, name, rendered, secrets_of(engine, instance))
    assert result.result == "succeeded", result.message
    assert set(result.change_summary) == {"same"}, result.change_summary
    assert uids_of(core, namespace, name) == before
    assert {o["entry"]: o["uid"] for o in result.objects} == {
        "notebook": before["pod"], "workspace": before["pvc"]}
    assert leftovers(checkpoint) == []
    assert diystate.is_valid_checkpoint(checkpoint)


def test_interrupted_checkpoint_writes_are_repaired_at_operator_start(engine, core, namespace):
    """clear_stale_locks (operator start) repairs every corruption at once, each for its own
    stack, and names each action; a stack locked by a live process is left alone."""
    corruptions = ["empty-attrs-and-tmp", "tmp", "empty-checkpoint"]
    uids, files = {}, {}
    for index in range(len(corruptions)):
        name = f"torn{index}"
        rendered, instance = rendered_for(namespace, name=name)
        assert engine.up(namespace, name, rendered, secrets_of(engine, instance)).succeeded
        uids[name] = uids_of(core, namespace, name)
        files[name] = stack_file(engine, namespace, name)
    for index, corruption in enumerate(corruptions):
        corrupt_state(files[f"torn{index}"], corruption)
    # A stack whose lock is held by a live process (this one): its tmp file must stay.
    live = (diystate.stacks_dir(stack_backend(engine, "busy"), engine.settings.project)
            / "busy.json.1.tmp")
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(b"{")
    lock = (locks.lock_dir(stack_backend(engine, "busy"), engine.settings.project) / "busy"
            / "running.json")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "hostname": os.uname().nodename}))

    actions = engine.clear_stale_locks()
    print("clear_stale_locks:", json.dumps(actions, indent=1))
    text = "\n".join(actions)
    torn = {n: naming.stack_name(namespace, n) for n in files}
    assert f"stack {torn['torn0']}: finished the interrupted write of" in text
    assert f"stack {torn['torn0']}: removed empty attributes file" in text
    assert f"stack {torn['torn1']}: removed leftover temporary file" in text
    assert f"stack {torn['torn2']}: checkpoint {torn['torn2']}.json was empty: restored" in text
    assert "stack busy: state files not checked" in text
    assert live.exists()
    lock.unlink()
    live.unlink()

    for name in files:
        rendered, instance = rendered_for(namespace, name=name)
        result = engine.up(namespace, name, rendered, secrets_of(engine, instance))
        assert result.result == "succeeded", f"{name}: {result.message}"
        assert set(result.change_summary) == {"same"}, (name, result.change_summary)
        assert uids_of(core, namespace, name) == uids[name]
        assert leftovers(files[name]) == []


def test_corrupt_checkpoint_without_backup_fails_with_what_to_do(engine, core, namespace):
    """No valid backup to restore from: the operation fails, the admin reads why and what to
    do in the message, and the corrupt file is left as it is."""
    name = "lost"
    rendered, instance = rendered_for(namespace, name=name)
    assert engine.up(namespace, name, rendered, secrets_of(engine, instance)).succeeded
    checkpoint = stack_file(engine, namespace, name)
    checkpoint.with_name(checkpoint.name + ".bak").unlink()
    for backup in (checkpoint.parents[3] / "backups").rglob(f"{checkpoint.stem}.*"):
        backup.unlink()
    checkpoint.write_bytes(b'{"version": 3, "checkpoint": {"stack": ')

    result = engine.up(namespace, name, rendered, secrets_of(engine, instance))
    assert result.result == "failed"
    assert "failed to load checkpoint" in result.message
    assert "cannot repair: checkpoint" in result.message
    assert "no valid backup" in result.message
    assert checkpoint.read_bytes() == b'{"version": 3, "checkpoint": {"stack": '


def test_a_stack_an_older_operator_left_at_the_root_is_used_there(engine, core, namespace):
    """Upgrade path of the hash buckets (statedirs): a stack whose files are at the root of the
    state folder, where operators before buckets kept every stack, is updated there (no second
    stack in its bucket, no new objects), then destroyed there; a new server of that name then
    goes to its bucket."""
    name = "legacy"
    stack = naming.stack_name(namespace, name)
    rendered, instance = rendered_for(namespace, name=name)
    assert engine.up(namespace, name, rendered, secrets_of(engine, instance)).succeeded
    uids = uids_of(core, namespace, name)
    bucket = statedirs.bucket_dir(backend_dir(engine), stack)
    root = backend_dir(engine)
    project = engine.settings.project
    # What an older operator's state looks like: the stack's files in the root backend.
    for kind in ("stacks", "history"):
        source = bucket / ".pulumi" / kind / project
        target = root / ".pulumi" / kind / project
        target.mkdir(parents=True, exist_ok=True)
        for path in source.glob(f"{stack}*"):
            path.rename(target / path.name)
    (root / ".pulumi" / "meta.yaml").write_text("version: 1\n")
    assert statedirs.stack_dir(root, project, stack) == root

    again = engine.up(namespace, name, rendered, secrets_of(engine, instance))
    assert again.result == "succeeded", again.message
    assert set(again.change_summary) == {"same"}, again.change_summary
    assert uids_of(core, namespace, name) == uids
    assert not list(diystate.stacks_dir(bucket, project).glob(f"{stack}.json"))
    assert stack in engine.list_stacks()

    destroyed = engine.destroy(namespace, name)
    assert destroyed.result == "succeeded", destroyed.message
    assert not (diystate.stacks_dir(root, project) / f"{stack}.json").exists()
    assert stack not in engine.list_stacks()
    assert statedirs.stack_dir(root, project, stack) == bucket
