"""The client and execution code against the real ComfyUI the plugin started (no mocks)."""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from comfytest.comfy.events import Executing, ExecutionStart, Preview, Progress
from comfytest.comfy.execution import Runner, cancel_prompt, prompt_state
from comfytest.errors import ExecutionFailed, ExecutionTimeout, PromptRejected
from tests.load import loaded

WORKFLOWS = Path(__file__).parents[2] / "workflows"


def noise_prompt(seed: int, *, sleep: float | None = None, fail: str | None = None) -> dict[str, Any]:
    """ComfyTestNoiseImage → [ComfyTestSleep | ComfyTestRaise] → ImageInvert → SaveImage."""
    prompt: dict[str, Any] = {
        "1": {"class_type": "ComfyTestNoiseImage", "_meta": {"title": "Pattern"},
              "inputs": {"width": 32, "height": 32, "seed": seed, "batch_size": 1}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "_meta": {"title": "Save"},
              "inputs": {"images": ["3", 0], "filename_prefix": "client_test"}},
    }
    if fail is not None:
        prompt["2"] = {"class_type": "ComfyTestRaise", "_meta": {"title": "Boom"},
                       "inputs": {"image": ["1", 0], "message": fail}}
    else:
        prompt["2"] = {"class_type": "ComfyTestSleep", "_meta": {"title": "Nap"},
                       "inputs": {"image": ["1", 0], "seconds": sleep or 0.0}}
    return prompt


def test_txt2img_runs_the_tiny_checkpoint_and_decodes_the_image(comfy: Any) -> None:
    result = comfy.run(WORKFLOWS / "tiny_txt2img.json", seed=1234)
    assert result.ok and result.status == "success"
    (img,) = result.images
    assert img.node_id == "7" and img.ref.type == "output" and img.ref.filename.endswith(".png")
    assert img.image.size == (64, 64)
    pixels = np.asarray(img.image.convert("RGB"), dtype=np.int16)
    assert pixels.std() > 5, "a flat image means the pipeline did not really run"
    assert [(p.node_id, p.input, p.new) for p in result.seeds] == [("5", "seed", 1234)]
    assert result.prompt["5"]["inputs"]["seed"] == 1234
    assert result.history["status"]["status_str"] == "success"
    sampler = result.timing.node("5")
    assert sampler is not None and sampler.steps == 4 and not sampler.cached
    total = result.timing.server_total_ms
    assert total is not None and total > 0
    # the nodes account for the server's time but for its per-prompt set-up and clean-up
    assert 0 <= result.timing.overhead_ms <= max(25.0, 0.1 * total), (total, result.timing.nodes)
    assert any(isinstance(e, Progress) and e.node == "5" for e in result.events)


def test_same_seed_gives_identical_pixels_and_a_cached_rerun(comfy: Any) -> None:
    first = comfy.run(WORKFLOWS / "noise_blur_chain.json", seed=99)
    again = comfy.run(WORKFLOWS / "noise_blur_chain.json", seed=99)
    a, b = (np.asarray(r.images[0].image) for r in (first, again))
    assert np.array_equal(a, b)
    assert set(again.timing.cached_nodes) == {"1", "2", "3", "4", "5"}
    assert all(n.duration_ms == 0 and n.steps_per_s is None for n in again.timing.nodes if n.cached)


def test_img2img_with_an_uploaded_image(comfy: Any, tmp_path: Path) -> None:
    source = Image.fromarray((np.indices((64, 64)).sum(axis=0) * 2).astype(np.uint8)).convert("RGB")
    path = tmp_path / "input.png"
    source.save(path)
    result = comfy.run(WORKFLOWS / "tiny_img2img.json", seed=5, inputs={"title:Load input image": path})
    name = result.prompt["8"]["inputs"]["image"]
    assert name.startswith("comfytest_") and name.endswith(".png")
    assert comfy.upload(path) == name, "the same bytes must map to the same uploaded name"
    assert result.images[0].image.size == (64, 64)


def test_model_free_chain_with_a_text_output(comfy: Any) -> None:
    result = comfy.run(WORKFLOWS / "text_output.json")
    assert [(t.node_id, t.text) for t in result.texts] == [("3", "48")]
    assert not result.images


def test_validation_error_names_node_input_and_message(comfy: Any) -> None:
    prompt = noise_prompt(1)
    prompt["1"]["inputs"]["width"] = 0  # below the node's minimum of 1
    with pytest.raises(PromptRejected) as err:
        comfy.run_prompt(prompt)
    text = str(err.value)
    assert "node 1 'Pattern' (ComfyTestNoiseImage)" in text
    assert "input 'width'" in text and "{'" not in text


def test_execution_error_names_node_exception_and_finished_nodes(comfy: Any) -> None:
    result = comfy.run_prompt(noise_prompt(2, fail="the bird has flown"))
    assert result.status == "error"
    text = result.message
    assert "node 2 'Boom' (ComfyTestRaise) failed while running: RuntimeError: the bird has flown" in text
    assert "traceback (last lines)" in text
    assert "finished before the failure: node 1 'Pattern' (ComfyTestNoiseImage)" in text
    with pytest.raises(ExecutionFailed):
        result.raise_for_status()


def test_timeout_interrupts_our_prompt_and_names_the_running_node(comfy: Any) -> None:
    started = time.monotonic()
    with pytest.raises(ExecutionTimeout) as err:
        comfy.run_prompt(noise_prompt(3, sleep=30), timeout=1.5)
    elapsed = time.monotonic() - started
    assert "node 2 'Nap' (ComfyTestSleep) was running" in str(err.value)
    assert "POST /interrupt" in str(err.value)
    assert elapsed < loaded(15), f"the interrupt should stop the sleeping node promptly ({elapsed:.1f} s)"
    queue = comfy.client.queue_state()
    assert not queue["queue_running"] and not queue["queue_pending"]
    # the server is usable right after: the next prompt runs normally
    assert comfy.run_prompt(noise_prompt(4)).ok


