"""The HTML rendering of a report document: a summary that opens at once, then one section per test.

No network: CSS and the little JS are inline. Images are linked files beside the report
(``linked``, the default) or embedded as ``data:`` URIs (``self-contained``); see
``report.assets``. A passing image output is a lazily loaded thumbnail of a few KB; a failing one
shows baseline, obtained, difference and side by side at full size. Every value from the document
goes through ``html.escape``; workflow titles and server messages are untrusted.

Stable hooks for tests and user scripts: ``section.test-record[data-nodeid][data-outcome]
[data-workflow][data-kinds]``, ``.comparison[data-output][data-status]``, ``img.artefact[data-role]``
(``thumbnail`` for a passing output), ``.not-available[data-role]``, ``.comparison[data-kind]`` with
``video.media[data-role]`` / ``audio.media[data-role]`` players (``baseline_media``,
``obtained_media``) and ``.compared``, ``.node-bar[data-node-id][data-duration-ms]`` (class ``cached``
for cached nodes), ``#summary``, ``#filters`` (``select[name=outcome|workflow|kind]``), ``#fingerprint``.
After load, the inline script sets ``body[data-js-test-count]``, ``body[data-images-loaded]`` ("true"
once every image the page loaded decoded; lazily loaded images count once loaded) and
``body[data-shown]`` (tests the filters show).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from comfytest.compare.criteria import fmt
from comfytest.report.assets import HTML_MODES, Assets
from comfytest.report.document import (
    Record,
    format_ms,
    measured_nodes,
    server_line,
    server_total_ms,
    summary_line,
    test_label,
    test_server,
)
from comfytest.report.memory import figures, memory_cell, memory_lines
from comfytest.report.perfcompare import html_section as perf_section
from comfytest.report.trace import CSS as TRACE_CSS
from comfytest.report.trace import trace_html

Keys = tuple[str, ...]

IMAGE_ROLES = ("baseline", "obtained", "diff", "side_by_side")
SEED_KEYS = ("node_id", "class_type", "input", "value")
PATCH_KEYS = ("node_id", "input", "value")
METRICS = ("method", "distance", "tolerance", "max_abs_diff", "mean_abs_diff", "psnr")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.1em;margin:0 0 .4em}
.test-record{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;font-size:.85em}
.badge-passed{background:#2e7d32}.badge-failed{background:#c62828}
.badge-error{background:#6a1b9a}.badge-skipped{background:#757575}
pre{background:#f3f3f3;padding:.6em;overflow:auto;white-space:pre-wrap}
.images{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figure img{max-width:320px;border:1px solid #ccc;display:block;image-rendering:pixelated}
.overview td.num{text-align:right;font-variant-numeric:tabular-nums}
.overview tr.failed td:first-child{border-left:4px solid #c62828}
pre.text-output{max-width:40em}
figure video{max-width:320px;display:block}.players{display:flex;gap:1em;margin:.5em 0}
.not-available{display:inline-block;padding:2em 1em;border:1px dashed #aaa;color:#777}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}
.node-row{display:flex;align-items:center;gap:.5em;margin:.15em 0}
.node-label{width:22em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.node-track{flex:1;background:#eee;height:1em;border-radius:3px}
.node-bar{background:#1565c0;height:100%;border-radius:3px;min-width:1px}
.node-bar.model-load{background:#ef6c00}
.memory ul{margin:.2em 0;padding-left:1.2em}img.preview{max-width:160px}
.node-bar.cached{background:repeating-linear-gradient(45deg,#bbb 0 4px,#ddd 4px 8px)}
.node-ms{width:11em;text-align:right;font-variant-numeric:tabular-nums}
body.failures-only [data-outcome=passed],
body.failures-only [data-outcome=skipped],.filtered{display:none}
.test-record{content-visibility:auto;contain-intrinsic-size:auto 420px}
figure.full img{max-width:100%}img.thumb{border-color:#ddd}
#filters{margin:.6em 0}#filters label{margin-right:1em}
"""

