"""Masking of secret values in text: one pure module for the operator and the stack worker.

Every message that leaves the engine (status, Events, logs, tracebacks) passes through
`mask_secrets` with the secret values of the operation it is about. The worker subprocess
imports this module directly (a child imports shared helpers from a module both sides own).
"""

from __future__ import annotations

from collections.abc import Collection

SECRET_MASK = "[secret]"


def mask_secrets(text: str, secret_values: Collection[str]) -> str:
    """`text` with every occurrence of every non-empty secret value replaced by SECRET_MASK.

    Longest first, so a secret that contains another is masked whole.
    """
    for value in sorted((s for s in secret_values if s), key=len, reverse=True):
        text = text.replace(value, SECRET_MASK)
    return text
