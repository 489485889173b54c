"""ComfyUI 0.26.0, replayed: traces recorded from a real 0.26.0 server by hand
(scripts/record_traces.py; see docs/compatibility.md) run through comfytest's event parser,
timing code and the whole runner. CI cannot run a newer ComfyUI (none installs from PyPI on
Python 3.11, and CI cannot fetch), so these recordings are how it is checked there.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from PIL import Image

from comfytest.comfy.compat import server_info
from comfytest.comfy.diagnostics import is_workflow_rejection
from comfytest.comfy.events import Executed, Executing, Unknown
from comfytest.comfy.execution import Runner, cancel_prompt, prompt_state
from comfytest.comfy.timing import compute_timing
from comfytest.errors import PromptRejected, UnsupportedServer
from comfytest.plugin.reporting import failure_kind
from tests.unit.replay import recorded_replies, replayed
from tests.unit.test_timing import raw_durations
from tests.unit.traces import TRACE_DIR, Trace, load, replay

V = "0.26.0"
TRACES = ("success", "cached", "validation_errors", "execution_error", "interrupted", "ws_reconnect", "jobs_api")


def trace(name: str) -> Trace:
    return load(name, V)


def first_prompt(t: Trace) -> tuple[str, dict[str, Any]]:
    event = next(e for e in t.events if e["kind"] == "http" and e["path"] == "/prompt" and e["status"] == 200)
    return event["response"]["prompt_id"], event["request_json"]["prompt"]


def jobs_probe() -> dict[str, Any]:
    """The real 0.26.0 answer to comfytest's jobs-API probe (recorded in jobs_api.json)."""
    return {k: v for k, v in recorded_replies(trace("jobs_api")).items() if k == "/api/jobs?limit=1"}


@pytest.mark.parametrize("name", TRACES)
def test_every_frame_parses_and_every_id_is_a_canonical_uuid(name: str) -> None:
    t = trace(name)
    assert t.raw["server"].startswith("ComfyUI 0.26.0")
    events = replay(t)
    assert events, name
    unknown = {e.type for e in events if isinstance(e, Unknown)}
    assert unknown <= {"feature_flags", "progress_state"}, unknown  # kept, never fatal
    for pid in t.queued_prompt_ids():
        assert str(uuid.UUID(pid)) == pid


def test_success_runs_end_to_end_through_the_runner() -> None:
    t = trace("success")
    pid, prompt = first_prompt(t)
    with replayed(t, ["A"]) as client:
        result = Runner(client).run(prompt, prompt_id=pid, fetch_images=False)
    assert result.ok and result.prompt_id == pid and not result.resynced
    assert sorted(result.outputs) == ["6", "7"]
    assert result.outputs["6"]["images"][0]["filename"].startswith("success_")
    assert [n.node_id for n in result.timing.nodes] == ["1", "2", "3", "4", "5", "7", "6"]
    assert all(not n.cached for n in result.timing.nodes)
    assert result.timing.server_total_ms is not None and result.timing.server_total_ms > 0


def test_success_durations_follow_the_rule_on_raw_json() -> None:
    t = trace("success")
    pid, _ = first_prompt(t)
    run = compute_timing(replay(t), pid, create_time_ms=t.create_time(pid))
    assert {n.node_id: n.duration_ms for n in run.nodes} == pytest.approx(raw_durations(t, pid), abs=1e-9)


def test_the_ram_pressure_cache_serves_a_rerun_whole() -> None:
    t = trace("cached")
    pid, prompt = first_prompt(t)
    with replayed(t, ["A"]) as client:
        result = Runner(client).run(prompt, prompt_id=pid, fetch_images=False)
    assert result.ok
    assert result.timing.cached_nodes == ("1", "2", "3", "4", "5", "6", "7")
    assert result.timing.executed_total_ms == 0.0
    # a cached output node is still announced with its files (executed events)
    assert {e.node for e in result.events if isinstance(e, Executed)} == {"6", "7"}


def test_execution_error_names_the_node() -> None:
    t = trace("execution_error")
    pid, prompt = first_prompt(t)
    with replayed(t, ["A"]) as client:
        result = Runner(client).run(prompt, prompt_id=pid, fetch_images=False)
    assert result.status == "error" and result.message is not None
    assert result.message.startswith("node 5 (ImageBlend) failed while running:"), result.message


def test_interrupt_by_someone_else_is_reported() -> None:
    t = trace("interrupted")
    pid, prompt = first_prompt(t)
    with replayed(t, ["A"]) as client:
        result = Runner(client).run(prompt, prompt_id=pid, fetch_images=False)
    assert result.status == "interrupted" and result.message is not None
    assert "12" in result.message and "ImageBlur" in result.message
    assert [n.node_id for n in result.timing.nodes][:3] == ["1", "10", "11"]


