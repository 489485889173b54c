"""Several servers: a URL list, one server per GPU, embedded servers under xdist, failover when
one dies mid-suite, model-aware order and shards. Real servers throughout; the GPU case runs
the real ComfyUI on this CPU-only torch, whose own start-up error is what a missing GPU gives."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from comfytest.comfy.embedded import load_embedded
from comfytest.comfy.server import free_port

REPO = Path(__file__).parents[2]
EMBEDDED_HOME = REPO / ".comfytest"
ENV_DROPPED = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS",
               "GITHUB_STEP_SUMMARY", "COMFYUI_URL")

SLEEP = {
    "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 8, "height": 8, "seed": 1, "batch_size": 1}},
    "2": {"class_type": "ComfyTestSleep", "inputs": {"image": ["1", 0], "seconds": 2.0}},
    "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)


def write_sleep_suite(root: Path, cases: int) -> Path:
    folder = root / "wf"
    folder.mkdir()
    (folder / "sleep.json").write_text(json.dumps(SLEEP))
    seeds = ", ".join(str(s) for s in range(1, cases + 1))
    (folder / "sleep.toml").write_text(f'matrix = {{ "ComfyTestNoiseImage.seed" = [{seeds}] }}\n')
    return folder


def server_pid(output_dir: Path) -> int | None:
    """The ComfyUI process writing into ``output_dir`` (started by the inner session's controller)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"main.py" in argv and str(output_dir).encode() in argv:
            return int(proc.name)
    return None


def test_killing_one_of_two_servers_fails_its_test_and_the_rest_finish_on_the_other(
    pytester: pytest.Pytester, clean_env: None, tmp_path: Path,
) -> None:
    suite = write_sleep_suite(pytester.path, 8)
    results = tmp_path / "results"
    killed: list[int] = []

    def kill_server_2() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for log in results.glob("server-controller.2-*/comfyui.log"):
                if "got prompt" in log.read_text(errors="replace"):
                    pid = server_pid(log.parent / "output")
                    if pid:
                        os.kill(pid, 9)
                        killed.append(pid)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_server_2, daemon=True)
    killer.start()
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        str(suite), "-n", "2", "--comfy-servers=2", f"--comfy-embedded-home={EMBEDDED_HOME}",
        f"--comfy-results={results}", f"--comfy-baselines={tmp_path / 'baselines'}",
        "--comfy-update-baselines", "--comfy-timeout=60", "-p", "no:cacheprovider", timeout=400,
    )
    elapsed = time.monotonic() - started
    killer.join(1)
    out = result.stdout.str()
    assert killed, "server 2 never ran a prompt:\n" + out
    result.assert_outcomes(passed=7, failed=1)
    assert result.ret == 75, "its only failure is the dead server's: infrastructure"
    assert "(server 2) stopped answering during the session" in out
    assert "last lines of the ComfyUI server log" in out
    moved = re.search(r"server http://127\.0\.0\.1:\d+ \(server 2\) died during the session; (\d+) test\(s\) moved", out)
    assert moved, out
    doc = json.loads((results / "report.json").read_text())
    on_2 = [t for t in doc["tests"] if (t["server"] or {}).get("label") == "server 2"]
    assert [t["outcome"] for t in on_2 if t["server"].get("died")] == ["failed"]
    assert sum(1 for t in doc["tests"] if t["server"].get("moved_from")) == int(moved.group(1)) >= 1
    # the session that moved still samples memory, of its new server
    moved_passed = [t for t in doc["tests"] if t["server"].get("moved_from") and t["outcome"] == "passed"]
    assert moved_passed and all((t["memory"] or {}).get("samples", 0) >= 1 for t in moved_passed), moved_passed
    assert [s["died"] for s in doc["fingerprint"]["servers"]] == [False, True]
    assert elapsed < 300, f"no hang expected, took {elapsed:.0f} s"


