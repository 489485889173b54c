"""The fault matrix (docs/reliability.md): the real server behind a TCP fault proxy, frozen
with SIGSTOP, and pytest itself signalled. Each test is one row (or a few) of the matrix and
checks what comfytest does and how long it takes to fail.

All of them share the session's one real ComfyUI; timeouts are small so the faults fail fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
from comfytest.errors import OutputRefused, ProtocolError, ServerUnavailable
from comfytest.outputs import FileRef
from tests.faultproxy import PASS, Fault, FaultProxy, proxy_to
from tests.integration.test_client import noise_prompt
from tests.load import loaded
from tests.tlscert import self_signed

REPO = Path(__file__).parents[2]


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


def idle_server(comfy: Any) -> None:
    """Interrupt whatever a test left running, so the next one starts on an idle server."""
    with contextlib.suppress(Exception):
        comfy.client.request("POST", "/queue", json={"clear": True})
        comfy.client.interrupt()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        q = comfy.client.queue_state()
        if not q["queue_running"] and not q["queue_pending"]:
            return
        time.sleep(0.1)


def when_running(client: ComfyClient, prompt_id: str, action: Any, within: float = 20) -> None:
    """Call ``action`` as soon as the server runs prompt ``prompt_id``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(item[1] == prompt_id for item in client.queue_state()["queue_running"]):
            time.sleep(0.2)
            action()
            return
        time.sleep(0.02)


# ---------------------------------------------------------------- hangs


def test_websocket_stalled_at_the_end_closes_in_bounded_time(client: ComfyClient, proxy: FaultProxy) -> None:
    """TCP open, nothing forwarded: ws.close() used to wait forever for the reader's lock."""
    assert Runner(client, timeout=loaded(20), idle_timeout=loaded(10)).run(noise_prompt(101)).ok
    proxy.set("ws", Fault(stall=True))
    started = time.monotonic()
    client.close()
    assert elapsed_since(started) < loaded(3.5), f"close took {elapsed_since(started):.1f} s"
    assert client._reader is None


def test_websocket_stalled_mid_run_is_resolved_from_history(client: ComfyClient, proxy: FaultProxy) -> None:
    """The socket says nothing, but /history has the end: a pass, not an idle timeout."""
    client.ensure_connected()
    proxy.set("ws", Fault(stall=True))
    started = time.monotonic()
    result = Runner(client, timeout=20, idle_timeout=1.5).run(noise_prompt(102, sleep=0.3))
    assert result.ok and result.resynced and result.images
    assert elapsed_since(started) < loaded(6)


