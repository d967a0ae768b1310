"""The no-op path: is an instance unchanged, judged from the watch caches alone (no writes)?

At 5,000 instances almost every reconcile (a periodic resync, an operator restart) finds nothing
to do, and the full path pays two apiserver round trips (the instance, its template) before it
can say so. This check answers from the informer caches instead: the cached instance, the cached
template and the cached pods. It says True only where the full path (reconcile.py `_apply`),
given the same objects, returns `unchanged` without writing anything: same render as the running
stack, nothing drifted, every pod there, the mirrored pod fields and conditions already right.
Anything else (an object not cached, a deletion, a drift flag, a pod the cache has not seen, a
status to write, a template that does not render) is False, and the reconciler takes the full
path with fresh reads, which decides and writes as before.

Why a lagging cache is safe here: a True answer from an old copy is followed by the watch event
of the newer version, which queues the key again (added while it is processed, the queue hands
it out again when the worker is done), and the next check sees the newer copy. One exception,
handled by `OwnWrites`: the operator's own status writes come back as events that queue
nothing (run.on_instance ignores status-only changes), so until the cache holds the version
this operator wrote, the cached status is older than the truth and the check is not made (a pod
that flips back within that window would otherwise leave its old state mirrored). The Secrets
of `spec.variablesFrom` are not cached: they are read fresh, as on the full path.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from jupyternetes.controller.status import mirror_patch
from jupyternetes.crd.conditions import TEMPLATE_CURRENT, says
from jupyternetes.crd.model import Instance, ModelError, Template
from jupyternetes.engine.masking import OPERATOR_LOG_MASK
from jupyternetes.policy import rollout, trust
from jupyternetes.render import secretvars
from jupyternetes.render.objects import render
from jupyternetes.render.placeholders import RenderError

PodLookup = Callable[[str, str], Mapping[str, Any] | None]


def unchanged(obj: Mapping[str, Any], tpl_obj: Mapping[str, Any] | None, *,
              secret_variables: frozenset[str], settings_fingerprint: Mapping[str, Any],
              template_rollout: str, get_secret: secretvars.SecretGetter,
              pod_lookup: PodLookup, now: str, key: str = "",
              memo: RenderMemo | None = None,
              trust_policy: trust.TrustPolicy | None = None,
              revision: int | None = None,
              behind: tuple[str, str] | None = None) -> bool:
    """True when reconciling `obj` (with template `tpl_obj`) would change nothing (module doc).
    Masks the instance's secret values like the full path does (they may be logged later).
    `memo` (by instance `key`) saves the render and hash of an instance seen before."""
    meta = obj.get("metadata") or {}
    if tpl_obj is None or meta.get("deletionTimestamp"):
        return False
    try:
        instance = Instance.from_dict(dict(obj), source="cache")
    except ModelError:
        return False
    status = obj.get("status") or {}
    generation = instance.generation
    tpl_ns, tpl_name = instance.template_namespace, instance.template.name
    try:
        template = Template.from_dict(dict(tpl_obj), source=f"{tpl_ns}/{tpl_name}")
    except ModelError:
        return False
    if not trust.template_allows(template, instance.namespace):
        return False  # the full path refuses it (policy/trust.py) and says so
    secret_vars: dict[str, str] = {}
    if instance.secret_refs:
        try:
            secret_vars = secretvars.secret_variables(
                instance, secretvars.read_secrets(instance, get_secret))
        except secretvars.SecretVariablesError:
            return False
        instance = secretvars.with_variables(instance, secret_vars)
    secret_names = secret_variables | frozenset(secret_vars)
    OPERATOR_LOG_MASK.set(key, secretvars.secret_values(instance, secret_names))
    secrets_digest = secretvars.variables_digest(secret_vars) if instance.secret_refs else None
    memo_key = render_key(obj, tpl_obj, secrets_digest, secret_names, settings_fingerprint)
    if memo_key is not None:
        memo_key = (*memo_key, revision)  # a pinned or staged instance renders a revision
    known = memo.get(key, memo_key) if memo is not None and memo_key is not None else None
    if known is not None:
        digest, expected = known
    else:
        try:
            rendered = render(template, instance)
        except (ModelError, RenderError):
            return False
        if trust.kind_problems(rendered.objects(), trust_policy or trust.TrustPolicy()):
            return False
        digest = rollout.desired_hash(rendered, secret_names, settings_fingerprint)
        expected = tuple((o.entry, o.namespace, o.name) for o in rendered.pods)
        if memo is not None and memo_key is not None:
            memo.put(key, memo_key, digest, expected)
    plan = rollout.plan(template_rollout, status, generation, digest, secrets_digest)
    if not (plan.check_pods and plan.same_render):
        return False
    pods = {name: pod_lookup(namespace, name) for _, namespace, name in expected}
    if any(pod is None for pod in pods.values()):
        return False  # the cache may lag a new pod: the full path asks the apiserver
    if behind is not None:
        if not says(status, TEMPLATE_CURRENT, "False", *behind):
            return False
    elif rollout.template_current(status, tpl_ns, tpl_name, rollout.template_generation(tpl_obj),
                                  generation, now, only_if_not_true=True) is not None:
        return False
    return not mirror_patch(status, expected, pods, generation, None, now)  # type: ignore[arg-type]


Expected = tuple[tuple[str, str, str], ...]


def render_key(obj: Mapping[str, Any], tpl_obj: Mapping[str, Any], secrets_digest: str | None,
               secret_names: frozenset[str], settings: Mapping[str, Any]) -> tuple | None:
    """Everything a render and its hash depend on: the instance's spec (its uid and
    generation: spec edits bump it), the template's spec (uid, generation), the Secrets'
    variables (digest) and the operator's settings. None when a generation is unknown."""
    meta, tpl_meta = obj.get("metadata") or {}, tpl_obj.get("metadata") or {}
    parts = (meta.get("uid"), meta.get("generation"), tpl_meta.get("uid"),
             tpl_meta.get("generation"))
    if any(part is None for part in parts):
        return None
    return (*parts, secrets_digest, secret_names,
            json.dumps(dict(settings), sort_keys=True, default=str))


