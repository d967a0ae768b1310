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


# Forms at least this long are found through the set of their first INDEX_PREFIX characters and
# one set per length: a record costs one lookup per character of its text, plus one per distinct
# form length where a prefix matches, whatever the number of users (tokens share a few lengths).
# Shorter forms (rare: a secret variable of a few characters) are replaced one by one.
INDEX_PREFIX = 6


class Masker:
    """The forms to mask, indexed (see INDEX_PREFIX). Changed in place by one writer at a time
    (`change`, under the filter's lock) while records are masked in other threads: readers only
    look keys up in dicts and sets (atomic in CPython) and read tuples swapped whole. A change
    costs its own forms, not the whole set."""

    def __init__(self, forms: Iterable[str] = ()) -> None:
        self._counts: dict[str, int] = {}  # form -> how many owners hold it
        self.prefixes: dict[str, int] = {}  # INDEX_PREFIX-long prefix -> forms with it
        self.by_length: dict[int, set[str]] = {}
        self.lengths: tuple[int, ...] = ()  # longest first: a secret holding another goes whole
        self.short: tuple[str, ...] = ()
        self.change((), forms)

    def __len__(self) -> int:
        return len(self._counts)

    def forms(self) -> frozenset[str]:
        return frozenset(self._counts)

    def change(self, removed: Iterable[str], added: Iterable[str]) -> None:
        size = INDEX_PREFIX
        short_changed = lengths_changed = False
        for form in added:
            held = self._counts.get(form, 0)
            self._counts[form] = held + 1
            if held:
                continue
            if len(form) < size:
                short_changed = True
                continue
            same = self.by_length.setdefault(len(form), set())
            lengths_changed |= not same
            same.add(form)
            self.prefixes[form[:size]] = self.prefixes.get(form[:size], 0) + 1
        for form in removed:
            held = self._counts.get(form, 0) - 1
            if held > 0:
                self._counts[form] = held
                continue
            if held < 0:
                continue
            del self._counts[form]
            if len(form) < size:
                short_changed = True
                continue
            same = self.by_length[len(form)]
            same.discard(form)
            lengths_changed |= not same
            left = self.prefixes[form[:size]] - 1
            if left:
                self.prefixes[form[:size]] = left
            else:
                del self.prefixes[form[:size]]
        if lengths_changed:
            self.lengths = tuple(sorted((n for n, forms in self.by_length.items() if forms),
                                        reverse=True))
        if short_changed:
            self.short = tuple(sorted((f for f in self._counts if len(f) < size), key=len,
                                      reverse=True))

    def mask(self, text: str) -> str:
        if self.prefixes:
            text = self._mask_indexed(text)
        for value in self.short:
            text = text.replace(value, SECRET_MASK)
        return text

    def _mask_indexed(self, text: str) -> str:
        prefixes, by_length, lengths, size = self.prefixes, self.by_length, self.lengths, \
            INDEX_PREFIX
        parts: list[str] = []
        start = i = 0
        end = len(text) - size + 1
        while i < end:
            if prefixes.get(text[i:i + size]):
                match = next((n for n in lengths
                              if text[i:i + n] in by_length.get(n, ())), 0)
                if match:
                    parts += (text[start:i], SECRET_MASK)
                    i = start = i + match
                    continue
            i += 1
        if not parts:
            return text
        parts.append(text[start:])
        return "".join(parts)


class MaskingFilter(logging.Filter):
    """A handler filter that masks secret values in every record it passes: the formatted
    message (arguments included) and the traceback, formatted here so that no formatter can
    print the unmasked exception later.

    Values are added as the process learns them: `add` for the process's life (the backend
    URL's password), `set(owner, values)` for one owner (an instance, by key), replacing what
    that owner had (a rotated token stops being masked once no Secret holds it), and
    `drop(owner)` when the owner is gone. So the set stays as large as the live instances'
    secrets, and neither a record nor a change costs more with more users (Masker)."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._lasting: set[str] = set()
        self._owned: dict[str, frozenset[str]] = {}
        self._masker = Masker()
        self.add(secret_values)

    def add(self, secret_values: Iterable[str]) -> None:
        new = mask_forms(secret_values)
        with self._lock:
            new -= self._lasting
            if new:
                self._lasting |= new
                self._masker.change((), new)

    def set(self, owner: str, secret_values: Iterable[str]) -> None:
        new = frozenset(mask_forms(secret_values))
        with self._lock:
            old = self._owned.get(owner, frozenset())
            if old != new:
                if new:
                    self._owned[owner] = new
                else:
                    self._owned.pop(owner, None)
                self._masker.change(old, new)

    def drop(self, owner: str) -> None:
        self.set(owner, ())

    def forms(self) -> frozenset[str]:
        return self._masker.forms()

    def size(self) -> int:
        """How many forms are masked (each value and its base64 form)."""
        return len(self._masker)

    def mask(self, text: str) -> str:
        return self._masker.mask(text)

    def filter(self, record: logging.LogRecord) -> bool:
        masker = self._masker
        if not len(masker):
            return True
        record.msg = masker.mask(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = masker.mask(record.stack_info)
        for key in ("instance",):  # extra fields the JSON formatter prints
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, masker.mask(value))
        return True


# The operator's filter, installed on its log handler (app/logsetup.py): the backend URL's
# password for the process's life (`add`), each instance's secret values while it exists and
# as they are now (`set` by the reconciler, `drop` when the instance is deleted).
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