def test_websocket_dropped_right_after_connecting_reconnects(
    client: ComfyClient, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drop lands between the connected check and the run (made certain here by skipping
    that check): the run reconnects instead of waiting on a dead socket."""
    client.ensure_connected()
    proxy.cut_all("ws")
    assert client._reader is not None
    client._reader.join(timeout=3)  # the reader saw the end and queued Disconnected
    monkeypatch.setattr(client, "ensure_connected", lambda: None)
    started = time.monotonic()
    result = Runner(client, timeout=loaded(20), idle_timeout=loaded(10)).run(noise_prompt(103))
    assert result.ok and not result.resynced, "a fresh socket before queueing: no resync needed"
    assert elapsed_since(started) < loaded(5)
    assert proxy.connections["ws"] == 2


def test_websocket_half_closed_mid_run_resynchronises(client: ComfyClient, proxy: FaultProxy) -> None:
    client.ensure_connected()
    proxy.hit_live("ws", Fault(half_close_after_bytes=0))
    result = Runner(client, timeout=loaded(20), idle_timeout=loaded(10)).run(noise_prompt(104, sleep=0.5))
    assert result.ok and result.images
    assert proxy.connections["ws"] >= 2, "the socket was reopened"


def test_websocket_cut_after_seconds_mid_run_resynchronises(client: ComfyClient, proxy: FaultProxy) -> None:
    client.ensure_connected()
    proxy.hit_live("ws", Fault(cut_after_s=0.3))
    result = Runner(client, timeout=loaded(20), idle_timeout=loaded(10)).run(noise_prompt(105, sleep=1.0))
    assert result.ok and result.images


def test_slow_network_still_passes(client: ComfyClient, proxy: FaultProxy) -> None:
    proxy.set("http", Fault(delay_s=0.05))
    proxy.set("ws", Fault(delay_s=0.05))
    assert Runner(client, timeout=loaded(30), idle_timeout=loaded(10)).run(noise_prompt(106)).ok


def test_http_stalled_fails_within_the_timeouts_as_infrastructure(client: ComfyClient, proxy: FaultProxy) -> None:
    client.ensure_connected()
    proxy.set("http", Fault(stall=True))
    proxy.cut_all("http")  # new connections (keep-alive ones are gone) stall
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as err:
        Runner(client, timeout=2, idle_timeout=2).run(noise_prompt(107))
    assert elapsed_since(started) < loaded(5), f"took {elapsed_since(started):.1f} s"
    assert "did not answer POST /prompt within 3 s" in str(err.value)


def test_frozen_server_fails_as_infrastructure_without_claiming_an_interrupt(comfy: Any) -> None:
    """SIGSTOP the session's own server mid-run: the deadline passes, the interrupt cannot be
    delivered, and the error says so (kind infrastructure) in about timeout + 2 s."""
    if comfy.server is None:
        pytest.skip("needs the server this session launched (SIGSTOP)")
    idle_server(comfy)
    client = ComfyClient(comfy.url, request_timeout=2)
    pid, prompt_id = comfy.server.proc.pid, new_prompt_id()
    runner = Runner(client, timeout=2.5, idle_timeout=2)
    stop = threading.Thread(target=when_running, args=(comfy.client, prompt_id, lambda: os.kill(pid, signal.SIGSTOP)))
    started = time.monotonic()
    try:
        stop.start()
        with pytest.raises(ServerUnavailable) as err:
            runner.run(noise_prompt(108, sleep=30), prompt_id=prompt_id)
        took = elapsed_since(started)
    finally:
        stop.join()
        os.kill(pid, signal.SIGCONT)
        client.close()
        idle_server(comfy)
    text = str(err.value)
    assert "could not be interrupted" in text and "sent POST /interrupt" not in text
    assert "sent no message for 2 s" in text and "Nap" in text
    assert took < loaded(7), f"took {took:.1f} s"


def test_http_reply_cut_mid_body_is_one_readable_error(client: ComfyClient, proxy: FaultProxy) -> None:
    proxy.set("http", Fault(cut_after_bytes=4000))
    started = time.monotonic()
    with pytest.raises((ProtocolError, ServerUnavailable)) as err:
        client.object_info()
    text = str(err.value)
    assert "GET /object_info" in text and "Traceback" not in text and len(text) < 600
    assert elapsed_since(started) < loaded(3)


def test_http_cut_then_recovered_works_again(client: ComfyClient, proxy: FaultProxy) -> None:
    proxy.set("http", Fault(cut_after_bytes=10, once=True))
    with pytest.raises((ProtocolError, ServerUnavailable)):
        client.system_stats()
    assert client.system_stats()["system"]["comfyui_version"], "the next connection passes"
    proxy.set("http", PASS)


# ---------------------------------------------------------------- messages


def test_a_403_from_view_is_not_blamed_on_credentials(comfy: Any) -> None:
    with pytest.raises(OutputRefused) as err:  # the node's failure, not infrastructure (issue 25)
        comfy.client.view(FileRef("x.png", "../..", "output"))
    text = str(err.value)
    assert "HTTP 403" in text and "outside its output folder" in text
    assert "credentials" not in text


# ---------------------------------------------------------------- cleanup: signals to pytest

GATE = """
import time
from pathlib import Path

def pytest_runtest_setup(item):
    if "b_slow" in item.nodeid:  # let the outer test arrange the queue first
        Path("ready.txt").write_text("1")
        deadline = time.monotonic() + 60
        while not Path("go.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
"""


def write_signalled_suite(root: Path) -> None:
    """a_quick.json finishes; b_slow.json sleeps 60 s; conftest.py lets the outer test go first."""
    quick = noise_prompt(int.from_bytes(os.urandom(3), "big"))
    (root / "a_quick.json").write_text(json.dumps(quick))
    (root / "b_slow.json").write_text(json.dumps(noise_prompt(110, sleep=60)))
    (root / "conftest.py").write_text(GATE)


def queued_ids(client: ComfyClient) -> tuple[set[str], set[str]]:
    q = client.queue_state()
    return ({str(i[1]) for i in q["queue_running"]}, {str(i[1]) for i in q["queue_pending"]})


def inner_pytest(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def wait_for(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within} s")


@pytest.mark.parametrize(("sig", "blocked"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["SIGTERM-running", "SIGINT-pending"])
def test_signal_to_pytest_leaves_the_shared_queue_clean_and_writes_the_report(
    comfy: Any, pytester: pytest.Pytester, tmp_path: Path, sig: int, blocked: bool,
) -> None:
    """--comfy-url mode (a shared server): our prompt, running or still pending behind someone
    else's, is gone from the queue; the report of what finished is written; pytest exits."""
    idle_server(comfy)
    write_signalled_suite(pytester.path)
    results = tmp_path / "results"
    other = new_prompt_id()
    proc = inner_pytest(pytester, ".", f"--comfy-url={comfy.url}", f"--comfy-results={results}",
                        f"--comfy-baselines={tmp_path / 'baselines'}", "--comfy-update-baselines")
    try:
        wait_for((pytester.path / "ready.txt").is_file, 90, "the slow test starting")
        if blocked:  # someone else's prompt keeps the server busy: ours waits as pending
            comfy.client.queue_prompt(noise_prompt(111, sleep=60), other)
            wait_for(lambda: other in queued_ids(comfy.client)[0], 10, "the other prompt running")
        (pytester.path / "go.txt").write_text("1")

        def ours() -> str | None:
            running, pending = queued_ids(comfy.client)
            return next(iter((pending if blocked else running) - {other}), None)

        pid = wait_for(ours, loaded(30), "our prompt reaching the queue")
        limit = loaded(10)
        signalled = time.monotonic()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=limit + 60)
        took = elapsed_since(signalled)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if blocked:
            comfy.client.delete_pending([other])
            comfy.client.interrupt(other)
        # whatever happened above, nothing of this test may stay queued or running on the
        # session's shared server (later tests would wait behind it)
        idle_server(comfy)
    text = out.decode(errors="replace")
    running, pending = queued_ids(comfy.client)
    assert pid not in running | pending, "our prompt must not stay on the shared server"
    if not blocked:
        assert wait_for(lambda: comfy.client.history(pid).get("status"), 10, "history")["status_str"] == "error"
    assert proc.returncode == 2, text  # pytest's "interrupted"
    assert "KeyboardInterrupt" in text and "Traceback" not in text
    assert took < limit, f"exited {took:.1f} s after the signal (limit {limit:.0f} s at this load)"
    doc = json.loads((results / "report.json").read_text())
    assert [(t["nodeid"], t["outcome"]) for t in doc["tests"]] == [("a_quick.json::default", "passed")], \
        "the report holds what finished"


# ---------------------------------------------------------------- TLS and the CA bundle


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_proxy(comfy: Any, certificate: tuple[Path, Path]) -> Iterator[FaultProxy]:
    """Real TLS (Python's ssl) terminated in front of the real server: https and wss. Starts on
    an idle server, so a prompt no earlier test cleaned up cannot hold ours in the queue."""
    idle_server(comfy)
    with proxy_to(str(comfy.url), tls=(str(certificate[0]), str(certificate[1]))) as p:
        yield p


def test_ca_bundle_is_trusted_by_http_and_the_websocket(tls_proxy: FaultProxy, certificate: tuple[Path, Path]) -> None:
    client = ComfyClient(tls_proxy.url, ca_bundle=str(certificate[0]), request_timeout=5)
    try:
        result = Runner(client, timeout=loaded(20), idle_timeout=loaded(10)).run(noise_prompt(120))
        assert result.ok and result.images and tls_proxy.connections["ws"] == 1
    finally:
        client.close()


def test_requests_ca_bundle_env_reaches_the_websocket_too(
    tls_proxy: FaultProxy, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    client = ComfyClient(tls_proxy.url, request_timeout=5)
    try:
        assert Runner(client, timeout=loaded(20), idle_timeout=loaded(10)).run(noise_prompt(121)).ok
    finally:
        client.close()


def test_an_untrusted_certificate_is_named_as_such(tls_proxy: FaultProxy) -> None:
    client = ComfyClient(tls_proxy.url, request_timeout=5)
    with pytest.raises(ServerUnavailable, match="TLS certificate not trusted"):
        client.system_stats()
    with pytest.raises(ServerUnavailable, match="WebSocket /ws: TLS certificate not trusted"):
        client.connect()


LAUNCHED_GATE = GATE.replace(
    'Path("ready.txt").write_text("1")',
    'from comfytest.plugin.hooks import state_of\n'
    '        server = state_of(item.config).started.server\n'
    '        Path("server.txt").write_text(f"{server.proc.pid} {server.url}")\n'
    '        Path("ready.txt").write_text("1")',
)


def test_sigterm_stops_a_launched_tls_server_and_orphans_nothing(
    pytester: pytest.Pytester, tmp_path: Path, certificate: tuple[Path, Path],
) -> None:
    """ComfyUI's own TLS (--tls-certfile/--tls-keyfile) with --comfy-ca-bundle, then SIGTERM
    while a prompt runs: the launched server is stopped, the report written."""
    write_signalled_suite(pytester.path)
    (pytester.path / "conftest.py").write_text(LAUNCHED_GATE)
    cert, key = certificate
    results = tmp_path / "results"
    proc = inner_pytest(
        pytester, ".", f"--comfy-embedded-home={REPO / '.comfytest'}", f"--comfy-results={results}",
        f"--comfy-baselines={tmp_path / 'baselines'}", "--comfy-update-baselines",
        f"--comfy-launch-args=--tls-keyfile {key} --tls-certfile {cert}", f"--comfy-ca-bundle={cert}",
        "--comfy-startup-timeout=300",
    )
    try:
        wait_for((pytester.path / "ready.txt").is_file, 330, "the slow test starting")
        server_pid, url = (pytester.path / "server.txt").read_text().split()
        (pytester.path / "go.txt").write_text("1")
        time.sleep(1.0)  # the slow prompt is queued and running
        limit = loaded(20)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=limit + 60)
        took = elapsed_since(signalled)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert url.startswith("https://127.0.0.1:")
    assert proc.returncode == 2, text
    assert not Path(f"/proc/{server_pid}").exists(), "the launched ComfyUI must not outlive pytest"
    assert took < limit, f"exited {took:.1f} s after SIGTERM (limit {limit:.0f} s at this load)"
    doc = json.loads((results / "report.json").read_text())
    assert [(t["nodeid"], t["outcome"]) for t in doc["tests"]] == [("a_quick.json::default", "passed")], text
