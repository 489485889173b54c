"""Memory while a prompt runs: ``GET /system_stats`` (and the server's RSS) sampled in the background.

``ResourceSampler`` (one per session) takes one reading as each prompt is queued (sent just
before it, not waited for: the *idle* figures), then one every ``interval_ms`` on its daemon
thread until the run ends; ``stop()`` turns them into a frozen ``RunMemory``: the idle and the
peak of each figure.

* **VRAM used** = ``vram_total - vram_free`` of the server's torch device (the whole device,
  every process on it); **torch VRAM** = ``torch_vram_total - torch_vram_free``, what torch's
  allocator of the ComfyUI process holds in use (on CUDA: the active bytes of its pool).
* **RAM used** = ``ram_total - ram_free`` of the server's machine (every process on it).
* **RSS** = resident memory of the ComfyUI process itself, from ``/proc/<pid>/statm``: only when
  the server runs on this machine and its process is known (comfytest started it, or found it
  listening on the URL's loopback port).

When the server is such a local process on a CPU device, the sampler reads ``/proc/meminfo``
instead of asking the server (``meminfo_stats``: the same figures); ``RunMemory.source`` says
which (``system_stats`` or ``proc``).

On a CPU (or Apple ``mps``) device ComfyUI reports system RAM as the device's memory, so the
VRAM figures would repeat the RAM ones: they are left ``None`` and ``device_type`` says why.
The sampler never raises: a sample that fails is counted in ``failed`` and skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: devices whose "VRAM" in /system_stats is the system RAM (comfy.model_management)
HOST_MEMORY_DEVICES = ("cpu", "mps")
#: the per-run figures whose peaks are compared and summarised over repeated runs
PEAK_FIELDS = ("vram_used_peak_bytes", "torch_vram_used_peak_bytes", "ram_used_peak_bytes", "rss_peak_bytes")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

StatsReader = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading: bytes as ComfyUI reports them, ``None`` where a figure is absent."""

    at_ms: float
    device_type: str | None = None
    device_name: str | None = None
    ram_total: int | None = None
    ram_free: int | None = None
    vram_total: int | None = None
    vram_free: int | None = None
    torch_vram_total: int | None = None
    torch_vram_free: int | None = None
    rss: int | None = None


