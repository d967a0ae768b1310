"""Which Events are the same Event repeated (pure): one object per (object, type, reason,
message without its counters), its `count` raised on every repeat, like client-go's
EventCorrelator, so a retry loop does not write one Event object per try.

The Event's name is derived from that key, so repeats find it from any operator replica and
across restarts without a cache: a create that meets AlreadyExists becomes a patch of count,
lastTimestamp and the latest message.

A module of its own, though short, because it is a rule and pure, like statusmerge: the I/O
that applies it (client.Kube.emit_event) stays in client.py, the rule is tested without a
client, and the e2e HA test judges the live Events with this same normalization.
"""

from __future__ import annotations

import hashlib
import re

# Numbers that change from try to try while the failure stays the same.
_COUNTERS = re.compile(
    r"\b(attempt|attempts|retry|try)\s+\d+|\b\d+\s+(consecutive|times?\b|time\(s\))|"
    r"\bin\s+\d+(\.\d+)?s\b", re.IGNORECASE)
NAME_LIMIT = 253


def normalized(message: str) -> str:
    """`message` with its attempt counters and durations replaced by `#`."""
    return _COUNTERS.sub(lambda m: re.sub(r"\d+(\.\d+)?", "#", m.group(0)), message)


def event_name(object_name: str, object_uid: str | None, event_type: str, reason: str,
               message: str) -> str:
    """`<object>.<16 hex>`: stable for the same (object uid, type, reason, normalized
    message), a valid Event name (at most 253 characters)."""
    key = "\0".join((object_uid or object_name, event_type, reason, normalized(message)))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{object_name[:NAME_LIMIT - 17]}.{digest}"
