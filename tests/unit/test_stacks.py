"""The engine's modules and admin/preview.py without an engine: settings, passphrase, locks,
message trimming, preview formatting, and the worker process's life cycle."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jupyternetes.admin import preview
from jupyternetes.engine import (
    PreviewResult,
    PreviewStep,
    StackConfigError,
    StackEngine,
    StackSettings,
    masking,
    results,
)
from jupyternetes.engine import settings as engine_settings
from jupyternetes.engine.runtime import events, protocol
from jupyternetes.engine.runtime.procs import pid_alive
from jupyternetes.engine.state import backendurl, diystate, locks, statedirs


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    engine_settings.add_stack_arguments(parser)
    return parser.parse_args(argv)


def settings(tmp_path: Path, **overrides) -> StackSettings:
    values = {"backend_url": f"file://{tmp_path}/state", "passphrase": "p", "kubeconfig": None,
              "context": None, "pulumi_home": None}
    values.update(overrides)
    return StackSettings(**values)


# --- settings and passphrase ------------------------------------------------------------------


def test_settings_defaults_create_a_private_passphrase_file_and_reuse_it(tmp_path):
    state = tmp_path / "state"
    first = engine_settings.settings_from_args(parse(["--state-dir", str(state)]), environ={})
    passphrase_file = state / engine_settings.PASSPHRASE_FILE
    assert stat.S_IMODE(passphrase_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert len(first.passphrase) >= 32
    assert first.backend_url == f"file://{state}"
    assert first.work_dir is None
    assert first.project == "jupyternetes-instances"
    assert first.secret_variables == frozenset({"jupyterhub.api_token"})
    again = engine_settings.settings_from_args(parse(["--state-dir", str(state)]), environ={})
    assert again.passphrase == first.passphrase
    # The passphrase never shows in a repr (logs, tracebacks).
    assert first.passphrase not in repr(first)


def test_passphrase_from_environment_wins_and_no_file_is_written(tmp_path):
    args = parse(["--state-dir", str(tmp_path / "s"), "--backend-url", "s3://bucket/x",
                  "--secret-variable", "db.password", "--secret-variable", "other",
                  "--kubeconfig", "kc", "--context", "ctx", "--pulumi-home", "/ph"])
    result = engine_settings.settings_from_args(
        args, environ={"PULUMI_CONFIG_PASSPHRASE": "from-env"})
    assert result.passphrase == "from-env"
    assert not (tmp_path / "s" / engine_settings.PASSPHRASE_FILE).exists()
    assert result.backend_url == "s3://bucket/x"
    assert result.kubeconfig == os.path.abspath("kc")
    assert result.context == "ctx"
    assert result.pulumi_home == "/ph"
    assert result.secret_variables == {"jupyterhub.api_token", "db.password", "other"}


def test_passphrase_file_from_environment(tmp_path):
    pfile = tmp_path / "pp"
    pfile.write_text("secret-words\n")
    args = parse(["--state-dir", str(tmp_path / "s")])
    env = {"PULUMI_CONFIG_PASSPHRASE_FILE": str(pfile), "PULUMI_HOME": "/home-from-env"}
    result = engine_settings.settings_from_args(args, environ=env)
    assert result.passphrase == "secret-words"
    assert result.pulumi_home == "/home-from-env"
    pfile.write_text("\n")
    with pytest.raises(StackConfigError, match="is empty"):
        engine_settings.settings_from_args(args, environ=env)
    with pytest.raises(StackConfigError, match="cannot read"):
        engine_settings.settings_from_args(
            args, environ={"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "missing")})


def test_secret_values_are_case_insensitive_and_skip_empty(tmp_path):
    s = settings(tmp_path, secret_variables=frozenset({"jupyterhub.api_token", "DB.Password"}))
    values = s.secret_values({"JupyterHub.API_Token": "t0k", "db.password": "", "x": "y",
                              "db.PASSWORD": "pw"})
    assert values == {"t0k", "pw"}


def test_file_backend_path():
    assert backendurl.file_backend_path("file:///var/state") == Path("/var/state")
    assert backendurl.file_backend_path("file://~/st") == Path(os.path.expanduser("~/st"))
    assert backendurl.file_backend_path("s3://bucket") is None
    assert backendurl.file_backend_path("https://api.pulumi.com") is None


def test_stack_names_are_per_instance(tmp_path):
    engine = StackEngine(settings(tmp_path))
    assert engine.stack_name("default", "8dc366d8a0f05869bfdb6e7eb3d83f65") == \
        "default.8dc366d8a0f05869bfdb6e7eb3d83f65"
    assert engine.stack_name("a", "b") != engine.stack_name("a", "c")


def test_request_carries_objects_and_deduplicated_secrets(tmp_path):
    engine = StackEngine(settings(tmp_path, kubeconfig="/kc"))
    objects = [{"group": "pods", "entry": "n", "manifest": {"kind": "Pod"}, "extra": 1}]
    request = engine._request("up", "ns", "inst", objects, ["a", "a", "", "b"], refresh=True)
    assert request["stack"] == "ns.inst"
    assert request["objects"] == [{"group": "pods", "entry": "n", "manifest": {"kind": "Pod"}}]
    assert request["secret_values"] == ["a", "b"]
    assert request["refresh"] is True
    assert request["settings"]["kubeconfig"] == "/kc"
    assert request["settings"]["secret_variables"] == ["jupyterhub.api_token"]
    json.dumps(request)  # must be serialisable for the worker


# --- messages -----------------------------------------------------------------------------------


def test_trim_message_keeps_the_apiserver_reason_per_resource():
    diags = [
        ("pods/notebook", "\x1b[31merror: \x1b[0mresource default/x-notebook was not "
                          "successfully created by the Kubernetes API server: Pod \"x-notebook\" "
                          "is invalid: spec.containers[0].image: Required value\n"),
        (None, "update failed"),
        ("pods/notebook", "resource default/x-notebook was not successfully created by the "
                          "Kubernetes API server: Pod \"x-notebook\" is invalid: "
                          "spec.containers[0].image: Required value"),
    ]
    message = masking.trim_message(diags, "error: update failed\n")
    assert message == ('pods/notebook: resource default/x-notebook was not successfully created '
                       'by the Kubernetes API server: Pod "x-notebook" is invalid: '
                       'spec.containers[0].image: Required value')


def test_trim_message_falls_back_to_stderr_and_masks_secrets():
    stderr = ("Updating (ns.x):\n\nerror: the stack is currently locked by 1 lock(s): "
              "token abc123\nerror: update failed\n")
    message = masking.trim_message([], stderr, secret_values=["abc123"])
    assert message == "the stack is currently locked by 1 lock(s): token [secret]"
    assert masking.trim_message([], "") == ""
    long = masking.trim_message([(None, "x" * 5000)], "", limit=100)
    assert len(long) == 100 and long.endswith("...")


def test_mask_secrets_longest_first():
    assert masking.mask_secrets("abcdef abc", ["abc", "abcdef"]) == "[secret] [secret]"
    assert masking.mask_secrets("plain", [""]) == "plain"


def test_summarize_changes():
    assert results.summarize_changes({"same": 3}) == "no changes (3 unchanged)"
    assert results.summarize_changes({"create": 2, "replace": 1, "same": 1}) == \
        "2 create, 1 replace, 1 unchanged"
    assert results.summarize_changes({}) == "no changes (0 unchanged)"


# --- stale locks and pending operations ---------------------------------------------------------


def write_lock(backend: Path, stack: str, lock_id: str, pid: int, host: str) -> Path:
    path = locks.lock_dir(backend, "jupyternetes-instances") / stack / f"{lock_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "username": "root", "hostname": host,
                                "timestamp": "2026-01-01T00:00:00Z"}))
    return path


def stack_lock(backend: Path, stack: str, lock_id: str, pid: int, host: str) -> Path:
    """A lock where the operator's CLI writes it: in the stack's backend folder (statedirs)."""
    folder = statedirs.stack_dir(backend, "jupyternetes-instances", stack)
    return write_lock(folder, stack, lock_id, pid, host)


def test_locked_stacks_are_those_whose_holder_may_be_alive(tmp_path):
    host = socket.gethostname()
    write_lock(tmp_path, "ns.a", "l1", os.getpid(), host)  # live
    write_lock(tmp_path, "ns.b", "l2", 999_999_999, host)  # dead
    write_lock(tmp_path, "ns.c", "l3", os.getpid(), "another-host")
    broken = locks.lock_dir(tmp_path, "jupyternetes-instances") / "ns.d" / "l4.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    other_project = tmp_path / ".pulumi/locks/organization/other/ns.e/l5.json"
    other_project.parent.mkdir(parents=True)
    other_project.write_text(json.dumps({"pid": 999_999_999, "hostname": host}))
    # Without the Lease, another host's lock (and an unreadable one) is not provably stale; the
    # other project's lock is none of ours.
    assert locks.locked_stacks(tmp_path, "jupyternetes-instances") == {"ns.a", "ns.c", "ns.d"}
    # The Lease holder, acquired after those locks were written: they are stale too.
    later = time.time() + 5
    assert locks.locked_stacks(tmp_path, "jupyternetes-instances", leader_since=later) == {"ns.a"}
    assert locks.locked_stacks(tmp_path / "nothing", "jupyternetes-instances") == set()


def test_clear_stale_locks_removes_only_stale_files(tmp_path, monkeypatch):
    # The start-up clean-up also sweeps dead workers' folders in the temp dir: give it its own,
    # so folders left on this machine by other runs cannot add lines to `actions`.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    backend = tmp_path / "state"
    live = stack_lock(backend, "ns.a", "l1", os.getpid(), socket.gethostname())
    dead = stack_lock(backend, "ns.b", "l2", 999_999_999, socket.gethostname())
    # A stack created at the root before buckets existed keeps its state (and locks) there.
    legacy = diystate.stacks_dir(backend, "jupyternetes-instances") / "ns.r.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"version": 3, "checkpoint": {"latest": {"resources": []}}}))
    dead_legacy = stack_lock(backend, "ns.r", "l3", 999_999_999, socket.gethostname())
    assert dead_legacy.is_relative_to(locks.lock_dir(backend, "jupyternetes-instances"))
    assert not dead.is_relative_to(locks.lock_dir(backend, "jupyternetes-instances"))
    engine = StackEngine(settings(tmp_path, backend_url=f"file://{backend}"))
    actions = engine.clear_stale_locks()
    assert sorted(actions) == ["removed stale lock ns.b/l2.json", "removed stale lock ns.r/l3.json"]
    assert live.exists() and not dead.exists() and not dead_legacy.exists()
    remote = StackEngine(settings(tmp_path, backend_url="s3://bucket"))
    assert remote.clear_stale_locks() == []


def test_clear_stack_locks_removes_only_that_stacks_stale_locks(tmp_path):
    backend = tmp_path / "state"
    host = socket.gethostname()
    live = stack_lock(backend, "ns.a", "l1", os.getpid(), host)
    dead = stack_lock(backend, "ns.a", "l2", 999_999_999, host)
    other = stack_lock(backend, "ns.b", "l3", 999_999_999, host)
    foreign = stack_lock(backend, "ns.a", "l4", 999_999_999, "another-host")
    engine = StackEngine(settings(tmp_path, backend_url=f"file://{backend}"))
    assert engine.clear_stack_locks("ns.a") == ["removed stale lock ns.a/l2.json"]
    assert live.exists() and not dead.exists() and other.exists() and foreign.exists()
    assert locks.is_locked_error("error: the stack is currently locked by 1 lock(s). Either")
    assert not locks.is_locked_error("error: failed to load checkpoint")


def test_sharded_lock_sweep_judges_each_stack_by_its_own_shard_acquisition(tmp_path,
                                                                            monkeypatch):
    """A sharded replica clears only the stacks of shards it holds, and another host's lock
    only when written before it acquired that stack's shard (locks.py)."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    backend = tmp_path / "state"
    # Lock timestamps are 2026-01-01; shard of ns.a acquired later, of ns.b never (not held).
    mine = stack_lock(backend, "ns.a", "l1", 4242, "another-host")
    theirs = stack_lock(backend, "ns.b", "l2", 4242, "another-host")
    dead_theirs = stack_lock(backend, "ns.b", "l3", 999_999_999, socket.gethostname())
    for path in (mine, theirs, dead_theirs):
        os.utime(path, (1_767_225_600, 1_767_225_600))  # the file's mtime counts too
    engine = StackEngine(settings(tmp_path, backend_url=f"file://{backend}"))
    since = {"ns.a": time.time()}
    engine.lock_since = since.get
    actions = engine.clear_stale_locks(stacks=lambda stack: stack == "ns.a")
    assert actions == ["removed stale lock ns.a/l1.json"]
    assert theirs.exists() and dead_theirs.exists()  # another replica's stacks: untouched
    # The per-stack rule applies to an operation's own lock check too.
    again = stack_lock(backend, "ns.a", "l4", 4242, "another-host")
    os.utime(again, (1_767_225_600, 1_767_225_600))
    assert engine.clear_stack_locks("ns.a") == ["removed stale lock ns.a/l4.json"]
    assert engine.clear_stack_locks("ns.b") == ["removed stale lock ns.b/l3.json"]
    assert theirs.exists()  # ns.b's shard is not held: another host's lock is not judged


