"""ComfyClient details that need no ComfyUI: URL schemes, headers on the wire, error wording.

A canned-reply HTTP server only observes what the client sends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from comfytest.client import ComfyClient
from comfytest.errors import ServerUnavailable
from comfytest.server import free_port
from tests.fakehttp import canned_server

SEEN: list[dict[str, str]] = []
STATS = {"/system_stats": (200, "application/json", b'{"system": {}, "devices": []}')}


@pytest.fixture
def echo_url() -> Iterator[str]:
    with canned_server(STATS, SEEN) as url:
        yield url


@pytest.mark.parametrize(
    ("url", "ws"),
    [("http://host:8188", "ws://host:8188/ws"), ("https://comfy.example.com/", "wss://comfy.example.com/ws"),
     ("https://proxy/comfy", "wss://proxy/comfy/ws")],
)
def test_websocket_url_follows_the_http_scheme(url: str, ws: str) -> None:
    assert ComfyClient(url).ws_url == ws


def test_extra_headers_are_sent_on_every_request(echo_url: str) -> None:
    SEEN.clear()
    client = ComfyClient(echo_url, {"Authorization": "Bearer tok-123", "X-Team": "gpu"})
    client.system_stats()
    client.system_stats()
    assert [h.get("Authorization") for h in SEEN] == ["Bearer tok-123"] * 2
    assert SEEN[0].get("X-Team") == "gpu"
    assert SEEN[0].get("Connection", "").lower() == "keep-alive"


def test_unreachable_server_error_is_short_and_names_url_and_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = ComfyClient(url, {"Authorization": "Bearer tok-123"}, hint="set --comfy-url")
    with pytest.raises(ServerUnavailable) as err:
        client.system_stats()
    text = str(err.value)
    assert text.startswith(f"No ComfyUI server answers at {url} (GET /system_stats: connection refused).")
    assert text.endswith("set --comfy-url") and "tok-123" not in text