# Once the page (and so every <img>) has loaded, record how many images decoded: lets headless
# tests, and users reading a saved DOM, tell a broken embed from a working one. The load event
# rather than img.decode(): decode() settles off the main thread and can miss a DOM dump.
SCRIPT = """
(function(){
  var body = document.body;
  body.dataset.jsTestCount = document.querySelectorAll('.test-record').length;
  var toggle = document.getElementById('failures-only');
  if (toggle) toggle.addEventListener('change', function(){
    body.classList.toggle('failures-only', toggle.checked);
  });
  var selects = Array.prototype.slice.call(document.querySelectorAll('#filters select'));
  function filter(){
    var want = {};
    selects.forEach(function(s){ want[s.name] = s.value; });
    var shown = 0;
    Array.prototype.forEach.call(document.querySelectorAll('[data-workflow]'), function(el){
      var d = el.dataset;
      var ok = (!want.outcome || d.outcome === want.outcome) && (!want.workflow || d.workflow === want.workflow)
        && (!want.kind || (' ' + d.kinds + ' ').indexOf(' ' + want.kind + ' ') >= 0);
      el.classList.toggle('filtered', !ok);
      if (ok && el.tagName === 'SECTION') shown++;
    });
    body.dataset.shown = shown;
  }
  // report.html#outcome=failed&kind=image opens filtered (a link a CI comment can carry)
  location.hash.replace(/^#/, '').split('&').forEach(function(pair){
    var kv = pair.split('=');
    var s = selects.filter(function(x){ return x.name === kv[0]; })[0];
    if (s && kv.length === 2) s.value = decodeURIComponent(kv[1]);
  });
  selects.forEach(function(s){ s.addEventListener('change', filter); });
  filter();
  // lazily loaded thumbnails not yet scrolled to are not counted as broken
  function record(){
    var imgs = Array.prototype.slice.call(document.images).filter(function(img){
      return img.loading !== 'lazy' || img.complete; });
    var decoded = imgs.filter(function(img){ return img.complete && img.naturalWidth > 0; });
    body.dataset.imagesDecoded = decoded.length;
    body.dataset.imagesLoaded = decoded.length === imgs.length ? 'true' : 'false';
  }
  if (document.readyState === 'complete') record();
  else window.addEventListener('load', record);
})();
"""


def render_html(doc: Mapping[str, Any], base_dir: Path, *, trends: str = "", images: str = "linked") -> str:
    """The whole page, to be written as ``base_dir/report.html``: relative artefact paths are
    resolved against ``base_dir``; ``images`` is ``linked`` (files referred to relative to
    ``base_dir``) or ``self-contained`` (embedded); ``trends`` is an HTML section
    (``trend.trend_section``) placed before the fingerprint."""
    if images not in HTML_MODES:
        raise ValueError(f"images={images!r}: expected one of {', '.join(HTML_MODES)}")
    assets = Assets(base_dir, embed=images == "self-contained")
    tests = doc.get("tests") or []
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>comfytest report {_e(doc.get('created'))}</title>",
            f"<style>{CSS}{TRACE_CSS}</style></head>",
            f'<body data-test-count="{len(tests)}">',
            _summary(doc),
            _filters(tests),
            _overview(tests),
            perf_section(tests),
            *(_record(record, index, assets) for index, record in enumerate(tests)),
            _unused(doc.get("unused_baselines") or []),
            trends,
            _fingerprint(doc.get("fingerprint") or {}),
            f"<script>{SCRIPT}</script>",
            "</body></html>",
        ]
    )


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _summary(doc: Mapping[str, Any]) -> str:
    server = server_line(doc)
    return (
        '<header id="summary"><h1>comfytest report</h1>'
        f'<p class="summary-line">{_e(summary_line(doc))}</p>'
        + (f'<p class="server-line">{_e(server)}</p>' if server else "")
        + f"<p>created {_e(doc.get('created'))} · schema {_e(doc.get('schema'))}</p>"
        '<label><input type="checkbox" id="failures-only"> show failures only</label>'
        "</header>"
    )


def _kinds(record: Record) -> str:
    """The output kinds a test compared, space-separated (``image text``), for the kind filter."""
    kinds = dict.fromkeys(str(c.get("kind") or "image") for c in record.get("comparisons") or [])
    return " ".join(kinds)


