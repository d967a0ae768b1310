"""Reading collections from the apiserver as plain JSON: paged lists (`list_pages`) and watch
streams (`WatchStream`), never the client's typed models."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from jupyternetes.kube.errors import KubeError, WatchExpired, to_kube_error

# The client wiring's logger (these lived in kube/client.py): log lines keep their logger name.
log = logging.getLogger("jupyternetes.kube")

# Items per list request (limit/continue): bounds the memory one list holds in full objects.
LIST_PAGE = 500

# What a list keeps of each object (an informer's transform, see kube/caches.py).
Transform = Callable[[dict], dict]


def list_pages(call: Callable[..., Any], what: str,
               transform: Transform | None = None) -> tuple[list[dict], str]:
    """Every item of a list, `LIST_PAGE` at a time (limit/continue: one consistent snapshot),
    each page parsed as plain JSON (never the client's typed models) and passed through
    `transform` before the next page is read: at 5,000 objects only one page of full objects
    is in memory at once. `call(**kwargs)` is a client list method with its fixed arguments
    bound. A continue token that expired mid-list (410) restarts the list, as client-go does."""
    for _ in range(3):
        items: list[dict] = []
        token: str | None = None
        try:
            while True:
                resp = call(limit=LIST_PAGE, _continue=token, _preload_content=False)
                page = json.loads(resp.data)
                del resp
                raw = page.get("items") or []
                items += map(transform, raw) if transform else raw
                meta = page.get("metadata") or {}
                token = meta.get("continue") or None
                if token is None:
                    return items, str(meta.get("resourceVersion", ""))
        except ApiException as exc:
            if exc.status == 410 and token is not None:
                log.info("%s: continue token expired after %d items; listing again", what,
                         len(items))
                continue
            raise to_kube_error(exc, what) from exc
    raise KubeError(410, "the list changed faster than it could be paged, three times", what)


class WatchStream:
    """One watch request: iterate `(type, object)` events; `close()` from another thread ends it."""

    def __init__(self, response: Any, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = False

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        try:
            for line in iter_resp_lines(self._response):
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired(obj.get("message", "resource version too old"))
                    raise KubeError(obj.get("code"), obj.get("message", str(obj)), self._what)
                yield kind, obj
        except (OSError, ValueError, AttributeError) as exc:
            # Closing the response from another thread surfaces as a read error here.
            if not self._closed:
                raise KubeError(None, f"watch stream broke: {exc}", self._what) from exc
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # shutdown() unblocks a reader stuck in recv(); release_conn returns nothing to the pool
            # because the connection is not reusable mid-stream.
            sock = getattr(getattr(self._response, "connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._response.close()
            self._response.release_conn()
        except Exception:  # closing is best effort
            log.debug("closing watch %s", self._what, exc_info=True)


def watch_kwargs(resource_version: str, timeout_seconds: int) -> dict[str, Any]:
    """The keyword arguments of a client list call that makes it a watch from
    `resource_version` (bookmarks on), ended by the server after `timeout_seconds`."""
    return {
        "watch": True,
        "resource_version": resource_version or None,
        "allow_watch_bookmarks": True,
        "timeout_seconds": timeout_seconds,
        "_preload_content": False,
        # The server ends the watch after timeout_seconds; the client read timeout is a
        # backstop for a dead connection that never sends a FIN.
        "_request_timeout": (10, timeout_seconds + 30),
    }