def test_a_dropped_socket_resyncs_through_the_jobs_api() -> None:
    t = trace("ws_reconnect")
    pid, prompt = first_prompt(t)
    with replayed(t, ["old", "new"], extra=jobs_probe()) as client:
        result = Runner(client).run(prompt, prompt_id=pid, fetch_images=False)
        assert client.has_jobs_api() and client.opened == ["old", "new"]
    assert result.ok and result.resynced
    # the new socket re-announced the running node without a prompt id, and it was kept
    assert any(isinstance(e, Executing) and e.prompt_id is None and e.node == "11" for e in result.events)
    assert "99" in result.outputs


def test_validation_errors_stay_workflow_rejections_and_refused_ids_are_unsupported() -> None:
    bodies = {e["label"]: e["response"] for e in trace("validation_errors").events
              if e["kind"] == "http" and e["path"] == "/prompt" and e["status"] == 400}
    refused = [label for label, body in bodies.items() if not is_workflow_rejection(body)]
    assert sorted(refused) == ["client-chosen prompt_id that is not a UUID (comfytest before 0.26 support)",
                               "client-chosen prompt_id: an uppercase UUID"]
    assert len(bodies) - len(refused) == 6


def test_the_recorded_refusal_of_an_old_style_id_fails_as_unsupported() -> None:
    """The canned server answers POST /prompt with 0.26.0's recorded 400 for comfytest's old id
    (the real 0.3.75 in CI takes any id, so it cannot give this answer)."""
    t = trace("validation_errors")
    event = next(e for e in t.events if e["kind"] == "http" and (e.get("label") or "").startswith("client-chosen prompt_id that"))
    extra = {"POST /prompt": (400, "application/json", json.dumps(event["response"]).encode()),
             "/system_stats": (200, "application/json", json.dumps({"system": {"comfyui_version": V}}).encode())}
    with replayed(t, ["A"], extra=extra) as client, pytest.raises(UnsupportedServer) as err:
        Runner(client).run(event["request_json"]["prompt"], prompt_id=event["request_json"]["prompt_id"])
    assert "ComfyUI 0.26.0" in str(err.value) and failure_kind(err.value) == "unsupported"
    assert not isinstance(err.value, PromptRejected)


def test_jobs_api_states_as_recorded() -> None:
    """Job states and cancels from the real server, read by comfytest's client. The canned
    server holds one reply per path, so each state is served on its own."""
    t = trace("jobs_api")
    jobs = [e for e in t.events if e["kind"] == "http" and e["path"].startswith("/api/jobs/")]
    by_label = {e["label"]: e for e in jobs}
    cases = [("unknown id", "unknown"), ("pending job", "queued"), ("running job", "queued"),
             ("the cancelled running job", "done"), ("the cancelled pending job", "unknown")]
    for label, state in cases:
        event = by_label[label]
        reply = {event["path"]: (event["status"], "application/json", json.dumps(event["response"]).encode())}
        with replayed(t, [], extra=reply) as client:
            pid = event["path"].rsplit("/", 1)[-1]
            assert prompt_state(client, pid) == state, label


def test_cancel_goes_through_the_jobs_api_when_there_is_one() -> None:
    t = trace("jobs_api")
    cancel = next(e for e in t.events if e.get("label") == "cancel the pending job")
    pid = cancel["path"].split("/")[3]
    with replayed(t, []) as client:
        assert client.has_jobs_api()
        cancel_prompt(client, pid)  # POST /queue or /interrupt would answer 404 here and raise
        assert client.cancel_job(pid) is True


def test_the_servers_own_description() -> None:
    stats = json.loads((TRACE_DIR.parent / "system_stats" / "0.26.0.json").read_text())
    info = server_info(stats)
    assert (info.comfyui_version, info.cache_mode) == (V, "ram-pressure")


def test_newer_output_entry_keys_and_unknown_output_kinds_do_not_break_a_run() -> None:
    """The recorded success run, with what later servers add to outputs: extra keys in file
    entries (``metadata``, ``id``, ``preview_id``) and an output kind comfytest does not know."""
    t = trace("success")
    pid, prompt = first_prompt(t)
    raw = json.loads(json.dumps(t.raw))
    for event in raw["events"]:
        msg = event.get("msg") or {}
        if msg.get("type") == "executed":
            for entry in msg["data"]["output"]["images"]:
                entry.update({"metadata": {"width": 256}, "id": str(uuid.uuid4()), "preview_id": "p-1"})
            msg["data"]["output"]["3d"] = ["mesh.glb", {"camera": [0, 0, 1]}]
    png = io.BytesIO()
    Image.new("RGB", (256, 192), (9, 9, 9)).save(png, format="PNG")
    views = {e["path"]: (200, "image/png", png.getvalue()) for e in t.events
             if e["kind"] == "http" and e["path"].startswith("/view?")}
    with replayed(Trace("success", raw), ["A"], extra=views) as client:
        result = Runner(client).run(prompt, prompt_id=pid)
    assert result.ok
    assert sorted((img.node_id, img.ref.type, img.image.size) for img in result.images) == [
        ("6", "output", (256, 192)), ("7", "temp", (256, 192))]
    assert result.outputs["6"]["3d"][0] == "mesh.glb"  # kept for whoever reads it, not decoded