def _filter_attrs(record: Record) -> str:
    return (f' data-outcome="{_e(record.get("outcome"))}" data-workflow="{_e(record.get("workflow"))}"'
            f' data-kinds="{_e(_kinds(record))}"')


def _filters(tests: Iterable[Record]) -> str:
    """Selects for outcome, workflow and output kind; the inline script hides what does not match."""
    records = list(tests)
    if not records:
        return ""
    choices = {
        "outcome": sorted({str(r.get("outcome")) for r in records}),
        "workflow": sorted({str(r.get("workflow")) for r in records}),
        "kind": sorted({k for r in records for k in _kinds(r).split()}),
    }
    selects = "".join(
        f'<label>{name} <select name="{name}"><option value="">all</option>'
        + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
        + "</select></label>"
        for name, values in choices.items()
    )
    return f'<nav id="filters">{selects}</nav>'


def _record(record: Record, index: int, assets: Assets) -> str:
    outcome = str(record.get("outcome"))
    kind = f" ({record['failure_kind']})" if record.get("failure_kind") else ""
    parts = [
        f'<section class="test-record" id="test-{index}" data-nodeid="{_e(record.get("nodeid"))}"'
        f'{_filter_attrs(record)}>',
        f'<h2>{_e(test_label(record))} <span class="badge badge-{_e(outcome)}">'
        f"{_e(outcome)}{_e(kind)}</span></h2>",
        f'<p class="nodeid"><code>{_e(record.get("nodeid"))}</code></p>',
    ]
    if record.get("server"):
        parts.append(f'<p class="server">ran on {_e(test_server(record))}</p>')
    message = str(record.get("message") or "")
    if message:
        parts.append(f'<pre class="message">{_e(message)}</pre>')
    parts.extend(_comparison(c, assets, message) for c in record.get("comparisons") or [])
    parts.append(trace_html(record, lambda role, path, label: _figure(role, path, assets, label)))  # issue 23
    parts.append(_timing(record))
    parts.append(_memory(record))
    parts.append(_previews(record, assets))
    parts.append(_inputs("Seeds", "seeds", record.get("seeds"), SEED_KEYS))
    parts.append(_inputs("Patches", "patches", record.get("patches"), PATCH_KEYS))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _num(value: Any) -> str:
    """Numbers rounded for reading; everything else as it is."""
    return fmt(float(value)) if isinstance(value, float) else "" if value is None else str(value)


OVERVIEW = ("test", "output", "status", "distance", "max diff", "mean diff", "PSNR dB", "criteria",
            "server ms", "peak memory")


def _overview(tests: Iterable[Record]) -> str:
    """One row per output (failures first), so a reviewer sees every metric at a glance; the
    test's server time and peak memory (as in the terminal table) on its first row. The rows
    of one test are one ``tbody`` carrying the filter attributes."""
    groups = []
    for index, record in enumerate(tests):
        rows = []
        failed = record.get("outcome") not in ("passed", "skipped")
        comps = record.get("comparisons") or [{}]
        ms = server_total_ms(record)
        per_test = [format_ms(ms) if ms is not None else "", memory_cell(record) if record.get("memory") else ""]
        for number, comp in enumerate(comps):
            cells = [test_label(record), comp.get("output") or "-", comp.get("status") or record.get("outcome"),
                     comp.get("distance"), comp.get("max_abs_diff"), comp.get("mean_abs_diff"), comp.get("psnr"),
                     comp.get("criteria"), *(per_test if number == 0 else ["", ""])]
            html = "".join(
                f'<td{" class=num" if isinstance(c, int | float) else ""}>'
                + (f'<a href="#test-{index}">{_e(c)}</a>' if i == 0 else _e(_num(c))) + "</td>"
                for i, c in enumerate(cells))
            rows.append(f'<tr class="{"failed" if failed else "passed"}">{html}</tr>')
        groups.append((not failed, index, f'<tbody{_filter_attrs(record)}>{"".join(rows)}</tbody>'))
    if not groups:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in OVERVIEW)
    body = "".join(group for *_, group in sorted(groups, key=lambda g: (g[0], g[1])))
    return f'<table class="overview"><thead><tr>{head}</tr></thead>{body}</table>'


