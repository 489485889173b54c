"""What the trace of intermediate outputs (issue 23) costs: ``python benchmarks/bench_trace.py
[--rounds 4] [--runs 5] [--url URL]``.

Per-node timings of passing tests must not change with the feature: a passing comparison runs
no taps (the trace is read only when a comparison fails, and recorded only with
``--comfy-update-baselines``). The benchmark runs one suite (a chain of five comfytest nodes on a
512x512 image, ``--comfy-runs N --comfy-free-cache``) in real pytest sessions against one server,
``--comfy-trace on`` and ``off`` alternately (A B A B), and prints each node's median duration
over every measured run of each side, side by side with their ratio.

It also shows what the feature does cost, where it runs: recording the baselines (one tapped
run per case) and a failing case (one diagnostic tapped run), each as the case's duration
with the trace on and off. Without ``--url`` the embedded CPU ComfyUI is started (``--home``).
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
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

SUITE: dict[str, Any] = {
    "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 512, "height": 512, "seed": 1, "batch_size": 1}},
    "2": {"class_type": "ComfyTestBlur", "inputs": {"image": ["1", 0], "amount": 4}},
    "3": {"class_type": "ComfyTestDesaturate", "inputs": {"image": ["2", 0], "factor": 0.5}},
    "4": {"class_type": "ComfyTestLevels", "inputs": {"image": ["3", 0], "strength": 0.8}},
    "5": {"class_type": "ComfyTestResize", "inputs": {"image": ["4", 0], "width": 256, "height": 256}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "bench_trace"}},
}


def session(folder: Path, url: str, baselines: Path, *args: str) -> tuple[dict[str, Any], float]:
    """One pytest session in a subprocess → its report and wall time."""
    results = folder.parent / "results"
    shutil.rmtree(results, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "COMFYUI_URL", "GITHUB_STEP_SUMMARY")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "pytest", str(folder), "-q", "-p", "no:cacheprovider", "--rootdir", str(folder),
           f"--comfy-url={url}", f"--comfy-results={results}", f"--comfy-baselines={baselines}", *args]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - started
    report = json.loads((results / "report.json").read_text())
    if done.returncode not in (0, 1):
        raise SystemExit(f"session failed ({' '.join(args)}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return report, wall


def node_times(report: dict[str, Any]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for record in report["tests"]:
        for run in record.get("runs") or [record["timing"]]:
            for node in run["nodes"]:
                if node.get("duration_ms") is not None and not node.get("cached"):
                    found.setdefault(f"{node['node_id']} {node['class_type']}", []).append(node["duration_ms"])
            found.setdefault("server total", []).append(run["server_total_ms"])
    return found


SIDES = ("off", "on", "off again")  # "off again": the same settings as "off", for the machine's noise


def passing(folder: Path, url: str, baselines: Path, rounds: int, runs: int) -> None:
    sides: dict[str, dict[str, list[float]]] = {side: {} for side in SIDES}
    taps = dict.fromkeys(SIDES, 0)
    for _ in range(rounds):
        for side in SIDES:
            trace = side.split()[0]
            report, _ = session(folder, url, baselines, f"--comfy-trace={trace}", f"--comfy-runs={runs}", "--comfy-free-cache")
            assert all(r["outcome"] == "passed" for r in report["tests"]), "the passing suite failed"
            taps[side] += sum(r.get("trace") is not None for r in report["tests"])
            for name, values in node_times(report).items():
                sides[side].setdefault(name, []).extend(values)
    print(f"\npassing tests, {rounds} sessions per side x {runs} measured runs (--comfy-free-cache), "
          "sides alternating off / on / off again:")
    print(f"{'node':<26} {'trace off ms':>13} {'trace on ms':>12} {'off again ms':>13} {'on/off':>7} {'again/off':>10} {'n':>4}")
    for name in sides["off"]:
        off, on, again = (statistics.median(sides[s].get(name) or [float("nan")]) for s in SIDES)
        print(f"{name:<26} {off:>13.2f} {on:>12.2f} {again:>13.2f} {on / off:>7.2f} {again / off:>10.2f} "
              f"{len(sides['on'].get(name, [])):>4}")
    print("tests with a trace entry (a tapped run): " + ", ".join(f"{s} {taps[s]}" for s in SIDES))


def costs(folder: Path, url: str, tmp: Path) -> None:
    print("\nwhere the feature costs a run (case duration, s; one session each):")
    for side in ("off", "on"):
        baselines = tmp / f"baselines-{side}"
        made, _ = session(folder, url, baselines, f"--comfy-trace={side}", "--comfy-update-baselines")
        (folder / "chain.toml").write_text('patches = { ComfyTestLevels = { strength = 0.5 } }\n')
        failed, _ = session(folder, url, baselines, f"--comfy-trace={side}")
        (folder / "chain.toml").unlink()
        record, fail = made["tests"][0], failed["tests"][0]
        status = (fail.get("trace") or {}).get("status")
        print(f"  trace {side:<3}: update baselines {record['duration_s']:.3f} s; failing case {fail['duration_s']:.3f} s"
              f" (trace: {status})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running ComfyUI with comfytest's nodes (default: start the embedded one)")
    parser.add_argument("--home", type=Path, default=ROOT / ".comfytest", help="embedded install (default .comfytest)")
    parser.add_argument("--rounds", type=int, default=4, help="sessions per side (default 4)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per session (default 5)")
    args = parser.parse_args()
    server = None
    url = args.url
    if not url:
        from benchmarks.bench_overhead import start_server

        print("starting the embedded ComfyUI ...", file=sys.stderr, flush=True)
        server = start_server(args.home)
        url = server.url
    try:
        with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
            folder = Path(tmp) / "suite"
            folder.mkdir()
            (folder / "chain.json").write_text(json.dumps(SUITE))
            baselines = Path(tmp) / "baselines"
            session(folder, url, baselines, "--comfy-update-baselines")
            print(f"server: {url}" + (" (embedded, --cpu, OMP_NUM_THREADS=2)" if server else ""))
            passing(folder, url, baselines, args.rounds, args.runs)
            costs(folder, url, Path(tmp))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
