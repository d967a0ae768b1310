"""Merge patches that replace a status field instead of merging into it (pure).

Status writes are JSON merge patches (RFC 7386): a nested object in a patch is merged into the
stored one, so keys the new value lacks would survive from the old one. A failed update must not
keep showing the previous success's `changeSummary` counts or timestamps; `replacing` adds the
nulls that remove them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def replacing(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that turns the stored `old` into exactly `new`: every key of `old` that
    `new` lacks is nulled, also inside nested objects both have."""
    patch: dict[str, Any] = {key: None for key in (old or {}) if key not in new}
    for key, value in new.items():
        before = (old or {}).get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = replacing(before, value)
        else:
            patch[key] = value
    return patch
