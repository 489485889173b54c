"""Per-workflow settings: ``<stem>.toml`` beside ``<stem>.json`` declares its test cases.

Example (``tiny_txt2img.toml``)::

    # keys at the top level are defaults for every case
    seed = 42                 # pin every seed input (seed, noise_seed, INT "*seed*") to 42
    tolerance = 4             # allowed hash distance in bits
    hash = "phash"            # hash method
    hash_size = 8
    timeout = 120             # seconds for one run
    marks = ["slow"]          # pytest marks added to every case
    requires = { nodes = ["ComfyTestSolidImage"], models = ["checkpoints/tiny.safetensors"] }
    patches = { KSampler = { steps = 4 } }

    [cases.base]              # one test: tiny_txt2img.json::base

    [cases.red_cube]
    patches = { positive = { text = "a red cube" }, "KSampler" = { cfg = 1.5 } }
    outputs = ["title:Save"]  # the output nodes this case must produce (any other fails)

    [cases.img2img]
    inputs = { "title:Load input image" = "inputs/cliff.png" }   # relative to this file

    [cases.samplers]          # 4 tests: samplers[euler-2], samplers[euler-4], ...
    matrix = { "KSampler.sampler_name" = ["euler", "dpmpp_2m"], "KSampler.steps" = [2, 4] }

    [cases.later]
    skip = "waits for the new VAE"

Without a ``.toml`` (or without ``[cases]``) a workflow has one case, ``default``, built from
the top-level keys.

Keys (top level or per case):

============  =========================  ===================================================
``seed``      integer                    value for every seed input; unset: seeds as written
``patches``   table selector → table     ``{selector: {input: value}}`` (see comfytest.workflows.workflow)
``inputs``    table selector → string    image file uploaded into that LoadImage node
``outputs``   list of selectors          the output nodes the case must produce; a missing
                                         or an extra output node fails the test
``tolerance`` integer >= 0               bits of hash distance allowed
``output_tolerance``  table selector → int  bits allowed for particular output nodes
``hash``      string                     hash method (phash, dhash, ahash, whash, colorhash)
``hash_size`` integer > 0                hash size
``timeout``   number > 0                 seconds
``marks``     list of names              pytest marks
``requires``  ``{nodes=[..], models=[..]}``  skip unless the server has them (models as
                                         ``"<folder>/<file>"``)
``skip``      string                     skip the case with this reason
``matrix``    table "selector.input" → list  one case per combination (cartesian product)
``media``     table (see below)          how video, audio and latent outputs are compared
============  =========================  ===================================================

The ``media`` table (``[media]`` at the top, ``[cases.x.media]`` per case; merged per key):
``video_frames`` (frames hashed per video, longer ones sampled evenly; 0 = all; default 240),
``keep_video`` (keep the full video file in baselines; default false: contact sheet and hashes),
``audio_duration_ms`` (allowed difference in duration, default 20), ``audio_distance`` (allowed
log-mel spectrogram distance in dB, default 1.0), ``latent_tolerance`` (allowed largest absolute
difference of a latent value, default 1e-4).

A matrix key is ``"<selector>.<input>"``, split at the last dot (``"KSampler.positive.text"``
is input ``text`` of the node linked into KSampler's positive), or at an earlier one where the
selector would match no node: ``"ResizeImageMaskNode.resize_type.width"`` is the V3 dynamic
input ``resize_type.width`` of ResizeImageMaskNode (``"ResizeImageMaskNode.resize_type"`` its
dynamic combo, whose option a matrix may vary). Each combination becomes a case
``name[value-value]`` (the values only, like pytest's parametrize ids, so ``-k`` can select
them); the values are applied as patches over the case's own.

Precedence, per setting: the case > the file's top-level default > the command line / ini file
> comfytest's built-in default. Case and file are merged here (:func:`load_cases`: a case's
value replaces the default; ``patches``/``inputs`` merge per entry, ``marks`` and ``requires``
are unions); :meth:`CaseSpec.with_defaults` then fills what both left unset from the
CLI/ini/built-in values, each chosen with :func:`resolve`.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from comfytest.compare.criteria import NO_LIMITS, PixelLimits
from comfytest.compare.images import METHODS as HASH_METHODS
from comfytest.errors import ConfigError, PatchError
from comfytest.workflows.workflow import Workflow, select, split_input_path

T = TypeVar("T")

DEFAULT_CASE = "default"
_CASE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # usable as-is in a pytest node id


def resolve(case_value: T | None, file_default: T | None, cli_value: T | None, builtin: T) -> T:
    """The first value that is set, in precedence order."""
    for value in (case_value, file_default, cli_value):
        if value is not None:
            return value
    return builtin


@dataclass(frozen=True)
class Requirements:
    nodes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # "<folder>/<file>", e.g. "checkpoints/x.safetensors"


@dataclass(frozen=True)
class CaseDefaults:
    """Values chosen from the command line, the ini file or the built-in defaults."""

    tolerance: int
    hash_method: str
    hash_size: int
    timeout: float
    seed: int | None = None
    limits: PixelLimits = NO_LIMITS


@dataclass(frozen=True)
class OutputCriteria:
    """``output_criteria`` for one output node: each value overrides the case's."""

    tolerance: int | None = None
    limits: PixelLimits = NO_LIMITS


