"""How far one output's fingerprint (taken by comfytest's tap node, see ``compare.trace``) moved
from another, in words, within a tolerance (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_CLIP = 60


@dataclass(frozen=True)
class Tolerance:
    """How far a fingerprint may move and still match: phash bits per frame, image channel
    mean/std (0..1 scale), and other tensors' statistics relative to their spread."""

    hash_bits: int = 2
    image_stat: float = 2.0 / 255.0
    tensor_rel: float = 0.01


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1") if a and b and len(a) == len(b) else 64


def _floats(values: Any) -> str:
    return ",".join(f"{v:.3f}" for v in values)


def _image_diff(a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance) -> str | None:
    if a.get("shape") != b.get("shape"):
        return f"shape {_shape(a)} → {_shape(b)}"
    reasons = []
    distance = max((_hamming(x, y) for x, y in zip(a.get("phash", []), b.get("phash", []))), default=0)
    if distance > tol.hash_bits:
        reasons.append(f"phash distance {distance} > {tol.hash_bits}")
    for stat in ("mean", "std"):
        x, y = a.get(stat, []), b.get(stat, [])
        if len(x) != len(y) or any(abs(p - q) > tol.image_stat for p, q in zip(x, y)):
            reasons.append(f"channel {stat} {_floats(x)} → {_floats(y)}")
    return "; ".join(reasons) or None


def _shape(fp: Mapping[str, Any]) -> str:
    return "x".join(str(s) for s in fp.get("shape", [])) + (f" {fp['dtype']}" if fp.get("dtype") else "")


def _tensor_diff(a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance) -> str | None:
    if a.get("shape") != b.get("shape") or a.get("dtype") != b.get("dtype"):
        return f"shape {_shape(a)} → {_shape(b)}"
    x, y = a.get("stats", []), b.get("stats", [])
    spread = abs(x[1]) if len(x) > 1 else 0.0
    if len(x) != len(y) or any(abs(p - q) > tol.tensor_rel * (spread + abs(p)) + 1e-6 for p, q in zip(x, y)):
        return f"mean/std/min/max {_floats(x)} → {_floats(y)}"
    return None


def _value_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    x, y = a.get("value"), b.get("value")
    if isinstance(x, float) and isinstance(y, float) and abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0):
        return None
    return None if x == y and type(x) is type(y) else f"value {short(x)} → {short(y)}"


def short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= _CLIP else text[:_CLIP] + "…"


def fingerprint_diff(a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance) -> str | None:
    """Why fingerprint ``b`` left ``a`` (words), or None when it matches within ``tol``."""
    kind = a.get("kind")
    if kind != b.get("kind"):
        return f"{kind} → {b.get('kind')}"
    if kind == "image":
        return _image_diff(a, b, tol)
    if kind == "tensor":
        return _tensor_diff(a, b, tol)
    if kind == "value":
        return _value_diff(a, b)
    if kind in ("list", "dict"):
        return _nested_diff(a, b, tol)
    same = {k: v for k, v in a.items()} == {k: v for k, v in b.items()}
    return None if same else f"{kind} {short(a.get('sha') or a.get('object'))} → {short(b.get('sha') or b.get('object'))}"


def _nested_diff(a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance) -> str | None:
    if a.get("length") != b.get("length"):
        return f"length {a.get('length')} → {b.get('length')}"
    x, y = a.get("items"), b.get("items")
    pairs = list(zip(x, y)) if isinstance(x, list) and isinstance(y, list) else [
        (x.get(k), y.get(k)) for k in sorted(set(x) | set(y))] if isinstance(x, dict) and isinstance(y, dict) else []
    for index, (p, q) in enumerate(pairs):
        if p is None or q is None:
            return "items differ"
        reason = fingerprint_diff(p, q, tol)
        if reason:
            return f"item {index}: {reason}"
    return None


__all__ = ["Tolerance", "fingerprint_diff", "short"]
