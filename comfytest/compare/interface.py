"""Node interfaces as baselines: the ``/object_info`` of the node classes a workflow uses (pure
apart from the snapshot files).

API-format workflows carry every input value, so a changed default, a renamed input or a
removed output never shows in their outputs; it breaks users' saved workflows all the same.
With ``--comfy-interface`` each case compares the interface of every class its workflow uses
with ``<baselines>/_interface/<class>.json`` (inputs with type, default, range and options;
outputs with types and names) and fails with the differences. ``--comfy-update-baselines``
writes new and changed snapshots.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from comfytest.compare.store import UPDATE_OPTION, atomic_write, safe_name

INTERFACE_DIR = "_interface"
_SKIP = frozenset({"tooltip"})  # wording, not interface


def snapshot(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One class's interface from its ``/object_info`` entry, in a stable, diffable shape."""
    inputs: dict[str, Any] = {}
    for section in ("required", "optional"):
        for name, spec in (entry.get("input") or {}).get(section, {}).items():
            inputs[name] = {"section": section, **_input(spec)}
    return {
        "inputs": inputs,
        "outputs": [
            {"type": t if isinstance(t, str) else "COMBO", "name": n}
            for t, n in zip(entry.get("output") or [], entry.get("output_name") or entry.get("output") or [])
        ],
        "output_node": bool(entry.get("output_node")),
    }


def _input(spec: Any) -> dict[str, Any]:
    spec = list(spec) if isinstance(spec, list | tuple) else [spec]
    kind, opts = spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    out: dict[str, Any] = {"type": kind} if isinstance(kind, str) else {"type": "COMBO", "options": list(kind)}
    out.update({k: v for k, v in sorted(opts.items()) if k not in _SKIP})
    return out


def diff(cls: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What changed, one line each: ``ComfyTestLevels input strength: default 0.8 -> 0.5``."""
    lines = []
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    for name in old_in:
        if name not in new_in:
            lines.append(f"{cls} input {name!r} was removed (saved workflows that set it break)")
    for name in new_in:
        if name not in old_in:
            lines.append(f"{cls} input {name!r} is new ({new_in[name].get('section')})")
            continue
        a, b = old_in[name], new_in[name]
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                lines.append(f"{cls} input {name!r}: {key} {_show(a.get(key))} -> {_show(b.get(key))}")
    if old.get("outputs") != new.get("outputs"):
        lines.append(f"{cls} outputs: {_outputs(old)} -> {_outputs(new)}")
    if old.get("output_node") != new.get("output_node"):
        lines.append(f"{cls} output_node: {old.get('output_node')} -> {new.get('output_node')}")
    return lines


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)


def _outputs(snap: Mapping[str, Any]) -> str:
    return ", ".join(f"{o['name']} ({o['type']})" for o in snap.get("outputs", [])) or "(none)"


def path_for(root: Path, cls: str) -> Path:
    return root / INTERFACE_DIR / f"{safe_name(cls)}.json"


def check_interfaces(root: Path, info: Mapping[str, Any], classes: Iterable[str], *,
                     update: bool) -> tuple[list[str], list[str]]:
    """Compare (or, with ``update``, write) the snapshots of ``classes``.

    Returns ``(problems, written)``: failure messages, and the snapshot files written."""
    problems, written = [], []
    for cls in sorted(set(classes)):
        if cls not in info:
            continue  # preflight reports missing classes
        current = snapshot(info[cls])
        path = path_for(root, cls)
        stored = _read(path)
        if stored == current:
            continue
        if update:
            atomic_write(path, (json.dumps(current, indent=2, sort_keys=True) + "\n").encode())
            written.append(str(path))
        elif stored is None:
            problems.append(f"no interface baseline yet for node class {cls}: {path} does not exist. "
                            f"Run pytest with --comfy-interface {UPDATE_OPTION} to create it.")
        else:
            changes = "\n".join(f"  {line}" for line in diff(cls, stored, current))
            problems.append(f"node interface of {cls} changed against {path}:\n{changes}\n"
                            f"If the change is intended, run pytest with --comfy-interface {UPDATE_OPTION}.")
    return problems, written


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: differs from anything, so compare fails and update rewrites
    return data if isinstance(data, dict) else {}


__all__ = ["INTERFACE_DIR", "check_interfaces", "diff", "path_for", "snapshot"]
