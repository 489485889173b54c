"""Every comfytest option, declared once, resolved once into a frozen ``Settings``.

Precedence, highest first: the workflow's settings file (per case; see ``casefile``) >
command-line option > environment variable (where one exists) > ini key > built-in default.
``OPTIONS`` is the single table the plugin turns into ``--comfy-*`` options and ini keys.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfytest.comfy.nodepacks import check_pack
from comfytest.errors import ConfigError
from comfytest.report.assets import HTML_MODES
from comfytest.workflows.conversion import CONVERT_MODES

HASH_METHODS = ("phash", "dhash", "ahash", "whash", "colorhash")
MISSING_POLICIES = ("fail", "skip")
PROGRESS_MODES = ("auto", "nodes", "off")
ORDERS = ("models", "file")


def _finite(text: str, what: str) -> float:
    """``float(text)``, refusing NaN and infinities: a NaN timeout never expires, a NaN limit
    compares false with everything."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give {what}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text, "a number of seconds")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def non_negative_float(text: str) -> float:
    value = _finite(text, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def perf_budget(text: str) -> tuple[float, str]:
    """``3x`` (a multiple of the case's cold run) or ``20``/``20s`` (seconds) of warm runs per case."""
    raw = text.strip().lower()
    unit = "x" if raw.endswith("x") else "s"
    number = raw[:-1] if raw[-1:] in ("x", "s") else raw
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a budget; expected a multiple of the cold run "
                                         "(e.g. 3x) or seconds (e.g. 20s)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value, unit


def probability(text: str) -> float:
    value = non_negative_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1, e.g. 0.01")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(allowed)}")
        return text

    parse.__name__ = "one of " + "|".join(allowed)
    return parse


def comfy_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8188"
        )
    return url


