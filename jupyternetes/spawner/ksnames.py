"""KubeSpawner's names for a user's objects, so a template can find a KubeSpawner claim (pure).

Read from jupyterhub-kubespawner 7.1.0 (kubespawner/slugs.py and
KubeSpawner._expand_user_properties), reimplemented here: the hub image needs no KubeSpawner.

- `safe` scheme (KubeSpawner 7's default): a name already a valid object name (lowercase
  letter first, lowercase letters, digits and `-`, at most 48 characters, no `--`) is kept,
  anything else becomes `<cleaned>---<8 hex of sha256>`; `{user_server}` is `{username}` for
  the default server and `{username}--{servername}` (or a single-hash multi-slug when that
  would be longer than 48) for a named one. Its default claim is `claim-{user_server}`.
- `escape` scheme (KubeSpawner before 7): every character outside `[a-z0-9]` written as `-XX`
  (its UTF-8 bytes in hex), lowercased. Its default claim was `claim-{username}{servername}`
  i.e. `claim-<escaped user>` for the default server.

Each is a spawn variable `jupyterhub.kubespawner.<field>` (VARIABLES), e.g. a template's claim
entry `jupyternetes.kadense.io/kubespawner-claim: "claim-{jupyterhub.kubespawner.user_server}"`.
"""

from __future__ import annotations

import hashlib
import re
import string

PREFIX = "jupyterhub.kubespawner."
SLUG_MAX = 48
_HASH_LENGTH = 8
_OBJECT = re.compile(r"^[a-z0-9\-]+$")
_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")
_ESCAPE_SAFE = frozenset(string.ascii_lowercase + string.digits)


def escape_slug(name: str) -> str:
    """KubeSpawner's legacy `escape` scheme (escapism with `-` as the escape character)."""
    out = []
    for char in name:
        if char in _ESCAPE_SAFE:
            out.append(char)
        else:
            out.extend(f"-{byte:X}" for byte in char.encode("utf-8"))
    return "".join(out).lower()


def _valid_object_name(name: str) -> bool:
    return (0 < len(name) <= 63 and name[0] in string.ascii_lowercase
            and name[-1] in _ESCAPE_SAFE and bool(_OBJECT.match(name)))


def _extract_safe_name(name: str, max_length: int) -> str:
    safe = _NON_ALPHANUM.sub("-", name.lower())
    safe = safe.lstrip("-")[:max_length].rstrip("-")
    if safe and safe[0] not in string.ascii_lowercase:
        safe = "x-" + safe[: max_length - 2]
    return safe or "x"


def _strip_and_hash(name: str, max_length: int) -> str:
    digest = hashlib.sha256(name.encode("utf8")).hexdigest()[:_HASH_LENGTH]
    return f"{_extract_safe_name(name, max_length - (_HASH_LENGTH + 3))}---{digest}"


def safe_slug(name: str, max_length: int = SLUG_MAX) -> str:
    """KubeSpawner 7's `safe` scheme for one name."""
    if "--" not in name and _valid_object_name(name) and len(name) <= max_length:
        return name
    return _strip_and_hash(name, max_length)


def multi_slug(names: list[str], max_length: int = SLUG_MAX) -> str:
    hasher = hashlib.sha256(names[0].encode("utf8"))
    for name in names[1:]:
        hasher.update(b"\xff")
        hasher.update(name.encode("utf8"))
    per_name = (max_length - (_HASH_LENGTH + 1)) // len(names) - 2
    slugs = [_extract_safe_name(name, per_name) for name in names]
    return f"{'--'.join(slugs)}---{hasher.hexdigest()[:_HASH_LENGTH]}"


def safe_user_server(user_name: str, server_name: str) -> str:
    user = safe_slug(user_name)
    server = safe_slug(server_name) if server_name else ""
    if len(user) + len(server) + 2 > SLUG_MAX:
        return multi_slug([user_name, server_name])
    return f"{user}--{server}" if server_name else user


def fields(user_name: str, server_name: str) -> dict[str, str]:
    """KubeSpawner's name fields of both schemes (see the module docstring)."""
    escaped_user, escaped_server = escape_slug(user_name), escape_slug(server_name)
    return {
        "username": safe_slug(user_name),
        "servername": safe_slug(server_name) if server_name else "",
        "user_server": safe_user_server(user_name, server_name),
        "escaped_username": escaped_user,
        "escaped_servername": escaped_server,
        "escaped_user_server": (f"{escaped_user}--{escaped_server}" if server_name
                                else escaped_user),
    }


def variables(user_name: str, server_name: str) -> dict[str, str]:
    """`jupyterhub.kubespawner.<field>` spawn variables."""
    return {PREFIX + key: value for key, value in fields(user_name, server_name).items()}
