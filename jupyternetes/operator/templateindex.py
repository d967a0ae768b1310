"""Which instances reference which template: the index the operator keeps from instance events,
so a template edit re-queues exactly the instances rendered from it."""

from __future__ import annotations

import threading


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