def gpu_list(text: str) -> tuple[str, ...]:
    """``0,1,3`` (or GPU UUIDs): one launched ComfyUI per entry, via CUDA_VISIBLE_DEVICES."""
    gpus = tuple(g.strip() for g in text.split(",") if g.strip())
    if not gpus:
        raise argparse.ArgumentTypeError(f"{text!r} names no GPU; expected e.g. 0,1")
    repeated = sorted({g for g in gpus if gpus.count(g) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"{text!r} lists GPU {', '.join(repeated)} twice; one server per GPU")
    return gpus


def shard(text: str) -> tuple[int, int]:
    """``i/N`` with 1 <= i <= N: this job runs the i-th of N deterministic shares."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shard; expected i/N with 1 <= i <= N, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a header; expected 'Name: value' (values may use $ENV_VAR)"
        )
    return name.strip(), value.strip()


@dataclass(frozen=True)
class Option:
    """One option: ``--comfy-<name>`` and ini ``comfy_<name>``, with an optional env var."""

    name: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None
    env: str | None = None
    flag: bool = False
    repeat: bool = False
    #: the value is itself command-line flags ("--cpu"), accepted as a separate word too
    dash_value: bool = False
    #: repeatable paths: the environment variable separates them with os.pathsep
    path_list: bool = False

    @property
    def cli(self) -> str:
        return "--comfy-" + self.name

    @property
    def ini(self) -> str:
        return "comfy_" + self.name.replace("-", "_")

    @property
    def dest(self) -> str:
        return self.ini


OPTIONS: tuple[Option, ...] = (
    Option("url", "URL of a running ComfyUI server; repeat it (ini: one per line) for several servers", comfy_url, env="COMFYUI_URL", repeat=True, default=()),
    Option("launch", "start the ComfyUI found in this folder (your checkout) for the session"),
    Option("python", "Python that runs a launched ComfyUI (default: the embedded or current one)"),
    Option("launch-args", "extra arguments for a launched ComfyUI, e.g. '--cpu --lowvram'", shlex.split, default=(), dash_value=True),
    Option("embedded-home", "folder of the embedded ComfyUI install", env="COMFYTEST_HOME"),
    Option("header", "extra HTTP header 'Name: value' ($ENV_VAR expanded; never printed)", header, repeat=True, default=()),
    Option("token-env", "environment variable holding a bearer token for the server"),
    # -- issue 11: one CA bundle for HTTP and the WebSocket alike
    Option("ca-bundle", "CA certificates (PEM file or folder) trusted for an https:// server, by HTTP and the WebSocket alike", env="COMFYTEST_CA_BUNDLE"),
    Option("timeout", "wall-clock limit per prompt in seconds", positive_float, default=300.0),
    Option("idle-timeout", "fail when the server stays silent this many seconds while a prompt runs", positive_float, default=120.0),
    Option("startup-timeout", "seconds to wait for a launched server to answer", positive_float, default=120.0),
    Option("seed", "pin every seed-like input to this value", int),
    Option("missing", "what a missing node class or model does: fail or skip", choice(*MISSING_POLICIES), default="fail"),
    Option("baselines", "baseline folder", default="baselines"),
    Option("results", "folder for obtained images, diffs and reports", default="comfytest-results"),
    Option("update-baselines", "write new and changed baselines", flag=True, default=False),
    Option("hash", "perceptual hash: " + ", ".join(HASH_METHODS), choice(*HASH_METHODS), default="phash"),
    Option("hash-size", "hash size (bits per side)", positive_int, default=8),
    Option("tolerance", "allowed hash distance in bits; where the baseline's pixels are kept and the perceptual criteria apply, the hash is a backstop at 4 × this (0 stays 0)", non_negative_int, default=2),
    Option("hash-only", "keep only hashes as baselines, no images", flag=True, default=False),
    # --- pixel criteria (issue 14): every configured limit must hold, on every device
    Option("max-diff", "largest per-channel pixel difference (0-255) that still passes; default: 4 when the baseline was made on this device profile, unchecked on others", non_negative_int),
    Option("mean-diff", "largest mean per-channel pixel difference that still passes", non_negative_float),
    Option("min-psnr", "lowest PSNR in dB that still passes", non_negative_float),
    Option("interface", "snapshot the /object_info of the node classes each workflow uses under <baselines>/_interface/ and fail when it changes", flag=True, default=False),
    Option("exact", "require identical pixels (the same as --comfy-max-diff 0)", flag=True, default=False),
    Option("profile", "baseline profile (default: derived from the server's device)"),
    Option("runs", "measured runs per test (timing statistics)", positive_int, default=1),
    Option("warmup", "unmeasured warm-up runs per test", non_negative_int, default=0),
    Option("free-cache", "POST /free before each run (warm-up and measured) so nothing comes from cache", flag=True, default=False),
    Option("compare", "earlier report.json to compare timings against"),
    Option("history", "append one line per session to this history file (JSON lines)"),
    # --- timing thresholds (issue 14): a change counts only when it exceeds both
    Option("timing-abs", "a timing change counts only above this many ms", non_negative_float, default=50.0),
    Option("timing-rel", "... and above this many percent of the previous time", non_negative_float, default=20.0),
    Option("timing-floor", "timings below this many ms on both sides are not compared", non_negative_float, default=10.0),
    Option("timing-fail", "fail tests slower than in --comfy-compare (failure kind 'timing'); without it they only warn", flag=True, default=False),
    Option("no-report", "do not write report.json / report.html / report.md", flag=True, default=False),
    # --- UI-format conversion (issue 8) ---
    Option("convert", "how UI-format workflows become API prompts: python (comfytest's converter), frontend (the server's own web UI in headless Chromium) or auto (frontend when a browser is found)", choice(*CONVERT_MODES), default="auto"),
    Option("chromium", "Chromium/Chrome for --comfy-convert frontend (default: chromium, chromium-browser, google-chrome on PATH)"),
    # --- several servers, order and shards (issue 9)
    Option("gpus", "with --comfy-launch: start one ComfyUI per GPU in this list (CUDA_VISIBLE_DEVICES), e.g. 0,1", gpu_list),
    Option("servers", "start this many servers (embedded or --comfy-launch); xdist worker k uses server k mod N", positive_int, default=1),
    Option("order", "test order: models (cases sharing model files run back to back) or file (pytest's order)", choice(*ORDERS), default="models"),
    Option("shard", "run only share i of N (i/N, e.g. 2/4): deterministic, cases sharing models stay together", shard),
    # ---
    Option("calibrate", "run each case N times from a cleared cache and report the spread of its outputs and a suggested tolerance, instead of comparing baselines", positive_int),
    # --- resources, progress, previews (issue 12) ---
    Option("sample-ms", "sample GET /system_stats (and the server's RSS) every N ms while a prompt runs; 0 turns it off", non_negative_int, default=100),
    Option("memory-fail", "fail tests whose peak memory grew against --comfy-compare (failure kind 'memory'); without it they only warn", flag=True, default=False),
    Option("progress", "live progress while a case runs: auto (one updating line on a terminal, nothing otherwise), nodes (a line per node, also in CI logs), off", choice(*PROGRESS_MODES), default="auto"),
    Option("previews", "save the preview frames (binary WebSocket images) of each case for the HTML report", flag=True, default=False),
    # --- issue 25: hardening, round two ---
    Option("max-cases", "most cases one workflow's settings file may declare (matrices expanded); a larger matrix is refused before it is built", positive_int, default=1000),
    # --- issue 22: node packs under test, loaded into the servers comfytest starts ---
    Option("custom-nodes", "a custom node pack folder (. for a pack at the repository root) loaded for the session into the embedded or --comfy-launch'ed ComfyUI, its requirements.txt installed for that server only; paths separated by os.pathsep in the env variable", env="COMFYTEST_CUSTOM_NODES", repeat=True, default=(), path_list=True),
    # --- issue 23: the trace of intermediate outputs ---
    Option("trace", "the trace of intermediate outputs: on (recorded beside the baselines when they are updated; a failing case is run once more with taps to name the first node that changed) or off (for huge graphs; a settings file's `trace = false` turns it off for one workflow)", choice("on", "off"), default="on"),
    # --- issue 21: perceptual criteria ---
    Option("perceptual", "perceptual criteria beside the hash (colour, tone, blur, shifts, changed regions; limits in docs/baselines.md): on, or off for the hash and pixel limits alone", choice("on", "off"), default="on"),
    # --- issue 24: performance sessions (docs/performance.md) ---
    Option("perf", "performance session: a cold run that loads the models, then warm runs in which every node but the model loaders executes; each test compared with --comfy-compare (default: the results folder's report.json) by a statistical test; a significant slowdown fails (kind 'timing')", flag=True, default=False),
    Option("perf-budget", "warm runs per case may take this long: a multiple of its cold run (2x) or seconds (20s); the runs stop earlier once the noise allows the floors to be seen", perf_budget, default="2x"),
    Option("perf-min-runs", "warm runs per case with no reference to compare with (the first perf session, which makes the reference; 6 a side let p < 0.01 survive one swapped pair); with a reference, a case not stopped early takes the fewest runs that reach that against its pool (3 against 20), and one that calls a change takes this many", positive_int, default=6),
    Option("perf-max-runs", "warm runs per case at most", positive_int, default=30),
    Option("perf-alpha", "a change is significant when the Mann-Whitney p-value is below this", probability, default=0.01),
    Option("perf-floor-ms", "a significant change counts only above this many ms ...", non_negative_float, default=20.0),
    Option("perf-floor-pct", "... and above this many percent of the earlier median", non_negative_float, default=5.0),
    Option("perf-warn", "with --comfy-perf: report significant slowdowns as warnings instead of failing the tests", flag=True, default=False),
    # --- issue 26: reports and results folders that stay small ---
    Option("html", "how report.html shows images: linked (files beside the report, relative paths; a small page for any suite) or self-contained (embedded, one file to attach)", choice(*HTML_MODES), default="linked"),
    Option("keep-passed", "keep the full obtained image (and media file) of passing outputs in the results folder, and the output files of a server comfytest started; by default a passing output leaves only a small thumbnail there", flag=True, default=False),
    # --- issue 24: perf sessions that cost less (early stop, a reference pool that grows) ---
    Option("perf-screen-runs", "with --comfy-perf and a reference: after this many warm runs, a case whose total and every node lie within the floors (or twice the reference's noise) of the reference's median stops, 'no material change'; 0 never stops early", non_negative_int, default=1),
    Option("perf-pool", "warm samples per test and node a perf report keeps for the next session to compare with: its own, then (where it found no change) the reference's, newest first", positive_int, default=20),
)


def join_dash_values(args: list[Any]) -> None:
    """``--comfy-launch-args --cpu`` → ``--comfy-launch-args=--cpu``, in place.

    argparse reads a separate word starting with ``-`` as an option of its own, never as a
    value ("expected one argument"), so a value that is itself a flag is glued to its option
    before pytest parses the command line. Words after ``--`` are left alone.
    """
    names = {opt.cli for opt in OPTIONS if opt.dash_value}
    i = 0
    while i < len(args) - 1 and args[i] != "--":
        value = args[i + 1]
        if args[i] in names and isinstance(value, str) and value.startswith("-"):
            args[i:i + 2] = [f"{args[i]}={value}"]
        i += 1


def _expand_env(value: str, option: str, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        var = match.group(1) or match.group(2)
        if var not in env:
            raise ConfigError(f"{option}: environment variable ${var} is not set")
        return env[var]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, value)


@dataclass(frozen=True)
class Settings:
    """All options of one session, resolved; see the module docstring for precedence."""

    urls: tuple[str, ...] = ()
    launch: Path | None = None
    python: Path | None = None
    launch_args: tuple[str, ...] = ()
    embedded_home: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 300.0
    idle_timeout: float = 120.0
    startup_timeout: float = 120.0
    seed: int | None = None
    missing: str = "fail"
    baselines: Path = Path("baselines")
    results: Path = Path("comfytest-results")
    update_baselines: bool = False
    hash: str = "phash"
    hash_size: int = 8
    tolerance: int = 2
    hash_only: bool = False
    interface: bool = False
    max_diff: int | None = None
    mean_diff: float | None = None
    min_psnr: float | None = None
    profile: str | None = None
    runs: int = 1
    warmup: int = 0
    free_cache: bool = False
    compare: Path | None = None
    history: Path | None = None
    timing_fail: bool = False
    timing_abs_ms: float = 50.0
    timing_rel_pct: float = 20.0
    timing_floor_ms: float = 10.0
    no_report: bool = False
    calibrate: int | None = None  # N runs per case; None: compare baselines as usual
    ca_bundle: Path | None = None
    convert: str = "auto"  # how UI-format workflows are converted (conversion.MODES)
    chromium: str | None = None  # the browser for convert=frontend/auto; None: found on PATH
    sample_ms: int = 100  # 0: no resource sampling
    memory_fail: bool = False
    progress: str = "auto"
    previews: bool = False
    max_cases: int = 1000
    trace: bool = True  # issue 23: record and read traces of intermediate outputs
    perceptual: bool = True  # perceptual criteria beside the hash (issue 21)
    url_source: str = "default"
    gpus: tuple[str, ...] = ()
    servers: int = 1
    order: str = "models"
    shard: tuple[int, int] | None = None
    custom_nodes: tuple[Path, ...] = ()  # node packs loaded into the servers comfytest starts
    # issue 24: performance sessions
    perf: bool = False
    perf_budget: tuple[float, str] = (2.0, "x")  # (value, "x" multiple of the cold run | "s" seconds)
    perf_min_runs: int = 6
    perf_max_runs: int = 30
    perf_alpha: float = 0.01
    perf_floor_ms: float = 20.0
    perf_floor_pct: float = 5.0
    perf_warn: bool = False
    perf_screen_runs: int = 1
    perf_pool: int = 20
    html: str = "linked"  # report.html: linked images or self-contained (report.assets.HTML_MODES)
    keep_passed: bool = False  # keep full obtained outputs of passing cases

    @property
    def url(self) -> str | None:
        """The first (or only) server URL."""
        return self.urls[0] if self.urls else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in output or reports."""
        found: set[str] = set()
        for value in self.headers.values():
            found.add(value)
            found.add(value.split()[-1] if value.split() else value)  # the token of "Bearer <token>"
        return tuple(sorted((v for v in found if len(v) >= 4), key=len, reverse=True))


Getter = Callable[[Option], Any]


def resolve(cli: Getter, ini: Getter, rootdir: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every option: CLI > env > ini > default; paths relative to ``rootdir``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        values[opt.dest], sources[opt.dest] = _resolve_one(opt, cli, ini, env)
    return _build(values, sources, rootdir, env)


def _resolve_one(opt: Option, cli: Getter, ini: Getter, env: Mapping[str, str]) -> tuple[Any, str]:
    value = cli(opt)
    if not (value is None or value is False or value in ((), [])):  # 0 is a value (--comfy-sample-ms=0)
        return value, opt.cli
    if opt.env and env.get(opt.env):
        where = f"environment variable {opt.env}"
        if opt.path_list:
            return tuple(v for v in env[opt.env].split(os.pathsep) if v.strip()), opt.env
        if opt.repeat:  # several values: separated by spaces or commas
            return tuple(_parse(opt, v, where) for v in re.split(r"[\s,]+", env[opt.env]) if v), opt.env
        return _parse(opt, env[opt.env], where), opt.env
    raw = ini(opt)
    if raw not in (None, "", []):
        return _parse_ini(opt, raw), f"ini {opt.ini}"
    return opt.default, "default"


def _parse_ini(opt: Option, raw: Any) -> Any:
    if opt.flag:
        text = str(raw).strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"ini {opt.ini} = {raw!r}: expected true or false")
        return text in ("1", "true", "yes", "on")
    if opt.repeat:
        lines = raw if isinstance(raw, list) else str(raw).splitlines()
        return tuple(_parse(opt, ln, f"ini {opt.ini}") for ln in lines if str(ln).strip())
    return _parse(opt, str(raw), f"ini {opt.ini}")


def _parse(opt: Option, text: str, where: str) -> Any:
    try:
        return opt.parse(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc} (option {opt.cli}: {opt.help})") from None


def _path(value: Any, rootdir: Path) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else rootdir / p


def _build(values: dict[str, Any], sources: dict[str, str], rootdir: Path, env: Mapping[str, str]) -> Settings:
    headers = {name: _expand_env(val, f"header {name}", env) for name, val in values["comfy_header"]}
    token_env = values["comfy_token_env"]
    if token_env:
        if not env.get(token_env):
            raise ConfigError(f"--comfy-token-env {token_env}: environment variable {token_env} is not set")
        headers["Authorization"] = f"Bearer {env[token_env]}"
    urls = _urls(values["comfy_url"], sources["comfy_url"])
    if urls and values["comfy_launch"]:
        raise ConfigError(
            f"both a server URL ({sources['comfy_url']}) and --comfy-launch are given; choose one"
        )
    _check_server_counts(urls, values)
    if values["comfy_calibrate"] and values["comfy_update_baselines"]:
        raise ConfigError("--comfy-calibrate compares runs with each other, not with baselines; "
                          "it cannot be combined with --comfy-update-baselines")
    settings = Settings(
        urls=urls,
        gpus=tuple(values["comfy_gpus"] or ()),
        servers=len(values["comfy_gpus"] or ()) or values["comfy_servers"],
        order=values["comfy_order"],
        shard=values["comfy_shard"],
        url_source=sources["comfy_url"],
        launch=_path(values["comfy_launch"], rootdir),
        python=_path(values["comfy_python"], rootdir),
        launch_args=tuple(values["comfy_launch_args"]),
        embedded_home=_path(values["comfy_embedded_home"], rootdir),
        headers=headers,
        timeout=values["comfy_timeout"],
        idle_timeout=values["comfy_idle_timeout"],
        startup_timeout=values["comfy_startup_timeout"],
        seed=values["comfy_seed"],
        missing=values["comfy_missing"],
        baselines=_path(values["comfy_baselines"], rootdir) or rootdir / "baselines",
        results=_path(values["comfy_results"], rootdir) or rootdir / "comfytest-results",
        update_baselines=bool(values["comfy_update_baselines"]),
        hash=values["comfy_hash"],
        hash_size=values["comfy_hash_size"],
        tolerance=values["comfy_tolerance"],
        hash_only=bool(values["comfy_hash_only"]),
        interface=bool(values["comfy_interface"]),
        max_diff=0 if values["comfy_exact"] else values["comfy_max_diff"],
        mean_diff=values["comfy_mean_diff"],
        min_psnr=values["comfy_min_psnr"],
        profile=values["comfy_profile"],
        runs=values["comfy_runs"],
        warmup=values["comfy_warmup"],
        free_cache=bool(values["comfy_free_cache"]),
        compare=_path(values["comfy_compare"], rootdir),
        history=_path(values["comfy_history"], rootdir),
        timing_fail=bool(values["comfy_timing_fail"]),
        timing_abs_ms=values["comfy_timing_abs"],
        timing_rel_pct=values["comfy_timing_rel"],
        timing_floor_ms=values["comfy_timing_floor"],
        no_report=bool(values["comfy_no_report"]),
        calibrate=values["comfy_calibrate"],
        ca_bundle=_ca_bundle(values["comfy_ca_bundle"], sources["comfy_ca_bundle"], rootdir),
        convert=values["comfy_convert"],
        chromium=values["comfy_chromium"],
        sample_ms=values["comfy_sample_ms"],
        memory_fail=bool(values["comfy_memory_fail"]),
        progress=values["comfy_progress"],
        previews=bool(values["comfy_previews"]),
        max_cases=values["comfy_max_cases"],
        custom_nodes=_packs(values["comfy_custom_nodes"], sources["comfy_custom_nodes"], rootdir),
        trace=values["comfy_trace"] == "on",
        perceptual=values["comfy_perceptual"] == "on",
        **_perf(values),
        html=values["comfy_html"],
        keep_passed=bool(values["comfy_keep_passed"]),
    )
    _check_folders(settings, sources)
    return settings


def _perf(values: Mapping[str, Any]) -> dict[str, Any]:
    """The --comfy-perf-* settings; the run counts must make sense together."""
    low, high = values["comfy_perf_min_runs"], values["comfy_perf_max_runs"]
    if low < 2 or high < low:
        raise ConfigError(f"--comfy-perf-min-runs {low} / --comfy-perf-max-runs {high}: a statistical comparison "
                          "needs at least 2 warm runs, and the maximum cannot be below the minimum")
    pool = values["comfy_perf_pool"]
    if not 2 <= pool <= 200:
        raise ConfigError(f"--comfy-perf-pool {pool}: keep between 2 and 200 samples (the rank test is exact up "
                          "to 60 values in all; 20 is plenty for 3 new runs to reach p < 0.001)")
    if values["comfy_perf"] and values["comfy_calibrate"]:
        raise ConfigError("--comfy-perf measures timings, --comfy-calibrate the spread of outputs; run them "
                          "as separate sessions")
    return {
        "perf": bool(values["comfy_perf"]), "perf_budget": _budget(values["comfy_perf_budget"]),
        "perf_min_runs": low, "perf_max_runs": high, "perf_alpha": values["comfy_perf_alpha"],
        "perf_floor_ms": values["comfy_perf_floor_ms"], "perf_floor_pct": values["comfy_perf_floor_pct"],
        "perf_warn": bool(values["comfy_perf_warn"]), "perf_screen_runs": values["comfy_perf_screen_runs"],
        "perf_pool": pool,
    }


def _budget(value: Any) -> tuple[float, str]:
    return perf_budget(value) if isinstance(value, str) else (float(value[0]), str(value[1]))


def _ca_bundle(value: Any, source: str, rootdir: Path) -> Path | None:
    path = _path(value, rootdir)
    if path is not None and not path.exists():
        raise ConfigError(f"{source} {value}: no such file; give the PEM file (or folder) of the CA "
                          "that signed the server's certificate")
    return path


def _packs(values: Any, source: str, rootdir: Path) -> tuple[Path, ...]:
    packs = tuple(check_pack(rootdir / Path(str(v).strip()).expanduser(), source) for v in values or ())
    return tuple(dict.fromkeys(packs))


def _check_folders(settings: Settings, sources: Mapping[str, str]) -> None:
    """The results folder is emptied per case: it must not hold (or be inside) the baselines."""
    results, baselines = settings.results.resolve(), settings.baselines.resolve()
    if results == baselines or baselines in results.parents or results in baselines.parents:
        raise ConfigError(
            f"the results folder {settings.results} ({sources['comfy_results']}) and the baselines folder "
            f"{settings.baselines} ({sources['comfy_baselines']}) overlap; comfytest clears result folders, "
            "which would delete baselines. Use separate folders, e.g. --comfy-results comfytest-results."
        )


def _urls(value: Any, source: str) -> tuple[str, ...]:
    """One URL or several; a URL listed twice is an error naming it (two workers would share it
    believing they had a server each)."""
    urls = (value,) if isinstance(value, str) else tuple(value or ())
    seen: dict[str, str] = {}
    for url in urls:
        key = url.lower().rstrip("/")
        if key in seen:
            raise ConfigError(f"{source}: the server URL {_without_password(url)} is listed twice; "
                              "list each server once (-n larger than the number of servers shares them)")
        seen[key] = url
    return urls


def _without_password(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)


def _check_server_counts(urls: tuple[str, ...], values: Mapping[str, Any]) -> None:
    gpus, servers = values["comfy_gpus"], values["comfy_servers"]
    if gpus and not values["comfy_launch"]:
        raise ConfigError("--comfy-gpus starts your ComfyUI once per GPU: it needs --comfy-launch DIR "
                          "(the embedded server is CPU-only; --comfy-servers N starts N of it)")
    if gpus and servers not in (None, 1, len(gpus)):
        raise ConfigError(f"--comfy-gpus lists {len(gpus)} GPU(s) but --comfy-servers is {servers}; "
                          "give one of them (--comfy-gpus starts one server per GPU)")
    if urls and servers not in (None, 1):
        raise ConfigError("--comfy-servers starts servers; with --comfy-url list every server URL instead "
                          "(--comfy-url URL1 --comfy-url URL2)")




def reference_markdown() -> str:
    """docs/options.md: every ``--comfy-*`` option with its ini key, env variable, default and
    help, generated from ``OPTIONS`` (``python -m comfytest.plugin.settings > docs/options.md``)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def default(opt: Option) -> str:
        if opt.flag:
            return "off"
        if opt.default in (None, ()):
            return "—"
        return f"`{opt.default}`"

    lines = [
        "# Options",
        "",
        "Generated from `comfytest/plugin/settings.py` (`OPTIONS`) by",
        "`python -m comfytest.plugin.settings > docs/options.md`; a test fails when this file differs.",
        "",
        "Each option is a command-line flag, an ini key (`pytest.ini`, or `[tool.pytest.ini_options]`",
        "in `pyproject.toml`) and, where listed, an environment variable. The command line wins over",
        "the environment, the environment over the ini file, the ini file over the default; a workflow's",
        "own settings file (`<workflow>.toml`) wins over all of them for its cases. Options repeated on",
        "the command line (or one per line in ini) are marked *repeatable*.",
        "",
        "Write option values that are paths with `=` (`--comfy-launch=~/ComfyUI`): pytest looks for its",
        "configuration beside the first path-like arguments it sees, and a separate word can move it.",
        "",
        "| option | ini key | env | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for opt in OPTIONS:
        flag = opt.cli if opt.flag else f"{opt.cli}=…"
        extra = " *repeatable*" if opt.repeat else ""
        lines.append(f"| `{flag}` | `{opt.ini}` | {f'`{opt.env}`' if opt.env else '—'} | {cell(default(opt))} "
                     f"| {cell(opt.help)}{extra} |")
    lines += ["", "Also an ini key only: `comfy_workflows`, the folders whose JSON workflows are collected "
              "as tests (paths relative to the ini file).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
