"""Issue 25, rows 2, 3 and 18: a launched ComfyUI never outlives the pytest that started it,
whatever signal ends pytest and whenever it comes, and one of several servers that dies while
starting is left out. Real embedded servers and real signals throughout; the inner pytest is a
subprocess so that it can be signalled (and killed) like a CI job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_scaleout import EMBEDDED_HOME, ENV_DROPPED, write_sleep_suite
from tests.load import loaded

REPO = Path(__file__).parents[2]


def comfyui_pids(results: Path) -> list[int]:
    """Every ComfyUI process whose command line names ``results`` (each launched server gets
    its output folder there; its watchdog too): what must be gone once pytest is."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        words = argv.split(b"\0")
        if b"main.py" in words and str(results).encode() in argv and state != "Z":  # a zombie has ended
            found.append(int(proc.name))
    return found


def watchdogs(servers: list[int]) -> list[int]:
    """The keepers' watchdogs (``keeper.py watch FD PID``) of these servers still running."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"watch" in words and any(w.endswith(b"keeper.py") for w in words) and words[-2].decode() in map(str, servers):
            found.append(int(proc.name))
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (xdist workers, launched servers)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except (OSError, IndexError):
        return False


def started(results: Path) -> bool:
    """Whether any launched server has answered already (its log says where to find it)."""
    return any("To see the GUI" in log.read_text(errors="replace") for log in results.glob("server-*/comfyui.log"))


def inner_pytest(root: Path, results: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(root / "wf"),
         f"--comfy-embedded-home={EMBEDDED_HOME}", f"--comfy-results={results}",
         f"--comfy-baselines={results.parent / 'baselines'}", "--comfy-update-baselines",
         "--comfy-startup-timeout=300", *args],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def wait_for(check: object, within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within:.0f} s")


def signal_during_startup(tmp_path: Path, sig: int, servers: int) -> tuple[list[int], str, int | None, list[int]]:
    """Start the inner session, signal it once every launched server's process exists but
    none answers yet; the server pids seen, pytest's output, its exit code. pytest must end
    within 10 s (at this load) of the signal."""
    write_sleep_suite(tmp_path, 2)
    results = tmp_path / "results"
    xdist = ["-n", str(servers), f"--comfy-servers={servers}"] if servers > 1 else []
    proc = inner_pytest(tmp_path, results, *xdist)
    try:
        pids = wait_for(lambda: (p := comfyui_pids(results)) and len(p) >= servers and p, loaded(120),
                        "the servers' processes starting")
        time.sleep(0.3)
        assert not started(results), "the servers answered already: the test missed their start-up"
        spawned = children(proc.pid)
        signalled = time.monotonic()
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=loaded(60))
        took = time.monotonic() - signalled
        print(f"pytest ended {took:.2f} s after the signal")
        assert took < loaded(10), f"pytest ended {took:.1f} s after the signal"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return list(pids), out.decode(errors="replace"), proc.returncode, spawned  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("sig", "servers"),
    [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGHUP, 1), (signal.SIGTERM, 2)],
    ids=["SIGTERM", "Ctrl-C", "SIGHUP", "SIGTERM-n2-servers2"],
)
def test_a_signal_while_the_server_starts_leaves_no_comfyui(tmp_path: Path, sig: int, servers: int) -> None:
    """Rows 2 and 3: Ctrl-C, SIGTERM (CI cancel) or SIGHUP (ssh closed) while the launched
    server is still starting: pytest ends as interrupted and no ComfyUI is left."""
    pids, out, code, spawned = signal_during_startup(tmp_path, sig, servers)
    ended = time.monotonic()
    wait_for(lambda: not comfyui_pids(tmp_path / "results"), loaded(10), "every launched ComfyUI ending")
    wait_for(lambda: not watchdogs(pids), loaded(10), "their watchdogs ending")
    assert pids and not any(Path(f"/proc/{p}/cmdline").exists() and Path(f"/proc/{p}/cmdline").read_bytes()
                            for p in pids)
    assert code == 2, out  # pytest's "interrupted"
    print(f"no ComfyUI left {time.monotonic() - ended:.2f} s after pytest's exit")
    wait_for(lambda: not any(alive(p) for p in spawned), loaded(10), "every process pytest started ending (xdist workers too)")


def test_sigkill_to_pytest_while_the_server_starts_leaves_no_comfyui(tmp_path: Path) -> None:
    """Row 3 (done-when): SIGKILL, which pytest cannot handle, during start-up: the server's
    parent-death signal and its watchdog (EOF on a pipe from pytest) end it, checked by PID."""
    pids, out, code, _ = signal_during_startup(tmp_path, signal.SIGKILL, 1)
    assert code == -signal.SIGKILL, out
    killed = time.monotonic()
    wait_for(lambda: not comfyui_pids(tmp_path / "results"), loaded(15), "the orphaned ComfyUI ending")
    print(f"no ComfyUI left {time.monotonic() - killed:.2f} s after pytest's death")
    wait_for(lambda: not watchdogs(pids), loaded(15), "its watchdog ending")
    for pid in pids:
        assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes(), pid


def test_sigkill_to_pytest_with_a_running_server_leaves_no_comfyui(tmp_path: Path) -> None:
    """Row 3: SIGKILL to pytest once its launched server answers (a CI hard kill mid-suite)."""
    write_sleep_suite(tmp_path, 2)
    results = tmp_path / "results"
    proc = inner_pytest(tmp_path, results)
    try:
        wait_for(lambda: started(results), loaded(120), "the server answering")
        pids = comfyui_pids(results)
        assert len(watchdogs(pids)) == len(pids) == 1, "the server and its watchdog"
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = time.monotonic()
    wait_for(lambda: not comfyui_pids(results), loaded(15), "the orphaned ComfyUI ending")
    print(f"no ComfyUI left {time.monotonic() - killed:.2f} s after pytest's death")
    assert pids
    wait_for(lambda: not watchdogs(pids), loaded(15), "its watchdog ending")


def test_one_of_two_servers_dying_while_starting_is_left_out_with_its_log(tmp_path: Path) -> None:
    """Row 18: server 2 is killed while it starts; the session runs on server 1 and names
    server 2 with its log, as it does for a URL that does not answer."""
    suite = write_sleep_suite(tmp_path, 4)
    assert suite == tmp_path / "wf"
    results = tmp_path / "results"
    killed: list[int] = []

    def kill_server_2() -> None:
        deadline = time.monotonic() + loaded(120)
        while time.monotonic() < deadline and not killed:
            for pid in comfyui_pids(results):
                if b"server-controller.2-" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_server_2, daemon=True)
    killer.start()
    proc = inner_pytest(tmp_path, results, "-n", "2", "--comfy-servers=2", "--comfy-timeout=60")
    try:
        out, _ = proc.communicate(timeout=loaded(300))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killer.join(1)
    text = out.decode(errors="replace")
    assert killed, "server 2 never started:\n" + text
    assert proc.returncode == 0, text
    assert "4 passed" in text, text
    assert "server 2" in text and "could not start" in text and "comfyui.log" in text, text
    doc = json.loads((results / "report.json").read_text())
    assert {t["server"]["label"] for t in doc["tests"]} == {"server 1"}
    assert not comfyui_pids(results) or wait_for(lambda: not comfyui_pids(results), loaded(10), "servers ending")
