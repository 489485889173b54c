"""Recorded ComfyUI traces for replay: tests/data/traces (0.3.75, copied from the protocol study)
and tests/data/traces/0.26.0 (recorded here with scripts/record_traces.py).

Each trace is ``{"events": [...]}`` where a WebSocket frame is ``{"kind": "ws_recv", "ws": name,
"t_ms": client epoch ms, "rel_ms": monotonic ms since the trace start, "frame": "text"|"binary",
...}``. Text frames keep the message as ``msg``; binary frames were stored as a description of
their header, so :func:`binary_frame` rebuilds real bytes from it with ``struct.pack``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfytest.comfy.events import Event, Received, parse_binary, parse_text

TRACE_DIR = Path(__file__).resolve().parent.parent / "data" / "traces"
_FORMAT_CODES = {"JPEG": 1, "PNG": 2}
_PNG_MAGIC = bytes.fromhex("89504e470d0a1a0a")


@dataclass(frozen=True)
class Trace:
    name: str
    raw: dict[str, Any]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.raw["events"])

    def frames(self, ws: str | None = None) -> Iterator[dict[str, Any]]:
        """The received WebSocket frames (of one socket if ``ws`` is given), in receive order."""
        for event in self.raw["events"]:
            if event["kind"] == "ws_recv" and (ws is None or event["ws"] == ws):
                yield event

    def messages(self, prompt_id: str) -> list[dict[str, Any]]:
        """Text frames whose ``data.prompt_id`` is ``prompt_id`` (computed without comfytest)."""
        return [f for f in self.frames() if f["frame"] == "text"
                and f["msg"]["data"].get("prompt_id") == prompt_id]

    def create_time(self, prompt_id: str) -> int:
        """``extra_data.create_time`` of a prompt, from a /history or /queue reply in the trace."""
        for entry in self._prompt_entries():
            if entry[1] == prompt_id:
                return int(entry[3]["create_time"])
        raise LookupError(f"{self.name}: no /history or /queue reply mentions {prompt_id}")

    def queued_prompt_ids(self) -> list[str]:
        """Prompt ids from the POST /prompt replies, in queue order."""
        return [e["response"]["prompt_id"] for e in self.raw["events"]
                if e["kind"] == "http" and e["method"] == "POST" and e["path"] == "/prompt"
                and e["status"] == 200]

    def _prompt_entries(self) -> Iterator[list[Any]]:
        for event in self.raw["events"]:
            reply = event.get("response") if event["kind"] == "http" else None
            if not isinstance(reply, dict):
                continue
            yield from reply.get("queue_running", []) + reply.get("queue_pending", [])
            for entry in reply.values():
                if isinstance(entry, dict) and "prompt" in entry:
                    yield entry["prompt"]


def load(name: str, version: str | None = None) -> Trace:
    """A recorded trace: ComfyUI 0.3.75's by default, else ``tests/data/traces/<version>/``."""
    folder = TRACE_DIR / version if version else TRACE_DIR
    return Trace(name, json.loads((folder / f"{name}.json").read_text(encoding="utf-8")))


def received(frame: dict[str, Any]) -> Received:
    """The recorded receive time: monotonic from ``rel_ms``, epoch from ``t_ms``."""
    return Received(mono_ms=float(frame["rel_ms"]), epoch_ms=float(frame["t_ms"]))


def binary_frame(frame: dict[str, Any]) -> bytes:
    """Rebuild a binary frame from its recorded description (same length and header)."""
    image = _PNG_MAGIC + bytes(frame["image_bytes"] - len(_PNG_MAGIC))
    if frame["event_type"] == 1:
        return struct.pack(">II", 1, _FORMAT_CODES[frame["image_format"]]) + image
    if frame["event_type"] == 4:
        metadata = json.dumps(frame["metadata"]).encode()
        return struct.pack(">II", 4, len(metadata)) + metadata + image
    raise ValueError(f"no rebuild rule for binary event type {frame['event_type']}")


def replay(trace: Trace, ws: str | None = None) -> list[Event]:
    """Every received frame of the trace parsed by comfytest, with its recorded receive time."""
    return [parse_frame(frame) for frame in trace.frames(ws)]


def parse_frame(frame: dict[str, Any]) -> Event:
    if frame["frame"] == "binary":
        return parse_binary(binary_frame(frame), received(frame))
    return parse_text(json.dumps(frame["msg"]), received(frame))
