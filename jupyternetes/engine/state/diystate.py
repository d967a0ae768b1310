"""Repair of the files a killed Pulumi CLI can leave half-written in a file:// (DIY) backend.

The file backend writes every blob through gocloud's fileblob (gocloud.dev/blob/fileblob): the
content goes to `<blob>.<hex nanos>.tmp`, the tmp file is closed, then `<blob>.attrs` is created
(empty first) and filled with {content type, md5}, and finally the tmp file is renamed onto
`<blob>`. A SIGKILL inside that sequence leaves:

- an empty or truncated `<blob>.attrs` next to the previous, intact `<blob>`, and a complete tmp
  file with the new content: fileblob fails every read of the blob ("failed to load
  checkpoint: EOF") while a missing .attrs file is fine for it;
- tmp files nobody renames (harmless, but they pile up);
- with a killed or full disk, a checkpoint `<stack>.json` that is empty or not JSON.

Layout (pkg/backend/diy, project-scoped store): `.pulumi/stacks/<project>/<stack>.json` (+ `.bak`,
the previous checkpoint, written before each save), `.pulumi/backups/<project>/<stack>/
<stack>.<unix nanos>.json` (a copy before each update). Stack names contain dots, so names are
parsed by suffix.

Only call these for stacks no live process holds a lock on (see repair.py).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

ATTRS = ".attrs"
# Prefix of an action line that reports a problem without having changed anything.
CANNOT_REPAIR = "cannot repair:"
CHECKPOINT_EXT = ".json"
BACKUP_EXT = ".json.bak"
_TMP = re.compile(r"\.[0-9a-f]+\.tmp$")
# The CLI's messages when a stack's files cannot be read (fileblob attrs or checkpoint JSON).
CHECKPOINT_LOAD_ERROR = re.compile(
    r"failed to load checkpoint|could not deserialize deployment|"
    r"(reading|loading|unmarshal\w*) (the )?(checkpoint|snapshot|deployment)", re.IGNORECASE)


def stacks_dir(backend_dir: Path, project: str) -> Path:
    return backend_dir / ".pulumi" / "stacks" / project


def checkpoint_path(backend_dir: Path, project: str, stack: str) -> Path:
    """The stack's checkpoint file in one backend folder (it may not exist)."""
    return stacks_dir(backend_dir, project) / f"{stack}{CHECKPOINT_EXT}"


def backups_dir(backend_dir: Path, project: str) -> Path:
    return backend_dir / ".pulumi" / "backups" / project


