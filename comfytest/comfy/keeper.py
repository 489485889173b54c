"""Run as a script in front of a launched ComfyUI: ties its process group to comfytest's life.

``python keeper.py FD PARENT DEATHSIG COMMAND...`` is what ``server.LocalServer`` starts, in a
session (and process group) of its own. It then

1. unblocks the signals comfytest blocked around the fork and gives SIGTERM, SIGINT and SIGHUP
   their default actions (an ignored one would be inherited by ComfyUI);
2. with ``DEATHSIG`` 1, on Linux: asks the kernel for SIGKILL when its parent dies
   (``prctl(PR_SET_PDEATHSIG)``; it fires when the parent *thread* that forked ends, so
   comfytest asks only when it forks from its main thread), and exits at once if the parent
   ``PARENT`` is gone already;
3. forks a watchdog (re-executed as ``keeper.py watch FD PID``, so that nothing takes it for
   ComfyUI by its command line) that holds ``FD``, the read end of a pipe whose write end only comfytest
   holds: EOF means comfytest has ended, whatever ended it (SIGKILL included, on every OS).
   The watchdog then sends SIGTERM to the whole process group (ComfyUI and any process it
   started), SIGKILL after a grace period; it also ends the group's stragglers once ComfyUI has
   exited;
4. replaces itself with ``COMMAND`` (``exec``): ComfyUI keeps the pid comfytest knows, its
   command line and its exit code.

Standard library only, Python 3.8+: it runs under the ComfyUI's interpreter, not comfytest's.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

PR_SET_PDEATHSIG = 1
GRACE_S = 10.0
POLL_S = 0.5
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the watchdog still covers it


def _watch(fd: int, server: int) -> None:
    """The watchdog: wait for comfytest's end (EOF on ``fd``) or the server's (re-parented)."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # it outlives the group's SIGTERM to send SIGKILL
    group = os.getpgrp()
    while True:
        readable, _, _ = select.select([fd], [], [], POLL_S)
        if readable and not os.read(fd, 64):
            break  # comfytest has ended: end the server, gracefully first
        if os.getppid() != server:
            os.killpg(group, signal.SIGKILL)  # the server has ended: what it left goes too
            os._exit(0)
    os.killpg(group, signal.SIGTERM)
    waited = 0.0
    while os.getppid() == server and waited < GRACE_S:
        select.select([], [], [], POLL_S)
        waited += POLL_S
    os.killpg(group, signal.SIGKILL)
    os._exit(0)


def main(argv: list[str]) -> None:
    if argv[1] == "watch":  # the watchdog, re-executed so that its command line names no ComfyUI
        _watch(int(argv[2]), int(argv[3]))
        return
    fd, parent, deathsig, command = int(argv[1]), int(argv[2]), argv[3] == "1", argv[4:]
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if deathsig:
        _parent_death_signal()
    if os.getppid() != parent:
        sys.exit(70)  # comfytest ended before this started: start nothing
    server = os.getpid()
    if os.fork() == 0:
        try:
            os.execv(sys.executable, [sys.executable, "-I", "-S", os.path.abspath(__file__), "watch", str(fd), str(server)])
        finally:
            os._exit(71)  # could not run: the parent-death signal still covers Linux
    os.close(fd)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
