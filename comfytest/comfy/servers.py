"""A session's servers: one or several, given as URLs or started here, and who uses which.

``ServerPool.attach(urls)`` probes running servers; ``ServerPool.launch(spec, dirs)`` starts
one ComfyUI per folder (per GPU with ``gpus``: ``CUDA_VISIBLE_DEVICES``), in parallel, each on
its own port with its own output/temp folders and log. The process that builds a pool owns the
servers it started. ``entries`` are plain JSON-able values: under pytest-xdist the controller
builds the pool once and hands the entries to its workers, and worker k uses entry
``bound_index(k, N)`` = k mod N (more workers than servers share them).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from comfytest.comfy.server import LaunchSpec, LocalServer
from comfytest.errors import ComfyTestError, LaunchError, ServerError, ServerUnavailable


@dataclass(frozen=True)
class ServerEntry:
    """One server as every process of a session sees it (no process handle: that stays with
    the process that started it)."""

    url: str
    label: str = ""  # "GPU 1", "server 2"; empty for a URL given by the user
    log_path: str | None = None  # the log of a server comfytest started (for failure tails)

    @property
    def name(self) -> str:
        """``http://127.0.0.1:8188 (GPU 1)``, without credentials."""
        url = re.sub(r"//[^/@]*@", "//", self.url)
        return f"{url} ({self.label})" if self.label else url

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "label": self.label, "log_path": self.log_path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerEntry:
        return cls(str(data["url"]), str(data.get("label") or ""), data.get("log_path"))


def bound_index(worker: str, count: int) -> int:
    """Worker ``gw3`` uses server 3 mod ``count``; a process without xdist uses server 0."""
    digits = re.sub(r"\D", "", worker)
    return int(digits) % count if digits and count else 0


def log_tail(path: str | Path | None, lines: int = 30) -> str:
    if path is None:
        return "(no log)"
    try:
        with open(path, "rb") as fh:
            tail = deque(fh, maxlen=lines)
    except OSError:
        return "(no log)"
    return b"".join(tail).decode("utf-8", "replace").rstrip()


class ServerPool:
    """The session's servers, in order; ``local[i]`` is the process when this process started it."""

    def __init__(self, entries: Sequence[ServerEntry], local: Sequence[LocalServer | None] = (),
                 notes: Sequence[str] = ()) -> None:
        self.entries = tuple(entries)
        self.local: tuple[LocalServer | None, ...] = tuple(local) or (None,) * len(self.entries)
        self.notes = list(notes)  # said once at the end of the session (an unreachable URL)

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> ServerPool:
        """The pool as a worker receives it: entries only; the controller owns the processes."""
        return cls([ServerEntry.from_json(d) for d in data])

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.entries]

    @classmethod
    def attach(cls, urls: Sequence[str], check: Callable[[str], None], hint: str) -> ServerPool:
        """Servers the user runs; each is probed once with ``check`` (raises when nothing, or
        no ComfyUI, answers). One that fails is named in a note and left out; when all fail,
        the error names every one (exit 75)."""
        def probe(url: str) -> ComfyTestError | None:
            try:
                check(url)
            except ComfyTestError as exc:
                return exc
            return None

        with ThreadPoolExecutor(max_workers=min(8, len(urls))) as workers:
            problems = list(workers.map(probe, urls))
        live = [ServerEntry(u) for u, p in zip(urls, problems) if p is None]
        failed = [(u, p) for u, p in zip(urls, problems) if p is not None]
        if not live:
            if len(urls) == 1:
                raise failed[0][1]
            raise ServerUnavailable(
                f"None of the {len(urls)} ComfyUI servers answers:\n"
                + "\n".join(f"  - {str(p).splitlines()[0]}" for _, p in failed) + f"\n{hint}"
            )
        notes = [f"{str(p).splitlines()[0]} The session ran on the other {len(live)} server(s)."
                 for _, p in failed]
        return cls(live, notes=notes)

    @classmethod
    def launch(cls, spec: LaunchSpec, dirs: Sequence[Path], timeout: float,
               gpus: Sequence[str] = ()) -> ServerPool:
        """One ComfyUI per folder in ``dirs`` (with ``gpus``: one per GPU), started in parallel.

        One that cannot start is stopped and left out, named with its log in a note; only
        when none starts is it an error (naming each, with the first one's log). The processes
        are forked from the calling thread (the main one: see ``keeper``), their readiness
        awaited on threads; an interrupt (Ctrl-C, SIGTERM) stops every one before it goes on."""
        servers = [LocalServer(_for_gpu(spec, gpus[i]) if gpus else spec, d) for i, d in enumerate(dirs)]
        labels = [f"GPU {g}" for g in gpus] if gpus else [f"server {i + 1}" for i in range(len(dirs))]
        if len(servers) == 1 and not gpus:
            labels = [""]
        with ThreadPoolExecutor(max_workers=len(servers)) as workers:
            try:
                problems = _start_all(servers, timeout, workers)
            except BaseException:
                for server in servers:
                    server.cancel()
                raise
        failed = [(label, p) for label, p in zip(labels, problems) if p is not None]
        live = [(s, label) for s, label, p in zip(servers, labels, problems) if p is None]
        notes = []
        for server, label, problem in zip(servers, labels, problems):
            if problem is not None:
                server.stop()
                notes.append(f"{label or 'the server'} could not start and was left out: "
                             f"{str(problem).splitlines()[0]} Log: {server.log_path}. "
                             f"The session ran on the other {len(live)} server(s).")
        if not live:
            raise _launch_failed(failed, gpus)
        entries = [ServerEntry(s.url, label, str(s.log_path)) for s, label in live]
        return cls(entries, [s for s, _ in live], notes=notes)

    def alive(self, index: int, probe: Callable[[str], bool]) -> bool:
        local = self.local[index]
        return local.alive if local is not None else probe(self.entries[index].url)

    def close(self, *, discard_files: bool = False) -> None:
        """Stop the launched servers; with ``discard_files`` also remove the output and temp
        files they wrote (their own folders: the checks kept what failures need)."""
        for server in self.local:
            if server is not None:
                server.stop()
                if discard_files:
                    server.discard_files()


