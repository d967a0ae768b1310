"""stackseed: a new stack's first checkpoint, written instead of a `pulumi stack init` run.

The sibling below is what `pulumi stack init --secrets-provider passphrase` (v3.274.1) wrote;
the e2e tests run `up`/`destroy` on stacks created this way with the real CLI."""

from __future__ import annotations

import json

from jupyternetes.engine.state import diystate, stackseed

PROJECT = "jupyternetes"
SALT = "v1:LXVKAJJMAJU=:v1:yqVCKuOKS6JqCPKs:NTkGA23wWc43RkFcVMQ34zrYZ9AM+w=="
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
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")
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
    assert stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")
    written = json.loads((root / "ns2.b.json").read_text())
    assert written["version"] == 3 and "resources" not in written["checkpoint"]["latest"]


def test_no_sibling_means_stack_init(tmp_path):
    root = backend(tmp_path)
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")
    assert list(root.iterdir()) == []


def test_an_empty_backend_means_stack_init(tmp_path):
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")
    assert not (tmp_path / ".pulumi").exists()


def test_an_existing_stack_is_never_overwritten(tmp_path):
    root = backend(tmp_path, ("ns1.a", SIBLING), ("ns2.b", "{\"mine\": 1}"))
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")
    assert (root / "ns2.b.json").read_text() == "{\"mine\": 1}"


def test_unusable_siblings_are_skipped(tmp_path):
    other = json.loads(json.dumps(SIBLING))
    other["checkpoint"]["latest"]["secrets_providers"] = {"type": "hashivault", "state": {}}
    backend(tmp_path, ("a.corrupt", ""), ("b.other", other), ("c.v1", {"version": 1}))
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")
    backend_ok = tmp_path / "ok"
    backend_ok.mkdir()
    backend(backend_ok, ("a.corrupt", ""), ("b.other", other), ("c.good", SIBLING))
    assert stackseed.create_from_sibling(backend_ok, PROJECT, "ns2.b")


def test_an_unknown_layout_means_stack_init(tmp_path):
    backend(tmp_path, ("ns1.a", SIBLING))
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 0\n")
    assert not stackseed.create_from_sibling(tmp_path, PROJECT, "ns2.b")


def test_stack_salt_reads_the_checkpoint(tmp_path):
    backend(tmp_path, ("ns1.a", SIBLING), ("bad.one", "not json"))
    assert stackseed.stack_salt(tmp_path, PROJECT, "ns1.a") == SALT
    assert stackseed.stack_salt(tmp_path, PROJECT, "bad.one") is None
    assert stackseed.stack_salt(tmp_path, PROJECT, "missing") is None