def test_inactivity_timeout_interrupts_a_silent_node(comfy: Any) -> None:
    with pytest.raises(ExecutionTimeout) as err:
        comfy.run_prompt(noise_prompt(9, sleep=30), timeout=120, idle_timeout=1.5)
    text = str(err.value)
    assert "sent no message for 1.5 s (--comfy-idle-timeout)" in text
    assert "node 2 'Nap' (ComfyTestSleep) was running" in text
    history = comfy.client.history(text.split()[1])
    assert history["status"]["status_str"] == "error", "our prompt was interrupted, not left running"


def test_dropped_socket_is_reopened_and_the_run_resynchronised(comfy: Any) -> None:
    client = comfy.client
    client.ensure_connected()
    old_socket = client._ws

    def drop_when_running() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            queue = client.queue_state()
            if queue["queue_running"]:
                time.sleep(0.2)
                old_socket.sock.shutdown(2)  # the network drops the connection mid-run
                return
            time.sleep(0.02)

    dropper = threading.Thread(target=drop_when_running)
    dropper.start()
    result = comfy.run_prompt(noise_prompt(5, sleep=1.5))
    dropper.join()
    assert result.resynced, "the run should have noticed the drop and resynchronised"
    assert result.ok and result.images, "outputs must come from /history after the resync"
    assert client._ws is not old_socket
    assert comfy.run_prompt(noise_prompt(6)).ok


def test_binary_previews_are_parsed_with_their_node_and_prompt(comfy: Any) -> None:
    prompt = noise_prompt(8)
    prompt["4"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["3", 0]}}
    result = comfy.run_prompt(prompt)
    previews = [e for e in result.events if isinstance(e, Preview)]
    assert previews, "SaveImageWebsocket sends one binary frame per image"
    assert all(p.prompt_id == result.prompt_id and p.node_id == "4" for p in previews)
    with Image.open(io.BytesIO(previews[0].image)) as img:
        assert img.size == (32, 32)


def test_events_are_filtered_by_prompt_id(comfy: Any) -> None:
    other = Runner(comfy.client)
    result = other.run(noise_prompt(7))
    assert str(uuid.UUID(result.prompt_id)) == result.prompt_id  # ComfyUI >= 0.25 needs this form
    assert result.history["prompt"][1] == result.prompt_id  # the server kept our id verbatim
    own = [e for e in result.events if not (isinstance(e, Executing) and e.prompt_id is None)]
    assert all(e.prompt_id in (result.prompt_id, None) for e in own)
    assert sum(isinstance(e, ExecutionStart) for e in result.events) == 1


def test_without_a_jobs_api_the_old_routes_locate_and_cancel(comfy: Any) -> None:
    """0.3.75 has no /api/jobs: resync and cancel use /history, /queue and /interrupt (the
    jobs-API side is replayed from a real 0.26.0 in tests/unit/test_traces_026.py)."""
    result = Runner(comfy.client).run(noise_prompt(11))
    assert comfy.client.has_jobs_api() is False
    assert prompt_state(comfy.client, result.prompt_id) == "done"
    assert prompt_state(comfy.client, str(uuid.uuid4())) == "unknown"
    cancel_prompt(comfy.client, str(uuid.uuid4()))  # nobody else's prompt is touched; no error


def test_without_history_outputs_and_queue_wait_come_from_the_events(comfy: Any) -> None:
    """history=False (what test cases use): no GET /history; the same outputs, from the
    `executed` events (also for a cached rerun), and a queue wait estimated from the send time."""
    runner = Runner(comfy.client)
    calls: list[str] = []
    original = comfy.client.history
    comfy.client.history = lambda *a, **kw: calls.append(a[0]) or original(*a, **kw)
    try:
        seed = int(time.time() * 1000) % 10**9  # nothing this server has cached
        fresh = runner.run(noise_prompt(seed), history=False)
        cached = runner.run(noise_prompt(seed), history=False)
    finally:
        del comfy.client.history
    assert calls == []
    full = runner.run(noise_prompt(seed))
    assert fresh.history == {} and full.history["status"]["status_str"] == "success"
    assert [i.ref for i in fresh.images] == [i.ref for i in full.images] == [i.ref for i in cached.images]
    assert cached.timing.cached_nodes and fresh.outputs.keys() == full.outputs.keys()
    wait = fresh.timing.queue_wait_ms
    assert wait is not None and 0 <= wait < loaded(1000.0)


def test_a_local_servers_output_files_are_read_from_its_folder_not_over_http(comfy: Any, tmp_path: Path) -> None:
    """The session's embedded server writes into folders comfytest chose: its outputs are read
    from disk (no GET /view); a folder without the file falls back to /view, with the same bytes."""
    assert comfy.runner.local_files, "the embedded server's folders are known"
    views: list[Any] = []
    original = comfy.client.view
    comfy.client.view = lambda ref: views.append(ref) or original(ref)
    try:
        seed = int(time.time() * 1000) % 10**9 + 7
        local = comfy.runner.run(noise_prompt(seed), history=False)
        assert views == [] and len(local.images) == 1
        other = Runner(comfy.client)
        other.local_files = {"output": tmp_path}  # not where the server wrote: /view answers
        remote = other.run(noise_prompt(seed), history=False)
    finally:
        del comfy.client.view
    assert [r.filename for r in views] == [local.images[0].ref.filename]
    assert np.array_equal(np.asarray(local.images[0].image), np.asarray(remote.images[0].image))