@dataclass(frozen=True)
class CaseSpec:
    """One test case of a workflow; None means "not set in the settings file"."""

    id: str
    seed: int | None = None
    patches: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    inputs: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    tolerance: int | None = None
    #: per output node id, overriding ``tolerance`` for that node's images
    output_tolerance: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    hash_method: str | None = None
    hash_size: int | None = None
    timeout: float | None = None
    marks: tuple[str, ...] = ()
    requires: Requirements = Requirements()
    skip: str | None = None
    outputs: tuple[str, ...] | None = None  # node ids
    #: the ``media`` table: MediaSettings fields for video, audio and latent outputs
    media: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the matrix values that made this case ("KSampler.steps" → 4), for reports
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: pixel limits (max_diff / mean_diff / min_psnr; ``exact`` is max_diff 0)
    limits: PixelLimits = NO_LIMITS
    #: timing thresholds of this case: abs_ms, rel_pct, floor_ms (each overrides the CLI/ini)
    timing: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    #: per output node id: its own tolerance and pixel limits
    output_criteria: Mapping[str, OutputCriteria] = field(default_factory=lambda: MappingProxyType({}))
    #: the trace of intermediate outputs (issue 23); None: as --comfy-trace says
    trace: bool | None = None

    def with_defaults(self, defaults: CaseDefaults) -> CaseSpec:
        """Fill what the settings file left unset from the CLI/ini/built-in values."""
        return replace(
            self,
            seed=self.seed if self.seed is not None else defaults.seed,
            tolerance=resolve(self.tolerance, None, None, defaults.tolerance),
            hash_method=resolve(self.hash_method, None, None, defaults.hash_method),
            hash_size=resolve(self.hash_size, None, None, defaults.hash_size),
            timeout=resolve(self.timeout, None, None, defaults.timeout),
            limits=self.limits.over(defaults.limits),
        )

    def criteria_for(self, node_id: str) -> tuple[int, PixelLimits]:
        """The hash tolerance and pixel limits of one output node: its own ``output_criteria``
        (or ``output_tolerance``), else the case's (which already hold the CLI/ini values)."""
        own = self.output_criteria.get(node_id, OutputCriteria())
        tolerance = own.tolerance if own.tolerance is not None else self.output_tolerance.get(node_id)
        if tolerance is None:
            tolerance = self.tolerance if self.tolerance is not None else 2
        return tolerance, own.limits.over(self.limits)


def settings_path(workflow_path: Path) -> Path:
    """``x.json`` → ``x.toml`` in the same folder."""
    return workflow_path.with_suffix(".toml")


#: the most cases one settings file may declare unless told otherwise (--comfy-max-cases)
MAX_CASES = 1000


