"""Secrets out of every text that leaves the engine or the operator: one pure module for both.

`mask_secrets` replaces secret values in a message; `trim_message` turns an engine failure into
the short message status and Events show (masked); `MaskingFilter` masks log records (message,
arguments, traceback) on their way to a handler. The operator and the stack worker subprocess
both import this module (a child imports shared helpers from a module both sides own, never
from its parent's module). No I/O: the callers decide where text goes.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Collection, Iterable

SECRET_MASK = "[secret]"
MESSAGE_LIMIT = 1500


def mask_secrets(text: str, secret_values: Collection[str]) -> str:
    """`text` with every occurrence of every non-empty secret value replaced by SECRET_MASK.

    Longest first, so a secret that contains another is masked whole.
    """
    for value in sorted((s for s in secret_values if s), key=len, reverse=True):
        text = text.replace(value, SECRET_MASK)
    return text


def mask_forms(secret_values: Iterable[str]) -> set[str]:
    """The values and their base64 encodings (a Secret's `data`, a dumped API object)."""
    forms: set[str] = set()
    for value in secret_values:
        if value:
            forms.add(value)
            forms.add(base64.b64encode(value.encode("utf-8")).decode("ascii"))
    return forms


class MaskingFilter(logging.Filter):
    """A handler filter that masks secret values in every record it passes: the formatted
    message (arguments included) and the traceback, formatted here so that no formatter can
    print the unmasked exception later. Values are added as the process learns them."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._forms: frozenset[str] = frozenset()
        self.add(secret_values)

    def add(self, secret_values: Iterable[str]) -> None:
        new = mask_forms(secret_values)
        with self._lock:
            if not new <= self._forms:
                self._forms = self._forms | new

    def forms(self) -> frozenset[str]:
        return self._forms

    def filter(self, record: logging.LogRecord) -> bool:
        forms = self._forms
        if not forms:
            return True
        record.msg = mask_secrets(record.getMessage(), forms)
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text, forms)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info, forms)
        for key in ("instance",):  # extra fields the JSON formatter prints
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, mask_secrets(value, forms))
        return True


# The operator's filter, installed on its log handler (app/logsetup.py); the reconciler adds
# the secret values of every instance it handles. Values are kept for the process's life: an
# old token may still appear in an engine message about the state.
OPERATOR_LOG_MASK = MaskingFilter()


def install(handler: logging.Handler, mask: MaskingFilter) -> None:
    """Add `mask` to `handler` once (handler filters see records of every logger)."""
    if mask not in handler.filters:
        handler.addFilter(mask)


# ---- engine failure messages ----------------------------------------------------------------


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|<\{%[^%]*%\}>")
# Lines that say only that something failed, not what: dropped when something better exists.
_GENERIC = re.compile(
    r"^(error: )?(update|preview|refresh|destroy) failed$|^error: \d+ error(s)? occurred|"
    r"^\d+ error(s)? occurred:?$|^Resources:|^Duration:|^\s*$|^error: (update|preview) failed")


_URN_REF = re.compile(r'resource "urn:pulumi:[^"]*"')
_DIFF_DUMP = re.compile(r"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@")


def clean_line(line: str) -> str:
    return _ANSI.sub("", line).rstrip()


def trim_message(diagnostics: Iterable[tuple[str | None, str]], stderr: str = "",
                 secret_values: Collection[str] = (), limit: int = MESSAGE_LIMIT) -> str:
    """The useful part of an engine failure: each error diagnostic, prefixed by its resource.

    `diagnostics` are (resource name or None, message) from the engine's error events; when
    there are none, the `error:` lines of the CLI's stderr are used. Generic lines ("update
    failed") are dropped, duplicates removed, secrets masked, the result capped at `limit`.
    """
    lines: list[str] = []
    seen: set[str] = set()

    def add(prefix: str | None, message: str) -> None:
        for raw in message.splitlines():
            line = clean_line(raw).strip()
            if _DIFF_DUMP.match(line):
                # The apiserver appends a dump of the whole object diff to some errors (pod
                # updates): noise for an admin, and it holds old values, secrets included.
                break
            # The Automation API's CommandError text labels the CLI's stderr lines.
            line = line.removeprefix("stderr: ")
            if line.startswith("error: "):
                line = line[len("error: "):]
            # The resource is named by the prefix already; its URN is noise in a status.
            line = _URN_REF.sub("resource", line)
            if not line or _GENERIC.match(line):
                continue
            text = f"{prefix}: {line}" if prefix else line
            if line in seen:
                continue
            seen.add(line)
            lines.append(text)

    for name, message in diagnostics:
        add(name, message)
    if not lines:
        for raw in stderr.splitlines():
            line = clean_line(raw).strip()
            if line.startswith("error:") or "error" in line.lower():
                add(None, line)
    if not lines:
        tail = [clean_line(x).strip() for x in stderr.splitlines() if clean_line(x).strip()]
        lines = tail[-3:]
    text = mask_secrets("\n".join(lines), secret_values)
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text
