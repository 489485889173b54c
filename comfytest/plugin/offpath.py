"""Work taken off a case's critical path (issue 26: a thousand cases near the server's own time).

- the case's baseline images are read, decoded and hashed on a thread while the server runs
  the prompt (``compare.preload``; compare mode, full baselines only);
- the stale results folder of an earlier run of the case is moved aside in one ``rename``
  (~0.01 ms) and deleted on a thread: deleting it in place took 2-4 ms per case on ext4;
- a passing output's thumbnail (~0.5 ms) is written on a thread; the reports are written
  after ``writer.wait`` (a thumbnail that could not be written is named in the summary).

The writing and deleting threads work while the server runs a prompt (``Gate``: from when it
accepted one until its run returned), when the test's own thread only waits for events; run
between prompts, they competed with the next POST for the two cores (and the GIL) and cost
~1 ms a case. ``wait`` and ``close`` let them finish whatever is left at once.

Neither changes a result: a preloaded image is used only while its file is unchanged, and a
folder moved aside is gone from where the case writes before the case writes there. The
session's state holds one ``OffPath``; ``close`` waits for the deletions (the results folder
is then as it was before: no stale folder, no trash).
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from comfytest.compare.preload import Preloads

#: where stale result folders wait for the deleting thread, inside the results folder
TRASH_DIR = ".comfytest-trash"
#: thumbnails waiting for a prompt to run at most; beyond, they are written at once (memory)
MAX_PENDING = 16


class Gate:
    """Open while the server runs a prompt of this session (``open`` once it accepted it,
    ``close`` once the run returned); ``hold`` keeps it open for good (flush, close)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._held = False

    def open(self) -> None:
        self._event.set()

    def close(self) -> None:
        if not self._held:
            self._event.clear()

    def hold(self) -> None:
        self._held = True
        self._event.set()

    def is_open(self) -> bool:
        return self._event.is_set()

    def wait(self) -> None:
        self._event.wait()


class Trash:
    """Stale folders moved into ``<results>/.comfytest-trash`` and deleted on a daemon thread."""

    def __init__(self, gate: Gate | None = None) -> None:
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._bins: set[Path] = set()
        self.gate = gate or Gate()

    def discard(self, folder: Path, results_dir: Path) -> None:
        """``folder`` (under ``results_dir``) gone from its place now, deleted soon; nothing
        when it does not exist. Where it cannot be moved, it is deleted here, as before."""
        if os.path.islink(folder) or not os.path.isdir(folder):
            return  # nothing to delete: the usual first run (rmtree left a link or a file alone too)
        bin_dir = results_dir / TRASH_DIR
        try:
            if bin_dir not in self._bins:
                bin_dir.mkdir(parents=True, exist_ok=True)
                self._bins.add(bin_dir)
                with os.scandir(bin_dir) as leftovers:  # what a session that was killed left behind
                    for leftover in leftovers:
                        self._put(Path(leftover.path))
            target = bin_dir / uuid.uuid4().hex
            os.rename(folder, target)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            return
        self._put(target)

    def _put(self, path: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._delete, name="comfytest-trash", daemon=True)
            self._thread.start()
        self._queue.put(path)

    def _delete(self) -> None:
        while (path := self._queue.get()) is not None:
            self.gate.wait()
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Wait for every deletion; the trash folders go when empty (other xdist workers may
        still be using one: theirs is removed by the last)."""
        if self._thread is not None:
            self.gate.hold()
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        for bin_dir in self._bins:
            try:
                bin_dir.rmdir()
            except OSError:
                pass
        self._bins.clear()


class Writer:
    """Result files whose content is known (a passing output's thumbnail) written on a thread
    while the session goes on; ``wait`` before anything reads or replaces them."""

    def __init__(self, gate: Gate | None = None) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        #: what could not be written, in words (the session's summary names it)
        self.errors: list[str] = []
        self.gate = gate or Gate()

    def submit(self, write: Callable[[], object], what: str) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="comfytest-writer")
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= MAX_PENDING:  # prompts too short to write them in: now
            self.wait()
        self._pending.append(self._pool.submit(self._write, write, what))

    def _write(self, write: Callable[[], object], what: str) -> None:
        self.gate.wait()
        try:
            write()
        except OSError as exc:
            self.errors.append(f"{what}: {exc.strerror or exc}")

    def wait(self) -> None:
        """Every pending write done (the gate opened meanwhile, as it was after)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        was_open = self.gate.is_open()
        self.gate.open()
        try:
            for future in pending:
                future.result()
        finally:
            if not was_open:
                self.gate.close()

    def close(self) -> None:
        self.gate.hold()
        self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class OffPath:
    """The session's preloading thread, result writer and trash, and the gate the last two
    work behind (``server_running`` / ``server_done`` around each run of a prompt)."""

    def __init__(self) -> None:
        self.preloads = Preloads()
        self.gate = Gate()
        self.writer = Writer(self.gate)
        self.trash = Trash(self.gate)

    def server_running(self) -> None:
        """The server accepted a prompt: the session's thread now waits for its events."""
        self.gate.open()

    def server_done(self) -> None:
        self.gate.close()

    def close(self) -> None:
        self.preloads.close()
        self.writer.close()
        self.trash.close()


__all__ = ["MAX_PENDING", "TRASH_DIR", "Gate", "OffPath", "Trash", "Writer"]
