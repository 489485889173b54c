"""Issue 25, rows 15 and 16: the real server behind a fault proxy on this machine.

* a WebSocket that stalls mid-run while HTTP is fine: the prompt is healthy and running, so it
  is resolved from the server's own record, never interrupted and reported as a regression;
* a port forwarder on loopback in front of the server: "peak memory" is ComfyUI's own RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy.client import ComfyClient
from comfytest.comfy.execution import Runner, new_prompt_id
from comfytest.comfy.resources import find_comfyui
from comfytest.comfy.server import free_port
from comfytest.errors import ExecutionTimeout
from comfytest.plugin.session import ComfySession
from tests.faultproxy import Fault, FaultProxy
from tests.integration.test_client import noise_prompt
from tests.integration.test_faults import elapsed_since, idle_server, when_running
from tests.load import loaded

REPO = Path(__file__).parents[2]




# ---------------------------------------------------------------- row 15: a stalled socket


def test_websocket_stalled_while_the_prompt_runs_is_waited_out_not_interrupted(
    comfy: Any, client: ComfyClient, proxy: FaultProxy,
) -> None:
    """The socket goes silent 0.2 s into a 4 s node (the proxy forwards nothing more to us);
    HTTP answers. The idle timeout (1.5 s) passes while GET /queue still shows the prompt
    running: comfytest keeps waiting on the server's record and the run passes."""
    idle_server(comfy)
    prompt_id = new_prompt_id()
    stall = threading.Thread(target=when_running,
                             args=(comfy.client, prompt_id, lambda: proxy.set("ws", Fault(stall=True))))
    client.ensure_connected()
    started = time.monotonic()
    stall.start()
    try:
        result = Runner(client, timeout=loaded(30), idle_timeout=1.5).run(noise_prompt(130, sleep=4),
                                                                          prompt_id=prompt_id)
    finally:
        stall.join()
        idle_server(comfy)
    assert result.ok and result.resynced and result.images, result.message
    assert elapsed_since(started) < loaded(12), f"took {elapsed_since(started):.1f} s"


def test_a_silent_node_on_a_healthy_socket_still_hits_the_idle_timeout(comfy: Any, client: ComfyClient) -> None:
    """The other side of row 15: the socket answers a ping, so the silence is the node's."""
    idle_server(comfy)
    started = time.monotonic()
    try:
        with pytest.raises(ExecutionTimeout, match=r"sent no message for 1\.5 s"):
            Runner(client, timeout=loaded(30), idle_timeout=1.5).run(noise_prompt(131, sleep=30))
    finally:
        idle_server(comfy)
    assert elapsed_since(started) < loaded(8), f"took {elapsed_since(started):.1f} s"


# ---------------------------------------------------------------- row 16: memory behind a proxy

FORWARDER = """
import sys, time
from tests.faultproxy import proxy_to
with proxy_to(sys.argv[1]) as p:
    print(p.url, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def forwarder(comfy: Any) -> Iterator[str]:
    """A port forwarder in its own process on loopback whose command line names ComfyUI, as
    ``socat TCP-LISTEN:8189,fork TCP:comfyui:8188`` or ``ssh -L 8189:localhost:8188 comfy-box``
    do; it runs the suite's fault proxy, passing everything."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", FORWARDER, str(comfy.url), "comfyui-forwarder"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def test_peak_memory_behind_a_loopback_proxy_is_comfyuis_own(comfy: Any, forwarder: str) -> None:
    """The RSS sampled is the ComfyUI process's (found by its /system_stats argv and --port),
    never the forwarder's that listens on the URL's port."""
    if comfy.server is None:
        pytest.skip("needs the server this session launched (its pid)")
    session = ComfySession(ComfyClient(forwarder, request_timeout=5), comfy.settings, pool=None)
    try:
        assert session.server_pid == comfy.server.proc.pid
        assert not session.pool.notes
        result = session.run_prompt(noise_prompt(132))
        assert result.ok and result.memory is not None and result.memory.rss_peak_bytes
    finally:
        session.client.close()


def test_a_proxy_whose_comfyui_is_not_here_gives_no_rss_and_says_why(forwarder: str) -> None:
    """What a proxy on loopback to a ComfyUI elsewhere looks like: the server's argv names a
    port nothing here listens on (the argv is made up: a remote server cannot be had here)."""
    port = int(forwarder.rsplit(":", 1)[1])
    found = find_comfyui(port, ["main.py", "--listen", "0.0.0.0", "--port", str(free_port())])
    assert found.pid is None
    assert found.why_not is not None and "no RSS figure" in found.why_not and "comfyui-forwarder" in found.why_not


NOT_HERE = """
from comfytest.comfy.resources import LocalComfyUI
import comfytest.plugin.session as session

session.find_comfyui = lambda port, argv: LocalComfyUI(None, "no RSS figure: (as behind a proxy to elsewhere)")
"""


def test_the_no_rss_note_of_an_xdist_worker_reaches_the_summary(comfy_url: str, tmp_path: Path) -> None:
    """Under xdist the worker finds the server's process, the controller prints the summary:
    the reason for a missing RSS figure is handed over. The finder is replaced in the inner
    conftest (loaded by every worker): a ComfyUI that is no process of this user cannot be had
    here, and the real finder is tested above."""
    (tmp_path / "conftest.py").write_text(NOT_HERE)
    (tmp_path / "quick.json").write_text(json.dumps(noise_prompt(133)))
    dropped = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS", "COMFYUI_URL")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "quick.json", "-n", "1",
         f"--comfy-url={comfy_url}", f"--comfy-results={tmp_path / 'results'}",
         f"--comfy-baselines={tmp_path / 'baselines'}", "--comfy-update-baselines"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=loaded(120),
    )
    assert done.returncode == 0, done.stdout
    assert "no RSS figure: (as behind a proxy to elsewhere)" in done.stdout