def _start_all(servers: Sequence[LocalServer], timeout: float, workers: ThreadPoolExecutor) -> list[ServerError | None]:
    """Read each server's flags (in parallel), fork each here, await each (in parallel)."""
    def attempt(step: Callable[[LocalServer], None]) -> Callable[[LocalServer], ServerError | None]:
        def run(server: LocalServer) -> ServerError | None:
            try:
                step(server)
            except ServerError as exc:
                return exc
            return None
        return run

    problems = list(workers.map(attempt(LocalServer.read_flags), servers))
    for i, server in enumerate(servers):
        if problems[i] is None:
            problems[i] = attempt(LocalServer.spawn)(server)
    waiting = {i: workers.submit(attempt(lambda s: s.finish_start(timeout)), s)
               for i, s in enumerate(servers) if problems[i] is None}
    for i, future in waiting.items():
        problems[i] = future.result()
    return problems


def _for_gpu(spec: LaunchSpec, gpu: str) -> LaunchSpec:
    # the server then sees exactly one device, cuda:0, whatever its index on the machine
    return replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": gpu})


def _launch_failed(failed: Sequence[tuple[str, ServerError]], gpus: Sequence[str]) -> LaunchError:
    label, first = failed[0]
    names = ", ".join(lbl or "the server" for lbl, _ in failed)
    head = f"{len(failed)} of the servers could not start ({names})" if len(failed) > 1 else ""
    gpu_hint = (f"\n(--comfy-gpus {','.join(gpus)}: ComfyUI for {label} could not start; the log above "
                "says why — a GPU index this machine does not have shows up there)") if gpus else ""
    what = f"{label}: " if label else ""
    return LaunchError("\n".join(p for p in (head, f"{what}{first}") if p) + gpu_hint)





def pool_error(data: Mapping[str, Any]) -> ServerError:
    """The controller's failure to start or reach the servers, rebuilt in a worker."""
    kinds: dict[str, type[ServerError]] = {"LaunchError": LaunchError, "ServerUnavailable": ServerUnavailable}
    return kinds.get(str(data.get("kind")), ServerError)(str(data.get("error")))


def server_list(pool: ServerPool, stats: Callable[[str], Mapping[str, Any]], dead: Sequence[str]) -> list[dict[str, Any]]:
    """Every server of the session for the fingerprint: URL (no credentials), label, device
    (``stats(url)`` is its /system_stats)."""
    def describe(entry: ServerEntry) -> dict[str, Any]:
        info: dict[str, Any] = {"url": re.sub(r"//[^/@]*@", "//", entry.url), "label": entry.label or None,
                                "device": None, "died": entry.name in dead}
        if not info["died"]:
            try:
                devices = stats(entry.url).get("devices") or [{}]
                info["device"] = devices[0].get("name") if isinstance(devices[0], Mapping) else None
            except ComfyTestError:
                info["died"] = True
        return info

    with ThreadPoolExecutor(max_workers=min(8, len(pool.entries) or 1)) as workers:
        return list(workers.map(describe, pool.entries))


def death_lines(dead: Sequence[str], records: Sequence[Mapping[str, Any]], servers: int = 0) -> list[str]:
    """Per dead server: ``server X died during the session; 5 test(s) moved to another server``;
    when none of the ``servers`` is left, that the rest failed fast."""
    lines = []
    for name in dead:
        moved = sum(1 for r in records if (r.get("server") or {}).get("moved_from") == name)
        lines.append(f"server {name} died during the session; {moved} test(s) moved to another server")
    if dead and len(dead) >= servers:
        lines.append("no live server was left: the tests after that failed fast")
    return lines


__all__ = ["ServerEntry", "ServerPool", "bound_index", "death_lines", "log_tail", "pool_error", "server_list"]
