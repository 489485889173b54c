"""Faults around the server: nothing listening, a wrong launch folder, a busy port, a server
that dies mid-session, malformed replies. Real servers wherever a real server can do it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy import server as server_module
from comfytest.comfy.client import ComfyClient
from comfytest.comfy.embedded import load_embedded
from comfytest.comfy.server import LaunchSpec, LocalServer, free_port
from comfytest.errors import ProtocolError
from tests.fakehttp import canned_server
from tests.load import loaded

REPO = Path(__file__).parents[2]
EMBEDDED_HOME = REPO / ".comfytest"

THREE_TESTS = """
def test_one(comfy):
    comfy.object_info()

def test_two(comfy):
    comfy.object_info()

def test_three(comfy):
    comfy.object_info()
"""


def test_no_server_at_the_url_is_one_clear_error_within_5_s(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(THREE_TESTS)
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = pytester.runpytest(f"--comfy-url={url}", "-p", "no:cacheprovider")
    elapsed = time.monotonic() - started
    assert elapsed < loaded(5), f"took {elapsed:.1f} s"
    assert result.ret == 75, "an unreachable server is an infrastructure failure (exit 75)"
    out = result.stdout.str()
    assert f"No ComfyUI server answers at {url}" in out
    assert "--comfy-url URL (ini comfy_url, env COMFYUI_URL)" in out
    assert f"No ComfyUI server answers at {url} (GET /system_stats: connection refused)" in out
    assert out.count("No ComfyUI server answers") == 1, "the full error once, not once per test"
    assert "Traceback" not in out and "HTTPConnectionPool" not in out


def test_env_var_names_itself_as_the_source(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(THREE_TESTS)
    monkeypatch.setenv("COMFYUI_URL", f"http://127.0.0.1:{free_port()}")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "The URL came from COMFYUI_URL" in result.stdout.str()


def test_launch_folder_that_is_not_comfyui(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(THREE_TESTS)
    (tmp_path / "main.py").write_text("print('not comfy')\n")
    result = pytester.runpytest(f"--comfy-launch={tmp_path}", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert f"--comfy-launch {tmp_path} is not a ComfyUI folder: it lacks nodes.py, folder_paths.py, comfy" in out
    assert "the folder with main.py, nodes.py, folder_paths.py and comfy/" in out
    assert result.ret == 75


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield int(sock.getsockname()[1])
    sock.close()


def test_busy_port_moves_the_server_to_another_port(busy_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The OS normally hands out free ports; force the race where the port is taken by the time
    ComfyUI binds it, and check the server comes up on another one."""
    ports = iter([busy_port])
    real_free_port = server_module.free_port
    monkeypatch.setattr(server_module, "free_port", lambda host="127.0.0.1": next(ports, None) or real_free_port(host))
    emb = load_embedded(EMBEDDED_HOME)
    spec = LaunchSpec(comfyui_dir=emb.comfyui_dir, python=emb.python, base_dir=emb.base_dir, args=("--cpu",))
    local = LocalServer(spec, tmp_path)
    try:
        local.start(timeout=120)
        assert local.port != busy_port
        assert ComfyClient(local.url).system_stats()["system"]["comfyui_version"] == "0.3.75"
        assert "already in use" in local.log_path.read_text().lower() or "errno 98" in local.log_path.read_text().lower()
    finally:
        local.stop()
    assert local.proc is None


SERVER_DIES = """
import os, signal, threading, time
import pytest
from comfytest.errors import ServerUnavailable

SLEEP = {
    "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 8, "height": 8, "seed": 1, "batch_size": 1}},
    "2": {"class_type": "ComfyTestSleep", "inputs": {"image": ["1", 0], "seconds": 20.0}},
    "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
}

def test_dies_while_running(comfy):
    proc = comfy.server.proc
    threading.Timer(1.0, lambda: os.kill(proc.pid, signal.SIGKILL)).start()
    comfy.run_prompt(SLEEP)

def test_after_death_one(comfy):
    comfy.run_prompt(SLEEP)

def test_after_death_two(comfy):
    comfy.object_info()
"""


def test_server_dying_mid_session_fails_the_running_test_with_the_log_and_the_rest_fast(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SERVER_DIES)
    started = time.monotonic()
    result = pytester.runpytest(f"--comfy-embedded-home={EMBEDDED_HOME}", "-p", "no:cacheprovider", "--comfy-timeout=60")
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert "exited (code -9) during the session" in out
    assert "last lines of the ComfyUI server log" in out
    # Count in the failure sections only: the short summary repeats each message, cut to the
    # terminal's width, so how often it shows there depends on the machine.
    failures = out.split("short test summary info")[0]
    assert failures.count("failing fast") == 2
    assert failures.count("last lines of the ComfyUI server log") == 1, "the log tail once, with the first failure"
    assert elapsed < loaded(60), f"no hang expected, took {elapsed:.0f} s"


MALFORMED = {
    "/system_stats": (200, "text/html", b"<html>proxy login</html>"),
    "/object_info": (200, "application/json", b"[1, 2, 3]"),
    "/queue": (502, "text/plain", b"bad gateway"),
}


@pytest.fixture
def malformed_server() -> Iterator[str]:
    """A fake: a real ComfyUI cannot be made to send broken replies on demand."""
    with canned_server(MALFORMED) as url:
        yield url


@pytest.mark.parametrize(
    ("call", "endpoint", "detail"),
    [
        (lambda c: c.system_stats(), "GET /system_stats", "did not answer JSON"),
        (lambda c: c.object_info(), "GET /object_info", "answered list, expected an object"),
        (lambda c: c.queue_state(), "GET /queue", "answered HTTP 502"),
    ],
)
def test_malformed_replies_name_the_endpoint(malformed_server: str, call: Any, endpoint: str, detail: str) -> None:
    with pytest.raises(ProtocolError) as err:
        call(ComfyClient(malformed_server))
    assert endpoint in str(err.value) and detail in str(err.value) and malformed_server in str(err.value)

