"""Run and per-node timing computed from the events of one prompt (PROTOCOL.md §9).

Pure: the inputs are parsed events (each with the client's receive times) and a few numbers
from ``/history``; nothing here reads a clock, so recorded traces replay exactly.

Two clocks are involved and never mixed without a stated conversion:

* the **server's** wall clock, in the ``timestamp`` of execution_start/_cached/_success/_error/
  _interrupted (integer epoch ms) and in ``extra_data.create_time``. Run totals come from it:
  they are immune to delivery delays.
* the **client's** receive times (``Received``). Node durations must come from them, because
  ``executing``/``progress_state`` carry no timestamp. Intervals use the monotonic clock.

Conversion (server → client): ``clock_offset_ms = min(at.epoch_ms - timestamp)`` over the
timestamped events, i.e. the best observed delivery latency plus clock skew (§9.4). A server time
``T`` was therefore seen on the client no earlier than ``T + offset`` on the client epoch clock;
subtracting ``at.epoch_ms - at.mono_ms`` of the end event (both read together on receipt) puts it
on the monotonic clock. Server timestamps are truncated to whole ms, so the end of the run is
placed ``_TIMESTAMP_RESOLUTION_MS`` later to avoid cutting real time.

Frames queued while the server could not send (the post-prompt ``gc.collect()`` burst, §9;
multi_client.json P3) make the last nodes look hundreds of ms long while the server's total is
right. When the end event arrives more than ``_STALL_MS`` after ``timestamp + offset`` predicts,
the converted end becomes an upper bound for every node's start and end. Smaller lateness is
ordinary delivery jitter (execution_error.json: 1.3 ms) and cutting there would shave real time
off, or zero, the last nodes, so receive times are then used as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final, Literal, TypeAlias

from comfytest.comfy.events import (
    Event,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
    ProgressState,
)

RunStatus = Literal["success", "error", "interrupted", "incomplete"]
#: ``node_id -> (class_type, title)``, e.g. from the workflow's ``class_type`` and ``_meta.title``
NodeInfo = Mapping[str, tuple[str, str | None]]

_TIMESTAMP_RESOLUTION_MS: Final = 1.0
#: the end arriving this much later than the best latency predicts means the server stalled
_STALL_MS: Final = 5.0
_End: TypeAlias = ExecutionSuccess | ExecutionError | ExecutionInterrupted
_TIMESTAMPED_CLASSES: Final = (
    ExecutionStart, ExecutionCached, ExecutionSuccess, ExecutionError, ExecutionInterrupted,
)
_STATUS: Final[Mapping[str, RunStatus]] = {
    "execution_success": "success",
    "execution_error": "error",
    "execution_interrupted": "interrupted",
}


@dataclass(frozen=True, slots=True)
class NodeTiming:
    """How long one node took in one run, from the client's receive times.

    ``duration_ms`` sums every interval the node ran (None if one never ended: the run is
    incomplete). Cached nodes have 0 and no steps or speed. ``steps`` is the highest
    ``progress.value`` seen; ``steps_per_s`` is the rate between progress reports (steps gained
    over the time between the reports that gained them), so that set-up before the first step
    (model loading) does not count, like ComfyUI's own it/s. It needs two reports, else None.
    """

    node_id: str
    class_type: str | None
    title: str | None
    duration_ms: float | None
    cached: bool
    runs: int
    steps: int | None = None
    steps_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class RunTiming:
    """Timing of one prompt: server totals, clock offset and nodes in execution order.

    ``nodes`` lists the cached nodes first (the server serves them before running anything),
    then the executed ones in the order they started.
    """

    prompt_id: str
    status: RunStatus
    queue_wait_ms: float | None
    server_total_ms: float | None
    client_wall_ms: float | None
    clock_offset_ms: float | None
    nodes: tuple[NodeTiming, ...]
    cached_nodes: tuple[str, ...]

    @property
    def executed_total_ms(self) -> float:
        """Sum of the durations of the nodes that ran (cached ones are 0 and left out)."""
        return sum(n.duration_ms for n in self.nodes if not n.cached and n.duration_ms)

    @property
    def overhead_ms(self) -> float | None:
        """Server time not spent inside a node: set-up before the first one, gaps between them."""
        if self.server_total_ms is None:
            return None
        return self.server_total_ms - self.executed_total_ms

    def node(self, node_id: str) -> NodeTiming | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    def slowest(self, n: int = 5) -> tuple[NodeTiming, ...]:
        """The ``n`` longest nodes that ran, longest first."""
        ran = [t for t in self.nodes if not t.cached and t.duration_ms is not None]
        return tuple(sorted(ran, key=lambda t: t.duration_ms or 0.0, reverse=True)[:n])


def compute_timing(
    events: Iterable[Event],
    prompt_id: str,
    *,
    create_time_ms: float | None = None,
    node_info: NodeInfo | None = None,
    client_wall_ms: float | None = None,
    sent_epoch_ms: float | None = None,
) -> RunTiming:
    """Timing of ``prompt_id`` from its events in receive order; other prompts' are skipped.

    The queue wait is ``execution_start.timestamp - create_time_ms`` (the server's clock, from
    ``/history``). Without a create time, ``sent_epoch_ms`` (the client's epoch clock when it sent
    ``POST /prompt``) is put on the server's clock with the clock offset: the estimate is never
    shorter than the real wait and longer by at most the run's best delivery latency plus the
    POST's round trip (a few ms on a busy machine), and needs no ``/history`` request."""
    walk = _Walk(prompt_id)
    for event in events:
        if _belongs(event, prompt_id):
            walk.feed(event)
    return walk.result(create_time_ms, node_info or {}, client_wall_ms, sent_epoch_ms)


