"""Template status: how many instances use a template and how many run its current generation.

`template_status` is pure (instance objects + the template's generation -> the status dict).
`TemplateStatusWriter` writes it debounced: instance and template events only mark a template
dirty; one thread writes each dirty template at most once per `interval`, and only when the
counts differ from what the template's status already says. A template with 5,000 instances
rolling at once gets a handful of writes, not 5,000.

RBAC: `patch` on `jupyternotebooktemplates/status`. Without it the writer logs one warning per
template and carries on (the counts are informative, nothing depends on them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jupyternetes.crd.definitions import TEMPLATE_PLURAL

log = logging.getLogger(__name__)

GROUPS = ("pods", "pvcs", "otherResources")


def runs_generation(status: Mapping[str, Any]) -> int | None:
    """The template generation an instance's last successful update applied, else None."""
    stack = status.get("stack") or {}
    if not stack.get("desiredHash") or (stack.get("lastUpdate") or {}).get(
            "result") != "succeeded":
        return None
    generation = stack.get("templateGeneration")
    return generation if isinstance(generation, int) else None


def _objects(status: Mapping[str, Any], group: str) -> int:
    entries = status.get(group) or {}
    return sum(1 for e in entries.values() if isinstance(e, Mapping) and e.get("resourceName")
               and e.get("state") == "Completed") if isinstance(entries, Mapping) else 0


def template_status(instances: Iterable[Mapping[str, Any]],
                    generation: int | None, revision: int | None = None) -> dict[str, Any]:
    """`instances`: the instance objects that reference the template. `current`: how many run
    its `generation`; pods/pvcs/otherResources: objects provisioned for them (Completed);
    `revisions`: instances per template revision they run; `currentRevision`: `revision`."""
    counts = dict.fromkeys(GROUPS, 0)
    total = current = 0
    per_revision: dict[str, int] = {}
    for obj in instances:
        status = obj.get("status") or {}
        total += 1
        if generation is not None and runs_generation(status) == generation:
            current += 1
        runs = status.get("templateRevision")
        if isinstance(runs, int):
            per_revision[str(runs)] = per_revision.get(str(runs), 0) + 1
        for group in GROUPS:
            counts[group] += _objects(status, group)
    result: dict[str, Any] = {"instances": total, "current": current, **counts,
                              "revisions": per_revision}
    if generation is not None:
        result["observedGeneration"] = generation
    if revision is not None:
        result["currentRevision"] = revision
    return result


def differs(written: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    written = written or {}
    return any(written.get(key) != value for key, value in wanted.items())


def merge_patch(written: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """`wanted` as a JSON merge patch over `written`: keys of maps that `wanted` no longer has
    are removed (null), e.g. a revision no instance runs any more."""
    patch: dict[str, Any] = dict(wanted)
    for key, value in wanted.items():
        old = (written or {}).get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = {**{k: None for k in old if k not in value},
                          **merge_patch(old, value)}
    return patch


class TemplateStatusWriter:
    """Debounced writer. `compute(key)` -> (wanted status, status now) or None when the
    template is gone; `write(key, status)` patches it (errors are logged, not raised)."""

    def __init__(self, compute: Callable[[str], tuple[dict, Mapping | None] | None],
                 write: Callable[[str, dict], Any], interval: float = 2.0,
                 tick: float | None = None,
                 periodic: Callable[[], Iterable[str]] = lambda: ()) -> None:
        self.compute = compute
        # Every `tick` seconds the keys `periodic()` gives are written again (a staged rollout
        # under way: its deadlines and pauses pass without any event).
        self.tick = tick
        self.periodic = periodic
        self.write = write
        self.interval = interval
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._denied: set[str] = set()
        self._thread: threading.Thread | None = None
        self.writes = 0

    def mark(self, template_key: str | None) -> None:
        if template_key:
            with self._lock:
                self._dirty.add(template_key)
            self._wake.set()

    def flush(self) -> int:
        """Write every dirty template whose counts changed; returns the number of writes."""
        with self._lock:
            keys, self._dirty = sorted(self._dirty), set()
        written = 0
        for key in keys:
            found = self.compute(key)
            if found is None:
                continue
            wanted, now = found
            if not differs(now, wanted):
                continue
            try:
                self.write(key, merge_patch(now, wanted))
            except Exception as exc:  # RBAC, template deleted meanwhile, apiserver hiccup
                if key not in self._denied:
                    log.warning("template %s: cannot write status counts (%s); the operator "
                                "needs patch on %s/status", key, exc, TEMPLATE_PLURAL)
                    self._denied.add(key)
                continue
            self._denied.discard(key)
            written += 1
        self.writes += written
        return written

    def run(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(self.tick):
                for key in self.periodic():
                    self.mark(key)
                continue
            if self._stop.wait(self.interval):  # debounce: gather events for `interval`
                return
            self._wake.clear()
            self.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="template-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()


class TemplateIndex:
    """template key -> keys of the instances that reference it, kept from instance events.

    A template edit must reach exactly the instances rendered from it, without listing every
    instance on every template event; the instance watch already sees every spec.template.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._template_of: dict[str, str] = {}
        self._instances_of: dict[str, set[str]] = {}

    def update(self, instance_key: str, template_key: str | None) -> None:
        """Record (or, with None, forget) which template an instance references."""
        with self._lock:
            old = self._template_of.pop(instance_key, None)
            if old is not None:
                keys = self._instances_of.get(old)
                if keys is not None:
                    keys.discard(instance_key)
                    if not keys:
                        del self._instances_of[old]
            if template_key is not None:
                self._template_of[instance_key] = template_key
                self._instances_of.setdefault(template_key, set()).add(instance_key)

    def template_of(self, instance_key: str) -> str | None:
        with self._lock:
            return self._template_of.get(instance_key)

    def instances_of(self, template_key: str) -> list[str]:
        with self._lock:
            return sorted(self._instances_of.get(template_key, ()))


def template_key_of(instance: dict) -> str | None:
    """`namespace/name` of the template an instance references (its own namespace by default,
    as `Instance.template_namespace`); None when the spec does not name one."""
    meta = instance.get("metadata") or {}
    ref = (instance.get("spec") or {}).get("template") or {}
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
        return None
    namespace = ref.get("namespace") or meta.get("namespace") or "default"
    return f"{namespace}/{ref['name']}"
