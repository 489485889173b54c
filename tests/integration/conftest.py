"""Fixtures the fault tests share: a TCP fault proxy in front of the session's real server, and
a client that talks to the server through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from comfytest.comfy.client import ComfyClient
from tests.faultproxy import FaultProxy, proxy_to


@pytest.fixture
def proxy(comfy_url: str) -> Iterator[FaultProxy]:
    with proxy_to(comfy_url) as p:
        yield p


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[ComfyClient]:
    c = ComfyClient(proxy.url, request_timeout=3)
    yield c
    c.close()
