"""Replaying a recorded trace through comfytest's real client and runner.

The recorded HTTP replies are served by a canned HTTP server (real sockets, real ``requests``),
keyed by method and path, the last reply of each winning; the recorded WebSocket frames of one
socket label per ``connect()`` are put on the client's event queue with their recorded receive
times, followed by a ``Disconnected`` where the recording saw the socket end. So the whole
execution path (queueing, following, resync, /history, status, timing) runs on what a real
server sent, without that server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from comfytest.comfy.client import ComfyClient, Disconnected
from tests.fakehttp import Reply, canned_server
from tests.unit.traces import Trace, parse_frame, received


def recorded_replies(trace: Trace) -> dict[str, Reply]:
    replies: dict[str, Reply] = {}
    for event in trace.events:
        if event["kind"] != "http" or event["response_kind"] == "binary":
            continue
        key = event["path"] if event["method"] == "GET" else f"{event['method']} {event['path']}"
        body = event["response"]
        if event["response_kind"] == "json":
            replies[key] = (event["status"], "application/json", json.dumps(body).encode())
        else:
            replies[key] = (event["status"], "text/plain", str(body).encode())
    return replies


class ReplayClient(ComfyClient):
    """A ComfyClient whose WebSocket is the recording: one socket label per connect()."""

    def __init__(self, url: str, trace: Trace, sockets: list[str]) -> None:
        super().__init__(url)
        self.trace = trace
        self.sockets = list(sockets)
        self.opened: list[str] = []

    @property
    def connected(self) -> bool:
        return bool(self.opened)

    def connect(self) -> None:
        label = self.sockets.pop(0)
        self.opened.append(label)
        for event in self.trace.events:
            if event.get("ws") != label:
                continue
            if event["kind"] == "ws_recv" and event["frame"] in ("text", "binary"):
                self.events.put(parse_frame(event))
            elif event["kind"] == "ws_closed" and self.sockets:
                self.events.put(Disconnected(received(event), "recorded close"))

    def drain(self) -> None:
        pass  # the recorded frames are what this run receives

    def close_socket(self) -> None:
        pass


@contextmanager
def replayed(trace: Trace, sockets: list[str], extra: dict[str, Reply] | None = None) -> Iterator[ReplayClient]:
    replies: dict[str, Any] = {**recorded_replies(trace), **(extra or {})}
    with canned_server(replies) as url:
        client = ReplayClient(url, trace, sockets)
        try:
            yield client
        finally:
            client.http.close()
