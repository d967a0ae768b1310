"""Template revisions on the apiserver: record the ControllerRevision of what a template renders
now, find a revision by number, prune beyond `revisionHistoryLimit` (rules: policy/revisions.py).

A revision's content never changes (ControllerRevision `data` is immutable) and numbers are
never reused, so what was read once is kept in memory: the no-op path of 5,000 instances pinned
or mid-rollout asks the apiserver nothing. A template is re-listed when its current content is
not among the revisions known, or a number is asked for that is not known.

RBAC: get/list/create/delete on controllerrevisions (apps) in the templates' namespaces.
Without it the operator logs one warning per template and renders the template as it is
(no revision numbers in status, pins cannot be honoured and say so).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from jupyternetes.policy import revisions

log = logging.getLogger(__name__)


class RevisionKube(Protocol):
    def list_controller_revisions(self, namespace: str, selector: str) -> list[dict]: ...
    def create_controller_revision(self, body: dict) -> dict | None: ...
    def delete_controller_revision(self, namespace: str, name: str) -> None: ...


def _ident(tpl_obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = tpl_obj.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))


class RevisionStore:
    """`in_use(template key)`: revision numbers instances run or are pinned to (never pruned)."""

    def __init__(self, kube: RevisionKube,
                 in_use: Callable[[str], Iterable[int]] = lambda key: ()) -> None:
        self.kube = kube
        self.in_use = in_use
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._known: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
        self._warned: set[tuple[str, str]] = set()
        # (uid, generation) -> hash of what renders: the no-op path of every instance asks.
        self._digests: dict[tuple[str, Any], str] = {}

    def digest(self, tpl_obj: Mapping[str, Any]) -> str:
        meta = tpl_obj.get("metadata") or {}
        key = (str(meta.get("uid")), meta.get("generation"))
        if key[1] is None:
            return revisions.spec_hash(tpl_obj)
        with self._lock:
            found = self._digests.get(key)
        if found is None:
            found = revisions.spec_hash(tpl_obj)
            with self._lock:
                if len(self._digests) > 10_000:
                    self._digests.clear()
                self._digests[key] = found
        return found

    def _template_lock(self, ident: tuple[str, str, str]) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(ident, threading.Lock())

    def _list(self, tpl_obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        ns, name, _ = _ident(tpl_obj)
        found = revisions.owned_by(
            self.kube.list_controller_revisions(ns, revisions.selector(name)), tpl_obj)
        with self._lock:
            self._known[_ident(tpl_obj)] = found
        return found

    def known(self, tpl_obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self._known.get(_ident(tpl_obj), ()))

    def history(self, tpl_obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every revision of the template, oldest first (fresh from the apiserver)."""
        return self._list(tpl_obj)

    def current(self, tpl_obj: Mapping[str, Any]) -> int | None:
        """The number of what `tpl_obj` renders now, recorded first if it is new; None when
        revisions cannot be read or written (logged once per template)."""
        digest = self.digest(tpl_obj)
        number = revisions.number_of(self.known(tpl_obj), digest)
        if number is not None:
            return number
        ident = _ident(tpl_obj)
        try:
            with self._template_lock(ident):
                return self._record(tpl_obj, digest)
        except Exception as exc:  # RBAC, apiserver hiccup: rendering goes on without numbers
            self._warn(ident, exc)
            return None

    def _record(self, tpl_obj: Mapping[str, Any], digest: str) -> int | None:
        listed = self._list(tpl_obj)
        number = revisions.number_of(listed, digest)
        if number is not None:
            return number
        body = revisions.revision_object(tpl_obj, revisions.next_number(listed))
        created = self.kube.create_controller_revision(body)
        listed = self._list(tpl_obj)  # a 409: another writer recorded the same content
        number = revisions.number_of(listed, digest)
        if created is not None and number is not None:
            ns, name, _ = _ident(tpl_obj)
            log.info("template %s/%s: recorded revision %d (%s)", ns, name, number,
                     body["metadata"]["name"])
            self._prune(tpl_obj, listed, number)
        return number

    def _prune(self, tpl_obj: Mapping[str, Any], listed: list[Mapping[str, Any]],
               current: int) -> None:
        ns, name, _ = _ident(tpl_obj)
        keep = {current, *self.in_use(f"{ns}/{name}")}
        doomed = revisions.to_prune(listed, revisions.history_limit(tpl_obj), keep)
        for revision_name in doomed:
            self.kube.delete_controller_revision(ns, revision_name)
        if doomed:
            self._list(tpl_obj)

    def revision(self, tpl_obj: Mapping[str, Any], number: int) -> Mapping[str, Any] | None:
        """Revision `number` of the template, or None when it does not exist (any more)."""
        for found in (self.known(tpl_obj), None):
            if found is None:
                try:
                    found = self._list(tpl_obj)
                except Exception as exc:
                    self._warn(_ident(tpl_obj), exc)
                    return None
            for revision in found:
                if int(revision.get("revision") or 0) == number:
                    return revision
        return None

    def cached_revision(self, tpl_obj: Mapping[str, Any],
                        number: int) -> Mapping[str, Any] | None:
        """Like `revision`, from memory only (the no-op path)."""
        for revision in self.known(tpl_obj):
            if int(revision.get("revision") or 0) == number:
                return revision
        return None

    def cached_current(self, tpl_obj: Mapping[str, Any]) -> int | None:
        return revisions.number_of(self.known(tpl_obj), self.digest(tpl_obj))

    def _warn(self, ident: tuple[str, str, str], exc: Exception) -> None:
        key = ident[:2]
        if key not in self._warned:
            self._warned.add(key)
            log.warning("template %s/%s: cannot record or read its revisions (%s); the operator "
                        "needs get/list/create/delete on controllerrevisions (apps) in %s",
                        ident[0], ident[1], exc, ident[0])