#: outputs that hold their baseline: shown small (a thumbnail), never at full size
OK_STATUSES = ("passed", "unchanged", "created", "updated")


def _comparison(comparison: Mapping[str, Any], assets: Assets, record_message: str = "") -> str:
    if comparison.get("kind") in MEDIA_KINDS:
        return _media_comparison(comparison, assets)
    is_text = "text" in comparison
    figures = [] if is_text else _image_figures(comparison, assets)
    if is_text:
        figures.append(f'<figure><pre class="text-output" data-role="obtained">{_e(comparison["text"])}</pre>'
                       "<figcaption>obtained text</figcaption></figure>")
        if comparison.get("baseline_text") not in (None, comparison["text"]):
            figures.insert(0, f'<figure><pre class="text-output" data-role="baseline">'
                              f'{_e(comparison["baseline_text"])}</pre><figcaption>baseline text</figcaption></figure>')
    metrics = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e(_num(comparison.get(key)))}</td></tr>"
        for key in METRICS
        if comparison.get(key) is not None
    )
    message = comparison.get("message")
    if message and str(message) in record_message:
        message = None  # the test's message already says it: each message once
    return (
        f'<div class="comparison" data-output="{_e(comparison.get("output"))}"'
        f' data-status="{_e(comparison.get("status"))}">'
        f"<h3>output {_e(comparison.get('output'))}: {_e(comparison.get('status'))}</h3>"
        + (f'<p class="comparison-message">{_e(message)}</p>' if message else "")
        + (f'<table class="metrics">{metrics}</table>' if metrics else "")
        + f'<div class="images">{"".join(figures)}</div></div>'
    )


def _image_figures(comparison: Mapping[str, Any], assets: Assets) -> list[str]:
    """A passing output: its thumbnail (linked to the full image), lazily loaded; without one
    (a document from before thumbnails) its baseline, also lazily and small. A failing output:
    baseline (the copy in the results folder when there is one), obtained, diff and side by side
    at full size."""
    if comparison.get("status") in OK_STATUSES:
        full = comparison.get("obtained") or comparison.get("baseline")
        if comparison.get("thumbnail"):
            return [_figure("thumbnail", comparison["thumbnail"], assets, "thumbnail", lazy=True, href=full)]
        return [_figure(role, comparison.get(role), assets, lazy=True)
                for role in IMAGE_ROLES if comparison.get(role) or role == "baseline"]
    paths = {**comparison, "baseline": comparison.get("baseline_copy") or comparison.get("baseline")}
    return [_figure(role, paths.get(role), assets, full=True)
            for role in IMAGE_ROLES if paths.get(role) or role in ("baseline", "obtained")]


# --- video, audio, latent and other files (issue 10) -------------------------------------

MEDIA_KINDS = ("video", "audio", "latent", "file")
MEDIA_PICTURES = ("waveform", "spectrogram")
_CAPTIONS = {"baseline": "baseline contact sheet", "obtained": "obtained contact sheet",
             "diff": "diff contact sheet", "side_by_side": "side by side",
             "baseline_media": "baseline", "obtained_media": "obtained"}


def _media_comparison(comparison: Mapping[str, Any], assets: Assets) -> str:
    """Players for video and audio (baseline and obtained), their pictures, and how it was compared."""
    kind, media = str(comparison.get("kind")), comparison.get("media") or {}
    pictures = [("baseline", media.get("baseline"))] if kind == "video" else []
    pictures += [(r, comparison.get(r)) for r in ("obtained", "diff", "side_by_side")
                 if str(comparison.get(r) or "").endswith(".png")]
    pictures += [(r, media.get(r)) for r in MEDIA_PICTURES if media.get(r)]
    figures = [_figure(role, path, assets, _CAPTIONS.get(role)) for role, path in pictures]
    players = [_player(kind, role, media.get(role), assets)
               for role in ("baseline_media", "obtained_media") if kind in ("video", "audio")]
    rows = [(k, comparison.get(k)) for k in ("method", "distance", "tolerance") if comparison.get(k) is not None]
    rows += [(k, v) for k, v in (comparison.get("metrics") or {}).items() if k not in ("method", "distance", "tolerance")]
    metrics = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_json(v))}</td></tr>" for k, v in rows if v is not None)
    message = comparison.get("message")
    return (
        f'<div class="comparison" data-output="{_e(comparison.get("output"))}"'
        f' data-status="{_e(comparison.get("status"))}" data-kind="{_e(kind)}">'
        f"<h3>output {_e(comparison.get('output'))} ({_e(kind)}): {_e(comparison.get('status'))}</h3>"
        f'<p class="compared">compared: {_e(comparison.get("compared"))}</p>'
        + (f'<p class="comparison-message">{_e(message)}</p>' if message else "")
        + (f'<table class="metrics">{metrics}</table>' if metrics else "")
        + (f'<div class="players">{"".join(players)}</div>' if players else "")
        + f'<div class="images">{"".join(figures)}</div></div>'
    )