def _belongs(event: Event, prompt_id: str) -> bool:
    if event.prompt_id == prompt_id:
        return True
    # After a reconnect the server replays the running node without a prompt id (§7).
    return isinstance(event, Executing) and event.prompt_id is None and event.node is not None


@dataclass
class _Walk:
    """Mutable accumulator for one pass over the events; only RunTiming leaves this module."""

    prompt_id: str
    order: list[str] = field(default_factory=list)
    intervals: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    progress: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    offsets: list[float] = field(default_factory=list)
    cached: tuple[str, ...] = ()
    start: ExecutionStart | None = None
    end: _End | None = None
    running: str | None = None

    def feed(self, event: Event) -> None:
        if self.end is not None:
            return  # nothing after the end belongs to this run's timing
        if isinstance(event, Executing):
            self._executing(event)
        elif isinstance(event, ProgressState):
            if self.running is not None and event.state_of(self.running) == "finished":
                self._close(event.at.mono_ms)
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, _TIMESTAMPED_CLASSES):
            self._timestamped(event)

    def _executing(self, event: Executing) -> None:
        if event.prompt_id is None and event.node == self.running:
            return  # a reconnect replay of the node already running, not a new start
        self._close(event.at.mono_ms)
        if event.node is not None:
            self._open(event.node, event.at.mono_ms)

    def _progress(self, event: Progress) -> None:
        node = event.node or self.running
        if node is not None:
            self.progress.setdefault(node, []).append((event.at.mono_ms, event.value))

    def _timestamped(self, event: ExecutionStart | ExecutionCached | _End) -> None:
        self.offsets.append(event.at.epoch_ms - event.timestamp)
        if isinstance(event, ExecutionStart):
            self.start = event
        elif isinstance(event, ExecutionCached):
            self.cached = event.nodes
        else:
            self._close(event.at.mono_ms)
            self.end = event

    def _open(self, node: str, mono_ms: float) -> None:
        if node not in self.intervals:
            self.order.append(node)
        self.intervals.setdefault(node, []).append((mono_ms, None))
        self.running = node

    def _close(self, mono_ms: float) -> None:
        if self.running is None:
            return
        spans = self.intervals[self.running]
        spans[-1] = (spans[-1][0], mono_ms)
        self.running = None

    def result(
        self, create_time_ms: float | None, info: NodeInfo, client_wall_ms: float | None,
        sent_epoch_ms: float | None = None,
    ) -> RunTiming:
        offset = min(self.offsets) if self.offsets else None
        if create_time_ms is None and sent_epoch_ms is not None and offset is not None:
            create_time_ms = sent_epoch_ms - offset  # compute_timing's docstring
        limit = self._end_on_mono_clock(offset)
        cached = [n for n in self.cached if n not in self.intervals]
        nodes = [_cached_node(n, info) for n in cached]
        nodes += [self._executed_node(n, info, limit) for n in self.order]
        return RunTiming(
            prompt_id=self.prompt_id,
            status=_STATUS[self.end.type] if self.end is not None else "incomplete",
            queue_wait_ms=_difference(self.start, create_time_ms),
            server_total_ms=_difference(self.end, self.start.timestamp if self.start else None),
            client_wall_ms=client_wall_ms,
            clock_offset_ms=offset,
            nodes=tuple(nodes),
            cached_nodes=self.cached,
        )

    def _end_on_mono_clock(self, offset: float | None) -> float | None:
        """The server's end of the run on the client's monotonic clock (module docstring)."""
        if self.end is None or offset is None:
            return None
        late_by = self.end.at.epoch_ms - (self.end.timestamp + offset)
        if late_by <= _STALL_MS:
            return None  # delivery jitter, not a stall: leave the receive times as they are
        epoch_to_mono = self.end.at.epoch_ms - self.end.at.mono_ms
        return self.end.timestamp + _TIMESTAMP_RESOLUTION_MS + offset - epoch_to_mono

    def _executed_node(self, node: str, info: NodeInfo, limit: float | None) -> NodeTiming:
        spans = self.intervals[node]
        samples = self.progress.get(node, [])
        class_type, title = info.get(node, (None, None))
        return NodeTiming(
            node_id=node, class_type=class_type, title=title,
            duration_ms=_total(spans, limit), cached=False, runs=len(spans),
            steps=max((v for _, v in samples), default=None), steps_per_s=_rate(samples),
        )


def _cached_node(node: str, info: NodeInfo) -> NodeTiming:
    class_type, title = info.get(node, (None, None))
    return NodeTiming(node_id=node, class_type=class_type, title=title, duration_ms=0.0,
                      cached=True, runs=0)


def _difference(later: ExecutionStart | _End | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return float(later.timestamp - earlier)


def _total(spans: list[tuple[float, float | None]], limit: float | None) -> float | None:
    """Sum of the intervals, each end and start capped at ``limit`` (None if one is open)."""
    total = 0.0
    for start, end in spans:
        if end is None:
            return None
        if limit is not None:
            start, end = min(start, limit), min(end, limit)
        total += end - start
    return total


def _rate(samples: list[tuple[float, int]]) -> float | None:
    """Steps per second over the reports that advanced (a re-run resets the value: skipped)."""
    steps = elapsed = 0.0
    for (t0, v0), (t1, v1) in pairwise(samples):
        if v1 > v0:
            steps, elapsed = steps + (v1 - v0), elapsed + (t1 - t0)
    return steps / elapsed * 1000.0 if elapsed > 0 else None
