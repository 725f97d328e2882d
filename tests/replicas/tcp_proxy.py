"""A real TCP forwarder for tests: one address in front of several replicas.

Each new connection goes to the first backend that accepts it, in the order given, so
while replica A is up every connection lands on A, and once A is stopped (its port
refuses) the next connection lands on B: what a load balancer with health checks does
for a client that reconnects. Bytes are copied both ways until either side closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence


class FirstUpProxy:
    """Listens on 127.0.0.1 on a free port; `routed` records the backend port of every
    connection it forwarded, in order."""

    def __init__(self, backend_ports: Sequence[int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.backends = list(backend_ports)
        self.routed: list[int] = []
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        for port in self.backends:
            try:
                upstream = socket.create_connection((self.host, port), timeout=5)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    upstream.close()
                    break
                self.routed.append(port)
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            return
        client.close()  # nothing accepted: the client sees the connection closed

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        # One side is gone: end both, as a replica that died would end the connection.
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FirstUpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