def test_stacks_with_pending_operations(tmp_path):
    root = tmp_path / ".pulumi/stacks/jupyternetes-instances"
    root.mkdir(parents=True)
    (root / "ns.a.json").write_text(json.dumps({"version": 3, "checkpoint": {
        "latest": {"resources": [], "pending_operations": [{"type": "creating"}]}}}))
    (root / "ns.b.json").write_text(json.dumps({"version": 3, "checkpoint": {
        "latest": {"resources": []}}}))
    (root / "ns.c.json").write_text(json.dumps({"version": 3, "checkpoint": {}}))
    (root / "ns.d.json").write_text("garbage")
    assert diystate.stacks_with_pending_operations(tmp_path, "jupyternetes-instances") == ["ns.a"]


# --- worker pure helpers ------------------------------------------------------------------------


def test_property_paths():
    value = {"spec": {"containers": [{"env": [{"name": "A", "value": "1"}]}]},
             "metadata": {"annotations": {"pulumi.com/skipAwait": "true"}}}
    assert events.split_path('metadata.annotations["pulumi.com/skipAwait"]') == \
        ["metadata", "annotations", "pulumi.com/skipAwait"]
    assert events.get_path(value, "spec.containers[0].env[0].value") == "1"
    assert events.get_path(value, 'metadata.annotations["pulumi.com/skipAwait"]') == "true"
    assert events.get_path(value, "spec.containers[3].env") is None
    assert events.get_path(value, "spec.nothing.here") is None


