"""SIGTERM and SIGHUP handled like Ctrl-C, so a cancelled CI job or a closed ssh session cleans
up as a Ctrl-C does.

Python turns SIGINT into ``KeyboardInterrupt``; SIGTERM (how CI runners, ``timeout`` and
``docker stop`` cancel a job) and SIGHUP (the terminal or ssh connection closed) kill the
process outright by default, leaving our prompt executing. With ``SigtermAsInterrupt`` installed
(in ``pytest_configure``, before any server is spawned), both raise ``KeyboardInterrupt`` too:
the running prompt is interrupted, pending ones removed, the report of what finished written and
a launched server stopped, also while it is still starting. A second such signal during that
clean-up is ignored, so it cannot cut the clean-up half-way. (A launched server does not outlive
pytest even when nothing is handled — SIGKILL: see ``comfy/keeper.py``.)
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class SigtermAsInterrupt:
    """Install in the main thread; ``restore()`` puts the previous handlers back. A signal
    someone else handles already (an outer session, the application, ``nohup``'s ignored
    SIGHUP) is left to them."""

    def __init__(self) -> None:
        self.received = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED:
            if signal.getsignal(sig) is signal.SIG_DFL:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return
        self.received = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def restore(self) -> None:
        if self._previous and threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)
            self._previous = {}
