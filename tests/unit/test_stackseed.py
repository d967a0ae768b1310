"""stackseed: a new stack's first checkpoint, written instead of a `pulumi stack init` run.

The sibling below is what `pulumi stack init --secrets-provider passphrase` (v3.274.1) wrote;
the e2e tests run `up`/`destroy` on stacks created this way with the real CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import semver
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jupyternetes.engine.state import diystate, stackseed, statedirs

PROJECT = "jupyternetes"
# What that CLI wrote (with a passphrase this test does not know).
CLI_SALT = "v1:LXVKAJJMAJU=:v1:yqVCKuOKS6JqCPKs:NTkGA23wWc43RkFcVMQ34zrYZ9AM+w=="
PASSPHRASE = "the operator's passphrase"
TESTED = semver.VersionInfo(3, 274, 1)


def seal(passphrase: str, salt: bytes, nonce: bytes) -> str:
    """A passphrase state as Pulumi's secrets manager writes it (the e2e tests check the real
    CLI's: tests/e2e/test_stackseed.py)."""
    key = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), salt, stackseed.KEY_ITERATIONS, 32)
    sealed = AESGCM(key).encrypt(nonce, b"pulumi", None)
    b64 = base64.b64encode
    return f"v1:{b64(salt).decode()}:v1:{b64(nonce).decode()}:{b64(sealed).decode()}"


SALT = seal(PASSPHRASE, b"8bytes!!", b"twelve bytes")
SEED_ARGS = (PASSPHRASE, TESTED)
SIBLING = {"version": 3, "checkpoint": {"stack": "organization/jupyternetes/ns1.a", "latest": {
    "manifest": {"time": "2026-12-01T15:39:31.404459719Z",
                 "magic": "294a449188e3da4517a05ae33e5c1307bbafa419a82735db7986e01d5ec6b1c0",
                 "version": "v3.274.1"},
    "secrets_providers": {"type": "passphrase", "state": {"salt": SALT}},
    "metadata": {}}}}


def backend(tmp_path, *siblings: tuple[str, object]):
    (tmp_path / ".pulumi").mkdir()
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 1\n")
    root = diystate.stacks_dir(tmp_path, PROJECT)
    root.mkdir(parents=True)
    for name, content in siblings:
        (root / f"{name}.json").write_text(content if isinstance(content, str)
                                           else json.dumps(content))
    return root


def test_a_new_stack_gets_the_siblings_salt_and_its_own_name(tmp_path):
    root = backend(tmp_path, ("ns1.a", SIBLING))
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    written = json.loads((root / "ns2.b.json").read_text())
    assert written["version"] == 3
    assert written["checkpoint"]["stack"] == "organization/jupyternetes/ns2.b"
    latest = written["checkpoint"]["latest"]
    assert latest["secrets_providers"] == {"type": "passphrase", "state": {"salt": SALT}}
    assert latest["manifest"]["magic"] == SIBLING["checkpoint"]["latest"]["manifest"]["magic"]
    assert "resources" not in latest
    assert diystate.stack_exists(tmp_path, PROJECT, "ns2.b") is True
    assert sorted(p.name for p in root.iterdir()) == ["ns1.a.json", "ns2.b.json"]  # no tmp


def test_a_sibling_after_its_first_up_is_version_4(tmp_path):
    after_up = json.loads(json.dumps(SIBLING))
    after_up.update(version=4, features=["hooks"])
    after_up["checkpoint"]["latest"]["resources"] = [{"urn": "x", "type": "pulumi:pulumi:Stack"}]
    root = backend(tmp_path, ("ns1.a", after_up))
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    written = json.loads((root / "ns2.b.json").read_text())
    assert written["version"] == 3 and "resources" not in written["checkpoint"]["latest"]


def test_no_sibling_means_stack_init(tmp_path):
    root = backend(tmp_path)
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    assert list(root.iterdir()) == []


def test_an_empty_backend_means_stack_init(tmp_path):
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    assert not (tmp_path / ".pulumi").exists()


def test_an_existing_stack_is_never_overwritten(tmp_path):
    root = backend(tmp_path, ("ns1.a", SIBLING), ("ns2.b", "{\"mine\": 1}"))
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    assert (root / "ns2.b.json").read_text() == "{\"mine\": 1}"


def test_unusable_siblings_are_skipped(tmp_path):
    other = json.loads(json.dumps(SIBLING))
    other["checkpoint"]["latest"]["secrets_providers"] = {"type": "hashivault", "state": {}}
    backend(tmp_path, ("a.corrupt", ""), ("b.other", other), ("c.v1", {"version": 1}))
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    backend_ok = tmp_path / "ok"
    backend_ok.mkdir()
    backend(backend_ok, ("a.corrupt", ""), ("b.other", other), ("c.good", SIBLING))
    assert stackseed.create_from_sibling(backend_ok, PROJECT, "ns2.b", *SEED_ARGS)


def test_an_unknown_layout_means_stack_init(tmp_path):
    backend(tmp_path, ("ns1.a", SIBLING))
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 0\n")
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)


def test_stack_salt_reads_the_checkpoint(tmp_path):
    backend(tmp_path, ("ns1.a", SIBLING), ("bad.one", "not json"))
    assert stackseed.stack_salt(tmp_path, PROJECT, "ns1.a") == SALT
    assert stackseed.stack_salt(tmp_path, PROJECT, "bad.one") is None
    assert stackseed.stack_salt(tmp_path, PROJECT, "missing") is None


