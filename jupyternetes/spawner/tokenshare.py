"""The server's API token, kept across a hub restart without keeping it anywhere (pure).

The hub saves no server token: a spawner restored after a hub restart has `api_token == ""`, so
the hub cannot revoke the token when that server stops, and it keeps authenticating. The hub may
not read it back from the `<instance>-hub` Secret either (its RBAC has no `get` on Secrets, so
that it cannot read the namespace's other Secrets). So the token is split in two random-looking
halves (a one-time pad): the pad goes on the instance (an annotation), the other half into the
spawner's state in the hub's database. Either half alone says nothing about the token; the hub,
which holds both, joins them when it restores the spawner.
"""

from __future__ import annotations

import secrets

PAD_ANNOTATION = "jupyternetes.kadense.io/token-pad"


def split(token: str) -> tuple[str, str]:
    """(pad, share), both hex; `join(pad, share) == token`."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    return pad.hex(), bytes(a ^ b for a, b in zip(raw, pad, strict=True)).hex()


def join(pad: str, share: str) -> str | None:
    """The token, or None when the halves do not fit together (missing, changed, not hex)."""
    try:
        a, b = bytes.fromhex(pad), bytes.fromhex(share)
    except ValueError:
        return None
    if not a or len(a) != len(b):
        return None
    try:
        return bytes(x ^ y for x, y in zip(a, b, strict=True)).decode()
    except UnicodeDecodeError:
        return None