def test_a_url_list_with_an_unreachable_entry_runs_on_the_rest_and_names_it(
    pytester: pytest.Pytester, clean_env: None, comfy_url: str, tmp_path: Path,
) -> None:
    suite = write_sleep_suite(pytester.path, 2)
    (suite / "sleep.json").write_text(json.dumps({**SLEEP, "2": {**SLEEP["2"], "inputs": {"image": ["1", 0], "seconds": 0.0}}}))
    dead = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest_subprocess(
        str(suite), f"--comfy-url={dead}", f"--comfy-url={comfy_url}", f"--comfy-results={tmp_path / 'r'}",
        f"--comfy-baselines={tmp_path / 'b'}", "--comfy-update-baselines", "-p", "no:cacheprovider", timeout=200,
    )
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert f"No ComfyUI server answers at {dead} (GET /system_stats: connection refused)" in out
    assert "The session ran on the other 1 server(s)." in out
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {t["server"]["url"] for t in doc["tests"]} == {comfy_url}
    assert [s["url"] for s in doc["fingerprint"]["servers"]] == [comfy_url]


def test_no_url_of_the_list_answering_is_one_error_and_exit_75(pytester: pytest.Pytester, clean_env: None) -> None:
    suite = write_sleep_suite(pytester.path, 2)
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    result = pytester.runpytest_subprocess(str(suite), *(f"--comfy-url={u}" for u in urls), "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert result.ret == 75
    assert out.count("None of the 2 ComfyUI servers answers") == 1
    assert all(u in out for u in urls)


def test_a_duplicate_url_is_a_usage_error_naming_it(pytester: pytest.Pytester, clean_env: None) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest_subprocess(f"--comfy-url={url}", f"--comfy-url={url}/", "-p", "no:cacheprovider")
    assert result.ret == 4
    assert f"--comfy-url: the server URL {url} is listed twice" in result.stderr.str()


def test_gpus_that_do_not_exist_fail_with_the_servers_own_words(pytester: pytest.Pytester, clean_env: None, tmp_path: Path) -> None:
    """Each GPU's server is started with CUDA_VISIBLE_DEVICES=<gpu>; on this CPU-only torch the
    real ComfyUI stops at start-up, as it does on a machine without that GPU."""
    emb = load_embedded(EMBEDDED_HOME)
    suite = write_sleep_suite(pytester.path, 2)
    result = pytester.runpytest_subprocess(
        str(suite), f"--comfy-launch={emb.comfyui_dir}", f"--comfy-python={emb.python}", "--comfy-gpus=0,1",
        f"--comfy-results={tmp_path / 'r'}", "-p", "no:cacheprovider", timeout=200,
    )
    out = result.stdout.str()
    assert result.ret == 75
    assert "2 of the servers could not start (GPU 0, GPU 1)" in out
    assert "Torch not compiled with CUDA enabled" in out, "the server log's own words"
    assert "--comfy-gpus 0,1: ComfyUI for GPU 0 could not start" in out


ORDERED = """
{"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "%s"}},
 "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
"""


def test_model_order_groups_cases_and_shards_keep_groups_whole(pytester: pytest.Pytester, clean_env: None) -> None:
    folder = pytester.path / "wf"
    folder.mkdir()
    for index in range(6):
        (folder / f"case{index}.json").write_text(ORDERED % ("a.safetensors" if index % 2 == 0 else "b.safetensors"))
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    def collected(*args: str) -> list[str]:
        result = pytester.runpytest_subprocess("wf", "test_plain.py", "--collect-only", "-q", "-p", "no:cacheprovider", *args)
        return [line for line in result.stdout.lines if "::" in line]

    by_file = collected("--comfy-order=file")
    assert by_file == [f"wf/case{i}.json::default" for i in range(6)] + ["test_plain.py::test_plain"]
    assert collected() == [f"wf/case{i}.json::default" for i in (0, 2, 4, 1, 3, 5)] + ["test_plain.py::test_plain"]
    shards = [collected(f"--comfy-shard={i}/2") for i in (1, 2)]
    assert sorted(shards[0] + shards[1]) == sorted(by_file), "every test in exactly one shard"
    assert shards == [
        [*(f"wf/case{i}.json::default" for i in (0, 2, 4)), "test_plain.py::test_plain"],
        [f"wf/case{i}.json::default" for i in (1, 3, 5)],
    ]
