"""statedirs: the operator's file:// stacks spread over hash buckets, legacy root stacks kept."""

from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from jupyternetes.engine.state import diystate, stackseed, statedirs
from jupyternetes.engine.state.backendurl import file_backend_path
from tests.unit.test_stackseed import SEED_ARGS, SIBLING

PROJECT = "jupyternetes"
STACK_NAMES = st.text(alphabet=string.ascii_lowercase + string.digits + "-._", min_size=1,
                      max_size=80)


@given(STACK_NAMES)
def test_bucket_is_two_hex_digits_of_the_name_alone(stack):
    bucket = statedirs.bucket_of(stack)
    assert len(bucket) == statedirs.BUCKET_HEX_DIGITS
    assert set(bucket) <= set("0123456789abcdef")
    assert statedirs.bucket_of(stack) == bucket  # no state, no salt


@given(STACK_NAMES, st.sampled_from(["file:///var/state", "file:///var/state/",
                                     "file://~/state", "file:///var/state?no_tmp_dir=true"]))
def test_bucket_url_is_the_bucket_dir_in_the_roots_spelling(stack, root_url):
    url = statedirs.bucket_url(root_url, stack)
    root = file_backend_path(root_url)
    assert file_backend_path(url) == statedirs.bucket_dir(root, stack)
    assert statedirs.root_of(statedirs.bucket_dir(root, stack)) == root
    assert url.startswith(root_url.split("?")[0].rstrip("/") + "/buckets/")
    assert url.endswith("?no_tmp_dir=true") == root_url.endswith("?no_tmp_dir=true")


def test_buckets_spread_5000_stacks_evenly():
    counts: dict[str, int] = {}
    for i in range(5000):
        bucket = statedirs.bucket_of(f"ns-{i % 7}.user-{i}")
        counts[bucket] = counts.get(bucket, 0) + 1
    assert len(counts) == statedirs.BUCKETS
    assert max(counts.values()) < 45  # ~20 each: a folder listing stays short


def checkpoint(folder: Path, stack: str, content: object = None) -> Path:
    path = diystate.stacks_dir(folder, PROJECT) / f"{stack}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content if content is not None else {"version": 3}))
    return path


def test_a_stack_made_before_buckets_stays_at_the_root(tmp_path):
    checkpoint(tmp_path, "ns.old")
    assert statedirs.stack_dir(tmp_path, PROJECT, "ns.old") == tmp_path
    assert statedirs.checkpoint_file(tmp_path, PROJECT, "ns.old").exists()
    assert statedirs.checkpoint_file(tmp_path, PROJECT, "ns.new") == diystate.stacks_dir(
        statedirs.bucket_dir(tmp_path, "ns.new"), PROJECT) / "ns.new.json"
    assert statedirs.stack_url(f"file://{tmp_path}", PROJECT, "ns.old") == f"file://{tmp_path}"
    assert statedirs.stack_dir(tmp_path, PROJECT, "ns.new") == \
        statedirs.bucket_dir(tmp_path, "ns.new")
    assert statedirs.stack_url(f"file://{tmp_path}", PROJECT, "ns.new") == \
        statedirs.bucket_url(f"file://{tmp_path}", "ns.new")


def test_other_backends_are_not_bucketed():
    for url in ("postgres://u@127.0.0.1/db", "s3://bucket/prefix", "https://api.pulumi.com"):
        assert statedirs.stack_url(url, PROJECT, "ns.a") == url


def test_listing_and_siblings_cover_the_root_and_every_bucket(tmp_path):
    checkpoint(tmp_path, "ns.old")
    new = checkpoint(statedirs.bucket_dir(tmp_path, "ns.new"), "ns.new")
    (new.parent / "ns.new.json.bak").write_text("{}")
    (new.parent / "ns.new.json.1f.tmp").write_text("{}")
    (tmp_path / "buckets" / "not-a-bucket").mkdir()
    assert statedirs.checkpoint_stacks(tmp_path, PROJECT) == ["ns.new", "ns.old"]
    assert statedirs.backend_dirs(tmp_path) == [tmp_path,
                                                statedirs.bucket_dir(tmp_path, "ns.new")]
    assert statedirs.sibling_dirs(statedirs.bucket_dir(tmp_path, "ns.x")) == \
        statedirs.backend_dirs(tmp_path)
    assert statedirs.checkpoint_stacks(tmp_path / "empty", PROJECT) == []


def test_the_first_stack_of_a_bucket_is_seeded_from_another_bucket(tmp_path):
    """No `stack init` for a bucket's first stack, and the new folder is a project-scoped
    backend (meta.yaml version 1) so the CLI reads it as one."""
    checkpoint(statedirs.bucket_dir(tmp_path, "ns1.a"), "ns1.a", SIBLING)
    target = statedirs.bucket_dir(tmp_path, "ns2.b")
    assert target != statedirs.bucket_dir(tmp_path, "ns1.a")
    assert stackseed.create_from_sibling(target, PROJECT, "ns2.b", *SEED_ARGS)
    assert (target / ".pulumi" / "meta.yaml").read_text() == "version: 1\n"
    assert diystate.stack_exists(target, PROJECT, "ns2.b") is True
    assert stackseed.stack_salt(target, PROJECT, "ns2.b") == \
        SIBLING["checkpoint"]["latest"]["secrets_providers"]["state"]["salt"]
    assert sorted(p.name for p in (target / ".pulumi").iterdir()) == ["meta.yaml", "stacks"]


def test_a_bucket_folder_is_made_only_inside_an_existing_state_folder(tmp_path):
    bucket = statedirs.bucket_dir(tmp_path, "ns.a")
    statedirs.ensure_bucket(bucket)
    assert bucket.is_dir() and oct(bucket.stat().st_mode & 0o777) == "0o700"
    missing = statedirs.bucket_dir(tmp_path / "typo", "ns.a")
    statedirs.ensure_bucket(missing)
    assert not (tmp_path / "typo").exists()  # the CLI's error names the mistyped root
    statedirs.ensure_bucket(tmp_path / "plain")  # not a bucket: left to the CLI
    assert not (tmp_path / "plain").exists()
