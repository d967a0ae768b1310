"""A TCP proxy on loopback that a test can black-hole: `pause()` stops moving bytes both ways and
holds new connections without an answer, the way a network partition looks to a client (no
reset, no error: requests just never answer). Bytes that arrive while paused are never
delivered, even after `close()`: a partition drops packets, it does not queue them.

Used to cut one operator replica off from the apiserver while the others keep theirs
(tests/e2e/test_ha.py). TLS passes through untouched (the proxy only moves bytes), so a
kubeconfig pointing at the proxy's port keeps the apiserver's CA and client certificates.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from pathlib import Path

import yaml


class PausableProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._paused = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def pause(self) -> None:
        self._paused.set()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self.listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._pipe, args=(client,), name="proxy-pipe",
                             daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        if self._paused.is_set():
            return  # held open, never answered (closed with the proxy)
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        self._track(server)
        peer = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(server, selectors.EVENT_READ)
            while not self._closed.is_set() and not self._paused.is_set():
                for key, _ in selector.select(timeout=0.2):
                    if self._paused.is_set():
                        break  # what arrived from now on is dropped
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            raise OSError("closed")
                        peer[key.fileobj].sendall(data)  # type: ignore[index]
                    except OSError:
                        for sock in (client, server):
                            with contextlib.suppress(OSError):
                                sock.close()
                        return
        # Paused: both sockets stay open and unread until close().


def proxied_kubeconfig(kubeconfig: Path, port: int, path: Path) -> Path:
    """A copy of `kubeconfig` whose every cluster server is https://127.0.0.1:`port`."""
    doc = yaml.safe_load(kubeconfig.read_text())
    for cluster in doc.get("clusters") or []:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(doc))
    return path


def upstream_of(kubeconfig: Path) -> tuple[str, int]:
    """(host, port) of the first cluster's server in `kubeconfig`."""
    from urllib.parse import urlsplit

    doc = yaml.safe_load(kubeconfig.read_text())
    url = urlsplit(doc["clusters"][0]["cluster"]["server"])
    return url.hostname or "127.0.0.1", url.port or 443
