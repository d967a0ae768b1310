"""Create a new stack in the operator's file:// backend without a `pulumi stack init` process.

`pulumi stack init` with passphrase secrets spends nearly all of its CPU deriving a key
(PBKDF2-SHA256, 1,000,000 iterations) for a fresh salt, and it is a whole CLI process (Go
start-up, backend login) per new user server; the `up` that follows derives the key again.
What `stack init` leaves in a DIY backend is one small checkpoint,
`.pulumi/stacks/<project>/<stack>.json`: a version-3 checkpoint (the format of
`pulumi stack export`, apitype.CheckpointV3) with no resources, holding only the manifest and
the secrets provider's state (`{"type": "passphrase", "state": {"salt": "v1:<salt>:<check>"}}`).

`create_from_sibling` writes that file for a new stack, copying the secrets provider state of a
stack the CLI itself created in the same project: every stack then shares that salt. Every stack
of the operator already shares one passphrase, so a shared salt gives an attacker nothing a
per-stack salt would deny (the salt defends different passphrases against one precomputation).
When there is no usable sibling (an empty backend, an unknown layout, other secrets providers),
it returns False and the caller runs `stack init` as before.

The last stack of a project going (every server stopped: each stack is removed with its
server) must not bring `stack init` back for the next server: so the secrets state of a sibling
or of a stack the CLI created is also kept as the project's seed, `<state>/seeds/<project>.json`
(`remember`), outside every backend folder (the CLI never lists it), and `find_sibling` falls
back to it. It holds what every checkpoint of the backend holds (the salt and its encrypted
check value), nothing more; a seed of an earlier passphrase fails `salt_matches` and is replaced
by the next stack the CLI creates.

The file is written like fileblob writes a blob (a `.<hex>.tmp` file renamed onto the name),
fsynced before the rename (and the folder after it), so a SIGKILL or a power cut leaves either no
stack (the next `up` creates it) or a whole one; a leftover tmp file is removed by diystate's
repair.

Writing Pulumi's DIY format is a debt on a private format, paid by two checks:
- only for CLI versions it was tested with (`TESTED_CLI_VERSIONS`, the harness's pin; the worker
  reads the CLI's version once, at its start): with any other, `pulumi stack init` as before;
- a sibling's salt is copied only once it decrypts its own check value with the current
  passphrase (`salt_matches`, Pulumi's scheme: PBKDF2-SHA256 with 1,000,000 iterations, then
  AES-256-GCM of "pulumi"): a sibling left from an earlier passphrase would give the new stack a
  salt no key of the operator opens. One key derivation per salt and passphrase per process.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jupyternetes.engine.state import diystate, statedirs

CHECKPOINT_VERSION = 3  # what `stack init` writes; an `up` rewrites it as version 4
SIBLING_VERSIONS = (3, 4)
# Siblings looked at before giving up (an unreadable one is skipped): bounded at 5,000 stacks.
MAX_SIBLINGS_TRIED = 20
# [from, to): the CLI versions whose `stack init` output this module's checkpoint was compared
# with and whose e2e tests (tests/e2e/test_stackseed.py) ran on seeded stacks. Raise it only
# after running them with the new version.
TESTED_CLI_VERSIONS = ((3, 274, 0), (3, 275, 0))
# Pulumi's passphrase secrets manager (sdk/go/common/secrets/passphrase).
KEY_ITERATIONS = 1_000_000
CHECK_PLAINTEXT = b"pulumi"
# The project's seed (see the module docstring): a folder of the state root no backend lists.
SEEDS_DIR = "seeds"
SEED_STACK = "seed"


def format_tested(version: Any) -> bool:
    """Whether `version` (semver's VersionInfo, what PulumiCommand.version holds; None when
    unknown) is one this module may write the DIY format for."""
    if version is None:
        return False
    try:
        triple = (int(version.major), int(version.minor), int(version.patch))
    except (AttributeError, TypeError, ValueError):
        return False
    return TESTED_CLI_VERSIONS[0] <= triple < TESTED_CLI_VERSIONS[1]


# One derivation at a time: the operations of a burst all ask about the same salt at once, and
# without the lock each of them would derive the key before the first result is cached
# (seen: four derivations, ~1 s of CPU, at the start of a burst of 20).
_SALT_CHECK = threading.Lock()


def salt_matches(salt_state: str, passphrase: str) -> bool:
    """Whether the passphrase state `v1:<salt>:v1:<nonce>:<ciphertext>` opens with
    `passphrase`: its check value decrypts to "pulumi" (what the CLI checks). Cached: the
    stacks of a backend share one salt; callers asking at once wait for one derivation."""
    with _SALT_CHECK:
        return _salt_opens(salt_state, passphrase)


@functools.lru_cache(maxsize=16)
def _salt_opens(salt_state: str, passphrase: str) -> bool:
    parts = salt_state.split(":")
    if len(parts) != 5 or parts[0] != "v1" or parts[2] != "v1":
        return False
    try:
        salt, nonce, sealed = (base64.b64decode(p, validate=True) for p in
                               (parts[1], parts[3], parts[4]))
    except (binascii.Error, ValueError):
        return False
    key = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), salt, KEY_ITERATIONS, 32)
    try:
        return AESGCM(key).decrypt(nonce, sealed, None) == CHECK_PLAINTEXT
    except (InvalidTag, ValueError):
        return False


def seed_checkpoint(sibling: dict[str, Any], project: str, stack: str) -> dict[str, Any] | None:
    """A new, empty checkpoint for `stack` with the secrets provider of `sibling` (a parsed
    checkpoint file); None when the sibling is not a passphrase-secrets v3 checkpoint."""
    if sibling.get("version") not in SIBLING_VERSIONS:
        return None
    latest = (sibling.get("checkpoint") or {}).get("latest") or {}
    providers = latest.get("secrets_providers") or {}
    if providers.get("type") != "passphrase" or not (providers.get("state") or {}).get("salt"):
        return None
    manifest = dict(latest.get("manifest") or {})
    if not manifest.get("magic") or not manifest.get("version"):
        return None
    manifest["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"version": CHECKPOINT_VERSION, "checkpoint": {
        "stack": f"organization/{project}/{stack}",
        "latest": {"manifest": manifest, "secrets_providers": providers, "metadata": {}}}}


def sibling_salt(sibling: dict[str, Any]) -> str:
    latest = (sibling.get("checkpoint") or {}).get("latest") or {}
    return str(((latest.get("secrets_providers") or {}).get("state") or {}).get("salt") or "")


def find_sibling(backend_dir: Path, project: str, stack: str,
                 accept: Callable[[str], bool] = lambda salt: True) -> dict[str, Any] | None:
    """A parsed checkpoint of another stack of `project` that can seed `stack` and whose salt
    `accept` takes: from the stack's own backend folder, else from the other buckets and the
    root of the same state folder (statedirs), so that the first stack of a bucket needs no
    `stack init` either."""
    tried = 0
    for folder in (backend_dir, *statedirs.sibling_dirs(backend_dir)):
        try:
            entries = os.scandir(diystate.stacks_dir(folder, project))
        except OSError:
            continue
        with entries:
            for entry in entries:
                if not entry.name.endswith(diystate.CHECKPOINT_EXT) or \
                        entry.name == f"{stack}{diystate.CHECKPOINT_EXT}":
                    continue
                tried += 1
                data = diystate.read_json(Path(entry.path))
                if can_seed(data, project, stack, accept):
                    return data
                if tried >= MAX_SIBLINGS_TRIED:
                    return None
    seed = diystate.read_json(seed_file(backend_dir, project))
    return seed if can_seed(seed, project, stack, accept) else None


def can_seed(data: Any, project: str, stack: str, accept: Callable[[str], bool]) -> bool:
    """Whether `data` (a parsed checkpoint, or None) can seed `stack` with a salt `accept`
    takes."""
    return (isinstance(data, dict) and seed_checkpoint(data, project, stack) is not None
            and accept(sibling_salt(data)))


def seed_file(backend_dir: Path, project: str) -> Path:
    """The project's seed: `<state>/seeds/<project>.json`, beside the buckets, in no backend."""
    return statedirs.root_of(backend_dir) / SEEDS_DIR / f"{project}{diystate.CHECKPOINT_EXT}"


