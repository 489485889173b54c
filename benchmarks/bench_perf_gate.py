"""Does ``--comfy-perf`` catch slowdowns without false alarms, and what does it cost?

``python benchmarks/bench_perf_gate.py [--sessions 5] [--quick] [--skip-cost | --cost-only]``
``python benchmarks/bench_perf_gate.py --cost-only --workspace DIR --phase reference|compare``

A pack of our own (comfytest's nodepack) with a switchable slowdown: ``ComfyTestWork`` sleeps
``ms`` × ``COMFYTEST_WORK_FACTOR`` (an environment variable of the ComfyUI process, which each
pytest session launches embedded). Four workflows: a 40 ms node then a 60 ms one, a 40 ms node
alone, a ~1 s node, and one that runs no ComfyTestWork at all (Blur). Then:

1. a reference perf session (baselines written), then ``--sessions`` unchanged perf sessions,
   each compared with the one before it (the results folder's report.json): **false alarms**
   are timing failures among them;
2. ``COMFYTEST_WORK_FACTOR=2`` (every ComfyTestWork node 2× slower: +40 ms on the 40 ms nodes)
   against the last unchanged session: **detections** are the tests running the node that fail
   with kind ``timing`` and name it; the Blur test must pass;
3. ``COMFYTEST_WORK_FACTOR=1.1``: the ~1 s node 10 % slower (+100 ms) must be flagged (the 40 and
   60 ms nodes move 4–6 ms, under the 20 ms floor, and must not be);
4. unless ``--skip-cost``: the example suite (``workflows/``), baselines written first (not
   timed). ``reference`` phase: a plain session, then the first perf session (no reference: it
   makes one, ``--comfy-perf-min-runs`` warm runs per test), its cost printed on its own. ``compare``
   phase, the CI case: a plain session, then ``--rounds`` times a perf session compared with the
   reference (the results folder's report.json, which each such session replaces: the pool grows)
   and a plain session; each ratio is a perf session's wall time over the mean of the plain ones
   around it, the figure their median (goal ≤ 3). ``--workspace`` keeps the folder so the two phases
   can run as two shorter invocations (each under the bench lock).

Each session starts its own embedded CPU ComfyUI (``.comfytest``; install it first), so the
figures include a server start per session as a user's CI would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _chain(*works: tuple[str, float]) -> dict[str, Any]:
    prompt: dict[str, Any] = {"1": {"class_type": "ComfyTestNoiseImage",
                                    "inputs": {"width": 32, "height": 32, "seed": 7, "batch_size": 1}}}
    for index, (title, ms) in enumerate(works, start=2):
        prompt[str(index)] = {"class_type": "ComfyTestWork", "_meta": {"title": title},
                              "inputs": {"image": [str(index - 1), 0], "ms": ms}}
    prompt["9"] = {"class_type": "SaveImage", "inputs": {"images": [str(len(prompt)), 0], "filename_prefix": "bench"}}
    return prompt


PACK: dict[str, dict[str, Any]] = {
    "chain": _chain(("Tint", 40.0), ("Steady", 60.0)),
    "single": _chain(("Tint", 40.0)),
    "long": _chain(("Long", 1000.0)),
    "blur": {"1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 32, "height": 32, "seed": 7, "batch_size": 1}},
             "2": {"class_type": "ComfyTestBlur", "inputs": {"image": ["1", 0], "amount": 2}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}},
}
RUNS_WORK = ("chain", "single", "long")


def session(folder: Path, *args: str, factor: float = 1.0) -> tuple[float, dict[str, Any]]:
    """One pytest session in ``folder``: wall seconds and its report.json."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COMFYTEST_WORK_FACTOR": str(factor)}
    started = time.monotonic()
    subprocess.run([PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--comfy-progress=off", *args],
                   cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.monotonic() - started
    results = next((a.split("=", 1)[1] for a in args if a.startswith("--comfy-results=")), "comfytest-results")
    return wall, json.loads((folder / results / "report.json").read_text())


def timing_failures(doc: dict[str, Any]) -> dict[str, str]:
    return {t["case"] and t["workflow"]: t.get("message") or "" for t in doc["tests"] if t.get("failure_kind") == "timing"}


def _runs(doc: dict[str, Any]) -> dict[str, int]:
    return {Path(t["workflow"]).stem: len(t.get("runs") or []) for t in doc["tests"]}


def pack_workspace(root: Path) -> Path:
    folder = root / "pack"
    (folder / "workflows").mkdir(parents=True)
    for name, prompt in PACK.items():
        (folder / "workflows" / f"{name}.json").write_text(json.dumps(prompt))
    (folder / "pytest.ini").write_text(f"[pytest]\ncomfy_workflows = workflows\ncomfy_embedded_home = {ROOT / '.comfytest'}\n")
    return folder


def gate(root: Path, sessions: int) -> dict[str, Any]:
    folder = pack_workspace(root)
    session(folder, "--comfy-perf", "--comfy-update-baselines")
    false_alarms, runs = 0, []
    for index in range(sessions):
        wall, doc = session(folder, "--comfy-perf")
        failed = timing_failures(doc)
        false_alarms += len(failed)
        runs.append(sorted(len(t.get("runs") or []) for t in doc["tests"]))
        pools = sorted(len(((t.get("perf") or {}).get("pool") or {}).get("total") or []) for t in doc["tests"])
        print(f"  unchanged session {index + 1}: {len(failed)} timing failure(s) {sorted(failed)}; "
              f"warm runs per test {runs[-1]}; reference pool now {pools}; {wall:.1f} s", flush=True)
    reference = root / "reference.json"
    shutil.copyfile(folder / "comfytest-results" / "report.json", reference)
    _, doc = session(folder, "--comfy-perf", f"--comfy-compare={reference}", factor=2.0)
    print(f"  2x session: warm runs per test {_runs(doc)}")
    failed = timing_failures(doc)
    named = [w for w in failed if "ComfyTestWork" in failed[w]]
    detected = sum(1 for w in failed if any(w.endswith(f"{n}.json") for n in RUNS_WORK) and w in named)
    wrong = [w for w in failed if not any(w.endswith(f"{n}.json") for n in RUNS_WORK)]
    print(f"  2x slower: {detected} of {len(RUNS_WORK)} tests running the node failed naming it; "
          f"false failures elsewhere: {wrong or 'none'}")
    for w in sorted(failed):
        print("    " + failed[w].splitlines()[1].strip() if len(failed[w].splitlines()) > 1 else failed[w])
    _, doc = session(folder, "--comfy-perf", f"--comfy-compare={reference}", factor=1.1)
    print(f"  1.1x session: warm runs per test {_runs(doc)}")
    failed = timing_failures(doc)
    long_flagged = any(w.endswith("long.json") and "'Long'" in m for w, m in failed.items())
    others = sorted(w for w in failed if not w.endswith("long.json"))
    print(f"  10% slower (~1 s node +100 ms): flagged {long_flagged}; other tests failing: {others or 'none'}")
    for w in sorted(failed):
        print("    " + " | ".join(line.strip() for line in failed[w].splitlines()[1:-1]))
    return {"false_alarms": false_alarms, "sessions": sessions, "detected_2x": detected, "wrong_2x": len(wrong),
            "flagged_10pct": long_flagged, "wrong_10pct": len(others)}


def examples_workspace(folder: Path) -> Path:
    """The example suite in ``folder`` with its baselines written (once; not timed)."""
    if (folder / "baselines").is_dir():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "workflows", folder / "workflows", dirs_exist_ok=True)
    (folder / "pytest.ini").write_text(f"[pytest]\ncomfy_workflows = workflows\ncomfy_embedded_home = {ROOT / '.comfytest'}\n")
    session(folder, "--comfy-update-baselines", "--comfy-results=setup-results")
    return folder


def _timed(folder: Path, label: str, *args: str) -> float:
    wall, doc = session(folder, *args)
    tests = doc["tests"]
    executed = sum(r.get("server_total_ms") or 0 for t in tests for r in [t.get("timing") or {}, *(t.get("runs") or [])])
    line = (f"  example suite {label}: {wall:.1f} s, {len(tests)} tests, outcomes {sorted({t['outcome'] for t in tests})}, "
            f"server time {executed / 1000:.1f} s")
    if "--comfy-perf" in args:
        warm = sorted(len(t.get("runs") or []) for t in tests)
        stopped: dict[str, int] = {}
        for t in tests:
            why = str((t.get("perf") or {}).get("stopped"))
            stopped[why] = stopped.get(why, 0) + 1
        slower = sum(1 for t in tests if t.get("failure_kind") == "timing")
        line += f", warm runs per test {warm} (total {sum(warm)}), stopped {stopped}, timing failures {slower}"
    print(line, f"[{_load()}]", flush=True)
    return wall


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def cost(folder: Path, phase: str, rounds: int = 1) -> None:
    """The example suite: plain and perf sessions (module docstring, step 4)."""
    examples_workspace(folder)
    if phase in ("reference", "both"):
        shutil.rmtree(folder / "comfytest-results", ignore_errors=True)
        plain = _timed(folder, "plain", "--comfy-results=plain-results")
        first = _timed(folder, "perf, first session (makes the reference)", "--comfy-perf")
        print(f"cost of the first perf session (no reference): {first / plain:.2f}× a plain one "
              f"({first:.1f} s / {plain:.1f} s)", flush=True)
    if phase in ("compare", "both"):
        if not (folder / "comfytest-results" / "report.json").is_file():
            raise SystemExit(f"no reference in {folder}: run --phase reference first")
        plains = [_timed(folder, "plain", "--comfy-results=plain-results")]
        ratios = []
        for index in range(rounds):
            perf = _timed(folder, f"perf, compared with the reference (round {index + 1})", "--comfy-perf")
            plains.append(_timed(folder, "plain", "--comfy-results=plain-results"))
            ratios.append(perf / ((plains[-2] + plains[-1]) / 2))
            print(f"cost round {index + 1}: perf (with a reference) / plain = {ratios[-1]:.2f}× ({perf:.1f} s / the mean "
                  f"of {plains[-2]:.1f} and {plains[-1]:.1f} s)", flush=True)
        print(f"cost: example suite perf (with a reference) / plain = {statistics.median(ratios):.2f}× "
              f"(median of {len(ratios)} round(s): {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5, help="unchanged perf sessions (false alarms)")
    parser.add_argument("--quick", action="store_true", help="2 unchanged sessions")
    parser.add_argument("--skip-cost", action="store_true", help="skip the example-suite cost measurement")
    parser.add_argument("--cost-only", action="store_true", help="only the example-suite cost measurement")
    parser.add_argument("--phase", choices=("reference", "compare", "both"), default="both",
                        help="cost: the first perf session, the compared one (the CI case), or both")
    parser.add_argument("--rounds", type=int, default=1,
                        help="cost, compare phase: perf sessions, each between two plain ones (the ratio: their median)")
    parser.add_argument("--workspace", type=Path, help="keep the example-suite folder here (reused by a later --phase)")
    args = parser.parse_args()
    sessions = 2 if args.quick else args.sessions
    with tempfile.TemporaryDirectory(prefix="bench_perf_") as tmp:
        root = Path(tmp)
        print(f"start: {_load()}", flush=True)
        if not args.cost_only:
            print(f"pack of {len(PACK)} workflows; {sessions} unchanged perf sessions after a reference", flush=True)
            result = gate(root, sessions)
            print(f"false alarms: {result['false_alarms']} timing failure(s) in {sessions} unchanged sessions "
                  f"× {len(PACK)} tests")
            print(f"detections: 2x slower {result['detected_2x']}/{len(RUNS_WORK)} (wrong {result['wrong_2x']}); "
                  f"10% of ~1 s flagged: {result['flagged_10pct']} (wrong {result['wrong_10pct']})")
        if not args.skip_cost:
            cost((args.workspace or root / "examples").resolve(), args.phase, args.rounds)
        print(f"end: {_load()}", flush=True)


if __name__ == "__main__":
    main()
