"""A suite of N model-free cases: wall, server time, comfytest's time per case, memory and sizes.

One workflow (EmptyImage 256x256 -> ImageAddNoise -> SaveImage) with N cases in its settings
file, each with its own seed (so nothing comes from the cache) and its own SaveImage subfolder
(SaveImage lists its folder on every save). One server, started once by this script (or
``--url``); two pytest sessions in a subprocess: the first writes the baselines
(``--comfy-update-baselines --comfy-no-report``), the second compares and writes the reports.
Only the second is measured:

- wall: the second pytest process, start to exit (collection and report writing included);
- server: Σ ``server_total_ms`` of its records (the server's own execution, its clock);
- comfytest per case: (wall - Σ server) / N, everything comfytest and pytest add around the
  server's execution; and the median over cases of (test duration - server total), the part
  inside each test;
- the CPU time of the pytest process per case (user + system; start-up and reports included):
  on a busy machine wall times stretch, CPU time much less;
- pytest's peak RSS (``os.wait4`` of that process only, not the server);
- sizes of report.html, report.json, report.md and the results folder.

With ``--against DIR`` (another checkout of comfytest, e.g. ``git worktree add /tmp/base main``)
the measured session runs ``--rounds`` times with each tree, alternately (A B A B: this checkout,
then DIR), on one server, each side on baselines its own tree wrote (the same seeds; a newer
version may write more into ``hashes.txt`` than an older one reads), and the medians of both sides and their ratio
are printed: before/after figures measured side by side.

With ``--fail K`` the last K cases get a different seed in the compared session, so they fail
and the figures include failure artefacts. With ``--browser`` report.html is opened in headless
Chromium and the time until its DOM is dumped is printed.

    .venv/bin/python benchmarks/bench_scale.py --n 100
    nice .venv/bin/python benchmarks/bench_scale.py --n 1000 --browser
    .venv/bin/python benchmarks/bench_scale.py --n 200 --against /tmp/base --rounds 3
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
SIZE = 256

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1, "color": 8421504}},
    "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 0, "strength": 0.5}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "scale"}},
}


def write_suite(root: Path, n: int, offset: int, run: int, failing: int = 0) -> None:
    """``root/workflows/scale.json`` with N cases; the last ``failing`` get other seeds. Each
    ``run`` saves into other subfolders, so SaveImage executes again (and compares the same
    pixels) while the nodes before it may come from the cache."""
    folder = root / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scale.json").write_text(json.dumps(WORKFLOW))
    lines = []
    for i in range(n):
        seed = offset + i + (10**6 if i >= n - failing else 0)
        lines.append(f'[cases.c{i:05d}]\npatches = {{ "2" = {{ seed = {seed} }}, '
                     f'"3" = {{ filename_prefix = "scale/{offset}/{run}/{i:05d}/x" }} }}\n')
    (folder / "scale.toml").write_text("\n".join(lines))
    (root / "pytest.ini").write_text("[pytest]\n")


def pytest_run(root: Path, url: str | None, extra: list[str], profile: Path | None = None,
               tree: Path = ROOT) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS bytes: of the pytest process only; output tail).
    ``tree``: the checkout whose comfytest the session imports (the server stays ROOT's)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "GITHUB_STEP_SUMMARY", "PYTEST_XDIST_WORKER")}
    env["PYTHONPATH"] = str(tree)
    # the main thread's CPU time per function (time.thread_time): what load inflates least
    runner = ["-c", "import cProfile, sys, time, pytest; p = cProfile.Profile(time.thread_time); "
              "sys.argv = sys.argv[1:]; p.enable(); code = pytest.main(sys.argv[1:]); p.disable(); "
              f"p.dump_stats({str(profile)!r}); sys.exit(code)", "pytest"] if profile else ["-m", "pytest"]
    server = [f"--comfy-url={url}"] if url else [f"--comfy-embedded-home={ROOT / '.comfytest'}"]
    command = [sys.executable, *runner, "workflows", *server, "-q", "-p", "no:cacheprovider",
               f"--comfy-baselines={root / 'baselines'}", f"--comfy-results={root / 'results'}",
               "--comfy-progress=off", *extra]
    log = root / "pytest.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, log.read_text()[-3000:]


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def open_in_chromium(page: Path) -> float | None:
    """Seconds until headless Chromium dumped the page's DOM (JS run, images loaded); None without one."""
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        done = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=300, check=False)
        seconds = time.perf_counter() - start
    if 'data-js-test-count="' not in done.stdout:
        raise SystemExit(f"Chromium did not run the report's script:\n{done.stderr[-2000:]}")
    return seconds


