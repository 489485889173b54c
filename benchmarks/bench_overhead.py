"""Harness overhead per workflow run: ``python benchmarks/bench_overhead.py [--runs 200] [--url URL]``.

Overhead = client wall time - server total, where the server total is
``execution_success.timestamp - execution_start.timestamp`` (server clock) for both sides. It is
what a client adds around the work the worker does: socket set-up, POST /prompt (validation on
the server included), event delivery, /history, /view and decoding the image.

Two clients run the same model-free prompt (EmptyImage 64x64 or ``--size`` -> ImageAddNoise(seed) ->
SaveImage), with a new seed (and EmptyImage colour) every run so nothing comes from cache, alternately A B A B:

* ``minimal``: the hand-written client of the 9elements/comfyui-api article (below): a new
  websocket per prompt, urllib for POST /prompt, wait for ``executing {node: null}``, then
  GET /history/{id} and GET /view for each image;
* ``comfytest``: ``Runner.run`` with ``fetch_images=True, history=False`` (as a test case runs:
  outputs and queue wait from the events, no GET /history) on one persistent ``ComfyClient``.

Both download and decode (``Image.open(...).load()``) every image, so they do the same work.
Without ``--url`` an embedded CPU ComfyUI is started (``--home``, default ``.comfytest``).

``--sampling-ab`` instead compares comfytest with resource sampling off and on
(``--sample-ms``, default 100: GET /system_stats and the server's RSS on a thread while each
prompt runs), A B A B on one server, and prints the ratio of the overhead medians (goal <= 1.05).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from comfytest.comfy.client import ComfyClient  # noqa: E402
from comfytest.comfy.events import Executing, ExecutionStart, ExecutionSuccess  # noqa: E402
from comfytest.comfy.execution import Runner  # noqa: E402

SIZE = 64  # image side (--size): 64 gives runs of a few ms, 1024 of a few hundred


def workflow(seed: int, size: int | None = None) -> dict[str, Any]:
    size = size or SIZE
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": seed % 0x1000000}},
        "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": seed, "strength": 0.5}},
        # a folder per run: SaveImage lists its folder on every save, a growing one slows it down
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"bench/{seed}/img"}},
    }


# ---------------------------------------------------------------- the article's minimal client

def minimal_run(server: str, prompt: dict[str, Any]) -> tuple[dict[str, int], list[Image.Image]]:
    """One prompt the way the 9elements/comfyui-api article does it (plus the two timestamps)."""
    client_id = str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.connect(f"ws://{server}/ws?clientId={client_id}")
    try:
        body = json.dumps({"prompt": prompt, "client_id": client_id}).encode("utf-8")
        with urllib.request.urlopen(urllib.request.Request(f"http://{server}/prompt", data=body)) as resp:
            prompt_id = json.loads(resp.read())["prompt_id"]
        stamps: dict[str, int] = {}
        while True:
            out = ws.recv()
            if not isinstance(out, str):
                continue  # binary preview frames
            message = json.loads(out)
            data = message.get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            if message["type"] in ("execution_start", "execution_success"):
                stamps[message["type"]] = data["timestamp"]
            if message["type"] == "executing" and data["node"] is None:
                break  # execution is done
        with urllib.request.urlopen(f"http://{server}/history/{prompt_id}") as resp:
            history = json.loads(resp.read())[prompt_id]
        images = []
        for node_output in history["outputs"].values():
            for image in node_output.get("images", []):
                query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]})
                with urllib.request.urlopen(f"http://{server}/view?{query}") as resp:
                    img = Image.open(io.BytesIO(resp.read()))
                    img.load()
                    images.append(img)
        return stamps, images
    finally:
        ws.close()


# ---------------------------------------------------------------- measuring

class Side:
    def __init__(self, name: str) -> None:
        self.name = name
        self.wall: list[float] = []
        self.server: list[float] = []
        self.overhead: list[float] = []

    def add(self, wall_ms: float, server_ms: float) -> None:
        self.wall.append(wall_ms)
        self.server.append(server_ms)
        self.overhead.append(wall_ms - server_ms)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_minimal(server: str, seed: int, side: Side) -> None:
    prompt = workflow(seed)
    t0 = time.perf_counter()
    stamps, images = minimal_run(server, prompt)
    wall = (time.perf_counter() - t0) * 1000
    assert len(images) == 1 and images[0].size == (SIZE, SIZE), images
    side.add(wall, stamps["execution_success"] - stamps["execution_start"])


class ComfytestSide:
    def __init__(self, url: str, sample_ms: int = 0, pid: int | None = None, source: str = "http") -> None:
        self.client = ComfyClient(url)
        self.runner = Runner(self.client, timeout=120, idle_timeout=60)
        self.samples: list[int] = []
        if sample_ms > 0:
            from comfytest.comfy.resources import ResourceSampler, meminfo_stats

            client = self.client
            if source == "proc":  # what a session does for a CPU server on this machine
                cpu = {"type": "cpu", "name": "cpu"}
                self.runner.sampler = ResourceSampler(lambda: meminfo_stats(cpu), sample_ms, pid, source="proc",
                                                      cheap=True)
            else:
                self.runner.sampler = ResourceSampler(lambda: client.system_stats(timeout=2), sample_ms, pid)
        self.node_sum: list[float] = []  # per-node durations summed
        self.node_server: list[float] = []
        self.setup: list[float] = []  # execution_start -> first executing, on the server clock

    def run(self, seed: int, side: Side) -> None:
        prompt = workflow(seed)
        t0 = time.perf_counter()
        # as a test case runs it: outputs and queue wait from the events, no GET /history
        result = self.runner.run(prompt, fetch_images=True, history=False)
        # decoded here, as the minimal client decodes (a served PNG is decoded on first use; a
        # case's check does not decode one that is its baseline's source image data)
        sizes = [image.image.size for image in result.images]
        wall = (time.perf_counter() - t0) * 1000
        assert result.ok and sizes == [(SIZE, SIZE)], result
        assert not result.timing.cached_nodes, result.timing.cached_nodes
        start = next(e for e in result.events if isinstance(e, ExecutionStart))
        end = next(e.timestamp for e in result.events if isinstance(e, ExecutionSuccess))
        server = float(end - start.timestamp)
        first = next(e for e in result.events if isinstance(e, Executing) and e.node)
        offset = result.timing.clock_offset_ms or 0.0  # best delivery latency (+ clock skew)
        self.setup.append(first.at.epoch_ms - offset - start.timestamp)
        assert server == result.timing.server_total_ms
        if result.memory is not None:
            self.samples.append(result.memory.samples)
        side.add(wall, server)
        self.node_sum.append(result.timing.executed_total_ms)
        self.node_server.append(server)


def measure(url: str, runs: int, warmup: int) -> tuple[Side, Side, ComfytestSide]:
    server = url.split("://", 1)[1].rstrip("/")
    ct = ComfytestSide(url)
    seed = int(time.time())  # never a seed an earlier invocation used on this server
    for _ in range(warmup):  # first prompts load nodes and warm caches on both sides
        run_minimal(server, seed, Side("-"))
        ct.run(seed + 1, Side("-"))
        seed += 2
    ct.node_sum.clear()
    ct.node_server.clear()
    ct.setup.clear()
    a, b = Side("minimal"), Side("comfytest")
    steps: list[Callable[[int], None]] = [lambda s: run_minimal(server, s, a), lambda s: ct.run(s, b)]
    for i in range(runs):
        for step in steps:  # strictly alternating: A B A B ...
            step(seed)
            seed += 1
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{runs} pairs", file=sys.stderr, flush=True)
    return a, b, ct


def report(a: Side, b: Side, ct: ComfytestSide) -> None:
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"runs per side: {len(a.wall)} (alternating A B A B; same prompt shape, a new seed every run)\n")
    print(f"{'client':<10} {'overhead median':>16} {'overhead p90':>13} {'wall median':>12} {'server median':>14}")
    for s in (a, b):
        print(f"{s.name:<10} {statistics.median(s.overhead):>13.2f} ms {pct(s.overhead, 0.9):>10.2f} ms "
              f"{statistics.median(s.wall):>9.2f} ms {statistics.median(s.server):>11.2f} ms")
    ratio = statistics.median(b.overhead) / statistics.median(a.overhead)
    wall_ratio = statistics.median(b.wall) / statistics.median(a.wall)
    print(f"\nratio comfytest/minimal of median overhead: {ratio:.2f}   (target <= 1.0, aim 0.8)")
    print(f"ratio comfytest/minimal of median wall:     {wall_ratio:.2f}")

    gaps = [srv - nodes for srv, nodes in zip(ct.node_server, ct.node_sum)]
    close = sum(1 for g, srv in zip(gaps, ct.node_server) if abs(g) <= 2.0 or abs(g) <= 0.02 * srv)
    print("\nper-node durations summed vs server total (comfytest runs):")
    print(f"  server total median {statistics.median(ct.node_server):.2f} ms, node sum median "
          f"{statistics.median(ct.node_sum):.2f} ms")
    print(f"  server total - node sum: median {statistics.median(gaps):+.2f} ms, median |diff| "
          f"{statistics.median(abs(g) for g in gaps):.2f} ms, p90 |diff| {pct([abs(g) for g in gaps], 0.9):.2f} ms")
    print(f"  within 2 % or 2 ms: {close}/{len(gaps)} ({close / len(gaps):.0%})")
    setup = statistics.median(ct.setup)
    print(f"  of the gap: server set-up before the first node ~{setup:.2f} ms median (first executing "
          f"received - clock offset - execution_start.timestamp); the rest, ~{statistics.median(gaps) - setup:.2f} ms, "
          "is between and after nodes plus 1-ms timestamp truncation")


def measure_sampling(
    url: str, runs: int, warmup: int, sample_ms: int, pid: int | None, source: str,
) -> tuple[Side, Side, ComfytestSide]:
    """comfytest without and with the resource sampler, strictly alternating."""
    off, on = ComfytestSide(url), ComfytestSide(url, sample_ms, pid, source)
    seed = int(time.time())
    for _ in range(warmup):
        off.run(seed, Side("-"))
        on.run(seed + 1, Side("-"))
        seed += 2
    on.samples.clear()
    a, b = Side("sampling off"), Side(f"{source} {sample_ms} ms")
    for i in range(runs):
        off.run(seed, a)
        on.run(seed + 1, b)
        seed += 2
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{runs} pairs", file=sys.stderr, flush=True)
    return a, b, on


def report_sampling(a: Side, b: Side, on: ComfytestSide) -> None:
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"runs per side: {len(a.wall)} (alternating A B A B; a new seed every run), image {SIZE}x{SIZE}\n")
    print(f"{'comfytest':<18} {'overhead median':>16} {'overhead p90':>13} {'wall median':>12} {'server median':>14}")
    for s in (a, b):
        print(f"{s.name:<18} {statistics.median(s.overhead):>13.2f} ms {pct(s.overhead, 0.9):>10.2f} ms "
              f"{statistics.median(s.wall):>9.2f} ms {statistics.median(s.server):>11.2f} ms")
    print(f"\nsamples per run with sampling: median {statistics.median(on.samples):.0f}")
    print(f"ratio on/off of median overhead: {statistics.median(b.overhead) / statistics.median(a.overhead):.3f}"
          "   (goal <= 1.05)")
    print(f"ratio on/off of median wall:     {statistics.median(b.wall) / statistics.median(a.wall):.3f}")
    print(f"ratio on/off of median server:   {statistics.median(b.server) / statistics.median(a.server):.3f}")


def start_server(home: Path):  # -> LocalServer
    from comfytest.comfy.embedded import load_embedded
    from comfytest.comfy.server import LaunchSpec, LocalServer

    emb = load_embedded(home)
    spec = LaunchSpec(comfyui_dir=emb.comfyui_dir, python=emb.python, base_dir=emb.base_dir,
                      args=("--cpu",), env={"OMP_NUM_THREADS": "2"})
    server = LocalServer(spec)
    server.start(timeout=180)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs per client (default 200)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per client first (default 3)")
    parser.add_argument("--url", help="an already running ComfyUI (default: start the embedded one)")
    parser.add_argument("--home", type=Path, default=ROOT / ".comfytest", help="embedded install (default .comfytest)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the comfytest side's runs here")
    parser.add_argument("--sampling-ab", action="store_true", help="compare comfytest with resource sampling off and on")
    parser.add_argument("--sample-ms", type=int, default=100, help="sampling interval for --sampling-ab (default 100)")
    parser.add_argument("--sample-source", choices=("http", "proc"), default="http",
                        help="--sampling-ab readings: GET /system_stats (any server, what a GPU server gets) or "
                             "/proc/meminfo (what a session uses for a CPU server on this machine)")
    parser.add_argument("--size", type=int, default=64,
                        help="image side in pixels (default 64: runs of a few ms; 1024: a few hundred ms, "
                             "several sampling intervals)")
    args = parser.parse_args()
    global SIZE
    SIZE = args.size

    server = None
    url = args.url
    if url is None:
        print("starting the embedded ComfyUI ...", file=sys.stderr, flush=True)
        server = start_server(args.home)
        url = server.url
    try:
        if args.profile:
            import cProfile
            profiler = cProfile.Profile()
            original = ComfytestSide.run
            def profiled(self: ComfytestSide, seed: int, side: Side) -> None:
                profiler.enable()
                try:
                    original(self, seed, side)
                finally:
                    profiler.disable()
            ComfytestSide.run = profiled  # type: ignore[method-assign]
        if args.sampling_ab:
            from comfytest.comfy.resources import listening_pid

            pid = server.proc.pid if server is not None and server.proc is not None else None
            pid = pid or listening_pid(int(url.rsplit(":", 1)[1].strip("/")))
            a, b, on = measure_sampling(url, args.runs, args.warmup, args.sample_ms, pid, args.sample_source)
            print(f"server: {url}" + (" (embedded, --cpu, OMP_NUM_THREADS=2)" if server else ""))
            report_sampling(a, b, on)
            return
        a, b, ct = measure(url, args.runs, args.warmup)
        print(f"server: {url}" + (" (embedded, --cpu, OMP_NUM_THREADS=2)" if server else ""))
        report(a, b, ct)
        if args.profile:
            profiler.dump_stats(str(args.profile))
            print(f"\ncProfile of the comfytest side written to {args.profile}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
