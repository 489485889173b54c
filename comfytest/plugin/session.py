"""One test session's ComfyUI: getting a server (URL, launch, embedded), running workflows on it.

``open_session(settings)`` returns a ``ComfySession`` whatever the source of the server; the
``comfy`` fixture is that object. Once the server is found dead, every later call fails fast
with the same cause (no hang, no traceback per test).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from PIL import Image

from comfytest.comfy.client import ComfyClient
from comfytest.comfy.embedded import TORCH, default_home, load_embedded
from comfytest.comfy.execution import Runner, RunResult
from comfytest.comfy.localfiles import GuessedFolders
from comfytest.comfy.nodepacks import check_pack, pid_alive, session_folder
from comfytest.comfy.nodepacks import prepare as prepare_packs
from comfytest.comfy.packdeps import ensure as ensure_packdeps
from comfytest.comfy.packdeps import pinned_by
from comfytest.comfy.packimport import check_log
from comfytest.comfy.resources import HOST_MEMORY_DEVICES, ResourceSampler, find_comfyui, meminfo_stats
from comfytest.comfy.server import LaunchSpec, LocalServer, check_comfyui_dir
from comfytest.comfy.servers import ServerEntry, ServerPool, bound_index, log_tail
from comfytest.errors import (
    ComfyTestError,
    ConfigError,
    NodePackImportError,
    ProtocolError,
    ServerError,
    ServerUnavailable,
)
from comfytest.plugin.settings import Settings
from comfytest.workflows.conversion import Conversion, UiConverter
from comfytest.workflows.preflight import NodeOrigin
from comfytest.workflows.uiformat import node_origins
from comfytest.workflows.workflow import (
    AppliedPatch,
    PinnedSeed,
    Workflow,
    apply_patches,
    content_name,
    is_ui_format,
    parse_workflow,
    pin_seeds,
    read_json,
    rewrite_inputs,
    seed_inputs,
    upload_input,
)

InputFile = str | Path | bytes | Image.Image
T = TypeVar("T")
E = TypeVar("E", bound=ComfyTestError)

EXIT_GRACE_S = 3.0  # how long a dropped connection waits for a launched server to report its exit


@dataclass(frozen=True)
class Prepared:
    """A workflow ready to queue, with what was pinned and patched (for reports)."""

    workflow: Workflow
    seeds: tuple[PinnedSeed, ...]
    patches: tuple[AppliedPatch, ...]


def _input_bytes(source: InputFile) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, ".png"
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    path = Path(source)
    try:
        return path.read_bytes(), path.suffix or ".png"
    except OSError as exc:
        raise ConfigError(f"input file {path} cannot be read: {exc.strerror}") from None

EMBEDDED_THREADS = "2"  # pinned: thread count changes CPU results by ±1 (TINY_CHECKPOINT.md)


class ComfySession:
    """A connected server plus what a session learns about it (object_info, system_stats).

    With a pool of several servers the session is bound to one of them; when that one dies,
    the test that was running fails (with the log) and the session moves to the next live
    server of the pool (``moved_from`` names the dead one). Only when none is left does every
    later call fail fast."""

    def __init__(self, client: ComfyClient, settings: Settings, server: LocalServer | None = None, *,
                 pool: ServerPool | None = None, index: int = 0, owns_pool: bool = False) -> None:
        self.client = client
        self.settings = settings
        self.server = server
        self.pool = pool or ServerPool([ServerEntry(client.url, "", str(server.log_path) if server else None)],
                                       [server])
        self.index = index
        self.owns_pool = owns_pool or pool is None
        self.runner = Runner(client, timeout=settings.timeout, idle_timeout=settings.idle_timeout)
        self.runner.local_files = server.file_folders() if server is not None else {}
        self.broken: ComfyTestError | None = None
        self.dead: list[ServerEntry] = []  # servers that died under this session, in order
        self.moved_from: ServerEntry | None = None  # the dead server this session left
        self._object_info: dict[str, Any] | None = None
        self._system_stats: dict[str, Any] | None = None
        self._uploaded: dict[str, str] = {}
        self._guessed = False  # whether a --comfy-url server's folders were guessed (localfiles)
        self._converter: UiConverter | None = None
        #: how each UI-format workflow was converted (by source path, "<workflow>" without one)
        self.conversions: dict[str, Conversion] = {}
        #: per UI-format workflow: node id → where its class comes from (preflight's advice)
        self.node_origins: dict[str, dict[str, NodeOrigin]] = {}
        self.server_pid = self._server_pid()
        self._sampler: ResourceSampler | None = None

    # ------------------------------------------------------------ resources

    def _server_pid(self) -> int | None:
        """The ComfyUI process, for its RSS: ours, else one of this user's on a loopback URL."""
        if self.server is not None and self.server.proc is not None:
            return self.server.proc.pid
        parts = urlsplit(self.client.url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not parts.port:
            return None
        try:  # the server's own command line tells ComfyUI from a proxy in front of it
            self._system_stats = self._system_stats or self.client.system_stats(timeout=3)
            argv = (self._system_stats.get("system") or {}).get("argv")
        except ComfyTestError:
            argv = None
        found = find_comfyui(parts.port, argv)
        if found.why_not and found.why_not not in self.pool.notes:
            self.pool.notes.append(f"{self.entry.name}: {found.why_not}.")
        return found.pid

    def sampler(self) -> ResourceSampler | None:
        """The session's memory sampler (made at the first run, kept for every later one):
        it reads /system_stats on this session's HTTP connection, or /proc/meminfo for a CPU
        server on this machine (the same figures; see ``resources``). None when turned off."""
        interval = self.settings.sample_ms
        if interval <= 0:
            return None
        if self._sampler is None:
            device = self._device()
            if (self.server_pid is not None and device.get("type") in HOST_MEMORY_DEVICES
                    and os.path.isfile("/proc/meminfo")):
                self._sampler = ResourceSampler(lambda: meminfo_stats(device), interval, self.server_pid,
                                                source="proc", cheap=True)
            else:
                timeout = max(2.0, interval / 1000)  # a slow reading delays only its own sample
                client = self.client
                self._sampler = ResourceSampler(lambda: client.system_stats(timeout=timeout), interval,
                                                self.server_pid)
        return self._sampler

    def _close_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def _device(self) -> Mapping[str, Any]:
        try:
            devices = self.system_stats().get("devices") or [{}]
        except ComfyTestError:
            return {}
        return devices[0] if isinstance(devices[0], Mapping) else {}

    @property
    def entry(self) -> ServerEntry:
        """The server this session runs on now."""
        return self.pool.entries[self.index]

    def server_info(self) -> dict[str, Any]:
        """``{"url", "label", "device"}`` of the current server, for the report (no credentials)."""
        try:
            devices = self.system_stats().get("devices") or [{}]
        except ComfyTestError:
            devices = [{}]
        device = devices[0].get("name") if isinstance(devices[0], Mapping) else None
        info: dict[str, Any] = {"url": re.sub(r"//[^/@]*@", "//", self.url), "label": self.entry.label or None,
                                "device": device}
        if self.moved_from is not None:
            info["moved_from"] = self.moved_from.name
        return info

    @property
    def url(self) -> str:
        return self.client.url

    def object_info(self) -> dict[str, Any]:
        """``/object_info``, fetched once per session."""
        if self._object_info is None:
            self._object_info = self.guard(self.client.object_info)
        return self._object_info

    def convert_ui(self, data: Mapping[str, Any], source: Path | None = None) -> Workflow:
        """A UI-format workflow as an API prompt, by ``--comfy-convert`` (see ``conversion``)."""
        if self._converter is None:
            self._converter = UiConverter(self.settings.convert, self.url, self.settings.chromium)
        converter = self._converter
        workflow, how = self.guard(lambda: converter.convert(data, self.object_info(), source))
        self.conversions[str(source) if source else "<workflow>"] = how
        self.node_origins[str(source) if source else "<workflow>"] = node_origins(data, source)
        return workflow

    def server_version(self) -> str | None:
        """ComfyUI's version as ``/system_stats`` reports it (None when it does not)."""
        try:
            version = (self.system_stats().get("system") or {}).get("comfyui_version")
        except ComfyTestError:
            return None
        return str(version) if version else None

    def system_stats(self) -> dict[str, Any]:
        if self._system_stats is None:
            self._system_stats = self.guard(self.client.system_stats)
        return self._system_stats

    def run(
        self,
        workflow: Workflow | Mapping[str, Any] | str | Path,
        *,
        seed: int | None = None,
        patches: Mapping[str, Mapping[str, Any]] | None = None,
        inputs: Mapping[str, InputFile] | None = None,
        timeout: float | None = None,
        check: bool = True,
        fetch_images: bool = True,
    ) -> RunResult:
        """Pin seeds, apply patches, upload inputs, run; raises on failure unless ``check=False``.

        ``seed`` defaults to ``--comfy-seed`` (unset: the seeds written in the workflow);
        ``patches`` is ``{selector: {input: value}}``; ``inputs`` maps a LoadImage selector to
        a file path, bytes or PIL image, uploaded under a content-addressed name.
        """
        __tracebackhide__ = True
        prepared = self.prepare(workflow, seed=seed, patches=patches, inputs=inputs)
        result = self.run_prompt(prepared.workflow.to_prompt(), timeout=timeout, fetch_images=fetch_images)
        result = replace(result, seeds=prepared.seeds, patches=prepared.patches)
        if check:
            result.raise_for_status()
        return result

    def prepare(
        self,
        workflow: Workflow | Mapping[str, Any] | str | Path,
        *,
        seed: int | None = None,
        patches: Mapping[str, Mapping[str, Any]] | None = None,
        inputs: Mapping[str, InputFile] | None = None,
    ) -> Prepared:
        """The workflow as it will run: seeds pinned, patches applied, inputs uploaded."""
        info = self.object_info()
        wf = self._as_workflow(workflow)
        seed = seed if seed is not None else self.settings.seed
        if seed is None:  # keep the written seeds, but report them as the pinned values
            pins = tuple(
                PinnedSeed(n, wf.nodes[n].class_type, name, wf.nodes[n].inputs[name], wf.nodes[n].inputs[name])
                for n, name in seed_inputs(wf, info)
            )
        else:
            wf, pins = pin_seeds(wf, seed, info)
        wf, applied = apply_patches(wf, patches or {}, info)
        if inputs:
            folders = {sel: upload_input(wf, sel, info)[1] for sel in inputs}
            wf = rewrite_inputs(wf, {sel: self.upload(f, folders[sel]) for sel, f in inputs.items()}, info)
        return Prepared(wf, pins, applied)

    def _as_workflow(self, value: Workflow | Mapping[str, Any] | str | Path) -> Workflow:
        if isinstance(value, Workflow):
            return value
        path, data = (Path(value), read_json(Path(value))) if isinstance(value, (str, Path)) else (None, dict(value))
        if is_ui_format(data):
            return self.convert_ui(data, path)
        return parse_workflow(data, path)

    def upload(self, source: InputFile, subfolder: str = "") -> str:
        """Upload an input file (image, audio, video, 3D...) under a content-addressed name
        (same bytes, same name) into ``input/<subfolder>``."""
        data, suffix = _input_bytes(source)
        name = content_name(data, suffix)
        key = f"{subfolder}/{name}"
        if key not in self._uploaded:
            self._uploaded[key] = self.guard(
                lambda: self.client.upload_image(data, name, subfolder=subfolder, overwrite=True))
        return self._uploaded[key]

    def run_prompt(self, prompt: Mapping[str, Any], **kw: Any) -> RunResult:
        """Run an API-format prompt as it is (no seed pinning, no patches)."""
        self.runner.sampler = self.sampler()
        if self.server is None and not self._guessed:  # a --comfy-url server: on this machine?
            self._guessed = True
            self.runner.guessed_files = GuessedFolders.of(self.client.url, self.system_stats())
        return self.guard(lambda: self.runner.run(prompt, **kw))

    def guard(self, call: Callable[[], T]) -> T:
        """Call ``call``; a dead server marks the session broken so later tests fail fast."""
        __tracebackhide__ = True
        if self.broken is not None:
            # the first failure carried the log; later ones say only why they did not run
            fast = type(self.broken)(f"(failing fast) {str(self.broken).splitlines()[0]}")
            fast.server_log_tail = ""
            raise fast
        try:
            return call()
        except ServerError as exc:
            if self._server_gone():
                died = self._died(exc)
                self.dead.append(self.entry)
                if not self._fail_over():
                    self.broken = died
                raise died from None
            raise self.with_log(exc) from None

    def _server_gone(self) -> bool:
        """Dead (our process exited) or frozen (alive but silent, e.g. SIGSTOP or a stalled link)."""
        if self.server is not None and not self.server.alive:
            return True
        return not self._answers(self.url)

    def _answers(self, url: str) -> bool:
        try:
            server_stats(url, self.settings, timeout=min(3.0, self.client.request_timeout))
        except ComfyTestError:
            return False
        return True

    def _fail_over(self) -> bool:
        """Move to the next live server of the pool; False when none is left."""
        count = len(self.pool.entries)
        dead = {e.url for e in self.dead}
        for step in range(1, count):
            index = (self.index + step) % count
            entry = self.pool.entries[index]
            if entry.url not in dead and self.pool.alive(index, self._answers):
                self.moved_from = self.moved_from or self.entry
                self._bind(index)
                return True
        return False

    def _bind(self, index: int) -> None:
        entry = self.pool.entries[index]
        self.client.close()
        self.index = index
        self.server = self.pool.local[index]
        self.client = _client(entry.url, self.settings, self.client.hint)
        observers = self.runner.observers  # live progress goes on on the next server
        self.runner = Runner(self.client, timeout=self.settings.timeout, idle_timeout=self.settings.idle_timeout)
        self.runner.local_files = self.server.file_folders() if self.server is not None else {}
        self.runner.observers = observers
        self._guessed = False
        self._object_info = self._system_stats = None  # another server: other nodes, models, device
        self._uploaded = {}
        self._close_sampler()  # it read the dead server: the next run makes one for this one
        self.server_pid = self._server_pid()

    def _died(self, exc: ComfyTestError) -> ServerUnavailable:
        if self.server is not None and self.server.proc is None:
            return self.with_log(ServerUnavailable(str(exc)))
        code = None
        if self.server is not None and self.server.proc is not None:
            # a dropped connection from a server we own usually means it is exiting: give the OS
            # a moment to report it (a busy machine reaps it later), so the message says why
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.proc.wait(timeout=EXIT_GRACE_S)
            code = self.server.proc.poll()
        what = f"exited (code {code})" if code is not None else "stopped answering"
        label = f" ({self.entry.label})" if self.entry.label else ""
        err = ServerUnavailable(f"The ComfyUI server at {self.url}{label} {what} during the session: {exc}")
        return self.with_log(err)

    def log_tail(self) -> str | None:
        """The tail of the current server's log when comfytest started it (here or in the
        xdist controller); None for a server the user runs."""
        if self.server is not None:
            return self.server.log_tail()
        return log_tail(self.entry.log_path) if self.entry.log_path else None

    def with_log(self, exc: E) -> E:
        """Attach the tail of the server log when comfytest started the server."""
        tail = self.log_tail() if exc.server_log_tail is None else None
        if tail is not None:
            exc.server_log_tail = tail
        return exc

    def close(self) -> None:
        if self._converter is not None:
            self._converter.close()
        self._close_sampler()
        self.client.close()
        if self.owns_pool:  # every output was read and checked: the server's copies go
            self.pool.close(discard_files=not self.settings.keep_passed)


def _hint(settings: Settings) -> str:
    return (
        f"The URL came from {settings.url_source}. Start ComfyUI there, or set another URL with "
        "--comfy-url URL (ini comfy_url, env COMFYUI_URL); leave all three unset to let "
        "comfytest start its embedded ComfyUI."
    )


def open_session(settings: Settings, session_dir: Path, worker: str = "main",
                 pool: ServerPool | None = None) -> ComfySession:
    """A session on the worker's server of ``pool`` (given by the xdist controller), or on a
    pool connected to, launched or started here as the settings say (then owned here)."""
    owns = pool is None
    pool = pool or start_pool(settings, session_dir, worker)
    index = bound_index(worker, len(pool.entries))
    entry = pool.entries[index]
    hint = _hint(settings) if settings.urls else f"ComfyUI was started by comfytest; log: {entry.log_path}"
    client = _client(entry.url, settings, hint)
    return ComfySession(client, settings, pool.local[index], pool=pool, index=index, owns_pool=owns)


def start_pool(settings: Settings, session_dir: Path, worker: str = "main") -> ServerPool:
    """Every server of the session: the URLs (probed), or N launched/embedded servers."""
    if settings.urls:
        pool = ServerPool.attach(settings.urls, lambda url: _probe(url, settings), _hint(settings))
        if settings.custom_nodes:
            pool.notes.append(f"--comfy-custom-nodes ({', '.join(map(str, settings.custom_nodes))}) was not loaded: "
                              "comfytest loads packs only into servers it starts; a server given by URL needs "
                              "them in its own custom_nodes/")
        return pool
    count = settings.servers
    dirs = [_server_dir(session_dir, worker if count == 1 else f"{worker}.{k + 1}") for k in range(count)]
    spec = _launch_spec(settings)
    pool = ServerPool.launch(spec, dirs, settings.startup_timeout, settings.gpus)
    try:  # a pack that failed to import is reported once, here, not as N preflight failures
        for server in pool.local:
            if server is not None:
                check_log(server.log_path.read_text(encoding="utf-8", errors="replace"), str(server.log_path))
    except NodePackImportError:
        pool.close()
        raise
    return pool


def _client(url: str, settings: Settings, hint: str) -> ComfyClient:
    """A client whose every blocking call ends within the user's timeouts (30 s at most)."""
    request_timeout = min(30.0, settings.idle_timeout, settings.timeout)
    ca_bundle = str(settings.ca_bundle) if settings.ca_bundle else None
    return ComfyClient(url, settings.headers, hint=hint, request_timeout=request_timeout, ca_bundle=ca_bundle)


def server_stats(url: str, settings: Settings, timeout: float = 3.0) -> dict[str, Any]:
    """``/system_stats`` of one server, with the session's headers, CA bundle and timeouts."""
    return _client(url, settings, "").system_stats(timeout=timeout)


def _probe(url: str, settings: Settings) -> None:
    """Raise unless a ComfyUI answers at ``url`` (within 4 s)."""
    client = _client(url, settings, _hint(settings))
    check_comfyui(client, client.system_stats(timeout=min(4.0, client.request_timeout)))


def check_comfyui(client: ComfyClient, stats: Mapping[str, Any]) -> None:
    """Raise ProtocolError unless ``/system_stats`` looks like ComfyUI's (``system`` + ``devices``)."""
    if isinstance(stats.get("system"), Mapping) and isinstance(stats.get("devices"), list):
        return
    raise ProtocolError(
        f"{client.url} is not a ComfyUI server: GET /system_stats answered JSON without "
        f"ComfyUI's 'system' and 'devices' (keys: {', '.join(sorted(map(str, stats))[:8]) or 'none'}). "
        "Check the URL (and the path of a proxy in front of ComfyUI)."
    )


def _launch_spec(settings: Settings) -> LaunchSpec:
    if settings.launch is not None:
        check_comfyui_dir(settings.launch)
        python = settings.python or Path(sys.executable)
        home = settings.embedded_home or default_home()
        return _with_packs(LaunchSpec(comfyui_dir=settings.launch, python=python, args=settings.launch_args),
                           settings, home, settings.launch / "custom_nodes", pins={})
    emb = load_embedded(settings.embedded_home or default_home())
    spec = LaunchSpec(
        comfyui_dir=emb.comfyui_dir,
        python=settings.python or emb.python,
        args=("--cpu", *settings.launch_args),
        base_dir=emb.base_dir,
        env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", EMBEDDED_THREADS)},
    )
    constraints = resources.files("comfytest").joinpath("embedded_constraints.txt").read_text()
    pins = {**pinned_by(constraints, "comfytest/embedded_constraints.txt"),
            "torch": f"the embedded server's CPU torch ({TORCH})"}
    return _with_packs(spec, settings, emb.home, emb.base_dir / "custom_nodes", pins)


def _with_packs(spec: LaunchSpec, settings: Settings, home: Path, own_nodes: Path,
                pins: Mapping[str, str]) -> LaunchSpec:
    """The spec with the session's packs (and comfytest's nodepack) loaded, and the packs'
    requirements installed for the server's Python (``comfy.packdeps``)."""
    packs = [check_pack(p) for p in settings.custom_nodes]
    links = prepare_packs(packs, session_folder(home), own_nodes)
    deps = ensure_packdeps(spec.python, packs, home, pins)
    return replace(spec, args=(*links.args(), *spec.args), env={**spec.env, **deps.env({**os.environ, **spec.env})})


def _server_dir(results: Path, worker: str) -> Path:
    """``<results>/server-<worker>-<pid>``: the server's own output/temp folders and its log.

    One per process, so two sessions in one checkout never empty each other's output folder;
    folders left by processes that no longer run are removed (they are comfytest's own)."""
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("server-*-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = results / f"server-{worker}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


    return True
