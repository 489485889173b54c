"""Issue 25, round two of the fault matrix (docs/reliability.md): damaged baseline records,
vanished prompts, node failures seen through ``/view``, untrusted text, a full results disk —
each against the real embedded ComfyUI wherever the fault can be made with it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from comfytest.comfy.client import ComfyClient
from comfytest.comfy.execution import Runner, new_prompt_id
from comfytest.compare.store import HASHES_FILE, HashRecord, upsert_hash
from comfytest.errors import ComfyTestError, PromptVanished, ServerUnavailable
from comfytest.plugin.reporting import failure_kind
from tests.faultproxy import proxy_to
from tests.integration.lifecycle import TINY_TXT2IMG, TWO_OUTPUTS, Workspace, text
from tests.integration.test_client import noise_prompt
from tests.load import loaded
from tests.tlscert import self_signed

UPDATE = "--comfy-update-baselines"
TINY_TOML = "tolerance = 2\n\n[cases.base]\nseed = 42\n"


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


def invert_block(png: Path) -> None:
    """Invert a 4x4 block of the baseline image, and record it as the server's device made it:
    the run's output now differs from an intact baseline; phash alone still passes, pixels do not."""
    img = Image.open(png).convert("RGB")
    block = ImageOps.invert(img.crop((0, 0, 4, 4)))
    img.paste(block, (0, 0))
    img.save(png)
    upsert_hash(png.parent / HASHES_FILE, png.stem, HashRecord.of(img, "phash", 8, "cpu"))


# ------------------------------------------------------------- row 1: a damaged hashes.txt

CONFLICT = ("<<<<<<< HEAD\n{line}\n=======\n{other}\n>>>>>>> feature/new-sampler\n{rest}\n")


def _damage(hashes: Path, how: str) -> str:
    """Damage ``hashes.txt`` one way; returns what the message must name (file:line or file)."""
    lines = hashes.read_text().splitlines()
    line70 = next(ln for ln in lines if ln.startswith("7_0 "))
    rest = "\n".join(ln for ln in lines if not ln.startswith("7_0 "))
    if how == "conflict":
        other = line70.replace("device=cpu", "device=NVIDIA_H100")
        hashes.write_text(CONFLICT.format(line=line70, other=other, rest=rest))
        return f"{hashes}:1"
    if how == "garbage":
        hashes.write_bytes(b"\x00\xff\xfe garbage \x81\n" * 3)
        return str(hashes)
    if how == "truncated":  # cut inside the device field: the line still parses
        data = hashes.read_text()
        hashes.write_text(data[:data.index(line70) + len(line70) - 3])
        return f"{hashes}:1"
    if how == "empty":
        hashes.write_text("")
        return str(hashes)
    if how == "missing":
        hashes.unlink()
        return str(hashes)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["conflict", "garbage", "truncated", "empty", "missing"])
def test_a_damaged_hashes_file_beside_a_changed_image_never_passes(ws: Workspace, how: str) -> None:
    ws.workflow("tiny", TINY_TXT2IMG, TINY_TOML)
    ws.run(UPDATE).assert_outcomes(passed=1)
    folder = ws.case_dir("tiny", "base")
    invert_block(folder / "7_0.png")
    intact = ws.run()  # control: with its record intact, the same-device pixel limit catches it
    intact.assert_outcomes(failed=1)
    assert "differs from its baseline: max pixel diff" in text(intact)  # phash alone: within 2

    where = _damage(folder / "hashes.txt", how)
    before = ws.snapshot()
    result = ws.run()
    result.assert_outcomes(failed=1)
    out = text(result)
    assert where in out, out
    assert UPDATE in out
    assert ws.report()["tests"][0]["failure_kind"] == "usage"
    assert ws.snapshot() == before, "compare mode never rewrites a damaged record"
    if how == "conflict":
        assert "HEAD" in out and "feature/new-sampler" in out and "ours" in out and "theirs" in out

    # the repair the message names works: the record is rewritten and the next run passes
    ws.run(UPDATE).assert_outcomes(passed=1)
    assert "<<<<<<<" not in (folder / "hashes.txt").read_text()
    ws.run().assert_outcomes(passed=1)


# ------------------------------------------------------------- row 14: image and line disagree


def test_an_image_that_disagrees_with_its_hash_line_is_named(ws: Workspace) -> None:
    """What an update interrupted between the PNG and its line (or a hand-copied PNG) leaves."""
    ws.workflow("two", TWO_OUTPUTS)
    ws.run(UPDATE).assert_outcomes(passed=1)
    folder = ws.case_dir("two", "default")
    noise = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(noise, "RGB").save(folder / "2_0.png")  # a new image, the old line
    result = ws.run()
    result.assert_outcomes(failed=1)
    out = text(result)
    assert f"{folder / 'hashes.txt'}:1" in out and str(folder / "2_0.png") in out
    assert "does not match" in out and UPDATE in out
    assert ws.report()["tests"][0]["failure_kind"] == "usage"