def stack_exists(backend_dir: Path, project: str, stack: str) -> bool | None:
    """Whether the backend has a checkpoint for `stack`; None when the folder is not laid out
    the way this module knows (no project-scoped meta.yaml): ask the CLI then."""
    if not (backend_dir / ".pulumi").exists():
        return False  # an empty backend: no stack at all
    meta = backend_dir / ".pulumi" / "meta.yaml"
    try:
        version = meta.read_text(encoding="utf-8").split("version:", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    if version != "1":
        return None
    root = stacks_dir(backend_dir, project)
    return any((root / f"{stack}{CHECKPOINT_EXT}{ext}").exists() for ext in ("", ".gz", ".zst"))


def history_dir(backend_dir: Path, project: str) -> Path:
    return backend_dir / ".pulumi" / "history" / project


def is_checkpoint_load_error(message: str) -> bool:
    return bool(CHECKPOINT_LOAD_ERROR.search(message or ""))


def read_json(path: Path) -> Any:
    """The JSON content of `path`; None when missing, empty or not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def is_valid_attrs(path: Path) -> bool:
    return isinstance(read_json(path), dict)


def is_valid_checkpoint(path: Path) -> bool:
    data = read_json(path)
    return isinstance(data, dict) and isinstance(data.get("checkpoint"), dict)


def stack_of(file_name: str) -> str | None:
    """The stack a file of the stacks directory belongs to (`a.b.json.bak.1f.tmp` -> `a.b`)."""
    name = file_name
    if name.endswith(ATTRS):
        name = name[: -len(ATTRS)]
    name = _TMP.sub("", name)
    for ext in (BACKUP_EXT, CHECKPOINT_EXT):
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def project_stacks(backend_dir: Path, project: str) -> list[str]:
    """Every stack with a file (checkpoint, backup, attrs or tmp) in the stacks directory."""
    root = stacks_dir(backend_dir, project)
    if not root.is_dir():
        return []
    return sorted({s for p in root.iterdir() if (s := stack_of(p.name))})


def stack_blobs(backend_dir: Path, project: str, stack: str) -> list[Path]:
    """The blobs of one stack: its checkpoint, the checkpoint's .bak, and the backup copies."""
    checkpoint = checkpoint_path(backend_dir, project, stack)
    blobs = [checkpoint, checkpoint.with_name(f"{stack}{BACKUP_EXT}")]
    backup_root = backups_dir(backend_dir, project) / stack
    if backup_root.is_dir():
        blobs += sorted(p for p in backup_root.glob(f"{_glob_escape(stack)}.*{CHECKPOINT_EXT}")
                        if p.is_file())
    return blobs


def tmp_index(folder: Path) -> dict[str, list[str]]:
    """blob name -> names of its fileblob tmp files, for every blob in `folder`: one listing of
    the folder for all its blobs (listing it once per blob is quadratic: 5,000 stacks are
    10,000 blobs in one folder)."""
    index: dict[str, list[str]] = {}
    if folder.is_dir():
        for name in os.listdir(folder):
            match = _TMP.search(name)
            if match:
                index.setdefault(name[:match.start()], []).append(name)
    return index


def tmp_files(blob: Path, index: dict[str, list[str]] | None = None) -> list[Path]:
    """fileblob's tmp files of `blob`, newest first (the suffix is the write time in hex).
    `index`: tmp_index of the blob's folder, when many blobs of one folder are looked at."""
    if index is None:
        index = tmp_index(blob.parent)
    prefix = blob.name + "."
    found = [blob.parent / name for name in index.get(blob.name, ())]
    return sorted(found, key=lambda p: int(p.name[len(prefix):-len(".tmp")], 16), reverse=True)


def repair_blob(blob: Path, index: dict[str, list[str]] | None = None) -> list[str]:
    """Fix one blob after an interrupted write; one line per action taken.

    An invalid .attrs file means the write stopped after the tmp file was complete and closed
    (see the module doc): the newest tmp holding a valid checkpoint is renamed onto the blob,
    finishing that write, and the .attrs file is removed. Remaining tmp files are removed.
    """
    actions: list[str] = []
    attrs = blob.with_name(blob.name + ATTRS)
    tmps = tmp_files(blob, index)
    if attrs.exists() and not is_valid_attrs(attrs):
        size = attrs.stat().st_size
        complete = next((t for t in tmps if is_valid_checkpoint(t)), None)
        if complete is not None:
            os.replace(complete, blob)
            tmps.remove(complete)
            actions.append(f"finished the interrupted write of {blob.name}: renamed "
                           f"{complete.name} onto it")
        attrs.unlink()
        actions.append(f"removed {'empty' if size == 0 else 'corrupt'} attributes file "
                       f"{attrs.name} ({size} bytes) that made {blob.name} unreadable")
    for tmp in tmps:
        tmp.unlink(missing_ok=True)
        actions.append(f"removed leftover temporary file {tmp.name}")
    return actions


def restore_checkpoint(backend_dir: Path, project: str, stack: str) -> list[str]:
    """Replace an empty or corrupt `<stack>.json` by its newest valid backup.

    A missing checkpoint is left alone: a removed stack keeps its .bak, and must stay removed.
    The corrupt file is kept as `<stack>.json.corrupt` (the backend ignores that extension).
    """
    checkpoint = checkpoint_path(backend_dir, project, stack)
    if not checkpoint.exists() or is_valid_checkpoint(checkpoint):
        return []
    candidates = [p for p in stack_blobs(backend_dir, project, stack)[1:]
                  if p.exists() and is_valid_checkpoint(p)]
    size = checkpoint.stat().st_size
    what = "empty" if size == 0 else f"corrupt ({size} bytes, not a checkpoint)"
    if not candidates:
        return [f"{CANNOT_REPAIR} checkpoint {checkpoint.name} is {what} and there is no "
                f"valid backup of it; move it away and run the instance's up again to "
                f"re-create the stack (its objects are adopted)"]
    newest = max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))
    aside = checkpoint.with_name(checkpoint.name + ".corrupt")
    os.replace(checkpoint, aside)
    staging = checkpoint.with_name(f"{checkpoint.name}.{time.time_ns():x}.restore")
    staging.write_bytes(newest.read_bytes())
    os.replace(staging, checkpoint)
    checkpoint.with_name(checkpoint.name + ATTRS).unlink(missing_ok=True)  # its md5 is stale
    return [f"checkpoint {checkpoint.name} was {what}: restored it from "
            f"{newest.relative_to(backend_dir)} (the corrupt file is kept as {aside.name})"]


def changed_anything(actions: list[str]) -> bool:
    return any(CANNOT_REPAIR not in line for line in actions)


def repair_side_files(folder: Path) -> list[str]:
    """In a stack's backups or history folder: remove unreadable .attrs files and tmp files
    of writes that never finished (their blob is either absent or the previous version)."""
    actions: list[str] = []
    if not folder.is_dir():
        return actions
    for path in sorted(folder.iterdir()):
        if path.name.endswith(ATTRS) and not is_valid_attrs(path):
            path.unlink(missing_ok=True)
            actions.append(f"removed unreadable attributes file {folder.name}/{path.name}")
        elif _TMP.search(path.name):
            path.unlink(missing_ok=True)
            actions.append(f"removed leftover temporary file {folder.name}/{path.name}")
    return actions


def repair_stack(backend_dir: Path, project: str, stack: str,
                 index: dict[str, list[str]] | None = None) -> list[str]:
    """All repairs of one stack's files; one line per action, prefixed by the stack.
    `index`: tmp_index of the stacks folder, when every stack is repaired in a row."""
    actions: list[str] = []
    folder = stacks_dir(backend_dir, project)
    for blob in stack_blobs(backend_dir, project, stack):
        actions += repair_blob(blob, index if blob.parent == folder else None)
    actions += restore_checkpoint(backend_dir, project, stack)
    for root in (backups_dir(backend_dir, project), history_dir(backend_dir, project)):
        actions += repair_side_files(root / stack)
    return [f"stack {stack}: {line}" for line in actions]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def stacks_with_pending_operations(backend_dir: Path, project: str) -> list[str]:
    """Stacks of the file backend whose checkpoint lists pending operations (a crashed `up`)."""
    root = backend_dir / ".pulumi" / "stacks" / project
    found: list[str] = []
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*.json")):
        try:
            checkpoint = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        deployment = (checkpoint.get("checkpoint") or {}).get("latest") or {}
        if deployment.get("pending_operations"):
            found.append(path.name[: -len(".json")])
    return found