def test_resource_name_from_urn():
    base = "urn:pulumi:ns.x::jupyternetes-instances::"
    assert events.resource_name(base + "kubernetes:core/v1:Pod::pods/notebook") == \
        "pods/notebook"
    assert events.resource_name(base + "pulumi:pulumi:Stack::jupyternetes-instances-ns.x") \
        is None
    assert events.resource_name(None) is None


# --- preview formatting -------------------------------------------------------------------------


def step(op, name, kind="Pod", diff=None, object_name="x-notebook"):
    return PreviewStep(op=op, urn=f"urn:pulumi:s::p::kubernetes:core/v1:{kind}::{name}",
                       type=f"kubernetes:core/v1:{kind}", name=name, object_name=object_name,
                       changed=tuple(diff or ()), detailed_diff=diff or {})


def test_format_preview_lists_changes_per_object_and_masks_secrets():
    result = PreviewResult(
        result="succeeded",
        steps=(
            step("same", "pvcs/workspace", "PersistentVolumeClaim", object_name="x-workspace"),
            step("replace", "pods/notebook", diff={
                "spec.containers[0].env[0].value": {"kind": "update-replace",
                                                    "old": "[secret]", "new": "tok-NEW"},
                "spec.containers[0].image": {"kind": "update", "old": "a:1", "new": "a:2"}}),
            step("create-replacement", "pods/notebook"),
            step("delete-replaced", "pods/notebook"),
            step("create", "otherResources/svc", "Service", object_name="x-svc"),
            PreviewStep("create", "urn:x", "pulumi:providers:kubernetes", "kubernetes", None,
                        (), {}),
        ),
        change_summary={"replace": 1, "create": 1, "same": 2},
        message="", engine_seconds=1.0)
    text = preview.format_preview(result, "ns.x", secret_values=["tok-NEW"])
    assert text.splitlines() == [
        "Stack ns.x:",
        "  +- replace  pods/notebook       Pod x-notebook",
        "       ~ spec.containers[0].env[0].value: [secret] -> [secret] (forces replacement)",
        "       ~ spec.containers[0].image: a:1 -> a:2",
        "  +  create   otherResources/svc  Service x-svc",
        "Changes: 1 create, 1 replace, 1 unchanged",
    ]
    assert result.has_changes


