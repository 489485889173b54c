"""comfytest.comfy.events: every recorded frame parses into the right typed event; bad frames fail."""

from __future__ import annotations

import dataclasses
import json
import struct
import time

import pytest

from comfytest.comfy.events import (
    END_TYPES,
    TIMESTAMPED,
    BinaryFrame,
    Event,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    Preview,
    Progress,
    ProgressState,
    Received,
    Status,
    SystemClock,
    Unknown,
    is_terminal,
    parse_binary,
    parse_text,
)
from comfytest.errors import ProtocolError
from tests.unit.traces import binary_frame, load, parse_frame, received, replay

AT = Received(mono_ms=10.0, epoch_ms=1_700_000_000_010.0)
TRACES = ["success", "cached", "cached_partial", "execution_error", "interrupted",
          "multi_client", "binary_previews", "ws_reconnect", "endpoints", "validation_errors"]
CLASS_FOR_TYPE: dict[str, type[Event]] = {
    "status": Status, "execution_start": ExecutionStart, "execution_cached": ExecutionCached,
    "executing": Executing, "progress": Progress, "progress_state": ProgressState,
    "executed": Executed, "execution_success": ExecutionSuccess,
    "execution_error": ExecutionError, "execution_interrupted": ExecutionInterrupted,
    "feature_flags": FeatureFlags,
}


def text(kind: str, data: object) -> Event:
    return parse_text(json.dumps({"type": kind, "data": data}), AT)


@pytest.mark.parametrize("name", TRACES)
def test_every_recorded_text_frame_parses_to_its_class(name: str) -> None:
    frames = [f for f in load(name).frames() if f["frame"] == "text"]
    assert frames
    for frame in frames:
        event = parse_frame(frame)
        assert type(event) is CLASS_FOR_TYPE[frame["msg"]["type"]]
        assert event.type == frame["msg"]["type"]
        assert event.data == frame["msg"]["data"]
        assert event.at == received(frame)
        assert event.prompt_id == frame["msg"]["data"].get("prompt_id")


@pytest.mark.parametrize("name", TRACES)
def test_timestamped_types_are_exactly_those_with_a_timestamp(name: str) -> None:
    for frame in load(name).frames():
        if frame["frame"] == "text":
            msg = frame["msg"]
            assert ("timestamp" in msg["data"]) == (msg["type"] in TIMESTAMPED), msg["type"]
    assert END_TYPES < TIMESTAMPED


def test_status_carries_queue_size_and_sid() -> None:
    first, enqueue = [parse_frame(f) for f in load("success").frames()][:2]
    assert isinstance(first, Status) and isinstance(enqueue, Status)
    assert (first.queue_remaining, first.sid) == (0, "comfytest-A-2575a0df")
    assert (enqueue.queue_remaining, enqueue.sid) == (1, None)
    assert first.prompt_id is None


def test_execution_start_and_cached_fields() -> None:
    events = replay(load("cached"))
    start = next(e for e in events if isinstance(e, ExecutionStart))
    cached = next(e for e in events if isinstance(e, ExecutionCached))
    assert (start.prompt_id, start.timestamp) == ("e9e642d2-eccc-47c7-830b-3857949e1916",
                                                  1795545319370)
    assert cached.nodes == ("1", "2", "3", "4", "5", "6", "7")
    assert cached.timestamp == 1795545319371


def test_executing_after_reconnect_has_no_prompt_id() -> None:
    replayed = [e for e in replay(load("ws_reconnect"), ws="new") if isinstance(e, Executing)]
    first = replayed[0]
    assert (first.node, first.prompt_id, first.display_node) == ("11", None, None)
    assert not is_terminal(first, "e803c979-6deb-4c63-873e-fb5f85447093")
    assert replayed[1].prompt_id == "e803c979-6deb-4c63-873e-fb5f85447093"


def test_is_terminal_only_for_executing_null_of_that_prompt() -> None:
    pid = "c0dd9e19-b4c9-4c1a-b69d-a22ae793f5dc"
    events = replay(load("success"))
    terminal = [e for e in events if is_terminal(e, pid)]
    assert terminal == [events[-1]]
    assert isinstance(events[-1], Executing) and events[-1].node is None
    assert not any(is_terminal(e, "another-prompt") for e in events)


def test_progress_and_progress_state_fields() -> None:
    events = replay(load("binary_previews"), ws="plain")
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(p.node, p.value, p.max) for p in progress] == [("2", 0, 2), ("2", 1, 2)]
    state = next(e for e in events if isinstance(e, ProgressState) and "2" in e.nodes)
    node = state.nodes["2"]
    assert (node.node_id, node.state, node.value, node.max) == ("2", "running", 0.0, 1.0)
    assert (node.display_node_id, node.real_node_id, node.parent_node_id) == ("2", "2", None)
    assert state.state_of("1") == "finished" and state.state_of("9") is None


def test_progress_accepts_a_float_value() -> None:
    event = text("progress", {"value": 3.0, "max": 20, "node": "5", "prompt_id": "p"})
    assert isinstance(event, Progress) and (event.value, event.max) == (3, 20)


def test_executed_output() -> None:
    executed = [e for e in replay(load("success")) if isinstance(e, Executed)]
    assert [(e.node, e.display_node) for e in executed] == [("7", "7"), ("6", "6")]
    assert executed[1].output == {"images": [{"filename": "success_00001_.png",
                                              "subfolder": "comfytest", "type": "output"}]}


