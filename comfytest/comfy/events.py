"""WebSocket frames from ComfyUI, each parsed once into a typed, frozen event.

The client's reader thread calls :func:`parse_text` / :func:`parse_binary` for every frame with
the time it was received; everything downstream (routing by prompt id, completion, timing,
reports) works on these values and never looks at raw JSON again. Parsing is deliberately cheap:
one ``json.loads``, a dict lookup and a few field checks, no imports and no image decoding, because
anything slow here delays every later frame (PROTOCOL.md §9, "keep the WS reader light").

A frame we cannot read raises :class:`~comfytest.errors.ProtocolError`. A well-formed message of
a type we do not know (custom nodes send their own) becomes :class:`Unknown`, never an error.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

from comfytest.errors import ProtocolError

#: message types that end a prompt's execution on the server (sent before ``executing(null)``)
END_TYPES: Final = frozenset({"execution_success", "execution_error", "execution_interrupted"})
#: message types that carry the server's wall clock (``timestamp``, integer epoch ms; §2)
TIMESTAMPED: Final = END_TYPES | {"execution_start", "execution_cached"}

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_IMAGE_FORMATS: Final = {1: "jpeg", 2: "png"}
_MIME_FORMATS: Final = {"image/jpeg": "jpeg", "image/png": "png"}
_U32: Final = struct.Struct(">I")
_TWO_U32: Final = struct.Struct(">II")

_Reader = Callable[[str, Mapping[str, Any], str], Any]
_Parser = Callable[[str, dict[str, Any], "Received"], "Event"]


@dataclass(frozen=True, slots=True)
class Received:
    """When the client received a frame: monotonic ms for durations, epoch ms for clock offset."""

    mono_ms: float
    epoch_ms: float


class Clock(Protocol):
    """Source of receive times; tests inject a fake one to replay recorded traces."""

    def now(self) -> Received: ...


@dataclass(frozen=True, slots=True)
class SystemClock:
    """The real clocks: both read together so their difference maps one onto the other."""

    def now(self) -> Received:
        return Received(mono_ms=time.monotonic() * 1000.0, epoch_ms=time.time() * 1000.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One frame: its type, the raw ``data`` object (for reports and debugging) and receive time."""

    type: str
    data: Mapping[str, Any]
    at: Received
    prompt_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Event):
    """Queue size broadcast to every socket; the first one on a socket carries its ``sid``."""

    queue_remaining: int | None
    sid: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStart(Event):
    """The worker took the prompt; ``timestamp`` is server epoch ms, as in all TIMESTAMPED."""

    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionCached(Event):
    nodes: tuple[str, ...]
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Executing(Event):
    """A node starts; ``node is None`` means the prompt is done (see :func:`is_terminal`).

    After a reconnect the server replays the current node without ``prompt_id`` and
    ``display_node`` (PROTOCOL §7), so both may be ``None`` while ``node`` is set.
    """

    node: str | None
    display_node: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress(Event):
    node: str | None
    value: int
    max: int


@dataclass(frozen=True, slots=True)
class NodeState:
    """One entry of a ``progress_state`` snapshot."""

    node_id: str
    state: str
    value: float
    max: float
    display_node_id: str | None
    real_node_id: str | None
    parent_node_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressState(Event):
    """Snapshot of every non-pending node of the prompt so far (not a delta; §2)."""

    nodes: Mapping[str, NodeState]

    def state_of(self, node_id: str) -> str | None:
        entry = self.nodes.get(node_id)
        return entry.state if entry is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Executed(Event):
    node: str
    display_node: str | None
    output: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSuccess(Event):
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionError(Event):
    node_id: str
    node_type: str
    exception_type: str
    exception_message: str
    traceback: tuple[str, ...]
    executed: tuple[str, ...]
    current_inputs: Mapping[str, Any]
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionInterrupted(Event):
    """``node_id`` is the node that was about to run when the flag was seen (§3)."""

    node_id: str
    node_type: str
    executed: tuple[str, ...]
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureFlags(Event):
    flags: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(Event):
    """A text message of a type comfytest does not know; ``payload`` is ``data`` as sent."""

    payload: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview(Event):
    """A preview image (binary type 1 or 4; §6), still encoded.

    ``image_format`` is ``"jpeg"`` or ``"png"`` (a type-4 mime type we do not know is kept as
    sent). Type 1 frames name no node: the consumer attributes them to the last
    ``progress``/``executing`` it saw. ``metadata`` is the type-4 JSON header, else empty.
    """

    event_type: int
    image_format: str
    image: bytes
    node_id: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryFrame(Event):
    """A binary frame of a type without a parser (2 = unencoded preview, 3 = text, ...)."""

    event_type: int
    payload: bytes


