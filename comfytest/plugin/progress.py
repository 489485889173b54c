"""Live progress while a case runs, from the events comfytest already parses (no pytest here).

``ProgressDisplay`` is an ``execution.RunObserver``. Two modes:

* ``line`` (a terminal): one line, rewritten in place after whatever pytest has written on the
  current line — the running node, sampler step k/K with it/s, the elapsed time — and erased
  when the run ends, so pytest's own output is left exactly as it would be. The cursor is saved
  and restored around each rewrite (``ESC 7`` / ``ESC 8``), and the text is cut to the room left
  on the line so it never wraps. Rewrites are throttled to ``min_interval_s``.
* ``nodes`` (CI logs, ``--comfy-progress nodes``): one plain line per node when it finishes.

The writer is injected: ``write(text, raw)`` where ``raw`` text must not move pytest's idea of
the current column (the in-place line); ``column()`` and ``width()`` describe the terminal line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from comfytest.comfy.events import Event, Executing, ExecutionCached, Progress

Writer = Callable[[str, bool], None]
SAVE, RESTORE, CLEAR = "\x1b7", "\x1b8", "\x1b[K"


@dataclass
class _Node:
    node_id: str
    started: float
    steps: int | None = None
    total: int | None = None
    first_step: tuple[float, int] | None = None
    last_step: tuple[float, int] | None = None

    def rate(self) -> float | None:
        """Steps per second between the first and the latest progress report (set-up excluded)."""
        if self.first_step is None or self.last_step is None:
            return None
        (t0, v0), (t1, v1) = self.first_step, self.last_step
        return (v1 - v0) / (t1 - t0) if t1 > t0 and v1 > v0 else None


@dataclass
class ProgressDisplay:
    """Shows the running node of each run; see the module docstring."""

    write: Writer
    mode: str  # "line" | "nodes"
    column: Callable[[], int] = lambda: 0
    width: Callable[[], int] = lambda: 80
    clock: Callable[[], float] = time.monotonic
    min_interval_s: float = 0.1
    label: str = ""
    _names: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    _node: _Node | None = None
    _started: float = 0.0
    _shown_at: float = float("-inf")
    _shown: bool = False
    _broke_line: bool = False

    # ------------------------------------------------------------ RunObserver

    def run_started(self, prompt_id: str, nodes: Mapping[str, tuple[str, str | None]]) -> None:
        self._names, self._node, self._started = nodes, None, self.clock()
        self._shown_at, self._broke_line = float("-inf"), False
        self._show(force=True)

    def run_event(self, event: Event) -> None:
        now = self.clock()
        if isinstance(event, Executing):
            self._finish_node(now)
            self._node = _Node(event.node, now) if event.node is not None else None
            self._show(force=True)
        elif isinstance(event, Progress):
            node = self._node
            if node is not None and (event.node in (None, node.node_id)):
                node.steps, node.total = event.value, event.max
                node.first_step = node.first_step or (now, event.value)
                node.last_step = (now, event.value)
                self._show()
        elif isinstance(event, ExecutionCached) and event.nodes and self.mode == "nodes":
            self._line(f"{len(event.nodes)} node(s) cached: {', '.join(event.nodes)}")

    def run_ended(self) -> None:
        self._finish_node(self.clock())
        self._node = None
        if self._shown:
            self.write(SAVE + CLEAR + RESTORE, True)
            self._shown = False

    # ------------------------------------------------------------ text

    def name(self, node_id: str) -> str:
        class_type, title = self._names.get(node_id, ("?", None))
        return f"{node_id} {class_type}" + (f" '{title}'" if title and title != class_type else "")

    def status(self) -> str:
        """``red_cube: 3 KSampler 'Sampler' step 12/20 4.10 it/s 8.2 s`` (``waiting`` before a node
        runs); on the in-place line the label is the case (pytest shows the file before it)."""
        elapsed = f"{self.clock() - self._started:.1f} s"
        node = self._node
        if node is None:
            return f"{self._prefix()} waiting {elapsed}"
        parts = [self._prefix(), self.name(node.node_id)]
        if node.steps is not None and node.total:
            parts.append(f"step {node.steps}/{node.total}")
            rate = node.rate()
            if rate is not None:
                parts.append(f"{rate:.2f} it/s")
        return " ".join([*parts, elapsed])

    def _show(self, *, force: bool = False) -> None:
        if self.mode != "line":
            return
        now = self.clock()
        if not force and now - self._shown_at < self.min_interval_s:
            return
        room = self.width() - self.column() - 2
        if room < 10:
            return  # no room left on this line: show nothing rather than wrap
        self.write(SAVE + " " + self.status()[:room] + CLEAR + RESTORE, True)
        self._shown, self._shown_at = True, now

    def _finish_node(self, now: float) -> None:
        node = self._node
        if node is None or self.mode != "nodes":
            return
        text = f"{self.name(node.node_id)} {now - node.started:.2f} s"
        if node.steps is not None:
            rate = node.rate()
            text += f" ({node.steps} steps" + (f", {rate:.2f} it/s)" if rate else ")")
        self._line(text)

    def _line(self, text: str) -> None:
        prefix = ""
        if not self._broke_line and self.column() > 0:
            prefix = "\n"  # pytest's progress line is open: start ours below it
        self._broke_line = True
        self.write(f"{prefix}{self._prefix()} {text}\n", False)

    def _prefix(self) -> str:
        if self.mode == "line" and "::" in self.label:
            # pytest has already written the file on this line: the case names the rest
            return self.label.split("::", 1)[1] + ":"
        return f"comfytest: {self.label}" if self.label else "comfytest:"
