"""The client's lean requests: what requests would do, or requests itself.

A real ComfyUI sets no cookie and redirects nothing; the proxies that do are played here by
``tests.fakehttp``'s canned server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from comfytest.comfy.client import ComfyClient
from comfytest.errors import ServerUnavailable
from tests.fakehttp import canned_server

OK = (200, "application/json", b'{"ok": true}')
Log = list[tuple[str, str, dict[str, str]]]


@contextmanager
def proxy_like(log: Log) -> Iterator[str]:
    """``/set`` sets a cookie, ``/moved`` redirects to ``/queue``; a proxy is asked for the
    full URL. Every request is recorded as (method, path, headers)."""
    replies = {"/queue": OK, "POST /prompt": OK, "/set": (*OK, {"Set-Cookie": "sticky=abc; Path=/"}),
               "/moved": (302, "application/json", b"{}", {"Location": "/queue"}),
               "http://comfy.invalid:8188/queue": OK}
    with canned_server(replies, log=log) as url:
        yield url


def test_plain_requests_go_lean_and_send_the_session_headers() -> None:
    seen: Log = []
    with proxy_like(seen) as url:
        client = ComfyClient(url, {"X-Token": "t"})
        assert client.get_json("/queue") == {"ok": True}
        assert client.request("POST", "/prompt", json={"a": 1}).json() == {"ok": True}
        assert client.lean.enabled
        assert [s[:2] for s in seen] == [("GET", "/queue"), ("POST", "/prompt")]
        assert all(s[2].get("X-Token") == "t" for s in seen), "the session's headers on every lean request"


def test_a_cookie_is_kept_and_sent_by_requests_from_then_on() -> None:
    seen: Log = []
    with proxy_like(seen) as url:
        client = ComfyClient(url)
        client.get_json("/set")
        client.get_json("/queue")
        assert not client.lean.enabled
        assert seen[-1][:2] == ("GET", "/queue") and seen[-1][2].get("Cookie") == "sticky=abc"


def test_a_redirect_is_followed_as_requests_follows_it() -> None:
    seen: Log = []
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
    seen: Log = []
    with proxy_like(seen) as url:
        monkeypatch.setenv("HTTP_PROXY", url)  # the fake answers as the proxy: the full URL in the path
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = ComfyClient("http://comfy.invalid:8188")
        assert client.get_json("/queue") == {"ok": True}
        assert not client.lean.enabled
        assert seen[-1][1] == "http://comfy.invalid:8188/queue"
        assert isinstance(client.http, requests.Session)