def is_terminal(event: Event, prompt_id: str) -> bool:
    """True for ``executing {node: null, prompt_id}``: the prompt is done and in /history (§4)."""
    return isinstance(event, Executing) and event.node is None and event.prompt_id == prompt_id


def parse_text(raw: str, at: Received) -> Event:
    """Parse one text frame; raises ProtocolError if it is not a JSON ``{type, data}`` object."""
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"the WebSocket sent a text frame that is not JSON ({exc}): "
                            f"{_excerpt(raw)}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"the WebSocket sent {type(message).__name__} JSON where a message "
                            f"object {{type, data}} was expected: {_excerpt(raw)}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(f"the WebSocket sent a message without a string 'type': "
                            f"{_excerpt(raw)}")
    parser = _TEXT_PARSERS.get(kind)
    data = message.get("data")
    if parser is None:
        return _unknown(kind, data, at)
    if not isinstance(data, dict):
        raise ProtocolError(f"the WebSocket sent a '{kind}' message whose 'data' is not an "
                            f"object: {_excerpt(raw)}")
    return parser(kind, data, at)


def _unknown(kind: str, data: Any, at: Received) -> Unknown:
    # Custom nodes may send any JSON as data; keep it rather than fail the run over it.
    mapping = data if isinstance(data, dict) else _EMPTY
    pid = mapping.get("prompt_id")
    return Unknown(type=kind, data=mapping, at=at, payload=data,
                   prompt_id=pid if isinstance(pid, str) else None)


def _status(kind: str, data: dict[str, Any], at: Received) -> Status:
    status = data.get("status")
    info = status.get("exec_info") if isinstance(status, dict) else None
    remaining = info.get("queue_remaining") if isinstance(info, dict) else None
    return Status(type=kind, data=data, at=at,
                  queue_remaining=remaining if isinstance(remaining, int) else None,
                  sid=_opt_str(kind, data, "sid"))


def _progress_state(kind: str, data: dict[str, Any], at: Received) -> ProgressState:
    nodes = _obj(kind, data, "nodes")
    states = {str(node_id): _node_state(kind, str(node_id), entry)
              for node_id, entry in nodes.items()}
    return ProgressState(type=kind, data=data, at=at,
                         prompt_id=_opt_str(kind, data, "prompt_id"),
                         nodes=MappingProxyType(states))


def _node_state(kind: str, node_id: str, entry: Any) -> NodeState:
    if not isinstance(entry, dict):
        raise _field_error(kind, f"nodes.{node_id}", "an object", entry)
    return NodeState(node_id=node_id, state=_str(kind, entry, "state"),
                     value=_num(kind, entry, "value"), max=_num(kind, entry, "max"),
                     display_node_id=_opt_str(kind, entry, "display_node_id"),
                     real_node_id=_opt_str(kind, entry, "real_node_id"),
                     parent_node_id=_opt_str(kind, entry, "parent_node_id"))


def _feature_flags(kind: str, data: dict[str, Any], at: Received) -> FeatureFlags:
    return FeatureFlags(type=kind, data=data, at=at, flags=data)


def _declared(cls: type[Event], *fields: tuple[str, _Reader]) -> _Parser:
    """A parser for a message whose event fields are read straight from ``data`` by name."""

    def parse(kind: str, data: dict[str, Any], at: Received) -> Event:
        return cls(type=kind, data=data, at=at,
                   **{name: read(kind, data, name) for name, read in fields})

    return parse


