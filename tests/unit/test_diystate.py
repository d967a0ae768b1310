"""diystate: repair of half-written file-backend blobs, on files laid out as Pulumi's DIY
backend and gocloud's fileblob write them (the e2e tests do it on real state)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from jupyternetes.engine.state import diystate

PROJECT = "jupyternetes-instances"
STACK = "ns.my.server"  # stack names contain dots


def checkpoint_doc(marker: str) -> bytes:
    return json.dumps({"version": 3, "checkpoint": {"stack": STACK, "latest": {
        "resources": [{"urn": marker}]}}}).encode()


def attrs_doc() -> bytes:
    return json.dumps({"user.content_type": "text/plain", "md5": "x"}).encode()


def layout(root: Path) -> Path:
    stacks = diystate.stacks_dir(root, PROJECT)
    stacks.mkdir(parents=True)
    checkpoint = stacks / f"{STACK}.json"
    checkpoint.write_bytes(checkpoint_doc("current"))
    (stacks / f"{STACK}.json.attrs").write_bytes(attrs_doc())
    (stacks / f"{STACK}.json.bak").write_bytes(checkpoint_doc("previous"))
    return checkpoint


def marker(path: Path) -> str:
    return json.loads(path.read_bytes())["checkpoint"]["latest"]["resources"][0]["urn"]


def test_stack_of_parses_names_by_suffix():
    assert diystate.stack_of("a.b.json") == "a.b"
    assert diystate.stack_of("a.b.json.attrs") == "a.b"
    assert diystate.stack_of("a.b.json.bak.attrs") == "a.b"
    assert diystate.stack_of("a.b.json.18eb7eb9a05bd51c.tmp") == "a.b"
    assert diystate.stack_of("a.b.json.bak.1f.tmp") == "a.b"
    assert diystate.stack_of("a.b.json.corrupt") is None
    assert diystate.stack_of(".json") is None


def test_healthy_stack_is_left_alone(tmp_path):
    checkpoint = layout(tmp_path)
    before = {p.name: p.read_bytes() for p in checkpoint.parent.iterdir()}
    assert diystate.repair_stack(tmp_path, PROJECT, STACK) == []
    assert {p.name: p.read_bytes() for p in checkpoint.parent.iterdir()} == before


def test_empty_attrs_with_complete_tmp_finishes_the_write(tmp_path):
    checkpoint = layout(tmp_path)
    (checkpoint.parent / f"{STACK}.json.attrs").write_bytes(b"")
    older = checkpoint.parent / f"{STACK}.json.{0x10:x}.tmp"
    older.write_bytes(checkpoint_doc("older"))
    newest = checkpoint.parent / f"{STACK}.json.{0x200:x}.tmp"
    newest.write_bytes(checkpoint_doc("new"))
    actions = diystate.repair_stack(tmp_path, PROJECT, STACK)
    assert marker(checkpoint) == "new"
    assert not (checkpoint.parent / f"{STACK}.json.attrs").exists()
    assert not older.exists() and not newest.exists()
    assert any("finished the interrupted write" in a and newest.name in a for a in actions)
    assert any("removed empty attributes file" in a for a in actions)


def test_corrupt_attrs_without_usable_tmp_keeps_the_checkpoint(tmp_path):
    checkpoint = layout(tmp_path)
    (checkpoint.parent / f"{STACK}.json.attrs").write_bytes(b'{"user.cont')
    partial = checkpoint.parent / f"{STACK}.json.abc.tmp"
    partial.write_bytes(checkpoint_doc("new")[:20])
    actions = diystate.repair_stack(tmp_path, PROJECT, STACK)
    assert marker(checkpoint) == "current"
    assert not partial.exists()
    assert any("removed corrupt attributes file" in a for a in actions), actions


def test_empty_checkpoint_is_restored_from_the_newest_valid_backup(tmp_path):
    checkpoint = layout(tmp_path)
    backups = diystate.backups_dir(tmp_path, PROJECT) / STACK
    backups.mkdir(parents=True)
    old_copy = backups / f"{STACK}.1795668219213617595.json"
    old_copy.write_bytes(checkpoint_doc("backup"))
    os.utime(old_copy, ns=(1, 1))
    broken = backups / f"{STACK}.1795668406855386108.json"
    broken.write_bytes(b"")  # newest, but empty: skipped
    checkpoint.write_bytes(b"")
    actions = diystate.repair_stack(tmp_path, PROJECT, STACK)
    assert marker(checkpoint) == "previous"  # the .bak is newer than the old copy
    assert (checkpoint.parent / f"{STACK}.json.corrupt").read_bytes() == b""
    assert not (checkpoint.parent / f"{STACK}.json.attrs").exists()
    assert any("was empty: restored it from" in a for a in actions), actions
    assert diystate.changed_anything(actions)


def test_corrupt_checkpoint_without_backup_is_reported_not_touched(tmp_path):
    checkpoint = layout(tmp_path)
    (checkpoint.parent / f"{STACK}.json.bak").unlink()
    checkpoint.write_bytes(b'{"version": 3, "check')
    actions = diystate.repair_stack(tmp_path, PROJECT, STACK)
    assert checkpoint.read_bytes() == b'{"version": 3, "check'
    assert len(actions) == 1 and "no valid backup" in actions[0]
    assert not diystate.changed_anything(actions)


def test_removed_stack_is_not_resurrected_from_its_bak(tmp_path):
    checkpoint = layout(tmp_path)
    checkpoint.unlink()  # `stack rm` keeps <stack>.json.bak
    assert diystate.repair_stack(tmp_path, PROJECT, STACK) == []
    assert not checkpoint.exists()


def test_checkpoint_load_errors_are_recognised():
    assert diystate.is_checkpoint_load_error("stderr: error: failed to load checkpoint: EOF")
    assert diystate.is_checkpoint_load_error(
        "error: failed to load checkpoint: place 1: unexpected end of JSON input")
    assert not diystate.is_checkpoint_load_error("the stack is currently locked by 1 lock(s)")


def test_stack_exists_reads_the_project_scoped_layout(tmp_path):
    assert diystate.stack_exists(tmp_path, PROJECT, STACK) is False  # empty backend
    checkpoint = layout(tmp_path)
    assert diystate.stack_exists(tmp_path, PROJECT, STACK) is None  # no meta.yaml: ask the CLI
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 1\n")
    assert diystate.stack_exists(tmp_path, PROJECT, STACK) is True
    assert diystate.stack_exists(tmp_path, PROJECT, "other") is False
    checkpoint.unlink()  # removed: only the .bak is left
    assert diystate.stack_exists(tmp_path, PROJECT, STACK) is False
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 0\n")  # legacy layout
    assert diystate.stack_exists(tmp_path, PROJECT, STACK) is None


def test_backups_and_history_lose_unreadable_attrs_and_tmp_files(tmp_path):
    layout(tmp_path)
    backups = diystate.backups_dir(tmp_path, PROJECT) / STACK
    history = diystate.history_dir(tmp_path, PROJECT) / STACK
    backups.mkdir(parents=True)
    history.mkdir(parents=True)
    good = backups / f"{STACK}.1795668219213617595.json"
    good.write_bytes(checkpoint_doc("backup"))
    (backups / f"{good.name}.attrs").write_bytes(attrs_doc())
    (backups / f"{STACK}.1795668406855386108.json.18eb7eb9a05bd51c.tmp").write_bytes(b"{")
    (history / f"{STACK}-1795668406.history.json.attrs").write_bytes(b"")
    (history / f"{STACK}-1795668406.history.json").write_bytes(b"{}")
    actions = diystate.repair_stack(tmp_path, PROJECT, STACK)
    assert sorted(p.name for p in backups.iterdir()) == [good.name, f"{good.name}.attrs"]
    assert sorted(p.name for p in history.iterdir()) == [f"{STACK}-1795668406.history.json"]
    assert len(actions) == 2, actions


def test_one_folder_listing_serves_every_stack_of_a_repair_pass(tmp_path):
    """clear_stale_locks lists the stacks folder once (tmp_index) for all stacks: each blob
    still gets exactly its own tmp files, never a sibling stack's with a longer name."""
    checkpoint = layout(tmp_path)
    folder = checkpoint.parent
    (folder / f"{STACK}.json.attrs").write_bytes(b"")
    (folder / f"{STACK}.json.{0x200:x}.tmp").write_bytes(checkpoint_doc("new"))
    sibling = folder / f"{STACK}x.json.{0x300:x}.tmp"  # another stack: "ns.my.serverx"
    sibling.write_bytes(checkpoint_doc("not mine"))
    index = diystate.tmp_index(folder)
    assert sorted(index) == [f"{STACK}.json", f"{STACK}x.json"]
    assert diystate.tmp_files(checkpoint, index) == diystate.tmp_files(checkpoint)
    diystate.repair_stack(tmp_path, PROJECT, STACK, index)
    assert marker(checkpoint) == "new"
    assert sibling.exists()