def load_cases(toml_path: Path, workflow: Workflow, *, max_cases: int | None = MAX_CASES) -> tuple[CaseSpec, ...]:
    """The cases declared in ``toml_path``; one ``default`` case when the file is absent.

    More than ``max_cases`` (None: no limit) is refused before a matrix is expanded: 3000 × 3000
    values would otherwise be built, one case at a time, into nine million test items."""
    if not toml_path.exists():
        return (CaseSpec(DEFAULT_CASE),)
    data = _read_toml(toml_path)
    ctx = _Context(toml_path, workflow, "top level")
    defaults = _parse_table(ctx, {k: v for k, v in data.items() if k != "cases"}, top=True)
    cases = data.get("cases", {DEFAULT_CASE: {}})
    if not isinstance(cases, dict) or not cases:
        raise ConfigError(f"{toml_path}: 'cases' must be a table of [cases.<name>] tables")
    specs: list[CaseSpec] = []
    total = 0
    for name, table in cases.items():
        case_ctx = replace(ctx, scope=f"case '{name}'")
        total += _count(case_ctx, table, defaults, max_cases)
        if max_cases is not None and total > max_cases:
            raise ctx.error(f"{total:,} cases in all, more than the {max_cases:,} allowed per workflow file "
                            "(--comfy-max-cases, ini comfy_max_cases): split the matrices or raise the limit")
        specs.extend(_case(case_ctx, name, table, defaults))
    return tuple(specs)


def _count(ctx: _Context, table: object, defaults: Mapping[str, Any], max_cases: int | None) -> int:
    """How many cases one ``[cases.<name>]`` table makes, counted before any is built."""
    own = table.get("matrix") if isinstance(table, dict) else None
    matrix = own if own is not None else defaults.get("matrix")
    if not isinstance(matrix, dict) or not matrix:
        return 1
    sizes = [len(v) if isinstance(v, list) else 1 for v in matrix.values()]
    count = math.prod(sizes)
    if max_cases is not None and count > max_cases:
        raise ctx.error(f"its matrix makes {count:,} cases ({' × '.join(map(str, sizes))}), more than the "
                        f"{max_cases:,} allowed per workflow file (--comfy-max-cases, ini comfy_max_cases): "
                        "split the matrix into cases, or raise the limit")
    return count


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); TOML files are "
                          "UTF-8: save it again as UTF-8") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read (arrays or tables inside each other "
                          f"more than {sys.getrecursionlimit()} levels)") from None


@dataclass(frozen=True)
class _Context:
    path: Path
    workflow: Workflow
    scope: str

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.scope}: {message}")


def _case(
    ctx: _Context, name: str, table: object, defaults: Mapping[str, Any]
) -> list[CaseSpec]:
    if not _CASE_NAME.match(name):
        raise ctx.error("case names may use only letters, digits, '_', '.' and '-'")
    if not isinstance(table, dict):
        raise ctx.error(f"must be a table, found {_describe(table)}")
    merged = _merge(defaults, _parse_table(ctx, table, top=False))
    matrix: Mapping[str, list[Any]] = merged.pop("matrix", {})
    base = _spec(name, merged)
    if not matrix:
        return [base]
    return _expand(base, matrix, ctx.workflow)


# --- one table of keys ---------------------------------------------------------------------


def _parse_table(ctx: _Context, table: Mapping[str, Any], *, top: bool) -> dict[str, Any]:
    known = list(_KEYS) + (["cases"] if top else [])
    parsed = {}
    for key, value in table.items():
        if key not in _KEYS:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ctx.error(f"unknown key '{key}'{hint}. Known keys: {', '.join(sorted(known))}")
        parsed[key] = _KEYS[key](ctx, key, value)
    return parsed


def _type_error(ctx: _Context, key: str, expected: str, value: object) -> ConfigError:
    return ctx.error(f"'{key}' must be {expected}, found {_describe(value)}")


_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}


def _describe(value: object) -> str:
    return f"{_TOML_TYPES.get(type(value), 'table')} {value!r}"


