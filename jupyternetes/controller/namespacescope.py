"""Label-selected scopes (`jupyternetes operator --namespace-selector LABEL=VALUE`).

The operator serves the namespaces whose labels match: a list+watch of the Namespace objects
with that label selector (the apiserver filters; the operator never lists every namespace's
instances or pods, and never needs list on all namespaces' objects), and for each one found its
own instance and pod watches, started when the namespace appears and stopped when it is deleted
or loses the label. This is how a hub with user namespaces (the spawner's
`enable_user_namespaces`, whose namespaces carry `jupyternetes.kadense.io/user-namespace=true`)
is served: namespaces made at spawn time are picked up within one watch event.

A namespace being deleted keeps its label until it is gone, so its instances' stacks are
destroyed (their finalizers) before its watches stop. A namespace whose label is removed while it
still has instances is no longer served: its instances wait (finalizers kept) until it is
labelled again.

RBAC: get/list/watch on namespaces (cluster-scoped: a ClusterRole; RBAC cannot grant by label,
the selector only filters what is sent), and in each selected namespace what the operator needs
where instances live (deploy/rbac.py: bound there by a RoleBinding the hub creates with the
namespace).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from jupyternetes.kube import caches
from jupyternetes.kube.client import Kube
from jupyternetes.kube.informer import DELETED, RESYNC, ListWatcher

log = logging.getLogger("jupyternetes.operator")


def namespace_name(obj: dict) -> str | None:
    name = (obj.get("metadata") or {}).get("name")
    return name if isinstance(name, str) and name else None


class NamespaceScope:
    """Calls `add(namespace)` for each selected namespace as it appears, `remove(namespace)` as
    it goes (deleted, or its labels no longer match: the watch sends DELETED for both)."""

    def __init__(self, kube: Kube, selector: str, add: Callable[[str], None],
                 remove: Callable[[str], None], watch_timeout_seconds: int = 290) -> None:
        self.selector = selector
        self._add = add
        self._remove = remove
        self.watcher = ListWatcher(f"namespaces@{selector}",
                                   caches.namespace_source(kube, selector), self.on_namespace,
                                   resync_seconds=0, watch_timeout_seconds=watch_timeout_seconds)

    def on_namespace(self, event_type: str, obj: dict) -> None:
        name = namespace_name(obj)
        if name is None or event_type == RESYNC:
            return
        if event_type == DELETED:
            self._remove(name)
        else:
            self._add(name)

    def served(self) -> list[str]:
        """The namespaces selected now; empty until the first list (nothing is judged an
        orphan before it is known which namespaces are served)."""
        if not self.watcher.has_synced:
            return []
        return sorted(filter(None, (namespace_name(o) for o in self.watcher.items())))

    def start(self) -> None:
        self.watcher.start()