def _player(kind: str, role: str, path: Any, assets: Assets) -> str:
    caption = f"<figcaption>{_e(_CAPTIONS.get(role, role))}</figcaption>"
    uri = assets.src(str(path), ("video/", "audio/")) if path else None
    title = f' title="{_e(path)}"' if path else ""
    if uri is None:
        return (f'<figure{title}><span class="not-available" data-role="{_e(role)}">'
                f"not available</span>{caption}</figure>")
    return (f'<figure{title}><{kind} class="media" data-role="{_e(role)}" controls preload="metadata"'
            f' src="{uri}"></{kind}>{caption}</figure>')


def _figure(role: str, path: Any, assets: Assets, label: str | None = None, *,
            lazy: bool = False, full: bool = False, href: Any = None) -> str:
    """One image with its caption; ``lazy`` loads it when scrolled to, ``full`` lets it take its
    natural size (failures), ``href`` links it to a full-size file."""
    caption = f"<figcaption>{_e(label or role.replace('_', ' '))}</figcaption>"
    uri = assets.src(str(path)) if path else None
    if uri is None:
        body = f'<span class="not-available" data-role="{_e(role)}">not available</span>'
    else:
        css = "artefact thumb" if role == "thumbnail" else "artefact"
        extra = ' loading="lazy" decoding="async"' if lazy else ""
        body = (f'<img class="{css}" data-role="{_e(role)}" alt="{_e(role)}" src="{_e(uri)}"'
                f"{extra}{'' if role == 'thumbnail' else _scale(assets, str(path))}>")
        if href:
            body = f'<a href="{_e(assets.link(str(href)))}">{body}</a>'
    title = f' title="{_e(path)}"' if path else ""
    css = ' class="full"' if full else ""
    return f"<figure{css}{title}>{body}{caption}</figure>"


#: small images are shown at least this wide, enlarged by a whole factor with crisp pixels
MIN_SHOWN_PX = 128


def _scale(assets: Assets, path: str) -> str:
    """A width attribute enlarging a small image by a whole factor (``image-rendering:
    pixelated`` in the CSS keeps its pixels sharp)."""
    width = assets.width(path)
    if not width or width >= MIN_SHOWN_PX:
        return ""
    return f' width="{width * math.ceil(MIN_SHOWN_PX / width)}"'


def _timing(record: Record) -> str:
    timing = record.get("timing")
    if not timing:
        return ""
    nodes = timing.get("nodes") or []
    durations = [float(n["duration_ms"]) for n in measured_nodes(record) if n.get("duration_ms")]
    longest = max(durations, default=0.0)
    rows = "".join(_node_row(node, longest) for node in nodes)
    return (
        '<div class="timing"><h3>Timing</h3>'
        f"<p>server total {_e(format_ms(server_total_ms(record)))} ms"
        f" · queue wait {_e(format_ms(timing.get('queue_wait_ms')))} ms"
        f" · client wall {_e(format_ms(timing.get('client_wall_ms')))} ms"
        + (f" · outside nodes {_e(format_ms(timing['server_overhead_ms']))} ms"
           if timing.get("server_overhead_ms") is not None else "")
        + f" · status {_e(timing.get('status'))}{_e(_stats_text(record))}</p>"
        f'<div class="nodes">{rows}</div></div>'
    )


