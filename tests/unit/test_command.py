"""engine/runtime/command.py: the worker's PulumiCommand answers the SDK's read-backs from the
events.

A fake `pulumi` on PATH records every run, so these tests pin the exact command lines the
installed SDK sends for `Stack.select`, `Stack.outputs` and `Stack.info`: if an SDK upgrade
changes them, the local answers stop matching and these tests fail (the worker would still be
correct, only slower: it falls back to the CLI).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi.automation import events as auto_events

from jupyternetes.engine.runtime import command, events

STACK_URN = "urn:pulumi:s::p::pulumi:pulumi:Stack::p-s"
OBJECTS = [{"group": "pods", "entry": "notebook", "uid": "u-1"}]


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pulumi` first on PATH: `version` prints a version, anything else prints `{}`; every
    run is appended to the returned file."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n'
                      'case "$*" in version) echo v3.274.1;; *) echo "{}";; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return calls


def runs(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def event(sequence: int, **payload) -> auto_events.EngineEvent:
    return auto_events.EngineEvent.from_json({"sequence": sequence, "timestamp": 0, **payload})


def finished_collector(outputs: dict) -> events.Collector:
    collector = events.Collector()
    collector(event(1, resOutputsEvent={"metadata": {
        "op": "same", "urn": STACK_URN, "type": "pulumi:pulumi:Stack", "provider": "",
        "new": {"type": "pulumi:pulumi:Stack", "urn": STACK_URN, "outputs": outputs}}}))
    collector(event(2, summaryEvent={"maybeCorrupt": False, "durationSeconds": 1,
                                     "resourceChanges": {"same": 3, "update": 1},
                                     "PolicyPacks": {}}))
    return collector


def workspace(tmp_path: Path, cli: command.EventCommand) -> auto.LocalWorkspace:
    return auto.LocalWorkspace(work_dir=str(tmp_path), pulumi_command=cli)


def test_the_public_constructor_asks_the_version_once(fake_cli):
    cli = command.EventCommand()
    assert str(cli.version) == "3.274.1" and cli.command == "pulumi"
    assert runs(fake_cli) == ["version"]


def test_select_outputs_and_info_of_a_known_stack_run_no_cli(tmp_path, fake_cli):
    cli = command.EventCommand()
    collector = finished_collector({"objects": OBJECTS})
    with cli.answering("ns.a", True, collector):
        stack = auto.Stack.select("ns.a", workspace(tmp_path, cli))
        outputs = stack.outputs()
        summary = stack.info()
    assert outputs["objects"].value == OBJECTS and not outputs["objects"].secret
    assert summary is not None and summary.resource_changes == {"same": 3, "update": 1}
    assert runs(fake_cli) == ["version"]
    assert cli.local_answers == 4  # select, output (masked + plain), history


def test_a_stack_not_known_to_exist_is_selected_by_the_cli(tmp_path, fake_cli):
    cli = command.EventCommand()
    with cli.answering("ns.a", False, events.Collector()):
        auto.Stack.select("ns.a", workspace(tmp_path, cli))
    assert runs(fake_cli) == ["version", "--non-interactive stack select --stack ns.a"]


def test_after_the_operation_the_cli_answers_again(tmp_path, fake_cli):
    cli = command.EventCommand()
    with cli.answering("ns.a", True, finished_collector({"objects": OBJECTS})):
        pass
    auto.Stack.select("ns.a", workspace(tmp_path, cli))
    assert runs(fake_cli)[-1] == "--non-interactive stack select --stack ns.a"


def test_secret_outputs_are_read_back_through_the_cli(tmp_path, fake_cli):
    # Events show secrets masked; only `stack output --show-secrets` has their values.
    masked = {events.SECRET_SIG: events.SECRET_SIG_VALUE}
    cli = command.EventCommand()
    with cli.answering("ns.a", True, finished_collector({"objects": masked})):
        auto.Stack.select("ns.a", workspace(tmp_path, cli)).outputs()
    assert runs(fake_cli)[1:] == [
        "--non-interactive stack output --json --stack ns.a",
        "--non-interactive stack output --json --show-secrets --stack ns.a"]


def test_a_missing_summary_falls_back_to_stack_history(tmp_path, fake_cli, monkeypatch):
    monkeypatch.setattr(command, "SUMMARY_WAIT_SECONDS", 0.01)
    cli = command.EventCommand()
    assert cli.local_answer(["stack", "history", "--json", "--show-secrets", "--page-size",
                             "1", "--page", "1", "--stack", "ns.a"]) is None
    with cli.answering("ns.a", True, events.Collector()):
        assert cli.local_answer(["stack", "history", "--json", "--show-secrets",
                                 "--page-size", "1", "--page", "1", "--stack", "ns.a"]) is None
        assert cli.local_answer(["stack", "rm", "--yes", "--stack", "ns.a"]) is None


def test_the_history_answer_parses_as_the_sdk_parses_it():
    text = command.last_update_json(finished_collector({}))
    assert text is not None
    entry = json.loads(text)[0]
    summary = auto.UpdateSummary(
        kind=entry["kind"], start_time=entry["startTime"], message=entry["message"],
        environment=entry["environment"], config=entry["config"], result=entry["result"],
        resource_changes=entry["resourceChanges"])
    assert summary.resource_changes == {"same": 3, "update": 1}


def test_the_secret_signature_is_the_sdks():
    # Pulumi's wire format (Go SDK: resource/sig.Key, sig.Secret); the Python SDK keeps them
    # under private names, read here only to pin the copy in events.py.
    from pulumi.runtime import rpc

    assert rpc._special_sig_key == events.SECRET_SIG
    assert rpc._special_secret_sig == events.SECRET_SIG_VALUE