def measure(url: str | None, n: int, failing: int, extra: list[str], browser: bool,
            profile: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        root = Path(tmp)
        offset = write_baselines(root, url, n)
        write_suite(root, n, offset, 1, failing)
        return figures(root, n, *pytest_run(root, url, extra, profile), browser=browser)


def write_baselines(root: Path, url: str | None, n: int, tree: Path = ROOT, offset: int | None = None) -> int:
    """The suite and its baselines (a first session, with ``tree``'s comfytest); returns its seed offset."""
    offset = int(time.time()) % 10**6 * 10 if offset is None else offset  # seeds this server has not cached
    write_suite(root, n, offset, 0)
    *_, out = pytest_run(root, url, ["--comfy-update-baselines", "--comfy-no-report"], tree=tree)
    if f"{n} passed" not in out:
        raise SystemExit(f"writing the baselines failed:\n{out}")
    return offset


def against(url: str | None, n: int, extra: list[str], other: Path, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """The measured session with this checkout and with ``other``, alternately, ``rounds`` times
    each; each side on baselines its own checkout wrote (a version reads what it writes, and may
    write more into ``hashes.txt`` than an older one reads), the same seeds on both; each
    session finds its side's previous results folder."""
    sides: dict[str, list[dict[str, Any]]] = {"this": [], "against": []}
    trees = {"this": ROOT, "against": other}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        roots = {side: Path(tmp) / side for side in trees}
        offset = None
        for side, tree in trees.items():
            offset = write_baselines(roots[side], url, n, tree, offset)
        run = 1
        for _ in range(rounds):
            for side, tree in trees.items():
                write_suite(roots[side], n, offset, run)  # new subfolders: SaveImage executes again
                run += 1
                sides[side].append(figures(roots[side], n, *pytest_run(roots[side], url, extra, tree=tree),
                                           browser=False))
    return sides


def figures(root: Path, n: int, wall: float, cpu: float, rss: int, out: str, *, browser: bool) -> dict[str, Any]:
    """What one measured session gave: times per case, memory, sizes."""
    results = root / "results"
    doc = json.loads((results / "report.json").read_text())
    tests = doc["tests"]
    server = [t["timing"]["server_total_ms"] or 0.0 for t in tests if t.get("timing")]
    inside = [t["duration_s"] * 1000 - (t["timing"]["server_total_ms"] or 0.0) for t in tests if t.get("timing")]
    sizes = {name: (results / name).stat().st_size for name in ("report.html", "report.json", "report.md")}
    found = {
        "n": n, "outcomes": {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error")},
        "wall_s": wall, "server_s": sum(server) / 1000, "comfytest_ms_per_case": (wall * 1000 - sum(server)) / n,
        "in_test_ms_median": statistics.median(inside), "peak_rss_mb": rss / 2**20,
        "cpu_s": cpu, "cpu_ms_per_case": cpu * 1000 / n,
        **{k: v / 2**20 for k, v in sizes.items()}, "results_mb": folder_size(results) / 2**20,
        "baselines_mb": folder_size(root / "baselines") / 2**20, "tail": out.splitlines()[-1:],
    }
    if browser:
        found["chromium_open_s"] = open_in_chromium(results / "report.html")
    return found


def print_against(n: int, sides: dict[str, list[dict[str, Any]]], other: Path) -> None:
    """Medians of each side's sessions, and this/against ratios."""
    print(f"N={n}, {len(sides['this'])} sessions per side, alternating (this = {ROOT}, against = {other}); "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = (("in-test median (duration - server)", "in_test_ms_median", "ms"),
            ("(wall - Σ server) / N", "comfytest_ms_per_case", "ms"), ("pytest CPU per case", "cpu_ms_per_case", "ms"),
            ("wall", "wall_s", "s"), ("Σ server", "server_s", "s"), ("peak RSS", "peak_rss_mb", "MB"))
    for label, key, unit in rows:
        this = statistics.median(f[key] for f in sides["this"])
        them = statistics.median(f[key] for f in sides["against"])
        each = " / ".join(f"{f[key]:.2f}" for f in sides["this"]) + "  vs  " + " / ".join(
            f"{f[key]:.2f}" for f in sides["against"])
        print(f"  {label:<36} this {this:8.2f} {unit:<2}  against {them:8.2f} {unit:<2}  ratio {this / them:.2f}   ({each})")
    bad = [f["outcomes"] for side in sides.values() for f in side if f["outcomes"]["passed"] != n]
    if bad:
        print(f"  NOT ALL PASSED: {bad}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="cases (repeatable; default 100)")
    parser.add_argument("--fail", type=int, default=0, help="of them, this many fail (other seeds)")
    parser.add_argument("--url", help="an already running ComfyUI (default: start the embedded one)")
    parser.add_argument("--home", type=Path, default=ROOT / ".comfytest", help="embedded install (default .comfytest)")
    parser.add_argument("--session-server", action="store_true",
                        help="each pytest session starts its own embedded server (its output files are then read "
                             "from disk, not over GET /view); the wall includes that start, the in-test median not")
    parser.add_argument("--browser", action="store_true", help="time opening report.html in headless Chromium")
    parser.add_argument("--pytest-arg", action="append", default=[], help="extra pytest argument (repeatable)")
    parser.add_argument("--against", type=Path, help="another comfytest checkout, measured alternately with this one")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: measured sessions per side (default 2)")
    parser.add_argument("--profile", type=Path, help="profile the measured session's main thread (CPU time) with cProfile, writing its stats here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_overhead import start_server

    server = None
    url = args.url
    if url is None and not args.session_server:
        print("starting the embedded ComfyUI ...", file=sys.stderr, flush=True)
        server = start_server(args.home)
        url = server.url
    try:
        for n in args.n or [100]:
            if args.against:
                print_against(n, against(url, n, args.pytest_arg, args.against.resolve(), args.rounds), args.against)
                continue
            f = measure(url, n, args.fail, args.pytest_arg, args.browser, args.profile)
            print(f"N={n}: {f['outcomes']}  ({f['tail'][0] if f['tail'] else ''})")
            print(f"  wall {f['wall_s']:.2f} s, Σ server {f['server_s']:.2f} s, comfytest "
                  f"{f['comfytest_ms_per_case']:.2f} ms/case ((wall - Σ server) / N; inside each test, median "
                  f"{f['in_test_ms_median']:.2f} ms)")
            print(f"  pytest process CPU {f['cpu_s']:.2f} s = {f['cpu_ms_per_case']:.2f} ms/case (start-up and "
                  f"report writing included; what load on the machine inflates least); load average "
                  f"{os.getloadavg()[0]:.1f}")
            print(f"  pytest peak RSS {f['peak_rss_mb']:.1f} MB"
                  + (" (the server it started included: a child it waited for)" if args.session_server else ""))
            print(f"  report.html {f['report.html']:.2f} MB, report.json {f['report.json']:.2f} MB, "
                  f"report.md {f['report.md'] * 1024:.1f} KB, results folder {f['results_mb']:.2f} MB "
                  f"(baselines {f['baselines_mb']:.2f} MB)")
            if args.browser:
                opened = f.get("chromium_open_s")
                print("  report.html in headless Chromium: " + ("no Chromium found" if opened is None else
                                                                 f"DOM dumped after {opened:.2f} s"), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