# ------------------------------------------------------------- row 9: /view refuses a node's path

BAD_PATH = {
    "1": {"class_type": "ComfyTestFile", "_meta": {"title": "Writer"},
          "inputs": {"name": "out.png", "content": "", "base64": False, "output_key": "images"}},
}


@pytest.mark.parametrize(("report", "status"), [({"report_subfolder": "../.."}, 403),
                                                 ({"report_name": "../escape.png"}, 400)])
def test_a_node_reporting_a_path_view_refuses_is_the_workflows_failure(ws: Workspace, report: dict[str, str],
                                                                        status: int) -> None:
    """ComfyUI answers 403 (subfolder outside its folder) or 400 (``..`` in the name) for the
    path the node reported: the node's deterministic bug, so exit 1 (a retry cannot help), not 75."""
    workflow = {"1": {**BAD_PATH["1"], "inputs": {**BAD_PATH["1"]["inputs"], **report}}}
    ws.workflow("badpath", workflow)
    result = ws.run()
    result.assert_outcomes(failed=1)
    assert result.ret == 1, "not 75: CI must not retry a node's bug"
    out = text(result)
    assert f"HTTP {status}" in out and "node 1 'Writer' (ComfyTestFile)" in out, out
    assert ws.report()["tests"][0]["failure_kind"] == "regression"


# ------------------------------------------------------------- row 10: terminal control sequences

HOSTILE = "cleared\x1b[2J\x1b]0;pwned\x07 done\rover"


