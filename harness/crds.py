"""Install the CRDs (jupyternetes.crd.definitions) and wait until they are Established."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client


def apply_crds(api: client.ApiClient, docs: list[dict[str, Any]], timeout: float = 60) -> list[str]:
    """Create or replace each CRD and wait until the apiserver reports it Established.

    Raises ApiException when the apiserver rejects a CRD (e.g. a non-structural schema)."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(doc)
        except client.ApiException as e:
            if e.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body = {**doc, "metadata": {**doc["metadata"],
                                        "resourceVersion": current.metadata.resource_version}}
            ext.replace_custom_resource_definition(name, body)
        names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c for c in (crd.status.conditions or [])}
            established = conditions.get("Established")
            if established is not None and established.status == "True":
                break
            if time.monotonic() > deadline:
                problems = {t: f"{c.status} {c.reason}: {c.message}" for t, c in conditions.items()}
                raise TimeoutError(f"CRD {name} not Established after {timeout} s: {problems}")
            time.sleep(0.2)
    return names
