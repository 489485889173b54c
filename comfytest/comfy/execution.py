"""Queue one prompt, follow its events to the end, collect outputs and timings.

The end of a prompt is ``executing {node: null}`` with our prompt id (PROTOCOL §4); only then is
``/history`` read, with a short retry. A dropped socket is reopened and the run resynchronised
from ``/history`` and ``/queue``. The deadline and the inactivity timeout interrupt our prompt
(and remove it from the queue if pending) and fail naming the node that was running.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from comfytest.comfy.client import ComfyClient, Disconnected
from comfytest.comfy.diagnostics import (
    NodeInfo,
    as_mapping,
    describe_node,
    format_execution_error,
    format_interrupted,
    format_rejection,
    format_unsupported,
    id_order,
    is_workflow_rejection,
    node_info,
)
from comfytest.comfy.events import (
    Event,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
    Preview,
)
from comfytest.comfy.events import (
    ExecutionInterrupted as InterruptedEvent,
)
from comfytest.comfy.localfiles import GuessedFolders, read_inside
from comfytest.comfy.resources import ResourceSampler, RunMemory
from comfytest.comfy.timing import RunTiming, compute_timing
from comfytest.errors import (
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionTimeout,
    OutputRefused,
    PromptRejected,
    PromptVanished,
    ProtocolError,
    ServerUnavailable,
    UnsupportedServer,
)
from comfytest.media import MESH_EXT, Undecodable, decode_image, kind_of
from comfytest.outputs import FileRef, OutputFile, OutputImage, OutputText

_HISTORY_RETRY_S = 2.0
#: how often a prompt that has not started is looked for in the queue
_QUEUE_CHECK_S = 2.0
_INTERRUPT_GRACE_S = 15.0
_RECORD_POLL_S = 1.0  # how often a prompt behind a stalled socket is looked up in /queue
_CONTROL_TIMEOUT_S = 5.0  # capped by the run's own timeouts: a frozen server fails in bounded time


@dataclass(frozen=True)
class RunResult:
    """Everything one prompt produced: status, outputs, events, history, timing.

    ``history`` is the ``/history`` entry, or ``{}`` when the run was made with ``history=False``
    and the events said everything."""

    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    prompt: Mapping[str, Any] = field(repr=False)
    events: tuple[Event, ...] = field(repr=False)
    outputs: Mapping[str, Mapping[str, Any]] = field(repr=False)
    images: tuple[OutputImage, ...] = field(repr=False)
    texts: tuple[OutputText, ...]
    history: Mapping[str, Any] = field(repr=False)
    timing: RunTiming
    message: str | None = None  # the readable failure, when status is not success
    resynced: bool = False
    #: set by ComfySession.run: which seed inputs were pinned and which patches applied
    seeds: tuple[Any, ...] = ()
    patches: tuple[Any, ...] = ()
    #: idle and peak memory while it ran (``--comfy-sample-ms``); None when sampling is off
    memory: RunMemory | None = None
    #: every other output file (video, audio, latent, 3D, unknown, undecodable image), as bytes
    files: tuple[OutputFile, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def images_of(self, node_id: str) -> list[OutputImage]:
        return [img for img in self.images if img.node_id == str(node_id)]

    def files_of(self, node_id: str, kind: str | None = None) -> list[OutputFile]:
        return [f for f in self.files if f.node_id == str(node_id) and kind in (None, f.kind)]

    def raise_for_status(self) -> None:
        __tracebackhide__ = True
        if self.status == "error":
            raise ExecutionFailed(self.message or f"prompt {self.prompt_id} failed")
        if self.status == "interrupted":
            raise ExecutionInterrupted(self.message or f"prompt {self.prompt_id} was interrupted")


class _Follower:
    """Tracks one prompt's events; knows the running node and when the prompt ended."""

    def __init__(self, prompt_id: str, observers: list[RunObserver] | None = None) -> None:
        self.prompt_id = prompt_id
        self.observers = observers or []
        self.events: list[Event] = []
        self.current: str | None = None
        self.started = False
        self.done = False
        self.end: Event | None = None
        self.resynced = False

    def accept(self, ev: Event) -> None:
        pid = ev.prompt_id
        if isinstance(ev, Preview) and pid is None:
            if self.current is None:
                return  # type-1 previews carry no ids: ours only while our node runs
        elif pid != self.prompt_id:
            # after a reconnect the server re-announces the running node without prompt_id
            if not (self.resynced and isinstance(ev, Executing) and pid is None and ev.node):
                return
        self.events.append(ev)
        for observer in self.observers:
            observer.run_event(ev)
        if isinstance(ev, ExecutionStart):
            self.started = True
        elif isinstance(ev, Executing):
            if ev.node is None:
                self.done = pid == self.prompt_id
            else:
                self.current = ev.node
        elif isinstance(ev, (ExecutionSuccess, ExecutionError, InterruptedEvent)):
            self.end = ev


