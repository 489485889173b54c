"""The client's lean requests: what requests would do, or requests itself.

A real ComfyUI sets no cookie and redirects nothing; the proxies that do are played here by a
small handler (the same kind of fake as ``tests.fakehttp``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

from comfytest.comfy.client import ComfyClient
from comfytest.errors import ServerUnavailable


@contextmanager
def proxy_like(seen: list[tuple[str, str, str | None]]) -> Iterator[str]:
    """``/set`` sets a cookie, ``/moved`` redirects to ``/queue``; every request is recorded
    as (method, path, Cookie header)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer()

        def _answer(self) -> None:
            seen.append((self.command, self.path, self.headers.get("Cookie")))
            body = b'{"ok": true}'
            self.send_response(302 if self.path == "/moved" else 200)
            if self.path == "/moved":
                self.send_header("Location", "/queue")
            if self.path == "/set":
                self.send_header("Set-Cookie", "sticky=abc; Path=/")
            self.send_header("Content-Type", "application/json")
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


def test_plain_requests_go_lean_and_send_the_session_headers() -> None:
    seen: list[tuple[str, str, str | None]] = []
    with proxy_like(seen) as url:
        client = ComfyClient(url, {"X-Token": "t"})
        assert client.get_json("/queue") == {"ok": True}
        assert client.request("POST", "/prompt", json={"a": 1}).json() == {"ok": True}
        assert client.lean.enabled
        assert [s[:2] for s in seen] == [("GET", "/queue"), ("POST", "/prompt")]


def test_a_cookie_is_kept_and_sent_by_requests_from_then_on() -> None:
    seen: list[tuple[str, str, str | None]] = []
    with proxy_like(seen) as url:
        client = ComfyClient(url)
        client.get_json("/set")
        client.get_json("/queue")
        assert not client.lean.enabled
        assert seen[-1] == ("GET", "/queue", "sticky=abc")


def test_a_redirect_is_followed_as_requests_follows_it() -> None:
    seen: list[tuple[str, str, str | None]] = []
    with proxy_like(seen) as url:
        client = ComfyClient(url)
        assert client.get_json("/moved") == {"ok": True}
        assert [s[:2] for s in seen][-2:] == [("GET", "/moved"), ("GET", "/queue")]
        assert not client.lean.enabled


def test_nothing_listening_is_the_same_error_as_through_requests() -> None:
    lean = ComfyClient("http://127.0.0.1:9")
    plain = ComfyClient("http://127.0.0.1:9")
    plain.lean.enabled = False
    messages = []
    for client in (lean, plain):
        with pytest.raises(ServerUnavailable) as err:
            client.get_json("/queue")
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "connection refused" in messages[0]


def test_a_proxy_setting_leaves_the_request_to_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, str | None]] = []
    with proxy_like(seen) as url:
        monkeypatch.setenv("HTTP_PROXY", url)  # the fake answers as the proxy: the full URL in the path
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = ComfyClient("http://comfy.invalid:8188")
        assert client.get_json("/queue") == {"ok": True}
        assert not client.lean.enabled
        assert seen[-1][1] == "http://comfy.invalid:8188/queue"
        assert isinstance(client.http, requests.Session)
