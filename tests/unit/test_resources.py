"""Resource sampling: /system_stats replies → samples → idle and peak figures; the server
process found by its listening port (a real process here); repeated-run statistics and the
noise-aware memory comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy.resources import (
    ResourceSampler,
    listening_pid,
    meminfo_stats,
    parse_sample,
    process_rss,
    summarize_samples,
)
from comfytest.report.memory import (
    MIB,
    compare_memory,
    figures,
    memory_cell,
    memory_regressions,
    summarize_memory,
)
from tests.load import loaded

GIB = 1024 * MIB


def stats(ram_free: int, vram_free: int, torch_free: int, device: str = "cuda") -> dict[str, Any]:
    return {
        "system": {"ram_total": 64 * GIB, "ram_free": ram_free},
        "devices": [{"name": "cuda:0 NVIDIA H100", "type": device, "vram_total": 80 * GIB,
                     "vram_free": vram_free, "torch_vram_total": 10 * GIB, "torch_vram_free": torch_free}],
    }


def test_peaks_come_from_the_lowest_free_figures_and_idle_from_the_first_sample() -> None:
    samples = [
        parse_sample(stats(60 * GIB, 70 * GIB, 9 * GIB), 0.0, rss=2 * GIB),
        parse_sample(stats(50 * GIB, 40 * GIB, 2 * GIB), 100.0, rss=5 * GIB),
        parse_sample(stats(55 * GIB, 60 * GIB, 8 * GIB), 200.0, rss=3 * GIB),
    ]
    memory = summarize_samples(samples, interval_ms=100)
    assert memory is not None
    assert (memory.samples, memory.duration_ms, memory.device_type) == (3, 200.0, "cuda")
    assert (memory.vram_used_idle_bytes, memory.vram_used_peak_bytes) == (10 * GIB, 40 * GIB)
    assert (memory.torch_vram_used_idle_bytes, memory.torch_vram_used_peak_bytes) == (1 * GIB, 8 * GIB)
    assert (memory.ram_used_idle_bytes, memory.ram_used_peak_bytes) == (4 * GIB, 14 * GIB)
    assert (memory.rss_idle_bytes, memory.rss_peak_bytes) == (2 * GIB, 5 * GIB)


def test_a_cpu_device_has_no_vram_figures_its_vram_is_the_system_ram() -> None:
    memory = summarize_samples([parse_sample(stats(60 * GIB, 60 * GIB, 60 * GIB, "cpu"), 0.0)], interval_ms=100)
    assert memory is not None and memory.device_type == "cpu"
    assert memory.vram_used_peak_bytes is memory.torch_vram_used_peak_bytes is memory.vram_total_bytes is None
    assert memory.ram_used_peak_bytes == 4 * GIB and memory.rss_peak_bytes is None


def test_missing_or_odd_fields_give_none_not_an_error() -> None:
    sample = parse_sample({"system": {"ram_total": "lots"}, "devices": []}, 5.0)
    assert sample.ram_total is None and sample.device_type is None
    assert summarize_samples([], interval_ms=100) is None


def test_the_sampler_samples_until_stopped_and_counts_failed_readings() -> None:
    calls = []
    ready = threading.Event()

    def read() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the server was busy")
        if len(calls) >= 5:  # the 4th reading is stored: the thread only reads one at a time
            ready.set()
        return stats(60 * GIB - len(calls) * GIB, 70 * GIB, 9 * GIB)

    sampler = ResourceSampler(read, 5, pid=os.getpid())
    sampler.start()
    assert ready.wait(5)
    sampler.finish()
    memory = sampler.stop()
    assert memory is not None and memory.failed == 1
    assert memory.samples in (len(calls) - 1, len(calls) - 2)  # a reading in flight at stop is dropped
    assert memory.ram_used_idle_bytes == 4 * GIB + 1 * GIB  # the first reading
    assert memory.ram_used_peak_bytes is not None and memory.ram_used_peak_bytes >= 4 * GIB + 4 * GIB
    assert memory.rss_peak_bytes is not None and memory.rss_peak_bytes > 10 * MIB  # this very process


def test_stop_waits_for_the_idle_reading_but_for_no_other() -> None:
    gate = threading.Event()

    def slow() -> dict[str, Any]:
        gate.wait(5)
        return stats(60 * GIB, 70 * GIB, 9 * GIB)

    sampler = ResourceSampler(slow, 60_000)  # an interval no busy machine reaches
    started = time.monotonic()
    sampler.start()
    threading.Timer(0.2, gate.set).start()
    memory = sampler.stop()  # returns once the idle reading is back, not after the 60 s interval
    assert time.monotonic() - started < loaded(5)
    assert memory is not None and memory.samples == 1
    assert memory.ram_used_idle_bytes == memory.ram_used_peak_bytes


def test_one_thread_serves_every_run_and_runs_keep_their_own_readings() -> None:
    others = set(threading.enumerate())  # other tests' samplers may still be winding down
    level = [60 * GIB]
    sampler = ResourceSampler(lambda: stats(level[0], 70 * GIB, 9 * GIB), 5)
    peaks = []
    threads = set()
    try:
        for run in range(3):
            level[0] = (60 - 10 * run) * GIB
            sampler.start()
            deadline = time.monotonic() + 5
            while len(sampler.samples) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            sampler.finish()
            memory = sampler.stop()
            assert memory is not None and memory.samples >= 2
            peaks.append(memory.ram_used_peak_bytes)
            threads |= {t for t in threading.enumerate() if t.name == "comfytest-sampler"} - others
        assert peaks == [4 * GIB, 14 * GIB, 24 * GIB]  # no reading of one run lands in another
        assert len(threads) == 1  # started once, asleep between runs
    finally:
        sampler.close()
    for thread in threads:
        thread.join(2)
        assert not thread.is_alive()  # close() ends it


def test_a_cheap_reader_takes_the_idle_reading_on_the_callers_thread() -> None:
    readers = []

    def read() -> dict[str, Any]:
        readers.append(threading.get_ident())
        return stats(60 * GIB, 70 * GIB, 9 * GIB)

    sampler = ResourceSampler(read, 10_000, cheap=True)
    try:
        sampler.start()
        assert readers == [threading.get_ident()]  # done before start() returns
        memory = sampler.stop(first_timeout=0)
        assert memory is not None and memory.samples == 1
    finally:
        sampler.close()


def test_meminfo_stats_reads_the_two_figures_from_a_meminfo_file(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       16384 kB\nMemFree:         1024 kB\n"
                                      "MemAvailable:    4096 kB\nBuffers:  12 kB\n")
    got = meminfo_stats({"type": "cpu", "name": "cpu", "vram_total": 1}, proc=tmp_path)
    assert got == {"system": {"ram_total": 16384 * 1024, "ram_free": 4096 * 1024},
                   "devices": [{"name": "cpu", "type": "cpu"}]}
    sample = parse_sample(got, 0.0)
    assert (sample.ram_total, sample.ram_free, sample.device_type) == (16 * MIB, 4 * MIB, "cpu")


def test_process_rss_of_a_process_that_does_not_exist_is_none() -> None:
    assert process_rss(2**22 + 12345) is None


def test_a_local_server_is_found_by_its_listening_port() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs Linux /proc")
    code = ("import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            "print(s.getsockname()[1], flush=True); time.sleep(30)")
    for marker, found in (("comfyui-main.py", True), ("something-else", False)):
        proc = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            assert (listening_pid(port) == proc.pid) is found  # a port forwarder is not ComfyUI
        finally:
            proc.kill()
            proc.wait()


# --- in the report ----------------------------------------------------------------------------


def run_memory(rss_peak: int, rss_idle: int = GIB, ram_rise: int = 0) -> dict[str, Any]:
    return {"samples": 10, "interval_ms": 100, "device_type": "cpu", "rss_idle_bytes": rss_idle,
            "rss_peak_bytes": rss_peak, "ram_used_idle_bytes": 4 * GIB, "ram_used_peak_bytes": 4 * GIB + ram_rise}


def record(nodeid: str, *runs: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"nodeid": nodeid, "memory": runs[0], "memory_runs": [], "memory_stats": None}
    if len(runs) > 1:
        rec["memory_runs"] = list(runs)
        rec["memory_stats"] = summarize_memory(runs)
    return rec


def test_repeated_runs_give_min_median_max_per_figure() -> None:
    stats_ = summarize_memory([run_memory(2 * GIB), run_memory(3 * GIB), run_memory(5 * GIB)])
    assert stats_ is not None
    assert stats_["rss_peak_bytes"] == {"min": 2 * GIB, "median": 3 * GIB, "max": 5 * GIB}
    assert stats_["rss_rise_bytes"]["median"] == 2 * GIB
    assert "vram_used_peak_bytes" not in stats_  # never measured on a CPU server
    assert figures(None)["rss_peak_bytes"] is None


def test_the_table_cell_shows_the_headline_figure_and_its_rise() -> None:
    assert memory_cell(record("a", run_memory(GIB + 500 * MIB))) == "1.49 GiB RSS (+500 MiB)"
    assert memory_cell({"memory": None}) == "-"
    assert memory_cell(record("a", run_memory(GIB + 300 * 1024))) == "1.00 GiB RSS"  # a rise that rounds to 0


@pytest.mark.parametrize(
    ("before", "after", "verdict"),
    [
        (GIB, GIB + 100 * MIB, "ok"),            # under 128 MiB: noise
        (10 * GIB, 10 * GIB + 500 * MIB, "ok"),  # under 10 %: noise
        (GIB, GIB + 500 * MIB, "grew"),
        (GIB + 500 * MIB, GIB, "shrank"),
    ],
)
def test_memory_changes_need_both_thresholds(before: int, after: int, verdict: str) -> None:
    changes = compare_memory({"tests": [record("t", run_memory(before))]},
                             {"tests": [record("t", run_memory(after))]})
    rss = next(c for c in changes if c.figure == "rss_peak_bytes")
    assert rss.verdict == verdict
    assert [c.figure for c in memory_regressions(changes)] == (["rss_peak_bytes"] if verdict == "grew" else [])


def test_overlapping_ranges_of_repeated_runs_are_no_change() -> None:
    before = record("t", run_memory(GIB), run_memory(GIB), run_memory(3 * GIB))
    after = record("t", run_memory(2 * GIB), run_memory(2 * GIB), run_memory(2 * GIB))
    (rss,) = [c for c in compare_memory({"tests": [before]}, {"tests": [after]}) if c.figure == "rss_peak_bytes"]
    assert rss.verdict == "ok"  # the median doubled, but 2 GiB lies inside the earlier 1-3 GiB


def test_system_ram_is_compared_by_its_rise_and_described_with_numbers() -> None:
    changes = compare_memory({"tests": [record("t", run_memory(GIB))]},
                             {"tests": [record("t", run_memory(GIB, ram_rise=600 * MIB))]})
    (grew,) = memory_regressions(changes)
    assert grew.figure == "ram_rise_bytes"
    assert grew.describe() == "t RAM rise: grew +600 MiB (0 MiB → 600 MiB)"