class RunObserver(Protocol):
    """Watches runs as they happen (live progress): told just before a prompt is queued, of each
    of its events as it arrives, and when following it ended (also on a failure)."""

    def run_started(self, prompt_id: str, nodes: Mapping[str, tuple[str, str | None]]) -> None: ...

    def run_event(self, event: Event) -> None: ...

    def run_ended(self) -> None: ...


class Runner:
    """Runs prompts on one ``ComfyClient`` with a deadline and an inactivity timeout.

    ``sampler``, when set, samples memory during each run (``RunResult.memory``);
    ``observers`` see every run's events live; ``local_files`` (a server on this machine whose
    folders comfytest chose: ``{"output": path, "temp": path}``) lets output files be read from
    disk instead of ``GET /view`` (one round trip less per file; /view still when a file is not
    there or its path leaves the folder); ``guessed_files`` does the same for a ``--comfy-url``
    server on this machine, each folder once a file fetched over /view confirmed it.
    """

    def __init__(self, client: ComfyClient, *, timeout: float = 300.0, idle_timeout: float = 120.0) -> None:
        self.client = client
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.sampler: ResourceSampler | None = None
        self.observers: list[RunObserver] = []
        self.local_files: Mapping[str, Path] = {}
        #: a ``--comfy-url`` server on this machine: its folders as guessed (``localfiles``)
        self.guessed_files: GuessedFolders | None = None
        self._queued_at = 0.0  # time.time() before the current prompt was queued (guessed_files)

    def run(
        self,
        prompt: Mapping[str, Any],
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        fetch_images: bool = True,
        prompt_id: str | None = None,
        history: bool = True,
        on_queued: Callable[[], None] | None = None,
    ) -> RunResult:
        """Queue ``prompt`` and follow it to its end; validation errors raise PromptRejected.

        With ``history=False`` ``GET /history`` is skipped where the events told everything (the
        outputs come from ``executed`` events, which a cached output node also gets; the queue
        wait is estimated from the send time, see ``timing.compute_timing``): one round trip less
        per run. It is still read after a reconnect or when no end event arrived.

        ``on_queued`` is called in this thread once the server accepted the prompt, before its
        events are followed: work that may overlap the execution (``plugin.offpath``)."""
        client = self.client
        info = node_info(prompt)
        client.ensure_connected()
        if client.drain():  # the socket ended since the last run: a fresh one before queueing
            client.connect()
        pid = prompt_id or new_prompt_id()
        sampler = self.sampler
        for observer in self.observers:
            observer.run_started(pid, {k: (v.class_type, v.title) for k, v in info.items()})
        try:
            if sampler is not None:
                sampler.start()  # the idle sample: before the prompt is queued
            sent = client.clock.now()
            self._queued_at = time.time()
            follower = self._queue_and_follow(prompt, pid, info, timeout, idle_timeout, on_queued)
            finished = client.clock.now()
        finally:
            if sampler is not None:
                sampler.finish()  # no readings after the end
            for observer in self.observers:
                observer.run_ended()
        needed = history or follower.resynced or follower.end is None
        entry = self._history(pid, required=follower.resynced) if needed else {}
        outputs = self._outputs(follower, entry)
        try:
            images, texts, files = self._decode(outputs) if fetch_images else ((), (), ())
        except _NodeOutputRefused as exc:
            raise OutputRefused(f"{describe_node(exc.node, info)} reported an output file the server will not "
                                f"serve: {exc.refusal}. Fix the path the node returns in its 'ui' output.") from None
        memory = sampler.stop() if sampler is not None else None
        timing = compute_timing(
            follower.events, prompt_id=pid, create_time_ms=_create_time(entry),
            node_info={k: (v.class_type, v.title) for k, v in info.items()},
            client_wall_ms=finished.mono_ms - sent.mono_ms, sent_epoch_ms=sent.epoch_ms,
        )
        status_str, message = _status(follower, entry, info)
        return RunResult(
            prompt_id=pid, status=status_str, prompt=prompt, events=tuple(follower.events),
            outputs=outputs, images=images, texts=texts, history=entry, timing=timing,
            message=message, resynced=follower.resynced, memory=memory, files=files,
        )

    def _server_version(self) -> str | None:
        """``comfyui_version`` from /system_stats, for messages; None when it cannot be read."""
        try:
            system = as_mapping(self.client.system_stats(timeout=5).get("system"))
        except (ServerUnavailable, ProtocolError):
            return None
        version = system.get("comfyui_version")
        return str(version) if version else None

    def _queue_and_follow(
        self, prompt: Mapping[str, Any], pid: str, info: NodeInfo, timeout: float | None, idle_timeout: float | None,
        on_queued: Callable[[], None] | None = None,
    ) -> _Follower:
        try:
            status, body = self.client.queue_prompt(prompt, pid)
        except KeyboardInterrupt:  # the POST may have reached the server: leave nothing behind
            self._cancel(pid)
            raise
        if status == 400 and not is_workflow_rejection(body):
            raise UnsupportedServer(format_unsupported(body, self.client.url, self._server_version()))
        if status == 400 or body.get("node_errors"):
            if status == 200:  # the valid part was accepted and will run: do not leave it behind
                self._cancel(pid)
            raise PromptRejected(format_rejection(body, info, status))
        if on_queued is not None:
            on_queued()
        follower = _Follower(pid, self.observers)
        try:
            self._follow(follower, info, timeout or self.timeout, idle_timeout or self.idle_timeout)
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: our prompt must not keep the server busy
            self._cancel(pid)
            raise
        return follower

    # ------------------------------------------------------------ following

    def _follow(self, f: _Follower, info: NodeInfo, timeout: float, idle: float) -> None:
        clock = self.client.clock
        start = clock.now().mono_ms
        last = start
        check = time.monotonic() + _QUEUE_CHECK_S
        while not f.done:
            if not f.started and time.monotonic() >= check:  # still waiting: is it still queued?
                if self._vanished(f):
                    return
                check = time.monotonic() + _QUEUE_CHECK_S
            now = clock.now().mono_ms
            late = now - start >= timeout * 1000
            if late or now - last >= idle * 1000:
                why = f"did not finish within {timeout:g} s (--comfy-timeout)" if late else \
                    f"sent no message for {idle:g} s (--comfy-idle-timeout)"
                if self._finished_meanwhile(f, info, why):
                    return  # the socket missed the end (stalled, or dropped right after connecting)
                if not late and self._socket_stalled(f):
                    self._follow_record(f, info, start, timeout)
                    return
            if late:
                self._timed_out(f, info, f"did not finish within {timeout:g} s (--comfy-timeout)")
            if now - last >= idle * 1000:
                self._timed_out(f, info, f"sent no message for {idle:g} s (--comfy-idle-timeout)")
            wait = min(start + timeout * 1000, last + idle * 1000) - now
            if not f.started:
                wait = min(wait, max(0.0, check - time.monotonic()) * 1000)
            item = self.client.next_event(wait / 1000)
            if item is None:
                continue
            last = clock.now().mono_ms
            if isinstance(item, Disconnected):
                self._resync(f, item)
            else:
                f.accept(item)

    def _vanished(self, f: _Follower) -> bool:
        """While our prompt waits: True when it finished unseen; PromptVanished when it is neither
        queued, running nor in /history (twice: a prompt moving from the queue to /history is
        in one of them). The WebSocket cannot say so: it keeps talking about other prompts."""
        for _attempt in range(2):
            try:
                state = prompt_state(self.client, f.prompt_id)
            except (ServerUnavailable, ProtocolError):
                return False  # the deadlines decide about a server that does not answer
            if state == "done":
                f.resynced = f.done = True  # the socket missed the end; /history has it
                return True
            if state == "queued":
                return False
        raise PromptVanished(
            f"prompt {f.prompt_id} is gone from the queue of {self.client.url}: it is not pending, not "
            "running and not in /history, and nothing of it ran. Another client cleared the queue or "
            "deleted it (the UI's \"Clear queue\"), or the server answered POST /prompt with 200 and "
            "never queued it. Nothing was wrong with the workflow; run it again."
        )

    def _resync(self, f: _Follower, lost: Disconnected) -> None:
        """Reopen the socket (old one closed first) and find out where our prompt is."""
        try:
            self.client.connect()
        except ServerUnavailable as exc:
            raise ServerUnavailable(
                f"The WebSocket to {self.client.url} dropped ({lost.reason}) while prompt "
                f"{f.prompt_id} was running, and the server no longer answers: {exc}"
            ) from None
        f.resynced = True
        state = prompt_state(self.client, f.prompt_id)
        if state == "queued":
            return
        if state == "done" or self._history(f.prompt_id, required=False):
            f.done = True
            return
        raise ProtocolError(
            f"prompt {f.prompt_id} is neither queued nor in /history after the WebSocket "
            f"to {self.client.url} dropped ({lost.reason}); the server may have restarted"
        )

    def _socket_stalled(self, f: _Follower) -> bool:
        """The silence is the socket's, not the prompt's: the socket does not answer a ping
        while the server's own record (``/queue`` or the jobs API) has our prompt queued or
        running. A silent node on a healthy socket is not a stall: the idle timeout stands."""
        limit = self._control_timeout()
        if self.client.answers_ping(limit):
            return False
        try:
            return prompt_state(self.client, f.prompt_id) == "queued"
        except (ServerUnavailable, ProtocolError):
            return False  # HTTP is not fine either: the timeout's own handling says so

    def _follow_record(self, f: _Follower, info: NodeInfo, start_ms: float, timeout: float) -> None:
        """Follow a prompt by the server's record while its socket is stalled: every second,
        ``/history`` (done?) and ``/queue`` (still there?), until its end or ``--comfy-timeout``;
        events that still arrive are taken. A prompt that leaves the queue without an end in
        ``/history`` is a protocol error, as after a dropped socket."""
        f.resynced = True
        clock = self.client.clock
        deadline_ms = start_ms + timeout * 1000
        while not f.done:
            if clock.now().mono_ms >= deadline_ms:
                self._timed_out(f, info, f"did not finish within {timeout:g} s (--comfy-timeout) "
                                         "while its WebSocket was stalled (followed by GET /queue)")
            item = self.client.next_event(min(_RECORD_POLL_S, max(0.0, (deadline_ms - clock.now().mono_ms) / 1000)))
            if isinstance(item, Disconnected):
                self._resync(f, item)
                continue
            if item is not None:
                f.accept(item)
                continue
            state = prompt_state(self.client, f.prompt_id)
            if state == "done":
                f.done = True
            elif state == "unknown":
                raise ProtocolError(
                    f"prompt {f.prompt_id} left the queue of {self.client.url} without an entry in "
                    "/history while its WebSocket was stalled; the server may have restarted"
                )

    def _control_timeout(self) -> float:
        """Seconds a control request (history check, interrupt, queue delete) may take."""
        return min(_CONTROL_TIMEOUT_S, self.idle_timeout, self.timeout)

    def _finished_meanwhile(self, f: _Follower, info: NodeInfo, why: str) -> bool:
        """Before declaring a timeout: did /history record the end the socket never showed?"""
        try:
            entry = self.client.history(f.prompt_id, timeout=self._control_timeout())
        except ServerUnavailable as exc:
            raise ServerUnavailable(
                f"prompt {f.prompt_id} {why}; {self._where(f, info)}. The server at {self.client.url} "
                f"then did not answer GET /history either ({str(exc).splitlines()[0]}): it is frozen or "
                "unreachable, so the prompt could not be interrupted."
            ) from None
        except ProtocolError:
            return False
        if as_mapping(entry.get("status")).get("completed") is True or entry.get("outputs"):
            f.resynced = f.done = True
            return True
        return False

    @staticmethod
    def _where(f: _Follower, info: NodeInfo) -> str:
        return (
            f"{describe_node(f.current, info)} was running" if f.current
            else "it was still waiting in the queue" if not f.started else "between nodes"
        )

    def _timed_out(self, f: _Follower, info: NodeInfo, why: str) -> None:
        __tracebackhide__ = True
        where = self._where(f, info)
        delivered = self._cancel(f.prompt_id)
        if not delivered:
            raise ServerUnavailable(
                f"prompt {f.prompt_id} {why}; {where}. The server at {self.client.url} then did not "
                f"answer POST /interrupt within {self._control_timeout():g} s either: it is frozen or "
                "unreachable, so the prompt could not be interrupted."
            )
        self._await_end(f)
        raise ExecutionTimeout(
            f"prompt {f.prompt_id} {why}; {where}. comfytest sent POST /interrupt for it "
            "(and removed it from the queue if pending). Raise the limit with --comfy-timeout / "
            "--comfy-idle-timeout or `timeout` in the workflow's settings file."
        )

    def _cancel(self, prompt_id: str) -> bool:
        """Remove our prompt from the queue and interrupt it; False when the server did not answer."""
        limit = self._control_timeout()
        try:
            cancel_prompt(self.client, prompt_id, timeout=limit)
        except (ServerUnavailable, ProtocolError):
            return False
        return True

    def _await_end(self, f: _Follower) -> None:
        """Give the interrupt a moment to land so the next test starts on an idle server."""
        deadline = time.monotonic() + min(_INTERRUPT_GRACE_S, self.idle_timeout)
        while not f.done and f.started and time.monotonic() < deadline:
            item = self.client.next_event(min(0.5, deadline - time.monotonic()))
            if isinstance(item, Disconnected):
                return
            if item is not None:
                f.accept(item)

    # ------------------------------------------------------------ results

    def _history(self, prompt_id: str, *, required: bool) -> dict[str, Any]:
        """Read /history after the end; retry briefly (the history race, PROTOCOL §4)."""
        deadline = time.monotonic() + _HISTORY_RETRY_S
        while True:
            entry = self.client.history(prompt_id, timeout=self._control_timeout())
            if entry or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if not entry and required:
            raise ProtocolError(f"GET /history/{prompt_id} stayed empty after the prompt ended")
        return entry

    def _outputs(self, f: _Follower, history: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        outputs: dict[str, Mapping[str, Any]] = {}
        for ev in f.events:
            if isinstance(ev, Executed):
                outputs[ev.node] = ev.output
        hist = history.get("outputs")
        if isinstance(hist, Mapping):
            for node, out in hist.items():
                if isinstance(out, Mapping):
                    outputs.setdefault(str(node), out)
        return outputs

    def _decode(self, outputs: Mapping[str, Mapping[str, Any]]) -> Decoded:
        """Images (decoded with Pillow), texts, and every other file as bytes.

        A file is classified by its name (SaveVideo reports its .mp4 under ``images``); one that
        does not decode is kept as an ``OutputFile`` with the reason, for the check to report.
        A well-formed PNG is kept as served and decoded on first use (``OutputImage.image``):
        one identical to its baseline's source is never decoded (``compare.baselines``)."""
        images: list[OutputImage] = []
        texts: list[OutputText] = []
        files: list[OutputFile] = []
        for node in sorted(outputs, key=id_order):
            taken: set[int] = set()
            for kind, values in outputs[node].items():
                if not isinstance(values, list):
                    continue
                if kind == "text" and _flattened(values):
                    texts.append(OutputText(node, 0, "".join(values)))
                    continue
                for index, value in enumerate(values):
                    ref = _file_ref(kind, index, value)
                    if ref is not None:
                        slot = _free_slot(index, taken)
                        self._fetch(node, slot, kind, ref, images, files)
                    elif isinstance(value, str) and kind == "text":
                        texts.append(OutputText(node, index, value))
        return tuple(images), tuple(texts), tuple(files)

    def _fetch(self, node: str, index: int, key: str, ref: FileRef,
               images: list[OutputImage], files: list[OutputFile]) -> None:
        try:
            data, ref = self._download(ref)
        except OutputRefused as exc:
            raise _NodeOutputRefused(node, exc) from None
        kind = kind_of(ref.filename)
        if kind == "image":
            served = OutputImage(node, index, ref, None, key, data=data)
            if served.digest is not None:  # a well-formed PNG: decoded when first used, if at all
                images.append(served)
                return
            try:
                images.append(OutputImage(node, index, ref, decode_image(data), key))
                return
            except Undecodable as exc:
                files.append(OutputFile(node, index, ref, kind, data, key, str(exc)))
                return
        files.append(OutputFile(node, index, ref, kind, data, key))

    def _download(self, ref: FileRef) -> tuple[bytes, FileRef]:
        """``GET /view``; a 3D ``result`` path may name the input folder (Load3D's files)."""
        local = self._read_local(ref)
        if local is not None:
            return local, ref
        guessed = self.guessed_files
        if ref.type != "output?":
            if guessed is not None and (data := guessed.read(ref, self._queued_at)) is not None:
                return data, ref
            data = self.client.view(ref)
            if guessed is not None:
                guessed.confirm(ref, data, self._queued_at)
            return data, ref
        try:
            out = FileRef(ref.filename, ref.subfolder, "output")
            return self.client.view(out), out
        except (ProtocolError, OutputRefused):
            inp = FileRef(ref.filename, ref.subfolder, "input")
            return self.client.view(inp), inp


    def _read_local(self, ref: FileRef) -> bytes | None:
        """The file from a local server's folder, or None (not local, outside it, not there)."""
        folder = self.local_files.get(ref.type)
        return read_inside(folder, ref) if folder is not None else None


Decoded = tuple[tuple[OutputImage, ...], tuple[OutputText, ...], tuple[OutputFile, ...]]


class _NodeOutputRefused(Exception):
    """``/view`` refused a file of ``node``: carried up to where the prompt's labels are known."""

    def __init__(self, node: str, refusal: OutputRefused) -> None:
        super().__init__(node)
        self.node, self.refusal = node, refusal


def _file_ref(key: str, index: int, value: Any) -> FileRef | None:
    """The file an output entry names: ``{filename, ...}``, or Preview3D's ``result`` path."""
    if isinstance(value, Mapping) and "filename" in value:
        return FileRef.from_json(value)
    if key == "result" and index == 0 and isinstance(value, str) and value.lower().endswith(tuple(MESH_EXT)):
        sub, _, name = value.replace("\\", "/").rpartition("/")
        return FileRef(name, sub, "output?")  # output folder, else input folder
    return None


def _free_slot(index: int, taken: set[int]) -> int:
    """Keys are ``<node>_<index>``: a second output key of one node gets the next free index."""
    while index in taken:
        index += 1
    taken.add(index)
    return index


#: job states of ``GET /api/jobs/{id}`` (ComfyUI 0.26) that mean "over, read /history"
_JOB_DONE = frozenset({"completed", "failed", "cancelled"})
_JOB_QUEUED = frozenset({"pending", "in_progress"})


def prompt_state(client: ComfyClient, prompt_id: str) -> str:
    """Where a prompt is: ``done`` (in /history), ``queued`` (pending or running) or ``unknown``.

    Through ``GET /api/jobs/{id}`` where the server has the jobs API (one request, no race
    between /history and /queue), else through ``/history`` and ``/queue``.
    """
    if client.has_jobs_api():
        status = client.job_status(prompt_id)
        return "done" if status in _JOB_DONE else "queued" if status in _JOB_QUEUED else "unknown"
    if client.history(prompt_id):
        return "done"
    q = client.queue_state()
    ids = {str(item[1]) for key in ("queue_running", "queue_pending") for item in q.get(key, [])
           if isinstance(item, list) and len(item) > 1}
    return "queued" if prompt_id in ids else "unknown"


def cancel_prompt(client: ComfyClient, prompt_id: str, *, timeout: float | None = None) -> None:
    """Take our prompt off the queue or interrupt it if it runs (never anybody else's).

    ``POST /api/jobs/{id}/cancel`` does both in one step where the server has it; otherwise
    ``POST /queue {delete}`` then ``POST /interrupt {prompt_id}``.
    """
    if client.has_jobs_api(timeout=timeout):
        client.cancel_job(prompt_id, timeout=timeout)
        return
    client.delete_pending([prompt_id], timeout=timeout)
    client.interrupt(prompt_id, timeout=timeout)


def new_prompt_id() -> str:
    """A prompt id every ComfyUI accepts: a canonical lowercase hyphenated UUID.

    ComfyUI ≥ 0.25 (PR #13998, ``comfy_execution/jobs.py: validate_job_id``) rejects any
    other spelling with HTTP 400; 0.3.75 takes any string.
    """
    return str(uuid.uuid4())


def _flattened(values: list[Any]) -> bool:
    """A node returned ``{"ui": {"text": "a string"}}`` (not a list): ComfyUI extends its
    output list with the string, i.e. one entry per character. Such text is one value."""
    return len(values) > 1 and all(isinstance(v, str) and len(v) == 1 for v in values)


def _create_time(history: Mapping[str, Any]) -> int | None:
    prompt = history.get("prompt")
    if isinstance(prompt, list) and len(prompt) > 3 and isinstance(prompt[3], Mapping):
        value = prompt[3].get("create_time")
        return int(value) if isinstance(value, (int, float)) else None
    return None


def _status(f: _Follower, history: Mapping[str, Any], info: NodeInfo) -> tuple[str, str | None]:
    end = f.end
    if isinstance(end, ExecutionError):
        cached = [n for ev in f.events if isinstance(ev, ExecutionCached) for n in ev.nodes]
        return "error", format_execution_error(end.data, info, cached=cached)
    if isinstance(end, InterruptedEvent):
        return "interrupted", format_interrupted(end.data, info)
    if isinstance(end, ExecutionSuccess):
        return "success", None
    return _status_from_history(history, info)


def _status_from_history(history: Mapping[str, Any], info: NodeInfo) -> tuple[str, str | None]:
    """After a reconnect the end event may be lost: read it from /history status.messages."""
    status = as_mapping(history.get("status"))
    for item in reversed(status.get("messages") or []):
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], Mapping):
            kind, data = item
            if kind == "execution_error":
                return "error", format_execution_error(data, info)
            if kind == "execution_interrupted":
                return "interrupted", format_interrupted(data, info)
            if kind == "execution_success":
                return "success", None
    if status.get("status_str") == "success":
        return "success", None
    return "error", f"the prompt ended with status {status.get('status_str')!r} and no end event"

