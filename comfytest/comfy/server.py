"""Starting and stopping a local ComfyUI process: free port, own folders, log, readiness.

``LocalServer`` launches ``main.py`` of a ComfyUI folder on a free port with output and temp
folders of its own (SaveImage lists the output folder on every save, so a shared folder that
fills up slows every run), waits until ``/system_stats`` answers, keeps the log, and stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from comfytest.comfy.launchargs import ComfyFlags, failure_hint, own_state_args, read_flags
from comfytest.errors import LaunchError

_READY_POLL_S = 0.2
KEEPER = Path(__file__).with_name("keeper.py")  # runs in front of ComfyUI: see its docstring


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it, so a busy port is never chosen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_comfyui_dir(path: Path) -> None:
    """Raise LaunchError unless ``path`` looks like a ComfyUI checkout."""
    if not path.is_dir():
        raise LaunchError(f"--comfy-launch {path}: no such folder; expected a ComfyUI checkout")
    missing = [name for name in ("main.py", "nodes.py", "folder_paths.py", "comfy") if not (path / name).exists()]
    if missing:
        raise LaunchError(
            f"--comfy-launch {path} is not a ComfyUI folder: it lacks {', '.join(missing)}. "
            "Expected the root of a ComfyUI checkout (the folder with main.py, nodes.py, "
            "folder_paths.py and comfy/)."
        )


@dataclass
class LaunchSpec:
    """What to start: which ComfyUI, with which python, arguments and folders."""

    comfyui_dir: Path
    python: Path = field(default_factory=lambda: Path(sys.executable))
    args: Sequence[str] = ()
    base_dir: Path | None = None
    input_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"


class LocalServer:
    """One ComfyUI process owned by this session."""

    def __init__(self, spec: LaunchSpec, session_dir: Path | None = None) -> None:
        self.spec = spec
        self.session_dir = session_dir or Path(tempfile.mkdtemp(prefix="comfytest-server-"))
        self.log_path = self.session_dir / "comfyui.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.flags = ComfyFlags(None)  # what its main.py --help lists; read in start()
        self._lifeline: int | None = None  # write end of the keeper's pipe: open while we live
        self._cancelled = False

    @property
    def url(self) -> str:
        # ComfyUI serves https (and wss) when it was given a certificate (--tls-certfile)
        scheme = "https" if any(str(a).startswith("--tls-certfile") for a in self.spec.args) else "http"
        return f"{scheme}://{self.spec.host}:{self.port}"

    def command(self) -> list[str]:
        spec = self.spec
        cmd = [str(spec.python), "main.py", "--listen", spec.host, "--port", str(self.port)]
        if spec.base_dir is not None:
            cmd += ["--base-directory", str(spec.base_dir)]
        out, tmp = self.session_dir / "output", self.session_dir / "temp"
        cmd += ["--output-directory", str(out), "--temp-directory", str(tmp)]
        if spec.input_dir is not None:
            cmd += ["--input-directory", str(spec.input_dir)]
        cmd += own_state_args(self.session_dir, self.flags)
        return cmd + list(spec.args)

    def file_folders(self) -> dict[str, Path]:
        """The folders this server writes output files to, by ``/view`` type (its own; ComfyUI
        puts its temp folder inside the ``--temp-directory`` it is given)."""
        return {"output": self.session_dir / "output", "temp": self.session_dir / "temp" / "temp"}

    def discard_files(self) -> None:
        """Remove the output and temp folders (comfytest's own; the log stays)."""
        for folder in (self.session_dir / "output", self.session_dir / "temp"):
            shutil.rmtree(folder, ignore_errors=True)

    def start(self, timeout: float) -> None:
        """Start on a free port and wait for readiness; retries once if the port was taken.
        Whatever interrupts it (Ctrl-C, SIGTERM as ``KeyboardInterrupt``), the process is
        stopped before the exception goes on."""
        self.read_flags()
        self.spawn()
        self.finish_start(timeout)

    def read_flags(self) -> None:
        """What this ComfyUI's ``main.py --help`` lists (own user folder and database flags)."""
        self.flags = read_flags(self.spec.python, self.spec.comfyui_dir, self._env())

    def spawn(self) -> None:
        """Start the process on a free port (``read_flags`` first); does not wait for it."""
        self.port = free_port(self.spec.host)
        try:
            self._spawn()
        except BaseException:
            self.stop()
            raise

    def finish_start(self, timeout: float) -> None:
        """Wait for readiness; on a port taken meanwhile, start again on another (twice)."""
        try:
            for _attempt in range(2):
                if self._wait_ready(timeout):
                    return
                if self._cancelled or not self._port_clash():
                    break
                self.stop()
                self.spawn()
            if self._wait_ready(timeout):
                return
        except BaseException:
            self.stop()
            raise
        raise LaunchError(self._launch_failure(timeout))

    def cancel(self) -> None:
        """Stop a start in progress (from another thread too): no retry follows."""
        self._cancelled = True
        self.stop()

    def _spawn(self) -> None:
        for sub in ("output", "temp"):
            (self.session_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.spec.input_dir is not None:
            self.spec.input_dir.mkdir(parents=True, exist_ok=True)
        env = self._env()
        watch, self._lifeline = os.pipe()  # the keeper's watchdog reads EOF once we are gone
        main = threading.current_thread() is threading.main_thread()
        # the parent-death signal fires when the forking *thread* ends: only from the main one
        keeper = [str(self.spec.python), str(KEEPER), str(watch), str(os.getpid()), "1" if main else "0"]
        log = open(self.log_path, "ab")
        blocked = _block_signals() if main else None
        try:  # no signal handler runs between the fork and self.proc being set
            self.proc = subprocess.Popen(
                keeper + self.command(), cwd=self.spec.comfyui_dir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True, pass_fds=(watch,),
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {self.spec.python} main.py in {self.spec.comfyui_dir}: {exc}") from None
        finally:
            log.close()
            os.close(watch)
            if blocked is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if self._cancelled:  # cancel() ran on another thread while this one forked
            self.stop()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env}

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with requests.Session() as http, warnings.catch_warnings():
            # our own child process on this machine: readiness only; the client verifies TLS.
            # verify per request: REQUESTS_CA_BUNDLE in the environment overrides a session's
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            while time.monotonic() < deadline:
                if not self.alive:
                    return False
                try:
                    if http.get(self.url + "/system_stats", timeout=2, verify=False).status_code == 200:
                        return True
                except requests.RequestException:
                    pass
                time.sleep(_READY_POLL_S)
        return False

    def _port_clash(self) -> bool:
        tail = self.log_tail(20)
        return "address already in use" in tail.lower() or "errno 98" in tail.lower()

    def _launch_failure(self, timeout: float) -> str:
        state = (
            f"exited with code {self.proc.returncode}" if self.proc and self.proc.poll() is not None
            else f"did not answer GET /system_stats within {timeout:.0f} s"
        )
        hint = failure_hint(self.log_tail(200), self.spec.args)
        return (
            f"ComfyUI in {self.spec.comfyui_dir} {state}.\n" + (f"{hint}\n" if hint else "")
            + f"Command: {' '.join(self.command())}\nLog: {self.log_path}\n"
            f"--- last lines of the log ---\n{self.log_tail()}"
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                tail = deque(fh, maxlen=lines)
        except OSError:
            return "(no log)"
        return b"".join(tail).decode("utf-8", "replace").rstrip()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL after ``grace`` seconds; then the lifeline
        is closed (the keeper's watchdog ends what is left of the group)."""
        proc, self.proc = self.proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        finally:
            lifeline, self._lifeline = self._lifeline, None
            if lifeline is not None:
                os.close(lifeline)


def _block_signals() -> set[int | signal.Signals]:
    """Block the signals that end a session (the keeper unblocks them in the child)."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
