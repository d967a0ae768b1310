"""Get the create guard's Kubernetes client ready while the Pulumi CLI starts.

The program's before-create hook (program.create_guard_hook, on every object; for a pod it also
waits for a terminating predecessor) reads the object through the Python Kubernetes client.
Done at hook time, on the critical path of every `up`: importing the client (about 0.25 s of
CPU on an idle box), loading the kubeconfig, building the TLS context and the first TLS
handshake; traced at 1.0-1.4 s per `up` on a loaded 2-core machine, half of the CLI's wall time
(benchmarks/README.md, "profile"). The import happens when a worker process starts (a
pre-started worker is still idle then), and `start` builds the client and opens its connection
in a thread while the CLI starts and configures the provider (0.6-1.7 s), so the hook finds it
all done. Only the hook's own reads are left, as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

# Imported with the worker, not at hook time (see above).
import kubernetes.client
import kubernetes.config  # noqa: F401

from jupyternetes.engine.runtime import program

log = logging.getLogger(__name__)


def first_object(objects: list[Mapping[str, Any]]) -> tuple[str, str, str, str] | None:
    """(apiVersion, kind, namespace, name) of the first object among the request's objects:
    the one the first create guard reads (PVCs come first)."""
    for obj in objects:
        manifest = obj.get("manifest") or {}
        metadata = manifest.get("metadata")
        if (isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str)
                and isinstance(manifest.get("apiVersion"), str)
                and isinstance(manifest.get("kind"), str)):
            return (manifest["apiVersion"], manifest["kind"],
                    metadata.get("namespace") or "default", metadata["name"])
    return None


def start(request: Mapping[str, Any]) -> threading.Thread | None:
    """For an `up`: build the guard's client and read the first object once, in a daemon
    thread (the guard reads it again itself; this only warms the client and its connection).
    Failures are ignored here: the guard reports its own."""
    if request.get("op") != "up":
        return None
    target = first_object(list(request.get("objects") or []))
    if target is None:
        return None
    settings = request.get("settings") or {}
    read = program.object_reader(settings.get("kubeconfig"), settings.get("context"), *target)

    def warm() -> None:
        with contextlib.suppress(Exception):
            read()

    thread = threading.Thread(target=warm, name="prewarm-guard-client", daemon=True)
    thread.start()
    return thread
