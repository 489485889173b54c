"""Scale-out figures: ``python benchmarks/bench_scaleout.py [--servers 1,2,4] [--cases 16] [--sleep 2]``.

1. **Throughput** of a suite of sleep-bound workflow cases (the node pack's ``ComfyTestSleep``,
   so the CPU is not what limits it) under ``pytest -n N --comfy-servers N`` for each N: cases
   per second of the test phase (first test start to last test end, from a conftest in the
   suite; server and worker start-up are left out), and the ratio to N = 1.
2. **Model loads**: 12 cases alternating between two tiny checkpoints (the embedded one and a
   second written with another seed by ``comfytest/comfy/tinymodel.py``), run once in file order and
   once in model order (``--comfy-order``) on one embedded server: loader executions
   (``summary.model_loads``) and the suite's wall time.

Each session is a real pytest run in a subprocess against the embedded ComfyUI (``--home``,
default ``.comfytest``). Not a test: it prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comfytest.comfy.embedded import TINY_CHECKPOINT, load_embedded  # noqa: E402
from comfytest.comfy.tinymodel import ensure_tiny_checkpoint  # noqa: E402

SECOND_CHECKPOINT = "tiny-sd15-random-seed1.safetensors"

# the test phase, measured inside each worker: one line per test, start and end
TIMING_CONFTEST = '''
import os, time, pytest
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.time()
    yield
    with open(os.environ["BENCH_TIMES"], "a") as fh:
        fh.write(f"{start} {time.time()}\\n")
'''


def sleep_suite(folder: Path, cases: int, seconds: float) -> None:
    workflow = {
        "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 8, "height": 8, "seed": 1, "batch_size": 1}},
        "2": {"class_type": "ComfyTestSleep", "inputs": {"image": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    (folder / "sleep.json").write_text(json.dumps(workflow))
    seeds = ", ".join(str(s) for s in range(1, cases + 1))
    (folder / "sleep.toml").write_text(f'matrix = {{ "ComfyTestNoiseImage.seed" = [{seeds}] }}\n')
    (folder / "conftest.py").write_text(TIMING_CONFTEST)


def model_suite(folder: Path, cases: int) -> None:
    txt2img = json.loads((ROOT / "workflows" / "tiny_txt2img.json").read_text())
    (folder / "two_models.json").write_text(json.dumps(txt2img))
    lines = ['patches = { KSampler = { steps = 1 } }\n']
    for index in range(cases):
        ckpt = TINY_CHECKPOINT if index % 2 == 0 else SECOND_CHECKPOINT
        lines.append(f'[cases.c{index:02d}]\nseed = {index + 1}\n'
                     f'patches = {{ CheckpointLoaderSimple = {{ ckpt_name = "{ckpt}" }}, KSampler = {{ steps = 1 }} }}\n')
    (folder / "two_models.toml").write_text("".join(lines))


def run_session(folder: Path, results: Path, home: Path, *args: str) -> tuple[dict[str, Any], float, list[tuple[float, float]]]:
    times = results / "times.txt"
    env = {**os.environ, "BENCH_TIMES": str(times)}
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "COMFYUI_URL", "GITHUB_STEP_SUMMARY"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "pytest", str(folder), "-q", "-p", "no:cacheprovider", "--rootdir", str(folder),
           f"--comfy-embedded-home={home}", f"--comfy-results={results}", f"--comfy-baselines={results}-baselines",
           "--comfy-update-baselines", *args]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"session failed ({' '.join(args)}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    spans = [tuple(map(float, line.split())) for line in times.read_text().splitlines()] if times.exists() else []
    return json.loads((results / "report.json").read_text()), wall, spans  # type: ignore[return-value]


def throughput(home: Path, counts: list[int], cases: int, seconds: float) -> None:
    print(f"\nthroughput: {cases} cases of {seconds:g} s of ComfyTestSleep, pytest -n N --comfy-servers N")
    print(f"{'N':>3} {'test phase s':>13} {'cases/s':>9} {'vs N=1':>8} {'goal':>6} {'servers used':>13}")
    base = None
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
            folder, results = Path(tmp) / "suite", Path(tmp) / "results"
            folder.mkdir()
            sleep_suite(folder, cases, seconds)
            doc, _, spans = run_session(folder, results, home, "-n", str(n), f"--comfy-servers={n}")
        phase = max(e for _, e in spans) - min(s for s, _ in spans)
        rate = cases / phase
        base = base or rate
        used = len({t["server"]["url"] for t in doc["tests"]})
        print(f"{n:>3} {phase:>13.2f} {rate:>9.3f} {rate / base:>7.2f}x {0.9 * n:>5.1f}x {used:>13}")


def model_loads(home: Path, cases: int) -> None:
    emb = load_embedded(home)
    second = emb.checkpoint.with_name(SECOND_CHECKPOINT)
    written = ensure_tiny_checkpoint(second, seed=1)
    print(f"\nmodel loads: {cases} cases alternating {TINY_CHECKPOINT} / {SECOND_CHECKPOINT}"
          f"{' (written now)' if written else ''}, one embedded server, KSampler 1 step")
    print(f"{'order':<7} {'loader executions':>18} {'distinct checkpoints':>21} {'suite wall s':>13} {'test phase s':>13}")
    for order in ("file", "models"):
        with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
            folder, results = Path(tmp) / "suite", Path(tmp) / "results"
            folder.mkdir()
            model_suite(folder, cases)
            (folder / "conftest.py").write_text(TIMING_CONFTEST)
            doc, wall, spans = run_session(folder, results, home, f"--comfy-order={order}")
        phase = max(e for _, e in spans) - min(s for s, _ in spans)
        summary = doc["summary"]
        print(f"{order:<7} {summary['model_loads']:>18} {summary['model_sets']:>21} {wall:>13.1f} {phase:>13.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".comfytest", help="embedded ComfyUI home")
    parser.add_argument("--servers", default="1,2,4", help="server counts to measure, e.g. 1,2,4")
    parser.add_argument("--cases", type=int, default=16, help="sleep cases per throughput session")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each sleep case sleeps")
    parser.add_argument("--model-cases", type=int, default=12, help="cases of the model-load suite")
    parser.add_argument("--skip", choices=("throughput", "models"), help="leave one part out")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}")
    if args.skip != "throughput":
        throughput(args.home, [int(n) for n in args.servers.split(",")], args.cases, args.sleep)
    if args.skip != "models":
        model_loads(args.home, args.model_cases)


if __name__ == "__main__":
    main()
