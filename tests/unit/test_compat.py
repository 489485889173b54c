"""Newer ComfyUI (≥ 0.25): prompt ids, requests refused for comfytest's own reasons.

Where a canned server stands in below, it is because CI runs only ComfyUI 0.3.75, which takes
any prompt id: the 400 a newer server gives a non-UUID id cannot be produced by a real server
here. Its reply body is the one a real ComfyUI 0.26.0 sent (tests/data/traces/0.26.0).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from comfytest.comfy.client import ComfyClient
from comfytest.comfy.diagnostics import is_workflow_rejection
from comfytest.comfy.execution import Runner, new_prompt_id
from comfytest.errors import PromptRejected, UnsupportedServer
from comfytest.plugin.reporting import failure_kind
from tests.fakehttp import canned_server
from tests.unit.traces import load

JSON = "application/json"
STATS_026 = {"system": {"comfyui_version": "0.26.0", "python_version": "3.11"}, "devices": []}
#: the real ComfyUI 0.26.0's answer to a prompt_id that is not a canonical UUID (recorded)
INVALID_ID_026 = next(
    e["response"] for e in load("validation_errors", "0.26.0").events
    if e["kind"] == "http" and e["status"] == 400 and e["response"]["error"]["type"] == "invalid_prompt_id"
)
PROMPT = {"1": {"class_type": "ComfyTestNoiseImage", "inputs": {"seed": 1}}}


def test_prompt_ids_are_canonical_uuids() -> None:
    ids = {new_prompt_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(str(uuid.UUID(i)) == i for i in ids)  # the check ComfyUI 0.26 makes


@pytest.fixture
def newer_server() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    posted: list[tuple[str, bytes]] = []
    replies = {
        "/system_stats": (200, JSON, json.dumps(STATS_026).encode()),
        "POST /prompt": (400, JSON, json.dumps(INVALID_ID_026).encode()),
    }
    with canned_server(replies, posted=posted) as url:
        yield url, posted


def _runner(url: str) -> Runner:
    client = ComfyClient(url)
    client.ensure_connected = lambda: None  # type: ignore[method-assign]  # no WebSocket here
    return Runner(client)


def test_a_refused_prompt_id_is_unsupported_not_a_regression(newer_server: tuple[str, Any]) -> None:
    url, posted = newer_server
    with pytest.raises(UnsupportedServer) as err:
        _runner(url).run(PROMPT, prompt_id="comfytest-0123abcd")
    text = str(err.value)
    assert text.startswith(f"ComfyUI 0.26.0 at {url} refused comfytest's request")
    assert "invalid_prompt_id" in text and "prompt_id must be a valid UUID" in text
    assert "Fix the inputs" not in text and "does not support that server's protocol yet" in text
    assert failure_kind(err.value) == "unsupported"
    assert json.loads(posted[0][1])["prompt_id"] == "comfytest-0123abcd"


def test_runner_sends_a_canonical_uuid_by_default(newer_server: tuple[str, Any]) -> None:
    url, posted = newer_server
    with pytest.raises(UnsupportedServer):
        _runner(url).run(PROMPT)
    sent = json.loads(posted[0][1])["prompt_id"]
    assert str(uuid.UUID(sent)) == sent


def _rejections(trace: str) -> list[dict[str, Any]]:
    return [e["response"] for e in load(trace).events
            if e["kind"] == "http" and e["path"] == "/prompt" and e["status"] == 400]


def test_real_validation_errors_stay_workflow_rejections() -> None:
    """Every 400 the real 0.3.75 recorded blames the workflow, except "no prompt" (ours)."""
    bodies = _rejections("validation_errors")
    assert len(bodies) >= 5
    verdicts = {b["error"]["type"]: is_workflow_rejection(b) for b in bodies}
    assert verdicts.pop("no_prompt") is False
    assert verdicts and all(verdicts.values()), verdicts
    assert failure_kind(PromptRejected("x")) == "regression"
