"""A TCP fault proxy for the test suite: sits between comfytest and the real ComfyUI.

A real server cannot stall a socket, cut a reply mid-way or half-close a connection on demand;
this proxy does it to the real server's real bytes. Each connection is classified from its
first request as ``"ws"`` (an ``Upgrade: websocket`` request) or ``"http"``; a ``Fault`` set
for a kind applies to that kind's connections, live ones included (a stall can start while a
prompt runs). Faults act on the server → client direction:

* ``Fault(stall=True)``          keep the TCP connection open, forward nothing more
* ``Fault(cut_after_bytes=N)``   forward N more bytes, then close both sides
* ``Fault(cut_after_s=S)``       close both sides S seconds after the fault was set (or the
  connection opened)
* ``Fault(delay_s=D)``           wait D seconds before forwarding each chunk
* ``Fault(half_close_after_bytes=N)``  forward N more bytes, then shut the client side for
  writing (the client reads EOF) while reading on
* ``Fault(once=True)``           the fault hits the next connection only, later ones pass

With ``tls=(certfile, keyfile)`` the proxy terminates TLS on the client side.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    stall: bool = False
    cut_after_bytes: int | None = None
    cut_after_s: float | None = None
    delay_s: float = 0.0
    half_close_after_bytes: int | None = None
    once: bool = False


PASS = Fault()


class _Link:
    """One proxied connection: a client socket, an upstream socket, two pumps."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, kind: str, fault: Fault) -> None:
        self.proxy, self.client, self.kind = proxy, client, kind
        self.fault = fault  # a once-fault is bound to this link; else the live one is read
        self.pinned = fault.once
        self.upstream = socket.create_connection(proxy.target, timeout=10)
        self.upstream.settimeout(None)
        self.closed = threading.Event()

    def current(self) -> Fault:
        return self.fault if self.pinned else self.proxy.faults.get(self.kind, PASS)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def up(self, first: bytes) -> None:
        """client → server, untouched."""
        try:
            self.upstream.sendall(first)
            while not self.closed.is_set():
                data = self.client.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        self.upstream.shutdown(socket.SHUT_WR)
                    return
                self.upstream.sendall(data)
        except OSError:
            self.close()

    def down(self) -> None:
        """server → client, through the fault."""
        active, sent = PASS, 0
        half_closed = False
        try:
            while not self.closed.is_set():
                data = self.upstream.recv(65536)
                if not data:
                    self.close()
                    return
                while True:  # the fault may change while we hold this chunk
                    fault = self.current()
                    if fault is not active:
                        active, sent = fault, 0
                    if not fault.stall:
                        break
                    if self.closed.wait(0.05):
                        return
                if active.delay_s:
                    time.sleep(active.delay_s)
                for limit, action in ((active.cut_after_bytes, "cut"), (active.half_close_after_bytes, "half")):
                    if limit is not None and sent + len(data) >= limit:
                        data = data[: max(limit - sent, 0)]
                        if data and not half_closed:
                            self.client.sendall(data)
                        if action == "cut":
                            self.close()
                            return
                        if not half_closed:
                            with contextlib.suppress(OSError):
                                self.client.shutdown(socket.SHUT_WR)
                            half_closed = True
                        data = b""
                if data and not half_closed:
                    self.client.sendall(data)
                    sent += len(data)
        except OSError:
            self.close()


class FaultProxy:
    """``with FaultProxy(host, port) as proxy:`` — ``proxy.url`` reaches the server through it."""

    def __init__(self, host: str, port: int, *, tls: tuple[str, str] | None = None) -> None:
        self.target = (host, port)
        self.faults: dict[str, Fault] = {}
        self.links: list[_Link] = []
        self.connections = {"http": 0, "ws": 0}
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*tls)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="faultproxy", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def set(self, kind: str, fault: Fault) -> None:
        """Set the fault for ``"http"`` or ``"ws"`` connections (``PASS`` clears it)."""
        self.faults[kind] = fault
        if fault.cut_after_s is not None and not fault.once:
            for link in list(self.links):
                if link.kind == kind:
                    _cut_later(link, fault.cut_after_s)

    def hit_live(self, kind: str, fault: Fault) -> None:
        """Apply ``fault`` to the live connections of ``kind`` only; new ones pass."""
        for link in list(self.links):
            if link.kind == kind:
                link.fault, link.pinned = fault, True
                if fault.cut_after_s is not None:
                    _cut_later(link, fault.cut_after_s)

    def clear(self) -> None:
        self.faults.clear()

    def cut_all(self, kind: str | None = None) -> None:
        for link in list(self.links):
            if kind is None or link.kind == kind:
                link.close()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut_all()
        self._thread.join(timeout=2)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)
            first = client.recv(65536)
            client.settimeout(None)
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                client.close()
            return
        kind = "ws" if b"upgrade: websocket" in first.lower() else "http"
        self.connections[kind] += 1
        fault = self.faults.get(kind, PASS)
        if fault.once:
            self.faults[kind] = PASS  # the next connection passes
        try:
            link = _Link(self, client, kind, fault)
        except OSError:
            client.close()
            return
        self.links.append(link)
        if fault.cut_after_s is not None:
            _cut_later(link, fault.cut_after_s)
        threading.Thread(target=link.up, args=(first,), daemon=True).start()
        link.down()


def _cut_later(link: _Link, seconds: float) -> None:
    timer = threading.Timer(seconds, link.close)
    timer.daemon = True
    timer.start()


@contextlib.contextmanager
def proxy_to(url: str, **kw: object) -> Iterator[FaultProxy]:
    """A proxy in front of the server at ``url`` (http://host:port)."""
    host, _, port = url.split("://", 1)[1].rstrip("/").partition(":")
    with FaultProxy(host, int(port), **kw) as proxy:  # type: ignore[arg-type]
        yield proxy
