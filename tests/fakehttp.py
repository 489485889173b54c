"""A canned-reply HTTP server for the few faults a real ComfyUI cannot produce on demand
(malformed replies) and for observing what the client sends. Never a stand-in for ComfyUI."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

#: status, content type, body; optionally more headers (``Location``, ``Set-Cookie``)
Reply = tuple[int, str, bytes] | tuple[int, str, bytes, Mapping[str, str]]


@contextmanager
def canned_server(
    replies: Mapping[str, Reply],
    seen: list[dict[str, str]] | None = None,
    posted: list[tuple[str, bytes]] | None = None,
    log: list[tuple[str, str, dict[str, str]]] | None = None,
) -> Iterator[str]:
    """Serve ``replies`` by path (404 otherwise); record request headers in ``seen``, and
    (method, path, headers) of each request in ``log``.

    POST requests are answered from the key ``"POST <path>"``; their bodies go to ``posted``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(self.path)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if posted is not None:
                posted.append((self.path, body))
            self._answer(f"POST {self.path}")

        def _answer(self, key: str) -> None:
            if seen is not None:
                seen.append(dict(self.headers.items()))
            if log is not None:
                log.append((self.command, self.path, dict(self.headers.items())))
            status, ctype, body, *more = replies.get(key, (404, "text/plain", b"nope"))
            self.send_response(status)
            for name, value in (more[0] if more else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
