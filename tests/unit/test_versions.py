"""Version awareness from what real servers reported: /system_stats of ComfyUI 0.3.75 (from a
recorded trace) and 0.26.0 (saved from a real server run by hand, see docs/compatibility.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from comfytest.comfy.compat import (
    CHECKED_VERSIONS,
    cache_mode,
    info_from_dict,
    newer_warning,
    parse_version,
    server_info,
)
from comfytest.plugin.reporting import version_warnings
from comfytest.report.document import new_document, server_line
from comfytest.report.text import render_markdown, render_terminal
from tests.unit.traces import TRACE_DIR, load

STATS_026 = json.loads((TRACE_DIR.parent / "system_stats" / "0.26.0.json").read_text())


def stats_075() -> dict[str, Any]:
    return next(e["response"] for e in load("endpoints").events
                if e["kind"] == "http" and e["path"] == "/system_stats")


def test_what_0_3_75_says_about_itself() -> None:
    info = server_info(stats_075())
    assert (info.comfyui_version, info.frontend_version, info.templates_version) == ("0.3.75", "1.32.9", "0.7.25")
    assert info.cache_mode == "classic"
    assert newer_warning(info) is None


def test_what_0_26_says_about_itself() -> None:
    info = server_info(STATS_026)
    assert (info.comfyui_version, info.frontend_version, info.templates_version) == ("0.26.0", "1.45.19", "0.10.3")
    assert info.cache_mode == "ram-pressure"  # its log said "Using RAM pressure cache."
    assert info.label() == "ComfyUI 0.26.0 (frontend 1.45.19, templates 0.10.3, cache ram-pressure)"
    assert newer_warning(info) is None and "0.26.0" in CHECKED_VERSIONS


@pytest.mark.parametrize(
    ("argv", "version", "mode"),
    [
        (["main.py", "--cache-classic"], "0.26.0", "classic"),
        (["main.py", "--cache-lru", "10"], "0.26.0", "lru"),
        (["main.py", "--cache-lru", "0"], "0.3.75", "classic"),
        (["main.py", "--cache-none"], "0.3.75", "none"),
        (["main.py", "--cache-ram", "4"], "0.3.75", "ram-pressure"),
        (["main.py"], "0.45.1", "ram-pressure"),
        (["main.py"], None, "unknown"),
    ],
)
def test_cache_mode_from_flags_then_version_default(argv: list[str], version: str | None, mode: str) -> None:
    assert cache_mode(argv, version) == mode


def test_a_newer_server_is_named_once_in_the_summary_and_in_the_header() -> None:
    stats = json.loads(json.dumps(STATS_026).replace('"0.26.0"', '"0.45.2"'))
    info = server_info(stats)
    assert parse_version(info.comfyui_version) == (0, 45, 2)
    doc = new_document({"comfyui": info.as_dict(), "system_stats": stats}, [])
    (warning,) = version_warnings(doc)
    assert warning.startswith("warning: ComfyUI 0.45.2 is newer than the newest version")
    assert "(0.26.0; see docs/compatibility.md)" in warning
    assert server_line(doc) == "server: ComfyUI 0.45.2 (frontend 1.45.19, templates 0.10.3, cache ram-pressure)"
    assert render_terminal(doc)[1] == server_line(doc)
    assert server_line(doc) in render_markdown(doc)


def test_reports_without_server_info_render_as_before() -> None:
    doc = new_document({}, [])
    assert server_line(doc) is None and version_warnings(doc) == []
    assert info_from_dict(None) is None and info_from_dict("x") is None