def test_execution_error_fields_match_the_message() -> None:
    frame = next(f for f in load("execution_error").frames()
                 if f["frame"] == "text" and f["msg"]["type"] == "execution_error")
    data, event = frame["msg"]["data"], parse_frame(frame)
    assert isinstance(event, ExecutionError)
    assert (event.node_id, event.node_type, event.exception_type) == (
        "5", "ImageBlend", "RuntimeError")
    assert event.exception_message.startswith("The size of tensor a (2) must match")
    assert event.traceback == tuple(data["traceback"]) and len(event.traceback) > 1
    assert event.executed == ("3", "7", "2", "4")
    assert event.current_inputs == data["current_inputs"] and event.current_inputs
    assert event.timestamp == data["timestamp"]


def test_execution_interrupted_fields() -> None:
    event = next(e for e in replay(load("interrupted")) if isinstance(e, ExecutionInterrupted))
    assert (event.node_id, event.node_type) == ("12", "ImageBlur")
    assert event.executed == ("11", "1", "10")
    assert event.timestamp == 1795545326490


def test_feature_flags() -> None:
    event = next(e for e in replay(load("binary_previews")) if isinstance(e, FeatureFlags))
    assert event.flags == {"supports_preview_metadata": True, "max_upload_size": 104857600}


def test_unknown_types_are_kept_not_rejected() -> None:
    event = text("crystools.monitor", {"cpu_utilization": 3.5, "prompt_id": "p"})
    assert isinstance(event, Unknown) and event.prompt_id == "p"
    assert event.data == {"cpu_utilization": 3.5, "prompt_id": "p"}
    odd = text("custom.list", [1, 2])
    assert isinstance(odd, Unknown) and odd.payload == [1, 2] and odd.data == {}


def test_events_are_frozen() -> None:
    event = text("executing", {"node": "1", "prompt_id": "p"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, "prompt_id", "q")  # noqa: B010 (the point is that this fails)


# -- binary frames ------------------------------------------------------------------------


def test_type1_previews_rebuilt_from_the_trace() -> None:
    frames = [f for f in load("binary_previews").frames("plain") if f["frame"] == "binary"]
    assert len(frames) == 2
    for frame in frames:
        raw = binary_frame(frame)
        assert len(raw) == frame["len"] and raw[:8].hex() == frame["header_hex"]
        event = parse_binary(raw, received(frame))
        assert isinstance(event, Preview)
        assert (event.event_type, event.image_format) == (1, "png")
        assert (event.node_id, event.prompt_id, event.metadata) == (None, None, {})
        assert len(event.image) == frame["image_bytes"]
        assert event.image[:8].hex() == frame["image_magic_hex"]


def test_type4_previews_carry_node_and_prompt() -> None:
    frames = [f for f in load("binary_previews").frames("meta") if f["frame"] == "binary"]
    assert len(frames) == 2
    for frame in frames:
        raw = binary_frame(frame)
        assert len(raw) == frame["len"] and raw[:8].hex() == frame["header_hex"]
        event = parse_binary(raw, received(frame))
        assert isinstance(event, Preview)
        assert (event.event_type, event.image_format, event.node_id) == (4, "png", "2")
        assert event.prompt_id == frame["metadata"]["prompt_id"]
        assert event.metadata == frame["metadata"]
        assert len(event.image) == frame["image_bytes"]


def test_jpeg_code_and_other_binary_types() -> None:
    jpeg = parse_binary(struct.pack(">II", 1, 1) + b"\xff\xd8\xff", AT)
    assert isinstance(jpeg, Preview) and (jpeg.image_format, jpeg.image) == ("jpeg", b"\xff\xd8\xff")
    other = parse_binary(struct.pack(">I", 3) + b"hello", AT)
    assert isinstance(other, BinaryFrame) and (other.event_type, other.payload) == (3, b"hello")


# -- malformed frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "list JSON"),
        ('{"data": {}}', "'type'"),
        ('{"type": 5, "data": {}}', "'type'"),
        ('{"type": "executing", "data": []}', "'data' is not an object"),
        ('{"type": "execution_start", "data": {"prompt_id": "p"}}', "'timestamp'"),
        ('{"type": "execution_start", "data": {"prompt_id": "p", "timestamp": "x"}}',
         "'timestamp'"),
        (('{"type": "execution_cached", "data": {"prompt_id": "p", "nodes": [1],'
          ' "timestamp": 1}}'), "'nodes'"),
        ('{"type": "progress_state", "data": {"prompt_id": "p", "nodes": []}}', "'nodes'"),
        ('{"type": "progress_state", "data": {"nodes": {"1": {"state": "running"}}}}',
         "'value'"),
        ('{"type": "executed", "data": {"node": "1", "prompt_id": "p"}}', "'output'"),
        ('{"type": "executing", "data": {"node": 7}}', "'node'"),
        ('{"type": "progress", "data": {"value": "a", "max": 2}}', "'value'"),
    ],
)
def test_malformed_text_raises_protocol_error(raw: str, says: str) -> None:
    with pytest.raises(ProtocolError, match="the WebSocket") as info:
        parse_text(raw, AT)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "0 bytes"),
        (b"\x00\x00\x01", "3 bytes"),
        (struct.pack(">I", 1), "8-byte header"),
        (struct.pack(">I", 4) + b"\x00", "8-byte header"),
        (struct.pack(">II", 4, 100) + b"{}", "metadata length 100"),
        (struct.pack(">II", 4, 2) + b"[]", "not an object"),
        (struct.pack(">II", 4, 2) + b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_binary_raises_protocol_error(raw: bytes, says: str) -> None:
    with pytest.raises(ProtocolError, match="the WebSocket") as info:
        parse_binary(raw, AT)
    assert says in str(info.value)


def test_system_clock_reads_both_clocks() -> None:
    before = time.time() * 1000.0
    first, second = SystemClock().now(), SystemClock().now()
    assert second.mono_ms >= first.mono_ms
    assert before - 1.0 <= first.epoch_ms <= time.time() * 1000.0 + 1.0