def _str(kind: str, data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _field_error(kind, key, "a string", value)
    return value


def _opt_str(kind: str, data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _field_error(kind, key, "a string or null", value)
    return value


def _int(kind: str, data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):  # bool is an int subclass
        raise _field_error(kind, key, "an integer", value)
    return value


def _count(kind: str, data: Mapping[str, Any], key: str) -> int:
    # Custom nodes' progress bars may report floats; a progress bar must not fail a run.
    return int(_num(kind, data, key))


def _num(kind: str, data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _field_error(kind, key, "a number", value)
    return float(value)


def _str_tuple(kind: str, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _field_error(kind, key, "a list of strings", value)
    return tuple(value)


def _obj(kind: str, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _field_error(kind, key, "an object", value)
    return value


def _opt_obj(kind: str, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else _EMPTY


def _field_error(kind: str, key: str, expected: str, got: Any) -> ProtocolError:
    return ProtocolError(f"the WebSocket sent a '{kind}' message whose '{key}' is not "
                         f"{expected} (got {_excerpt(repr(got))})")


def _excerpt(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


_PROMPT = ("prompt_id", _str)
_OPT_PROMPT = ("prompt_id", _opt_str)
_TIMESTAMP = ("timestamp", _int)
_TEXT_PARSERS: Final[dict[str, _Parser]] = {
    "status": _status,
    "progress_state": _progress_state,
    "feature_flags": _feature_flags,
    "execution_start": _declared(ExecutionStart, _PROMPT, _TIMESTAMP),
    "execution_cached": _declared(ExecutionCached, _PROMPT, ("nodes", _str_tuple), _TIMESTAMP),
    "executing": _declared(Executing, _OPT_PROMPT, ("node", _opt_str),
                           ("display_node", _opt_str)),
    "progress": _declared(Progress, _OPT_PROMPT, ("node", _opt_str), ("value", _count),
                          ("max", _count)),
    "executed": _declared(Executed, _OPT_PROMPT, ("node", _str), ("display_node", _opt_str),
                          ("output", _obj)),
    "execution_success": _declared(ExecutionSuccess, _PROMPT, _TIMESTAMP),
    "execution_error": _declared(
        ExecutionError, _PROMPT, ("node_id", _str), ("node_type", _str),
        ("exception_type", _str), ("exception_message", _str), ("traceback", _str_tuple),
        ("executed", _str_tuple), ("current_inputs", _opt_obj), _TIMESTAMP),
    "execution_interrupted": _declared(
        ExecutionInterrupted, _PROMPT, ("node_id", _str), ("node_type", _str),
        ("executed", _str_tuple), _TIMESTAMP),
}


def parse_binary(raw: bytes, at: Received) -> Event:
    """Parse one binary frame (big-endian ``u32 event type`` first; §6)."""
    if len(raw) < 4:
        raise ProtocolError(f"the WebSocket sent a binary frame of {len(raw)} bytes, shorter "
                            "than its 4-byte event type")
    (event_type,) = _U32.unpack_from(raw)
    if event_type in (1, 4) and len(raw) < 8:
        raise ProtocolError(f"the WebSocket sent a preview frame (type {event_type}) of "
                            f"{len(raw)} bytes, shorter than its 8-byte header")
    if event_type == 1:
        return _preview(raw, at)
    if event_type == 4:
        return _preview_with_metadata(raw, at)
    return BinaryFrame(type="binary", data=_EMPTY, at=at, event_type=event_type,
                       payload=raw[4:])


def _preview(raw: bytes, at: Received) -> Preview:
    _, code = _TWO_U32.unpack_from(raw)
    return Preview(type="preview_image", data=_EMPTY, at=at, event_type=1,
                   image_format=_IMAGE_FORMATS.get(code, f"unknown-{code}"), image=raw[8:],
                   node_id=None, metadata=_EMPTY)


def _preview_with_metadata(raw: bytes, at: Received) -> Preview:
    _, size = _TWO_U32.unpack_from(raw)
    if size > len(raw) - 8:
        raise ProtocolError(f"the WebSocket sent a preview with metadata (type 4) whose "
                            f"metadata length {size} exceeds the {len(raw) - 8} bytes after "
                            "the header")
    metadata = _metadata(raw[8:8 + size])
    mime = metadata.get("image_type")
    image_format = _MIME_FORMATS.get(mime, mime) if isinstance(mime, str) else "unknown"
    node_id, prompt_id = metadata.get("node_id"), metadata.get("prompt_id")
    return Preview(type="preview_image_with_metadata", data=metadata, at=at, event_type=4,
                   image_format=image_format, image=raw[8 + size:],
                   node_id=node_id if isinstance(node_id, str) else None,
                   prompt_id=prompt_id if isinstance(prompt_id, str) else None,
                   metadata=metadata)


def _metadata(blob: bytes) -> dict[str, Any]:
    try:
        metadata = json.loads(blob)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ProtocolError("the WebSocket sent a preview with metadata (type 4) whose "
                            f"metadata is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ProtocolError("the WebSocket sent a preview with metadata (type 4) whose "
                            f"metadata is {type(metadata).__name__}, not an object")
    return metadata