def test_format_preview_without_changes():
    result = PreviewResult("succeeded", (step("same", "pods/notebook"),), {"same": 3}, "", 0.5)
    assert preview.format_preview(result, "ns.x") == \
        "Stack ns.x:\n  (no changes)\nChanges: no changes (1 unchanged)\n"
    assert not result.has_changes


def test_format_preview_shows_key_fields_of_created_objects_and_counts_only_user_objects():
    manifests = {
        "pods/notebook": {"kind": "Pod", "spec": {
            "containers": [{"name": "nb", "image": "jupyter/base:1",
                            "resources": {"requests": {"memory": "1Gi", "cpu": "500m"}}}],
            "volumes": [{"name": "w", "persistentVolumeClaim": {"claimName": "x-workspace"}}]}},
        "pvcs/workspace": {"kind": "PersistentVolumeClaim", "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    }
    result = PreviewResult(
        result="succeeded",
        steps=(
            PreviewStep("create", "urn:s", "pulumi:pulumi:Stack", "s", None, (), {}),
            PreviewStep("create", "urn:p", "pulumi:providers:kubernetes", "kubernetes", None,
                        (), {}),
            step("create", "pvcs/workspace", "PersistentVolumeClaim", object_name="x-workspace"),
            step("create", "pods/notebook"),
        ),
        change_summary={"create": 4}, message="", engine_seconds=1.0)
    text = preview.format_preview(result, "ns.x", manifests=manifests)
    assert text.splitlines() == [
        "Stack ns.x:",
        "  +  create   pvcs/workspace  PersistentVolumeClaim x-workspace",
        "       storage 1Gi, access ReadWriteOnce, class (default)",
        "  +  create   pods/notebook   Pod x-notebook",
        "       container nb: image jupyter/base:1 (requests cpu=500m, memory=1Gi)",
        "       claims: x-workspace",
        "Changes: 2 create",
    ]


def test_preview_result_from_worker_answer():
    answer = {"result": "succeeded", "change_summary": {"create": 1}, "engine_seconds": 2,
              "steps": [{"op": "create", "urn": "u", "type": "kubernetes:core/v1:Pod",
                         "name": "pods/n", "object_name": "x-n", "changed": [],
                         "detailed_diff": {}}]}
    result = PreviewResult.from_dict(answer)
    assert result.steps[0].kind == "Pod" and result.engine_seconds == 2.0
    assert result.has_changes


def test_preview_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    from jupyternetes.app import cli

    assert cli.main(["preview", "not-a-ref", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "jupyternetes preview: error: instance 'not-a-ref' must be written " \
                          "NAMESPACE/NAME"
    assert cli.main(["preview", "--state-dir", str(tmp_path)]) == 2
    assert "give NAMESPACE/NAME" in capsys.readouterr().err
    assert cli.main(["preview", "-t", str(tmp_path / "missing.yaml"), "-i", "x.yaml",
                     "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.yaml" in err


# --- the worker process -------------------------------------------------------------------------


def test_worker_without_pulumi_cli_is_a_configuration_error(tmp_path):
    engine = StackEngine(settings(tmp_path, work_dir=str(tmp_path / "w")),
                         env={"PATH": str(tmp_path), "HOME": str(tmp_path)}, timeout=60)
    with pytest.raises(StackConfigError, match="check PATH"):
        engine.destroy("ns", "x")


def test_worker_reports_invalid_objects_as_failed(tmp_path):
    engine = StackEngine(settings(tmp_path), env={"PATH": str(tmp_path)}, timeout=60)
    result = engine.up("ns", "x", [{"group": "pods", "entry": "n", "manifest": {
        "apiVersion": "v1", "kind": "Pod", "metadata": {}}}], ["s3cr3t"])
    assert result.result == "failed"
    assert "metadata.name is missing" in result.message
    assert result.wall_seconds > 0


def test_worker_dies_with_the_process_that_started_it(tmp_path):
    # An intermediate "operator" starts a worker that waits for its request, then is SIGKILLed:
    # the worker must not outlive it (it would hold the stack lock of a real operation). The
    # worker's stdin is *our* pipe, so the parent's death does not end it by EOF: only
    # PR_SET_PDEATHSIG can.
    code = (
        "import os, subprocess, sys, time\n"
        "env = dict(os.environ, JUPYTERNETES_WORKER_PARENT_PID=str(os.getpid()))\n"
        "p = subprocess.Popen([sys.executable, '-m', 'jupyternetes.engine.runtime.worker'],"
        " stdout=subprocess.PIPE, env=env)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stdin=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    worker_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # let the worker reach its prctl() call
    assert pid_alive(worker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(worker_pid):
            time.sleep(0.1)
        assert not pid_alive(worker_pid)
    finally:
        if pid_alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        parent.stdin.close()


def test_worker_timeout_gives_a_failed_result(tmp_path, monkeypatch):
    # A worker that never answers (here: python sleeping) is stopped and reported, not raised.
    monkeypatch.setattr(protocol, "CANCEL_GRACE_SECONDS", 0.5)
    monkeypatch.setattr(sys, "executable", str(write_sleeper(tmp_path)))
    engine = StackEngine(settings(tmp_path), env=dict(os.environ), timeout=1.0)
    started = time.monotonic()
    result = engine.destroy("ns", "x")
    assert time.monotonic() - started < 15
    assert result.result == "failed"
    assert "did not finish within 1s" in result.message


def write_sleeper(tmp_path: Path) -> Path:
    script = tmp_path / "sleeper"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    return script


def test_trim_message_drops_the_object_diff_dump_with_old_values():
    message = ('resource x was not successfully created by the Kubernetes API server: Pod "x" '
               "is invalid: spec: Forbidden: pod updates may not change fields other than "
               "`spec.containers[*].image`\n@@ -145,12 +145,12 @@\n \"Env\": [\n {\n"
               '-  "Value": "old-token-123",\n+  "Value": "[secret]",\n')
    trimmed = masking.trim_message([("pods/notebook", message)], "")
    assert trimmed.startswith('pods/notebook: resource x was not successfully created')
    assert trimmed.endswith("`spec.containers[*].image`")
    assert "old-token-123" not in trimmed


def test_values_inside_secrets_are_masked():
    wrapped = {"spec": {"containers": {events.SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270",
                                       "value": "[secret]"}}}
    assert events.get_path(wrapped, "spec.containers[0].env[0].value") == "[secret]"
    assert events.get_path(wrapped, "spec.containers") == "[secret]"
    assert events.mask_value("Bearer tok", ["tok"]) == "[secret]"
    assert events.mask_value("bob", ["tok"]) == "bob"
    assert events.mask_value({"a": "tok"}, ["tok"]) == '{"a": "[secret]"}'


def test_urns_are_dropped_from_messages():
    diag = ('resource "urn:pulumi:ns.x::jupyternetes-instances::kubernetes:core/v1:Pod::'
            'pods/notebook" was not successfully created by the Kubernetes API server: Pod "x" '
            "is invalid: spec.containers[0].image: Required value")
    assert masking.trim_message([("pods/notebook", diag)]) == (
        "pods/notebook: resource was not successfully created by the Kubernetes API server: "
        'Pod "x" is invalid: spec.containers[0].image: Required value')


def test_repair_request_by_stack_name(tmp_path):
    engine = StackEngine(settings(tmp_path))
    request = engine._request("repair", "ns", "", (), (), stack="ns..abcdef-0123456789")
    assert request["stack"] == "ns..abcdef-0123456789"


# --- fewer CLI runs per operation -------------------------------------------------------------


def test_stack_names_from_stack_ls_keep_only_the_project():
    from jupyternetes.engine.stackengine import stack_names

    listing = ('[{"name": "organization/jupyternetes-instances/ns.a"}, '
               '{"name": "organization/other/ns.b"}, {"name": "ns.c"}, {"current": true}]')
    assert stack_names(listing, "jupyternetes-instances") == ["ns.a", "ns.c"]
    assert stack_names("[]", "jupyternetes-instances") == []