def test_control_sequences_in_a_nodes_error_are_escaped_everywhere(ws: Workspace) -> None:
    """A node's exception text with ESC[2J (clear screen), an OSC title (ESC]0;…BEL) and a
    carriage return: shown escaped on the terminal, in report.md, report.html and JUnit XML."""
    ws.workflow("hostile", {
        "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 8, "height": 8, "seed": 1, "batch_size": 1}},
        "2": {"class_type": "ComfyTestRaise", "_meta": {"title": "Evil\x1b[31m"}, "inputs": {"image": ["1", 0], "message": HOSTILE}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "hostile"}},
    })
    junit = ws.pytester.path / "junit.xml"
    result = ws.run(f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    written = {"terminal": text(result), "report.md": (ws.results / "report.md").read_text(),
               "report.html": (ws.results / "report.html").read_text(), "junit": junit.read_text()}
    for where, content in written.items():
        assert "\x1b" not in content and "\x07" not in content and "over" in content, where
        assert "\\x1b[2J" in content and "\\x1b]0;pwned\\x07" in content, (where, content[-2000:])
    assert "\\x1b[31m" in written["terminal"], "the node's title too"


# ------------------------------------------------------------- row 5: a prompt that vanishes


def _pending(client: ComfyClient, prompt_id: str) -> bool:
    return any(item[1] == prompt_id for item in client.queue_state()["queue_pending"])


def test_a_prompt_cleared_from_the_queue_by_another_client_is_noticed_within_seconds(comfy: Any) -> None:
    """Another client keeps the server busy, our prompt waits behind it, then the other client
    clears the queue (the UI's "Clear queue"): the WebSocket keeps talking about *their* prompt,
    so only the queue says ours is gone."""
    busy = new_prompt_id()
    comfy.client.queue_prompt(noise_prompt(251, sleep=30), busy)
    ours, errors, ended = new_prompt_id(), [], threading.Event()
    client = ComfyClient(comfy.url)

    def run() -> None:
        try:
            Runner(client, timeout=120, idle_timeout=60).run(noise_prompt(252), prompt_id=ours)
        except ComfyTestError as exc:
            errors.append(exc)
        ended.set()

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + loaded(20)
        while not _pending(comfy.client, ours) and time.monotonic() < deadline:
            time.sleep(0.05)
        comfy.client.request("POST", "/queue", json={"clear": True})
        cleared = time.monotonic()
        assert ended.wait(loaded(10)), "not noticed within 10 s (it waited for --comfy-timeout before)"
        took = time.monotonic() - cleared
    finally:
        comfy.client.request("POST", "/queue", json={"clear": True})
        comfy.client.interrupt()
        thread.join(5)
        client.close()
    (err,) = errors
    assert isinstance(err, PromptVanished) and failure_kind(err) == "infrastructure", err
    assert ours in str(err) and "cleared the queue" in str(err) and "still waiting" not in str(err)
    assert took < loaded(8)


def test_a_prompt_the_server_accepted_but_never_queued_is_noticed_within_seconds(comfy: Any,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake only for POST /prompt (a real ComfyUI cannot be made to answer 200 and drop the
    prompt on demand); the WebSocket, /queue and /history are the real server's."""
    client = ComfyClient(comfy.url)
    monkeypatch.setattr(client, "queue_prompt",
                        lambda prompt, pid: (200, {"prompt_id": pid, "number": 1, "node_errors": {}}))
    start = time.monotonic()
    try:
        with pytest.raises(PromptVanished) as info:
            Runner(client, timeout=120, idle_timeout=60).run(noise_prompt(253))
    finally:
        client.close()
    assert time.monotonic() - start < loaded(8)
    assert "never queued" in str(info.value) and comfy.url in str(info.value)


# ------------------------------------------------------------- row 12: one baseline not writable

BATCH = {
    "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 16, "height": 16, "seed": 5, "batch_size": 2}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "batch"}},
}


def test_update_with_one_unwritable_baseline_counts_what_it_wrote(ws: Workspace) -> None:
    """A folder where 2_1.png belongs (root can write into read-only files, not over a folder):
    2_0 is written with its line, 2_1 fails naming its path, and the summary says 1 updated."""
    ws.workflow("batch", BATCH)
    ws.run(UPDATE).assert_outcomes(passed=1)
    folder = ws.case_dir("batch", "default")
    ws.workflow("batch", {**BATCH, "1": {**BATCH["1"], "inputs": {**BATCH["1"]["inputs"], "seed": 6}}})
    (folder / "2_1.png").unlink()
    (folder / "2_1.png" / "in-the-way").mkdir(parents=True)
    result = ws.run(UPDATE)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert str(folder / "2_1.png") in out
    result.stdout.fnmatch_lines([f"baselines ({UPDATE}): 0 created, 1 updated, 0 unchanged",
                                 "  updated  workflows/batch.json [[]default[]] 2_0: *"])
    assert [c["status"] for c in ws.comparisons()] == ["updated"]
    assert ws.report()["tests"][0]["failure_kind"] == "usage"
    lines = (folder / "hashes.txt").read_text().splitlines()
    png = Image.open(folder / "2_0.png")
    assert HashRecord.parse(lines[0])[1].hashes == HashRecord.of(png, "phash", 8).hashes, "2_0: image and line agree"
    assert (folder / "2_1.png" / "in-the-way").is_dir(), "never deleted"


# ------------------------------------------------------------- row 13: results folder on a full disk


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, filled: a real ENOSPC from the kernel (mounting needs root)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError):
            (mount / "filler").write_bytes(b"\0" * 128 * 1024)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_results_disk_names_the_results_folder(ws: Workspace, full_disk: Path) -> None:
    ws.workflow("two", TWO_OUTPUTS)
    ws.run(UPDATE).assert_outcomes(passed=1)
    ws.workflow("two", {**TWO_OUTPUTS, "1": {**TWO_OUTPUTS["1"], "inputs": {**TWO_OUTPUTS["1"]["inputs"], "color": 0xFF0000}}})
    results = full_disk / "results"
    args = [a for a in ws.args if not a.startswith("--comfy-results")] + [f"--comfy-results={results}"]
    before = ws.snapshot()
    result = ws.pytester.runpytest(*args)
    out = text(result)
    assert result.ret == 1, out[-3000:]
    assert "No space left on device" in out and str(results) in out, out[-3000:]
    assert "make the results folder (--comfy-results)" in out.lower() or "results folder (--comfy-results)" in out
    assert "baseline file" not in out and "Make the baselines folder writable" not in out
    assert "Traceback" not in out
    assert ws.snapshot() == before


# ------------------------------------------------------------- row 17: an untrusted certificate


@pytest.fixture
def tls_url(comfy: Any, tmp_path: Path) -> Iterator[str]:
    """Real TLS with a self-signed certificate in front of the real server (https and wss)."""
    cert, key = self_signed(tmp_path)
    with proxy_to(str(comfy.url), tls=(str(cert), str(key))) as proxy:
        yield proxy.url


def test_an_untrusted_certificate_names_the_ca_bundle_option(tls_url: str, pytester: pytest.Pytester,
                                                             tmp_path: Path) -> None:
    client = ComfyClient(tls_url, request_timeout=5)
    try:
        for call in (client.system_stats, client.connect):
            with pytest.raises(ServerUnavailable) as info:
                call()
            assert "TLS certificate not trusted" in str(info.value)
            assert "--comfy-ca-bundle" in str(info.value) and "COMFYTEST_CA_BUNDLE" in str(info.value)
    finally:
        client.close()
    pytester.makeini("[pytest]\ncomfy_workflows = workflows\n")
    (pytester.path / "workflows").mkdir()
    (pytester.path / "workflows" / "two.json").write_text(json.dumps(TWO_OUTPUTS))
    result = pytester.runpytest(f"--comfy-url={tls_url}", f"--comfy-results={tmp_path / 'r'}", "-p", "no:cacheprovider")
    assert "--comfy-ca-bundle" in text(result), text(result)[-2000:]