class RenderMemo:
    """instance key -> (render_key, desired hash, expected pods) of its last render.

    In the 5,000-instance profile, rendering and hashing were most of a no-op check's CPU; a
    resync re-checks every instance with nothing changed, so each keeps its last answer until
    something it depends on changes (render_key). One entry per instance; `forget` when gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple, str, Expected]] = {}

    def get(self, key: str, memo_key: tuple) -> tuple[str, Expected] | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] != memo_key:
            return None
        return entry[1], entry[2]

    def put(self, key: str, memo_key: tuple, digest: str, expected: Expected) -> None:
        with self._lock:
            self._entries[key] = (memo_key, digest, expected)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class OwnWrites:
    """Instances this operator wrote whose new version the watch cache has not delivered yet.

    `wrote` records the resourceVersion a write returned; `seen` (every watch event) clears it
    once the cache holds that version; `pending` is True in between. resourceVersions are
    opaque (only equality is meaningful), so an entry whose version never shows up (a relist
    that jumped past it) expires after `horizon` seconds, long after any watch delivers."""

    def __init__(self, horizon: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.horizon = horizon
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, float]] = {}

    def wrote(self, key: str, obj: Mapping[str, Any] | None) -> None:
        rv = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            if rv:
                self._pending[key] = (rv, self._clock() + self.horizon)
            else:
                self._pending.pop(key, None)

    def seen(self, key: str, obj: Mapping[str, Any] | None) -> None:
        rv = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            entry = self._pending.get(key)
            if entry is not None and entry[0] == rv:
                del self._pending[key]

    def pending(self, key: str) -> bool:
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                return False
            if self._clock() >= entry[1]:
                del self._pending[key]
                return False
            return True


class TrackWrites:
    """The kube port, telling `OwnWrites` the version each instance write returned."""

    def __init__(self, kube: Any, writes: OwnWrites) -> None:
        self._kube = kube
        self._writes = writes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    def patch_instance_status(self, namespace: str, name: str, status: dict) -> dict | None:
        obj = self._kube.patch_instance_status(namespace, name, status)
        self._writes.wrote(f"{namespace}/{name}", obj)
        return obj

    def add_finalizer(self, namespace: str, name: str, *args: Any) -> dict | None:
        obj = self._kube.add_finalizer(namespace, name, *args)
        self._writes.wrote(f"{namespace}/{name}", obj)
        return obj

    def remove_finalizer(self, namespace: str, name: str, *args: Any) -> dict | None:
        obj = self._kube.remove_finalizer(namespace, name, *args)
        self._writes.wrote(f"{namespace}/{name}", obj)
        return obj


class DriftFlags:
    """Instances whose managed objects changed behind the stack's back (a pod deleted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[str] = set()

    def flag(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def take(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.discard(key)
                return True
            return False

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys
