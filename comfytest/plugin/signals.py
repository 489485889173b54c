"""SIGTERM handled like Ctrl-C, so a cancelled CI job cleans up as a Ctrl-C does.

Python turns SIGINT into ``KeyboardInterrupt``; SIGTERM (how CI runners, ``timeout`` and
``docker stop`` cancel a job) kills the process outright by default, leaving a launched ComfyUI
running and our prompt executing. With ``SigtermAsInterrupt`` installed, SIGTERM raises
``KeyboardInterrupt`` too: the running prompt is interrupted, pending ones removed, the report of
what finished written and the launched server stopped. A second SIGTERM during that clean-up
is ignored, so it cannot orphan the server half-way.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class SigtermAsInterrupt:
    """Install in the main thread; ``restore()`` puts the previous handler back."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone (an outer session, the application) already handles it
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self._installed = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return
        self.received = True
        raise KeyboardInterrupt("SIGTERM")

    def restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