def parse_sample(stats: Mapping[str, Any], at_ms: float, rss: int | None = None) -> Sample:
    """A ``Sample`` from a ``/system_stats`` reply (first device only: the one ComfyUI uses)."""
    raw_system = stats.get("system")
    system: Mapping[str, Any] = raw_system if isinstance(raw_system, Mapping) else {}
    devices = stats.get("devices")
    device = devices[0] if isinstance(devices, list) and devices and isinstance(devices[0], Mapping) else {}
    return Sample(
        at_ms=at_ms,
        device_type=_str(device.get("type")), device_name=_str(device.get("name")),
        ram_total=_int(system.get("ram_total")), ram_free=_int(system.get("ram_free")),
        vram_total=_int(device.get("vram_total")), vram_free=_int(device.get("vram_free")),
        torch_vram_total=_int(device.get("torch_vram_total")), torch_vram_free=_int(device.get("torch_vram_free")),
        rss=rss,
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class RunMemory:
    """Idle (just before queueing) and peak memory of one run, in bytes; see the module docstring."""

    samples: int
    failed: int
    interval_ms: int
    source: str  # "system_stats" (GET /system_stats) or "proc" (/proc/meminfo of this machine)
    duration_ms: float
    device_type: str | None
    device_name: str | None
    vram_total_bytes: int | None
    vram_used_idle_bytes: int | None
    vram_used_peak_bytes: int | None
    torch_vram_used_idle_bytes: int | None
    torch_vram_used_peak_bytes: int | None
    ram_total_bytes: int | None
    ram_used_idle_bytes: int | None
    ram_used_peak_bytes: int | None
    rss_idle_bytes: int | None
    rss_peak_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize_samples(
    samples: Sequence[Sample], *, interval_ms: int, failed: int = 0, source: str = "system_stats",
) -> RunMemory | None:
    """Idle = the first sample, peak = the highest use over all of them; None without samples."""
    if not samples:
        return None
    first = samples[0]
    host = first.device_type in HOST_MEMORY_DEVICES

    def used(total: str, free: str) -> list[int | None]:
        return [_minus(getattr(s, total), getattr(s, free)) for s in samples]

    vram = [] if host else used("vram_total", "vram_free")
    torch_vram = [] if host else used("torch_vram_total", "torch_vram_free")
    ram = used("ram_total", "ram_free")
    rss = [s.rss for s in samples]
    return RunMemory(
        samples=len(samples), failed=failed, interval_ms=interval_ms, source=source,
        duration_ms=round(samples[-1].at_ms - first.at_ms, 3),
        device_type=first.device_type, device_name=first.device_name,
        vram_total_bytes=None if host else first.vram_total,
        vram_used_idle_bytes=_first(vram), vram_used_peak_bytes=_peak(vram),
        torch_vram_used_idle_bytes=_first(torch_vram), torch_vram_used_peak_bytes=_peak(torch_vram),
        ram_total_bytes=first.ram_total,
        ram_used_idle_bytes=_first(ram), ram_used_peak_bytes=_peak(ram),
        rss_idle_bytes=_first(rss), rss_peak_bytes=_peak(rss),
    )


def _minus(total: int | None, free: int | None) -> int | None:
    return None if total is None or free is None else max(total - free, 0)


def _first(values: Sequence[int | None]) -> int | None:
    return values[0] if values else None


def _peak(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


# --- the server process -----------------------------------------------------------------------


def process_rss(pid: int) -> int | None:
    """Resident bytes of ``pid`` (Linux ``/proc``), None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class LocalComfyUI:
    """The ComfyUI process behind a loopback URL (``pid``), or why there is none (``why_not``:
    set when a process of this user answers there that is not that ComfyUI)."""

    pid: int | None
    why_not: str | None = None


def find_comfyui(port: int, argv: Sequence[Any] | None, proc: Path = Path("/proc")) -> LocalComfyUI:
    """The ComfyUI process that answers on loopback ``port``, recognised by its command line.

    ``argv`` is what the server says it was started with (``/system_stats`` ``system.argv``):
    the process must have exactly that command line (after the interpreter). A proxy or port
    forwarder in front of ComfyUI listens on ``port`` too, but its command line differs; then the
    ComfyUI behind it is looked for on the port its own ``--port`` names (8188 by default), and
    found when it runs on this machine. Without ``argv`` (a server that does not report it)
    the command line must name ``main.py`` or ``comfy``.
    """
    argv = [str(a) for a in argv] if isinstance(argv, list) and argv else None
    ports = [port] + [p for p in ([_argv_port(argv)] if argv else []) if p != port]
    for candidate in ports:
        for pid in _listening_pids(candidate, proc):
            if _is_comfyui(proc / str(pid), argv):
                return LocalComfyUI(pid)
    holders = _listening_pids(port, proc)
    if not holders:
        return LocalComfyUI(None)
    command = _short(" ".join(_cmdline(proc / str(holders[0]))))
    return LocalComfyUI(None, (
        f"no RSS figure: the process listening on port {port} (pid {holders[0]}: {command}) is not "
        "the ComfyUI that answers there" + (f" (started as {_short(' '.join(argv))})" if argv else "")
        + ", so it is a proxy or port forwarder, and that ComfyUI is not a process of this user on this machine"
    ))


def _short(command: str, width: int = 120) -> str:
    """One line; a long command keeps its start and its end (where a forwarder names its target)."""
    command = " ".join(command.split())
    return command if len(command) <= width else f"{command[:width // 2]} … {command[-(width // 2 - 3):]}"


def _argv_port(argv: Sequence[str]) -> int:
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--port=") else argv[i + 1] if arg == "--port" and i + 1 < len(argv) else None
        if value is not None and value.isdigit():
            return int(value)
    return 8188  # ComfyUI's default


def _cmdline(entry: Path) -> list[str]:
    try:
        raw = (entry / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1]]


def _is_comfyui(entry: Path, argv: Sequence[str] | None) -> bool:
    if argv is None:
        return _looks_like_comfyui(entry)
    cmd, n = _cmdline(entry), len(argv)
    return (len(cmd) > n and cmd[len(cmd) - n + 1:] == list(argv[1:])
            and os.path.basename(cmd[len(cmd) - n]) == os.path.basename(argv[0]))


def _listening_pids(port: int, proc: Path) -> list[int]:
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return []
    return [int(e.name) for e in proc.iterdir() if e.name.isdigit() and _holds_socket(e, inodes)]


def listening_pid(port: int, proc: Path = Path("/proc")) -> int | None:
    """The process of this user that listens on TCP ``port`` and looks like ComfyUI, if any.

    For ``--comfy-url`` servers on this machine: the listening socket's inode from
    ``/proc/net/tcp{,6}``, then the process holding it. A port forwarder (docker-proxy, ssh)
    also listens there; its RSS is not ComfyUI's, so the command line must name ``main.py`` or
    ``comfy``. Processes of other users cannot be read and are never found.
    """
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    for entry in proc.iterdir():
        if entry.name.isdigit() and _looks_like_comfyui(entry) and _holds_socket(entry, inodes):  # cheap test first
            return int(entry.name)
    return None


def _listening_inodes(port: int, proc: Path) -> set[str]:
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(f"socket:[{cols[9]}]")
    return found


def _holds_socket(entry: Path, inodes: set[str]) -> bool:
    try:
        return any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir())
    except OSError:
        return False


def _looks_like_comfyui(entry: Path) -> bool:
    try:
        cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").lower()
    except OSError:
        return False
    return b"main.py" in cmdline or b"comfy" in cmdline


def meminfo_stats(device: Mapping[str, Any], proc: Path = Path("/proc")) -> dict[str, Any]:
    """The figures ``/system_stats`` would give for a CPU device, read from ``/proc/meminfo``.

    ComfyUI's ``ram_free`` is psutil's ``virtual_memory().available``, which on Linux is
    ``MemAvailable``: the same number, without a request the server has to answer (its
    handler costs it a few ms of CPU, which a 2-core machine feels in short runs).
    """
    fields: dict[bytes, int] = {}
    with open(proc / "meminfo", "rb") as fh:
        for line in fh:
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemAvailable"):
                fields[name] = int(rest.split()[0]) * 1024
                if len(fields) == 2:  # both come first in the file: the rest is not read
                    break
    return {"system": {"ram_total": fields.get(b"MemTotal"), "ram_free": fields.get(b"MemAvailable")},
            "devices": [{"name": device.get("name"), "type": device.get("type")}]}


# --- sampling ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    """What the sampler gathers for one run (mutable, guarded by the sampler's lock)."""

    next_at: float  # clock() of the next reading, in seconds
    samples: list[Sample] = field(default_factory=list)
    failed: int = 0
    first: threading.Event = field(default_factory=threading.Event)  # the idle reading is back
    ended: bool = False  # finish(): no further readings
    closed: bool = False  # stop(): a reading still in flight is dropped


class ResourceSampler:
    """Samples ``read_stats()`` (and the RSS of ``pid``) from ``start()`` to ``stop()`` of each run.

    One sampler serves a whole session: its one daemon thread sleeps between runs, so a run
    pays for no thread start. Readings are made on that thread, so a run never waits for one:
    ``stop()`` summarises the readings that have come back (a reading still in flight is
    dropped) and waits only when not even the idle reading is back yet. A ``cheap`` reader (a
    local file, not a request) takes the idle reading on the caller's thread instead, which
    saves waking the thread for runs shorter than the interval. A run shorter than the
    interval has one reading: its idle and peak figures are the same.
    """

    def __init__(
        self, read_stats: StatsReader, interval_ms: int, pid: int | None = None,
        clock: Callable[[], float] = time.monotonic, source: str = "system_stats", *, cheap: bool = False,
    ) -> None:
        self.read_stats = read_stats
        self.source = source
        self.interval_ms = interval_ms
        self.pid = pid
        self.clock = clock
        self.cheap = cheap
        self._run: _Run | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread waits with no deadline (no run going on)

    @property
    def samples(self) -> list[Sample]:
        """The readings of the current (or last) run so far."""
        with self._lock:
            return list(self._run.samples) if self._run is not None else []

    def start(self) -> None:
        """A run starts: the idle reading at once (it goes out before the caller queues its
        prompt, but is not waited for unless ``cheap``), then one per interval."""
        now = self.clock()
        run = _Run(next_at=now if not self.cheap else now + self.interval_ms / 1000)
        with self._lock:
            if self._run is not None:
                self._run.closed = self._run.ended = True
            self._run = run
        if self.cheap:
            self._read(run)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="comfytest-sampler", daemon=True)
                self._thread.start()
            elif self._idle or not self.cheap:  # a sleeping thread has a deadline before next_at
                self._wake.notify()

    def _loop(self) -> None:
        interval = self.interval_ms / 1000
        me = threading.current_thread()
        while True:
            with self._lock:
                run = self._run
                if self._thread is not me:  # closed: a later start() has a thread of its own
                    return
                if run is None or run.ended:
                    self._idle = True
                    self._wake.wait()
                    self._idle = False
                    continue
                delay = run.next_at - self.clock()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                run.next_at = max(run.next_at + interval, self.clock())
            self._read(run)

    def _read(self, run: _Run) -> None:
        at_ms = self.clock() * 1000
        try:
            stats = self.read_stats()
            rss = process_rss(self.pid) if self.pid is not None else None
            sample: Sample | None = parse_sample(stats, at_ms, rss)
        except Exception:  # a slow or failed reading must never fail the run it watches
            sample = None
        with self._lock:
            if not run.closed:
                if sample is None:
                    run.failed += 1
                else:
                    run.samples.append(sample)
        run.first.set()

    def finish(self) -> None:
        """The run ended: no further readings (the thread goes idle when it next wakes)."""
        with self._lock:
            if self._run is not None:
                self._run.ended = True

    def stop(self, first_timeout: float = 5.0) -> RunMemory | None:
        """End the run; its idle and peak figures from the readings that came back."""
        with self._lock:
            run = self._run
            if run is None:
                return None
            run.ended = True
        run.first.wait(first_timeout)
        with self._lock:
            run.closed = True
            samples = sorted(run.samples, key=lambda s: s.at_ms)
            failed = run.failed
        return summarize_samples(samples, interval_ms=self.interval_ms, failed=failed, source=self.source)

    def close(self) -> None:
        """End the thread (the session is over); a later ``start()`` makes a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
            if self._run is not None:
                self._run.closed = self._run.ended = True
            self._wake.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)  # a reading in flight may outlast this; its thread then just ends
