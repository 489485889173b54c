"""Work off a case's critical path (issue 26): preloaded baselines, the trash, the writer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from comfytest.compare import images as ic
from comfytest.compare.baselines import BaselineKey, BaselineStore, check_image
from comfytest.compare.preload import Preloads
from comfytest.compare.store import HASHES_FILE, HashRecord
from comfytest.plugin.offpath import MAX_PENDING, TRASH_DIR, OffPath, Trash, Writer


def _noise(seed: int, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def _baseline(folder: Path, stem: str, img: Image.Image) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    img.save(path)
    (folder / HASHES_FILE).write_text(HashRecord.of(img, "phash", 8, "cpu").line(stem) + "\n")
    return path


def test_preloaded_frames_and_hashes_are_those_of_the_file(tmp_path: Path) -> None:
    img = _noise(1)
    path = _baseline(tmp_path / "case", "9_0", img)
    preloads = Preloads()
    try:
        preloads.start([tmp_path / "profile" / "case", tmp_path / "case"])
        found = preloads.take(path)
        assert found is not None
        assert found.frames[0].tobytes() == img.tobytes()
        assert found.hashes == {"phash:8": (ic.image_hash(img, "phash", 8),)}
    finally:
        preloads.close()


def test_a_file_changed_after_the_preload_is_read_again(tmp_path: Path) -> None:
    path = _baseline(tmp_path, "9_0", _noise(1))
    preloads = Preloads()
    try:
        preloads.start([tmp_path])
        assert preloads.take(path) is not None
        preloads.start([tmp_path])
        preloads.take(tmp_path / "other.png")  # waits for the thread
        _noise(2).save(tmp_path / "new.png")
        os.replace(tmp_path / "new.png", path)  # as an update writes it: another inode
        assert preloads.take(path) is None
    finally:
        preloads.close()


def test_damaged_and_oversized_baselines_are_left_to_the_caller(tmp_path: Path) -> None:
    (tmp_path / "1_0.png").write_bytes(b"\x89PNG not really")
    big = _baseline(tmp_path, "2_0", _noise(3, 64))
    preloads = Preloads(max_pixels=64 * 64 - 1)
    try:
        preloads.start([tmp_path])
        assert preloads.take(tmp_path / "1_0.png") is None
        assert preloads.take(big) is None
    finally:
        preloads.close()


def test_the_comparison_with_a_preload_is_the_comparison_without(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "baselines", device="cpu")
    key = BaselineKey("wf", "case", "9_0")
    base = _noise(4)
    _baseline(store.write_dir(key), "9_0", base)
    preloads = Preloads()
    try:
        for obtained in (base.copy(), _noise(5)):
            plain = check_image(store, key, obtained, results_dir=tmp_path / "a")
            preloads.start(store.read_dirs(key))
            assert preloads.take(store.write_dir(key) / "9_0.png") is not None
            early = check_image(store, key, obtained, results_dir=tmp_path / "b", preloads=preloads)
            assert (early.status, early.comparison) == (plain.status, plain.comparison)
            assert early.message.replace("/b/", "/a/") == plain.message
    finally:
        preloads.close()


def test_trash_moves_the_folder_away_at_once_and_deletes_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    stale = results / "wf" / "case"
    stale.mkdir(parents=True)
    (stale / "9_0.thumb.jpg").write_bytes(b"old")
    leftover = results / TRASH_DIR / "from-a-killed-session"
    leftover.mkdir(parents=True)
    trash = Trash()
    trash.discard(stale, results)
    assert not stale.exists()
    trash.close()
    assert sorted(p.name for p in results.iterdir()) == ["wf"]  # the trash went, leftovers too


def test_trash_leaves_links_and_files_alone_as_rmtree_did(tmp_path: Path) -> None:
    target = tmp_path / "kept"
    target.mkdir()
    (target / "x").write_text("x")
    link = tmp_path / "results" / "link"
    link.parent.mkdir()
    link.symlink_to(target)
    trash = Trash()
    trash.discard(link, tmp_path / "results")
    trash.discard(tmp_path / "results" / "missing", tmp_path / "results")
    trash.close()
    assert (target / "x").exists() and link.is_symlink()


def test_writer_writes_later_and_names_what_it_could_not_write(tmp_path: Path) -> None:
    writer = Writer()
    writer.submit(lambda: (tmp_path / "a.txt").write_text("a"), "file a")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder belongs")
    writer.submit(lambda: (blocked / "b.txt").write_text("b"), "file b")
    writer.close()
    assert (tmp_path / "a.txt").read_text() == "a"
    assert len(writer.errors) == 1 and writer.errors[0].startswith("file b: ")


def test_writer_and_trash_work_only_while_a_prompt_runs_unless_waited_for(tmp_path: Path) -> None:
    offpath = OffPath()
    results = tmp_path / "results"
    stale = results / "wf" / "case"
    stale.mkdir(parents=True)
    offpath.trash.discard(stale, results)
    offpath.writer.submit(lambda: (tmp_path / "thumb").write_text("t"), "thumbnail")
    time.sleep(0.2)
    binned = list((results / TRASH_DIR).iterdir())
    assert not (tmp_path / "thumb").exists() and len(binned) == 1, "between prompts both threads wait"
    offpath.server_running()  # the server accepted a prompt: the session's thread only waits now
    deadline = time.monotonic() + 10
    while binned[0].exists() or not (tmp_path / "thumb").exists():
        assert time.monotonic() < deadline, "the gate opened but nothing was done"
        time.sleep(0.01)
    offpath.server_done()
    offpath.writer.submit(lambda: (tmp_path / "later").write_text("l"), "thumbnail")
    offpath.writer.wait()  # before the reports: written now, whatever the gate
    assert (tmp_path / "later").exists() and not offpath.gate.is_open(), "the gate is as it was"


def test_the_writer_does_not_hold_more_than_a_bounded_backlog(tmp_path: Path) -> None:
    writer = Writer()  # its gate never opens: only the bound and close write anything
    for i in range(MAX_PENDING + 1):
        writer.submit(lambda i=i: (tmp_path / f"{i}").write_text("x"), f"file {i}")  # type: ignore[misc]
    assert len(list(tmp_path.iterdir())) == MAX_PENDING, "the backlog was written when it reached the bound"
    writer.close()
    assert len(list(tmp_path.iterdir())) == MAX_PENDING + 1