def remember(backend_dir: Path, project: str, stack: str) -> bool:
    """Keep `stack`'s secrets state (its checkpoint, which must open with the operator's
    passphrase: the CLI made it, or it was seeded from one that does) as the project's seed,
    unless the seed already holds that salt. True when the seed was written."""
    data = diystate.read_json(diystate.checkpoint_path(backend_dir, project, stack))
    if not isinstance(data, dict):
        return False
    seed = seed_checkpoint(data, project, SEED_STACK)
    if seed is None:
        return False
    target = seed_file(backend_dir, project)
    known = diystate.read_json(target)
    if isinstance(known, dict) and sibling_salt(known) == sibling_salt(seed):
        return False
    write_durably(target, seed)
    return True


def create_from_sibling(backend_dir: Path, project: str, stack: str, passphrase: str,
                        cli_version: Any) -> bool:
    """Create `stack` (which must not exist) from the secrets state of a sibling that opens
    with `passphrase`, if `cli_version` is a tested one (module docstring). False: nothing was
    written, create it with `pulumi stack init`."""
    if not format_tested(cli_version):
        return False
    if diystate.stack_exists(backend_dir, project, stack) is not False:
        return False  # exists already, or a layout this module does not know
    sibling = find_sibling(backend_dir, project, stack,
                           accept=lambda salt: salt_matches(salt, passphrase))
    if sibling is None:
        return False
    checkpoint = seed_checkpoint(sibling, project, stack)
    if checkpoint is None:
        return False
    statedirs.ensure_layout(backend_dir)  # a bucket's first stack: the folder is new
    write_durably(diystate.checkpoint_path(backend_dir, project, stack), checkpoint)
    return True


def write_durably(target: Path, checkpoint: dict[str, Any]) -> None:
    """`target` whole or not at all: a tmp file beside it, fsynced, renamed onto it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{time.time_ns():x}.tmp")
    with open(tmp, "wb") as out:
        out.write(json.dumps(checkpoint, separators=(",", ":")).encode("utf-8"))
        out.flush()
        os.fsync(out.fileno())  # the data on disk before the name points at it
    os.replace(tmp, target)
    fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (where the OS allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stack_salt(backend_dir: Path, project: str, stack: str) -> str | None:
    """The passphrase salt state (`v1:<salt>:<check>`) in `stack`'s checkpoint; None when the
    checkpoint is missing, unreadable or not passphrase-encrypted.

    Why: the operator's workspace is temporary, so it has no `Pulumi.<stack>.yaml`; without
    one, every CLI run derives the key of the checkpoint's salt AND makes a new salt (a second
    1,000,000-iteration derivation) that it then saves into the config file and the checkpoint.
    Writing this salt into the workspace's stack settings first saves that second derivation.
    """
    data = diystate.read_json(diystate.checkpoint_path(backend_dir, project, stack))
    if not isinstance(data, dict):
        return None
    latest = (data.get("checkpoint") or {}).get("latest") or {}
    providers = latest.get("secrets_providers") or {}
    salt = (providers.get("state") or {}).get("salt")
    return salt if providers.get("type") == "passphrase" and isinstance(salt, str) else None
