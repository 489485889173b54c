"""What comfytest knows about ComfyUI versions (pure; the table is docs/compatibility.md).

A server says what it is in ``GET /system_stats``: ``comfyui_version``, the frontend and
templates versions it wants, and the ``argv`` it was started with. ``server_info`` reads them
into one value for the report's fingerprint and header, with the cache mode the server runs
(cached counts and timings differ between ComfyUI's caches), and ``newer_warning`` says, once
per session, when the server is newer than any version comfytest was checked against.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: the ComfyUI versions comfytest was run against (CI: 0.3.75; by hand: the others)
CHECKED_VERSIONS = ("0.3.75", "0.26.0")
#: the first version seen with the RAM-pressure cache as default (0.3.75: the classic cache)
RAM_CACHE_DEFAULT_SINCE = (0, 26, 0)

_CACHE_FLAGS = (
    ("--cache-classic", "classic"),
    ("--cache-lru", "lru"),
    ("--cache-none", "none"),
    ("--cache-ram", "ram-pressure"),
)


@dataclass(frozen=True)
class ServerInfo:
    """A ComfyUI server as it describes itself (``None`` where it does not say)."""

    comfyui_version: str | None
    frontend_version: str | None  # the frontend package installed (else: the one required)
    templates_version: str | None  # the workflow templates package installed
    cache_mode: str  # classic | lru | none | ram-pressure | unknown

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """``ComfyUI 0.26.0 (frontend 1.45.19, templates 0.10.3, cache ram-pressure)``."""
        extras = [f"frontend {self.frontend_version}" if self.frontend_version else "",
                  f"templates {self.templates_version}" if self.templates_version else "",
                  f"cache {self.cache_mode}"]
        return f"ComfyUI {self.comfyui_version or '(version unknown)'} ({', '.join(e for e in extras if e)})"


def info_from_dict(data: Any) -> ServerInfo | None:
    """The ``ServerInfo`` stored in a report's fingerprint (``comfyui``), or ``None``."""
    if not isinstance(data, Mapping):
        return None
    version, frontend, templates = (_text(data.get(k)) for k in ("comfyui_version", "frontend_version", "templates_version"))
    return ServerInfo(version, frontend, templates, str(data.get("cache_mode") or "unknown"))


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"0.26.0"`` → ``(0, 26, 0)``; ``None`` for anything that is not dotted numbers."""
    match = re.match(r"^v?(\d+(?:\.\d+)*)", (text or "").strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def server_info(system_stats: Mapping[str, Any] | None) -> ServerInfo:
    system = (system_stats or {}).get("system")
    system = system if isinstance(system, Mapping) else {}
    version = _text(system.get("comfyui_version"))
    argv = system.get("argv")
    return ServerInfo(
        comfyui_version=version,
        frontend_version=_installed(system, "comfyui-frontend-package") or _text(system.get("required_frontend_version")),
        templates_version=_text(system.get("installed_templates_version")),
        cache_mode=cache_mode(argv if isinstance(argv, list) else [], version),
    )


def cache_mode(argv: Sequence[Any], version: str | None) -> str:
    """The cache a server runs: from its start flags, else the default of its version."""
    for flag, mode in _CACHE_FLAGS:
        if flag in argv:
            if flag == "--cache-lru" and not _positive_after(argv, flag):
                continue  # --cache-lru 0 is the default (no LRU)
            return mode
    parsed = parse_version(version)
    if parsed is None:
        return "unknown"
    return "ram-pressure" if parsed >= RAM_CACHE_DEFAULT_SINCE else "classic"


def newer_warning(info: ServerInfo) -> str | None:
    """One line when the server is newer than every version comfytest was checked against."""
    parsed = parse_version(info.comfyui_version)
    newest = max(CHECKED_VERSIONS, key=lambda v: parse_version(v) or ())
    if parsed is None or parsed <= (parse_version(newest) or ()):
        return None
    return (
        f"ComfyUI {info.comfyui_version} is newer than the newest version this comfytest was "
        f"checked against ({newest}; see docs/compatibility.md). Runs should work; a request "
        "the server refuses fails as 'unsupported'."
    )


def _installed(system: Mapping[str, Any], package: str) -> str | None:
    """The installed version of a package listed in ``comfy_package_versions`` (0.26 and later)."""
    for entry in system.get("comfy_package_versions") or []:
        if isinstance(entry, Mapping) and entry.get("name") == package:
            return _text(entry.get("installed"))
    return None


def _positive_after(argv: Sequence[Any], flag: str) -> bool:
    index = list(argv).index(flag)
    try:
        return int(argv[index + 1]) > 0
    except (IndexError, ValueError, TypeError):
        return False


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
