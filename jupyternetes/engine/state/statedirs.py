"""Where a stack's state lives in the operator's file:// backend: one backend per hash bucket.

Pulumi's file:// (DIY) backend keeps every stack of a project in one folder,
`.pulumi/stacks/<project>/`, and lists that whole folder (gocloud fileblob walks it) to find a
stack's checkpoint on every checkpoint read and write, several times per `up`. Its cost grows
with the number of stacks: at 5,000 stacks it was ~0.1 CPU-s per `up` (benchmarks/README.md,
stack_count.py). So the operator spreads its stacks over BUCKETS file:// backends,
`<state>/buckets/<xx>/`, xx being the first two hex digits of the SHA-256 of the stack name.
Each bucket is a whole DIY backend of its own (`.pulumi/meta.yaml`, stacks, locks, history);
project and stack names are unchanged, so URNs do not change and every `pulumi` command works on
a stack with its bucket's URL (`bucket_url`).

Stacks created before this layout stay in the root backend (`<state>/.pulumi/`) and are found
there: a checkpoint at the root wins, so an upgraded operator never creates a second stack for
an existing server. New stacks go to their bucket. Other backends (postgres://, s3://, Pulumi
Cloud) look stacks up by key, not by listing, and are left as they are.

Invariants: `bucket_of` is a pure function of the stack name alone (every operator version and
replica agrees); a stack's backend is the root iff its checkpoint file exists at the root; a
bucket folder never contains another bucket folder (the root's `.pulumi/` never sees them).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from jupyternetes.engine.state import diystate
from jupyternetes.engine.state.backendurl import file_backend_path

BUCKETS_DIR = "buckets"
BUCKET_HEX_DIGITS = 2
BUCKETS = 16 ** BUCKET_HEX_DIGITS
# What the CLI writes into an empty folder it opens as a backend: the project-scoped layout.
META_YAML = "version: 1\n"
CHECKPOINT_SUFFIXES = (diystate.CHECKPOINT_EXT, diystate.CHECKPOINT_EXT + ".gz",
                       diystate.CHECKPOINT_EXT + ".zst")


def bucket_of(stack: str) -> str:
    """The stack's bucket: the first BUCKET_HEX_DIGITS hex digits of SHA-256(stack name)."""
    return hashlib.sha256(stack.encode("utf-8")).hexdigest()[:BUCKET_HEX_DIGITS]


def bucket_dir(root: Path, stack: str) -> Path:
    return root / BUCKETS_DIR / bucket_of(stack)


def bucket_url(root_url: str, stack: str) -> str:
    """The file:// URL of the stack's bucket, in the root URL's spelling (file://~, query
    options kept)."""
    parts = urlsplit(root_url)
    path = f"{parts.path.rstrip('/')}/{BUCKETS_DIR}/{bucket_of(stack)}"
    return urlunsplit(parts._replace(path=path))


def root_of(backend_dir: Path) -> Path:
    """The root state folder of a backend folder (itself when it is not a bucket)."""
    if backend_dir.parent.name == BUCKETS_DIR and len(backend_dir.name) == BUCKET_HEX_DIGITS:
        return backend_dir.parent.parent
    return backend_dir


def at_root(root: Path, project: str, stack: str) -> bool:
    """Whether the stack was created in the root backend (before buckets existed)."""
    folder = diystate.stacks_dir(root, project)
    return any((folder / f"{stack}{suffix}").exists() for suffix in CHECKPOINT_SUFFIXES)


def stack_dir(root: Path, project: str, stack: str) -> Path:
    """The backend folder holding (or to hold) the stack's state."""
    return root if at_root(root, project, stack) else bucket_dir(root, stack)


def checkpoint_file(root: Path, project: str, stack: str) -> Path:
    """The stack's checkpoint file, in the backend folder `stack_dir` names."""
    return diystate.checkpoint_path(stack_dir(root, project, stack), project, stack)


def stack_url(root_url: str, project: str, stack: str) -> str:
    """The backend URL of one stack: its bucket's for the operator's file:// backend (the root
    for a stack created there before buckets), `root_url` itself for any other backend."""
    root = file_backend_path(root_url)
    if root is None or at_root(root, project, stack):
        return root_url
    return bucket_url(root_url, stack)


def backend_dirs(root: Path) -> list[Path]:
    """The root and every bucket that exists: each holds stacks, locks and history."""
    buckets = root / BUCKETS_DIR
    found = [root]
    if buckets.is_dir():
        found += sorted(p for p in buckets.iterdir()
                        if p.is_dir() and len(p.name) == BUCKET_HEX_DIGITS)
    return found


def checkpoint_stacks(root: Path, project: str) -> list[str]:
    """Every stack with a checkpoint in the root or a bucket: what `pulumi stack ls` would
    list over all of them."""
    names: set[str] = set()
    for backend in backend_dirs(root):
        folder = diystate.stacks_dir(backend, project)
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            for suffix in CHECKPOINT_SUFFIXES:
                if path.name.endswith(suffix) and len(path.name) > len(suffix):
                    names.add(path.name[: -len(suffix)])
    return sorted(names)


def sibling_dirs(backend_dir: Path) -> list[Path]:
    """Other backend folders of the same state folder, the root first: where a new stack in
    `backend_dir` may find a sibling to copy its secrets state from (stackseed)."""
    return [d for d in backend_dirs(root_of(backend_dir)) if d != backend_dir]


def ensure_bucket(backend_dir: Path) -> None:
    """Create a bucket's folder before the CLI opens it (it refuses a missing folder), when the
    state folder it belongs to exists. Anything else is left to the CLI, whose error names a
    mistyped root."""
    root = root_of(backend_dir)
    if root != backend_dir and root.is_dir():
        backend_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def ensure_layout(backend_dir: Path) -> None:
    """Make `backend_dir` a project-scoped DIY backend, as the CLI does for an empty folder:
    `.pulumi/meta.yaml` with version 1 (written like fileblob, through a renamed tmp file).
    Without it, a checkpoint written there directly would make the CLI take the folder for
    the legacy layout."""
    meta = backend_dir / ".pulumi" / "meta.yaml"
    if meta.exists():
        return
    meta.parent.mkdir(parents=True, exist_ok=True)
    tmp = meta.with_name(f"meta.yaml.{time.time_ns():x}.tmp")
    tmp.write_text(META_YAML, encoding="utf-8")
    tmp.replace(meta)