def test_the_last_stack_gone_the_next_is_seeded_from_the_projects_seed(tmp_path):
    root = backend(tmp_path, ("ns1.a", SIBLING))
    assert stackseed.remember(tmp_path, PROJECT, "ns1.a")
    assert not stackseed.remember(tmp_path, PROJECT, "ns1.a"), "rewrote an unchanged seed"
    (root / "ns1.a.json").unlink()  # every server stopped: no stack left
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    written = json.loads((root / "ns2.b.json").read_text())
    assert written["checkpoint"]["stack"] == f"organization/{PROJECT}/ns2.b"
    assert written["checkpoint"]["latest"]["secrets_providers"]["state"]["salt"] == SALT


def test_the_seed_lives_in_no_backend_folder(tmp_path):
    backend(tmp_path, ("ns1.a", SIBLING))
    bucket = statedirs.bucket_dir(tmp_path, "ns1.a")
    bucket.mkdir(parents=True)
    backend(bucket, ("ns1.a", SIBLING))
    assert stackseed.remember(bucket, PROJECT, "ns1.a")
    seed = stackseed.seed_file(bucket, PROJECT)
    assert seed.exists() and seed == stackseed.seed_file(tmp_path, PROJECT)
    assert ".pulumi" not in seed.relative_to(tmp_path).parts
    assert all(not seed.is_relative_to(d / ".pulumi") for d in statedirs.backend_dirs(tmp_path))


def test_a_seed_of_another_passphrase_is_not_used_and_is_replaced(tmp_path):
    old = json.loads(json.dumps(SIBLING))
    old["checkpoint"]["latest"]["secrets_providers"]["state"]["salt"] = seal(
        "an earlier passphrase", b"8bytes??", b"twelve bytes")
    root = backend(tmp_path, ("old.a", old))
    assert stackseed.remember(tmp_path, PROJECT, "old.a")
    (root / "old.a.json").unlink()
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    # The CLI made ns2.b (`stack init`, the current passphrase): it becomes the seed.
    (root / "ns2.b.json").write_text(json.dumps(SIBLING))
    assert stackseed.remember(tmp_path, PROJECT, "ns2.b")
    (root / "ns2.b.json").unlink()
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns3.c", *SEED_ARGS)


def test_nothing_to_remember_from_a_missing_or_foreign_checkpoint(tmp_path):
    backend(tmp_path, ("other.a", {"version": 3, "checkpoint": {"latest": {
        "secrets_providers": {"type": "cloud", "state": {"url": "awskms://k"}}}}}))
    assert not stackseed.remember(tmp_path, PROJECT, "missing")
    assert not stackseed.remember(tmp_path, PROJECT, "other.a")
    assert not stackseed.seed_file(tmp_path, PROJECT).exists()


def test_a_salt_opens_only_with_its_passphrase():
    assert stackseed.salt_matches(SALT, PASSPHRASE)
    assert not stackseed.salt_matches(SALT, "another passphrase")
    assert not stackseed.salt_matches(CLI_SALT, PASSPHRASE)
    for broken in ("", "v1:abc", SALT.replace("v1:", "v2:", 1), SALT[:-4] + "AAA=",
                   SALT.replace(":v1:", ":v1:!!", 1)):
        assert not stackseed.salt_matches(broken, PASSPHRASE), broken


def test_operations_asking_at_once_share_one_key_derivation(monkeypatch):
    """A burst's first operations all check the same sibling salt at the same moment: one
    derivation, the others wait for its result (not one each)."""
    salt = seal(PASSPHRASE, os.urandom(8), b"twelve bytes")  # not in the cache yet
    derivations = []
    real = hashlib.pbkdf2_hmac

    def counted(*args, **kwargs):
        derivations.append(args[2])
        time.sleep(0.2)  # the others arrive while this one runs
        return real(*args, **kwargs)

    monkeypatch.setattr(stackseed.hashlib, "pbkdf2_hmac", counted)
    start = threading.Barrier(4)

    def ask() -> bool:
        start.wait()
        return stackseed.salt_matches(salt, PASSPHRASE)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: ask(), range(4)))
    assert answers == [True] * 4
    assert len(derivations) == 1


def test_a_sibling_of_another_passphrase_is_not_copied(tmp_path):
    """A stack left from an earlier passphrase: its salt would make the new stack one no key
    of the operator opens. Another sibling whose salt opens is used instead."""
    stale = json.loads(json.dumps(SIBLING))
    stale["checkpoint"]["latest"]["secrets_providers"]["state"]["salt"] = CLI_SALT
    root = backend(tmp_path, ("a.stale", stale))
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    assert sorted(p.name for p in root.iterdir()) == ["a.stale.json"]
    (root / "b.good.json").write_text(json.dumps(SIBLING))
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    assert stackseed.stack_salt(tmp_path, PROJECT, "ns2.b") == SALT


@pytest.mark.parametrize("version", [None, semver.VersionInfo(3, 273, 9),
                                     semver.VersionInfo(3, 275, 0),
                                     semver.VersionInfo(4, 0, 0)])
def test_only_a_tested_cli_version_gets_a_written_checkpoint(tmp_path, version):
    root = backend(tmp_path, ("ns1.a", SIBLING))
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", PASSPHRASE, version)
    assert sorted(p.name for p in root.iterdir()) == ["ns1.a.json"]
    assert stackseed.format_tested(TESTED)


def test_the_checkpoint_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    root = backend(tmp_path, ("ns1.a", SIBLING))
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(stackseed.os, "fsync", fsync)
    monkeypatch.setattr(stackseed.os, "replace", replace)
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b", *SEED_ARGS)
    assert steps == ["fsync file", "rename", "fsync dir"]
    assert (root / "ns2.b.json").exists()