def _int(minimum: int) -> Callable[[_Context, str, object], int]:
    def check(ctx: _Context, key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _type_error(ctx, key, f"an integer >= {minimum}", value)
        return value

    return check


def _timeout(ctx: _Context, key: str, value: object) -> float:
    if isinstance(value, float) and not math.isfinite(value):  # a NaN or infinite timeout never expires
        raise _type_error(ctx, key, "a finite number of seconds > 0", value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _type_error(ctx, key, "a number of seconds > 0", value)
    return float(value)


def _string(ctx: _Context, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _type_error(ctx, key, "a non-empty string", value)
    return value


def _hash(ctx: _Context, key: str, value: object) -> str:
    method = _string(ctx, key, value)
    if method not in HASH_METHODS:
        close = difflib.get_close_matches(method, HASH_METHODS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ctx.error(f"unknown hash method '{method}'{hint}. Choose one of "
                        f"{', '.join(HASH_METHODS)}")
    return method


def _strings(ctx: _Context, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _type_error(ctx, key, "an array of strings", value)
    return tuple(value)


def _marks(ctx: _Context, key: str, value: object) -> tuple[str, ...]:
    marks = _strings(ctx, key, value)
    for mark in marks:
        if not mark.isidentifier():
            raise ctx.error(f"mark '{mark}' is not a valid pytest mark name")
    return marks


def _select(ctx: _Context, selector: str, *, many: bool = False) -> tuple[str, ...]:
    try:
        every = many or selector.startswith("all:")
        return select(ctx.workflow, selector.removeprefix("all:"), one=not every)
    except PatchError as exc:
        raise ctx.error(str(exc)) from exc


def _patches(ctx: _Context, key: str, value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table of selector = { input = value }", value)
    for selector, inputs in value.items():
        if not isinstance(inputs, dict):
            raise _type_error(ctx, f"{key}.{selector}", "a table of input = value", inputs)
        _select(ctx, selector)
    return {s: dict(v) for s, v in value.items()}


def _inputs(ctx: _Context, key: str, value: object) -> dict[str, Path]:
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table of selector = \"image file\"", value)
    files = {}
    for selector, name in value.items():
        _select(ctx, selector)
        path = ctx.path.parent / _string(ctx, f"{key}.{selector}", name)
        if not path.is_file():
            raise ctx.error(f"input file for '{selector}' not found: {path}")
        files[selector] = path
    return files


def _outputs(ctx: _Context, key: str, value: object) -> tuple[str, ...]:
    ids = [i for s in _strings(ctx, key, value) for i in _select(ctx, s, many=True)]
    return tuple(dict.fromkeys(ids))


def _output_tolerance(ctx: _Context, key: str, value: object) -> dict[str, int]:
    """``{selector = bits}`` → ``{node_id: bits}``: a tolerance for particular output nodes."""
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table of selector = bits", value)
    bits = _int(0)
    return {node: bits(ctx, f"{key}.{sel}", n) for sel, n in value.items() for node in _select(ctx, sel, many=True)}


def _number(ctx: _Context, key: str, value: object) -> float:
    if isinstance(value, float) and not math.isfinite(value):  # a NaN limit compares false with everything
        raise _type_error(ctx, key, "a finite number >= 0", value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _type_error(ctx, key, "a number >= 0", value)
    return float(value)


def _flag(ctx: _Context, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _type_error(ctx, key, "true or false", value)
    return value


_LIMIT_KEYS = ("tolerance", "max_diff", "mean_diff", "min_psnr", "exact")


def _limits_of(ctx: _Context, prefix: str, table: Mapping[str, Any]) -> PixelLimits:
    exact = _flag(ctx, f"{prefix}exact", table["exact"]) if "exact" in table else False
    max_diff = _int(0)(ctx, f"{prefix}max_diff", table["max_diff"]) if "max_diff" in table else None
    return PixelLimits(
        0 if exact else max_diff,
        _number(ctx, f"{prefix}mean_diff", table["mean_diff"]) if "mean_diff" in table else None,
        _number(ctx, f"{prefix}min_psnr", table["min_psnr"]) if "min_psnr" in table else None,
    )


def _output_criteria(ctx: _Context, key: str, value: object) -> dict[str, OutputCriteria]:
    """``{selector = {tolerance, max_diff, mean_diff, min_psnr, exact}}`` → per node id."""
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table of selector = { max_diff = ..., ... }", value)
    out = {}
    for sel, table in value.items():
        if not isinstance(table, dict):
            raise _type_error(ctx, f"{key}.{sel}", "a table of criteria", table)
        for name in table:
            if name not in _LIMIT_KEYS:
                close = difflib.get_close_matches(name, _LIMIT_KEYS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ctx.error(f"unknown key '{key}.{sel}.{name}'{hint}. Known: {', '.join(_LIMIT_KEYS)}")
        tolerance = _int(0)(ctx, f"{key}.{sel}.tolerance", table["tolerance"]) if "tolerance" in table else None
        spec = OutputCriteria(tolerance, _limits_of(ctx, f"{key}.{sel}.", table))
        out.update({node: spec for node in _select(ctx, sel, many=True)})
    return out


_TIMING_KEYS = ("abs_ms", "rel_pct", "floor_ms")


def _timing(ctx: _Context, key: str, value: object) -> dict[str, float]:
    """``timing = { abs_ms = 10, rel_pct = 50, floor_ms = 0 }``: this workflow's thresholds."""
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table { abs_ms = ..., rel_pct = ..., floor_ms = ... }", value)
    for name in value:
        if name not in _TIMING_KEYS:
            close = difflib.get_close_matches(name, _TIMING_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ctx.error(f"unknown key '{key}.{name}'{hint}. Known: {', '.join(_TIMING_KEYS)}")
    return {name: _number(ctx, f"{key}.{name}", v) for name, v in value.items()}


def _requires(ctx: _Context, key: str, value: object) -> Requirements:
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table { nodes = [...], models = [...] }", value)
    for sub in value:
        if sub not in ("nodes", "models"):
            raise ctx.error(f"unknown key '{key}.{sub}'; expected 'nodes' or 'models'")
    models = _strings(ctx, f"{key}.models", value.get("models", []))
    for model in models:
        if "/" not in model:
            raise ctx.error(f"model '{model}' must be '<folder>/<file>', e.g. 'checkpoints/x'")
    return Requirements(_strings(ctx, f"{key}.nodes", value.get("nodes", [])), models)


def _matrix(ctx: _Context, key: str, value: object) -> dict[str, list[Any]]:
    if not isinstance(value, dict):
        raise _type_error(ctx, key, 'a table of "selector.input" = [values]', value)
    for path, values in value.items():
        selector, name = split_input_path(ctx.workflow, path)
        if not selector or not name:
            raise ctx.error(f"matrix key '{path}' must be '<selector>.<input>', e.g. "
                            "'KSampler.sampler_name'")
        if not isinstance(values, list) or not values:
            raise _type_error(ctx, f"{key}.{path}", "a non-empty array of values", values)
        _select(ctx, selector)
    return dict(value)


#: the ``media`` table's keys: (parser, what it must be)
_MEDIA_KEYS: Mapping[str, tuple[type, str]] = MappingProxyType({
    "video_frames": (int, "an integer >= 0"), "keep_video": (bool, "true or false"),
    "audio_duration_ms": (float, "a number >= 0"), "audio_distance": (float, "a number >= 0"),
    "latent_tolerance": (float, "a number >= 0"),
})


def _media(ctx: _Context, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _type_error(ctx, key, "a table such as { video_frames = 64 }", value)
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name not in _MEDIA_KEYS:
            close = difflib.get_close_matches(name, list(_MEDIA_KEYS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; expected one of {', '.join(_MEDIA_KEYS)}"
            raise ctx.error(f"unknown key '{key}.{name}'{hint}")
        kind, what = _MEDIA_KEYS[name]
        ok = isinstance(item, bool) if kind is bool else (
            isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)
            and item >= 0 and (kind is float or isinstance(item, int)))
        if not ok:
            raise _type_error(ctx, f"{key}.{name}", what, item)
        out[name] = kind(item)
    return out


_KEYS: Mapping[str, Callable[[_Context, str, Any], Any]] = MappingProxyType({
    "media": _media,
    "seed": _int(0), "patches": _patches, "inputs": _inputs, "outputs": _outputs,
    "tolerance": _int(0), "output_tolerance": _output_tolerance, "hash": _hash, "hash_size": _int(1), "timeout": _timeout,
    "marks": _marks, "requires": _requires, "skip": _string, "matrix": _matrix,
    # pixel criteria (issue 14)
    "max_diff": _int(0), "mean_diff": _number, "min_psnr": _number, "exact": _flag,
    "output_criteria": _output_criteria,
    "timing": _timing,
    "trace": _flag,  # issue 23: false turns the trace of intermediate outputs off for this workflow
})


# --- merging and expansion -----------------------------------------------------------------


def _merge(defaults: Mapping[str, Any], case: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **case}
    merged["patches"] = _merge_patches(defaults.get("patches", {}), case.get("patches", {}))
    merged["inputs"] = {**defaults.get("inputs", {}), **case.get("inputs", {})}
    merged["output_tolerance"] = {**defaults.get("output_tolerance", {}), **case.get("output_tolerance", {})}
    merged["timing"] = {**defaults.get("timing", {}), **case.get("timing", {})}
    merged["output_criteria"] = {**defaults.get("output_criteria", {}), **case.get("output_criteria", {})}
    merged["media"] = {**defaults.get("media", {}), **case.get("media", {})}
    merged["marks"] = tuple(dict.fromkeys(defaults.get("marks", ()) + case.get("marks", ())))
    mine, theirs = case.get("requires", Requirements()), defaults.get("requires", Requirements())
    merged["requires"] = Requirements(
        tuple(dict.fromkeys(theirs.nodes + mine.nodes)),
        tuple(dict.fromkeys(theirs.models + mine.models)),
    )
    return merged


def _merge_patches(
    low: Mapping[str, Mapping[str, Any]], high: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = {selector: dict(values) for selector, values in low.items()}
    for selector, values in high.items():
        merged.setdefault(selector, {}).update(values)
    return merged


def _spec(name: str, values: Mapping[str, Any]) -> CaseSpec:
    return CaseSpec(
        id=name,
        seed=values.get("seed"),
        patches=_frozen_patches(values["patches"]),
        inputs=MappingProxyType(dict(values["inputs"])),
        tolerance=values.get("tolerance"),
        output_tolerance=MappingProxyType(dict(values.get("output_tolerance", {}))),
        hash_method=values.get("hash"),
        hash_size=values.get("hash_size"),
        timeout=values.get("timeout"),
        marks=values["marks"],
        requires=values["requires"],
        skip=values.get("skip"),
        outputs=values.get("outputs"),
        limits=PixelLimits(
            0 if values.get("exact") else values.get("max_diff"), values.get("mean_diff"), values.get("min_psnr")),
        output_criteria=MappingProxyType(dict(values.get("output_criteria", {}))),
        timing=MappingProxyType(dict(values.get("timing", {}))),
        media=MappingProxyType(dict(values.get("media", {}))),
        trace=values.get("trace"),
    )


def _frozen_patches(patches: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({s: MappingProxyType(dict(v)) for s, v in patches.items()})


def _expand(base: CaseSpec, matrix: Mapping[str, list[Any]], workflow: Workflow) -> list[CaseSpec]:
    keys = list(matrix)
    specs = []
    for combo in itertools.product(*(matrix[k] for k in keys)):
        extra: dict[str, dict[str, Any]] = {}
        for key, value in zip(keys, combo):
            selector, name = split_input_path(workflow, key)
            extra.setdefault(selector, {})[name] = value
        # values only, as pytest's own parametrize ids: "samplers[euler-4]" works with -k ('=' does not)
        label = "-".join(_value_label(v) for v in combo)
        patches = _frozen_patches(_merge_patches(base.patches, extra))
        params = MappingProxyType(dict(zip(keys, combo)))
        specs.append(replace(base, id=f"{base.id}[{label}]", patches=patches, params=params))
    return _unique_ids(specs)


def _value_label(value: object) -> str:
    # pytest ids and file names of artefacts must not get spaces, slashes or brackets
    return re.sub(r"[^\w.+-]", "_", str(value))[:40]


def _unique_ids(specs: list[CaseSpec]) -> list[CaseSpec]:
    seen: dict[str, int] = {}
    unique = []
    for spec in specs:
        count = seen.get(spec.id, 0)
        seen[spec.id] = count + 1
        unique.append(replace(spec, id=f"{spec.id[:-1]}-{count}]") if count else spec)
    return unique
