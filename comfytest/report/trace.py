"""The trace finding in reports (issue 23): the chain of nodes with the first change marked
(HTML) and the first changed node as JUnit properties. Reads ``record["trace"]``, which
``plugin.tracing`` fills from ``compare.trace.Finding.to_json``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any

CSS = (".trace td,.trace th{padding:2px 8px;text-align:left;font-size:90%}"
       ".trace tr.first-change{background:#ffebee;font-weight:bold}.trace tr.follows{color:#8d6e63}")
_STATES = {"same": "same", "origin": "◀ first change: inside this node", "loaded": "◀ first change: the file it loads",
           "settings": "◀ first change: its settings", "new": "not in the baseline's trace",
           "follows": "differs (its inputs did)"}


def fingerprint_text(fp: Mapping[str, Any] | None) -> str:
    """One fingerprint in a few words: an image's size, phash and channel means; a tensor's shape
    and statistics; a value."""
    if not fp:
        return "—"
    kind = fp.get("kind")
    shape = "x".join(str(s) for s in fp.get("shape") or [])
    if kind == "image":
        means = ",".join(f"{v:.3f}" for v in fp.get("mean") or [])
        return f"{shape} phash {','.join(fp.get('phash') or [])} mean {means}"
    if kind == "tensor":
        return f"{shape} {fp.get('dtype')} mean/std/min/max {','.join(f'{v:.4g}' for v in fp.get('stats') or [])}"
    if kind == "value":
        return repr(fp.get("value"))[:80]
    return str(kind)


Figure = Callable[[str, str, str], str]  # role, path, caption → an embedded <figure>


def trace_html(record: Mapping[str, Any], figure: Figure | None = None) -> str:
    """The trace section of one test: the finding, the changed node's baseline and obtained
    pictures side by side (``figure`` embeds one), and the chain with the first change marked."""
    trace = record.get("trace")
    if not isinstance(trace, Mapping) or not trace.get("chain"):
        return ""
    first = (trace.get("first_change") or {}).get("node_id")
    rows = []
    for node in trace["chain"]:
        css = "first-change" if node.get("node_id") == first else str(node.get("state"))
        for out in node.get("outputs") or [{}]:
            cells = [node.get("label"), _STATES.get(str(node.get("state")), node.get("state")), out.get("type"),
                     out.get("differs") or "", fingerprint_text(out.get("baseline")), fingerprint_text(out.get("obtained"))]
            rows.append(f'<tr class="{escape(css)}">' + "".join(f"<td>{escape(str(c or ''))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("node", "state", "output", "differs", "baseline", "obtained"))
    pictures = "".join(
        '<div class="images">' + "".join(figure(role, str(p[role]), f"{role}: node {p.get('node_id')} output {p.get('slot')}")
                                         for role in ("baseline", "obtained")) + "</div>"
        for p in trace.get("pictures") or [] if figure is not None)
    return (f'<details class="trace" open><summary>Trace of intermediate outputs: {escape(str(trace.get("message", "")).splitlines()[0])}'
            f'</summary>{pictures}<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></details>')


def trace_properties(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``comfy_first_change`` (``node 3 'Warm tint' (TraceWarmTint)``) and its node id, for CI."""
    trace = record.get("trace")
    if not isinstance(trace, Mapping) or not isinstance(first := trace.get("first_change"), Mapping):
        return []
    label = next((n.get("label") for n in trace.get("chain") or [] if n.get("node_id") == first.get("node_id")), None)
    return [("comfy_first_change", str(label or first.get("node_id"))), ("comfy_first_change_node", str(first.get("node_id")))]


__all__ = ["CSS", "fingerprint_text", "trace_html", "trace_properties"]
