"""ComfyClient details that need no ComfyUI: URL schemes, headers on the wire, error wording.

A canned-reply HTTP server only observes what the client sends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from comfytest.comfy.client import ComfyClient
from comfytest.comfy.server import free_port
from comfytest.errors import ProtocolError, ServerUnavailable
from comfytest.plugin.session import check_comfyui
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


# -- issue 11: who is to blame for an answer


def test_a_web_page_is_not_a_comfyui_server() -> None:
    page = b"<html><head><title>Grafana  login</title></head><body>" + b"x" * 5000 + b"</body></html>"
    with canned_server({"/system_stats": (200, "text/html", page)}) as url, pytest.raises(ProtocolError) as err:
        ComfyClient(url).system_stats()
    text = str(err.value)
    assert "a web page titled 'Grafana login'" in text and "does not look like a ComfyUI server" in text
    assert len(text) < 500 and "xxxx" not in text


def test_json_that_is_not_comfyui_is_named() -> None:
    with canned_server({"/system_stats": (200, "application/json", b'{"status": "ok"}')}) as url:
        client = ComfyClient(url)
        with pytest.raises(ProtocolError, match=r"is not a ComfyUI server.*keys: status"):
            check_comfyui(client, client.system_stats())


def test_401_blames_the_credentials() -> None:
    """ComfyUI never answers 401: it comes from an authenticating proxy (a fake here)."""
    with canned_server({"/system_stats": (401, "text/plain", b"who are you")}) as url, \
            pytest.raises(ServerUnavailable, match="HTTP 401: check the credentials"):
        ComfyClient(url).system_stats()


def test_local_output_files_stay_inside_their_folder(tmp_path: Path) -> None:
    """Runner._read_local: a file of a local server's folder; None (so GET /view decides) for
    another type, a missing file, or a path that leaves the folder."""
    from comfytest.comfy.execution import Runner
    from comfytest.outputs import FileRef

    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "sub" / "a.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"no")
    runner = Runner(ComfyClient("http://127.0.0.1:9"))
    runner.local_files = {"output": tmp_path / "out"}
    assert runner._read_local(FileRef("a.png", "sub", "output")) == b"png"
    assert runner._read_local(FileRef("a.png", "sub", "temp")) is None
    assert runner._read_local(FileRef("b.png", "sub", "output")) is None
    assert runner._read_local(FileRef("secret.png", "..", "output")) is None