def _stats_text(record: Record) -> str:
    stats = record.get("stats") or {}
    total = stats.get("server_total_ms")
    if not total:
        return ""
    return (
        f" · {stats.get('runs')} runs: min {format_ms(total.get('min'))},"
        f" median {format_ms(total.get('median'))}, max {format_ms(total.get('max'))} ms"
    )


def _node_row(node: Mapping[str, Any], longest: float) -> str:
    """A bar whose width is the node's share of the slowest node; cached nodes get a stub."""
    cached = bool(node.get("cached"))
    duration = node.get("duration_ms")
    width = 0.0 if cached or not duration or longest <= 0 else float(duration) / longest * 100
    label = f"{node.get('node_id')} {node.get('class_type') or '?'}"
    if node.get("title") and node.get("title") != node.get("class_type"):
        label += f" “{node['title']}”"
    css = " cached" if cached else " model-load" if node.get("model_load") else ""
    return (
        f'<div class="node-row"><span class="node-label" title="{_e(label)}">{_e(label)}</span>'
        f'<span class="node-track"><span class="node-bar{css}"'
        f' style="display:block;width:{width:.1f}%" data-node-id="{_e(node.get("node_id"))}"'
        f' data-duration-ms="{_e(duration)}"></span></span>'
        f'<span class="node-ms">{_e(_node_value(node))}</span></div>'
    )


def _node_value(node: Mapping[str, Any]) -> str:
    # a cached node did no work: a duration or speed for it would be meaningless
    if node.get("cached"):
        return "cached"
    speed = node.get("steps_per_s")
    text = f"{format_ms(node.get('duration_ms'))} ms"
    text += " · model load" if node.get("model_load") else ""
    return text + (f" · {float(speed):.2f} it/s" if speed else "")


# --- memory, model loads, previews ------------------------------------------------------------


def _memory(record: Record) -> str:
    lines = memory_lines(record)
    if not lines:
        return ""
    memory = record.get("memory") or {}
    attrs = "".join(
        f' data-{name.replace("_", "-")}="{_e(value)}"'
        for name, value in figures(memory).items() if value is not None
    )
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return (f'<div class="memory" data-samples="{_e(memory.get("samples"))}"{attrs}>'
            f"<h3>Memory</h3><ul>{items}</ul></div>")


def _previews(record: Record, assets: Assets) -> str:
    frames = []
    for entry in record.get("previews") or []:
        uri = assets.src(str(entry.get("path")))
        if uri is not None:
            frames.append(f'<figure><img class="preview" data-node-id="{_e(entry.get("node_id"))}" alt="preview"'
                          f' src="{_e(uri)}" loading="lazy"><figcaption>node {_e(entry.get("node_id"))}</figcaption></figure>')
    if not frames:
        return ""
    return f'<div class="previews"><h3>Previews</h3><div class="images">{"".join(frames)}</div></div>'


def _inputs(title: str, css: str, rows: Iterable[Mapping[str, Any]] | None, keys: Keys) -> str:
    items = list(rows or [])
    if not items:
        return ""
    head = "".join(f"<th>{_e(k)}</th>" for k in keys)
    body = "".join(_input_row(item, keys) for item in items)
    return f'<div class="{css}"><h3>{_e(title)}</h3><table><tr>{head}</tr>{body}</table></div>'


def _input_row(item: Mapping[str, Any], keys: Keys) -> str:
    return "<tr>" + "".join(f"<td>{_e(_json(item.get(k)))}</td>" for k in keys) + "</tr>"


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _unused(paths: Iterable[str]) -> str:
    items = "".join(f"<li>{_e(p)}</li>" for p in paths)
    if not items:
        return ""
    return f'<section id="unused-baselines"><h2>Unused baselines</h2><ul>{items}</ul></section>'


def _fingerprint(fingerprint: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e(_json(value))}</td></tr>"
        for key, value in fingerprint.items()
        if key != "system_stats"
    )
    stats = json.dumps(fingerprint.get("system_stats") or {}, indent=2, ensure_ascii=False)
    return (
        '<section id="fingerprint"><h2>Fingerprint</h2>'
        f"<table>{rows}</table><h3>ComfyUI /system_stats</h3><pre>{_e(stats)}</pre></section>"
    )
