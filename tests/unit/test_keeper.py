"""``comfy/keeper.py`` on real processes: a stand-in "server" that starts a child of its own
(as a ComfyUI's node may), its launcher killed with SIGKILL. A stand-in, not ComfyUI, because
the point is the process group: a real ComfyUI starts no child on demand. Each mechanism alone:
the parent-death signal (the pipe kept open elsewhere) and the watchdog (no parent-death signal)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comfytest.comfy.server import KEEPER
from tests.load import loaded

SERVER = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); print(c.pid, flush=True); time.sleep(120)"

LAUNCHER = """
import os, subprocess, sys, time
keeper, deathsig, server, hold = sys.argv[1:5]
watch, lifeline = os.pipe()
if hold == "1" and os.fork() == 0:  # someone else keeps the pipe open: no EOF for the watchdog
    os.set_inheritable(lifeline, True)
    time.sleep(120)
    os._exit(0)
proc = subprocess.Popen([sys.executable, keeper, str(watch), str(os.getpid()), deathsig, sys.executable, "-c", server],
                        start_new_session=True, pass_fds=(watch,), stdout=subprocess.PIPE, text=True)
print(proc.pid, proc.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


def ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize(("deathsig", "hold"), [("1", "1"), ("0", "0")], ids=["parent-death-signal", "watchdog"])
def test_a_killed_launcher_takes_the_server_and_its_child_along(deathsig: str, hold: str) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(KEEPER), deathsig, SERVER, hold],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert launcher.stdout is not None
    server, child = (int(p) for p in launcher.stdout.readline().split())
    try:
        assert not ended(server) and not ended(child)
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + loaded(5)
        while time.monotonic() < deadline and not (ended(server) and ended(child)):
            time.sleep(0.05)
        assert ended(server), "the server outlived its launcher"
        assert ended(child), "the server's own child outlived the launcher"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)  # the pipe holder of the first case
        for pid in (server, child):
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)
