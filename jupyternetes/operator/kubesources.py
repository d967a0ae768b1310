"""The list+watch sources over `Kube` that feed the operator's informers (instances, templates,
pods), and the fresh list of instance names the orphan collector compares stacks with."""

from __future__ import annotations

from collections.abc import Sequence

from jupyternetes.kube import MANAGED_SELECTOR, Kube
from jupyternetes.operator import cachefields
from jupyternetes.operator.watch import KubeSource


def instance_names(kube: Kube, scopes: Sequence[str | None]) -> list[tuple[str, str]]:
    """(namespace, name) of every instance in the served scopes, fresh from the apiserver
    (not the watch cache, which may lag an instance created a moment ago)."""
    names = []
    for ns in scopes:
        # Names only, page by page: at 5,000 instances a full list is 100+ MB of objects.
        items, _ = kube.list_instances(ns, cachefields.name_only)
        names += [(i["metadata"].get("namespace", ""), i["metadata"].get("name", ""))
                  for i in items]
    return names


def instance_source(kube: Kube, namespace: str | None) -> KubeSource:
    return KubeSource(lambda: kube.list_instances(namespace, cachefields.custom_object),
                      lambda rv, timeout: kube.watch_instances(namespace, rv, timeout))


def template_source(kube: Kube, namespace: str | None) -> KubeSource:
    return KubeSource(lambda: kube.list_templates(namespace, cachefields.custom_object),
                      lambda rv, timeout: kube.watch_templates(namespace, rv, timeout))


def pod_source(kube: Kube, namespace: str | None) -> KubeSource:
    return KubeSource(lambda: kube.list_pods(namespace, MANAGED_SELECTOR, cachefields.pod),
                      lambda rv, timeout: kube.watch_pods(namespace, MANAGED_SELECTOR, rv,
                                                          timeout))

