"""Which worker uses which server, the pool's JSON hand-over, death lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfytest.comfy.client import ComfyClient
from comfytest.comfy.server import free_port
from comfytest.comfy.servers import ServerEntry, ServerPool, bound_index, death_lines, pool_error
from comfytest.errors import LaunchError, ServerError, ServerUnavailable


@pytest.mark.parametrize(("worker", "count", "index"), [("main", 3, 0), ("gw0", 2, 0), ("gw1", 2, 1), ("gw5", 2, 1), ("gw4", 4, 0)])
def test_worker_k_uses_server_k_mod_n(worker: str, count: int, index: int) -> None:
    assert bound_index(worker, count) == index


def test_entries_travel_as_json_without_credentials_in_their_name() -> None:
    entry = ServerEntry("http://user:pw@gpu-box:8188", "GPU 1", "/logs/a.log")
    pool = ServerPool.from_json(ServerPool([entry]).to_json())
    assert pool.entries == (entry,) and pool.local == (None,)
    assert entry.name == "http://gpu-box:8188 (GPU 1)"


def test_controller_errors_are_rebuilt_in_the_worker() -> None:
    assert isinstance(pool_error({"kind": "LaunchError", "error": "x"}), LaunchError)
    assert isinstance(pool_error({"kind": "ServerUnavailable", "error": "x"}), ServerUnavailable)
    err = pool_error({"kind": "Other", "error": "why"})
    assert type(err) is ServerError and str(err) == "why"


def test_death_line_counts_the_tests_that_moved() -> None:
    records = [{"server": {"moved_from": "http://a:1 (server 1)"}}, {"server": {"url": "http://b:2"}}, {"server": None},
               {"server": {"moved_from": "http://a:1 (server 1)"}}]
    assert death_lines(["http://a:1 (server 1)"], records, servers=2) == [
        "server http://a:1 (server 1) died during the session; 2 test(s) moved to another server"]
    assert death_lines(["http://a:1"], [], servers=1) == [
        "server http://a:1 died during the session; 0 test(s) moved to another server",
        "no live server was left: the tests after that failed fast"]
    assert death_lines([], records, servers=2) == []


def test_unreachable_urls_in_a_list_are_named_and_none_answering_is_an_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with pytest.raises(ServerUnavailable) as err:
        ServerPool.attach(dead, lambda url: ComfyClient(url).system_stats(timeout=4) and None, "hint: set --comfy-url")
    text = str(err.value)
    assert text.startswith("None of the 2 ComfyUI servers answers:")
    assert all(f"No ComfyUI server answers at {u} (GET /system_stats: connection refused)" in text for u in dead)
    assert text.endswith("hint: set --comfy-url")


def test_moving_to_the_next_server_keeps_live_progress_and_samples_the_new_server() -> None:
    # _bind is what a failover does once the next server answers; no server needs to run for it
    from comfytest.plugin.session import ComfySession
    from comfytest.plugin.settings import Settings

    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    pool = ServerPool([ServerEntry(u, f"server {i + 1}", None) for i, u in enumerate(urls)])
    session = ComfySession(ComfyClient(urls[0]), Settings(sample_ms=100), pool=pool)
    observer = object()
    session.runner.observers.append(observer)  # type: ignore[arg-type]
    try:
        first = session.sampler()
        assert first is not None and session.sampler() is first  # one per session
        session._bind(1)
        assert session.runner.observers == [observer]
        second = session.sampler()
        assert second is not None and second is not first
        with pytest.raises(ServerError) as second_read:
            second.read_stats()  # it asks the server the session moved to
        assert urls[1].rsplit(":", 1)[1] in str(second_read.value)
    finally:
        session.close()


def test_closing_a_pool_can_discard_the_files_its_servers_wrote(tmp_path: Path) -> None:
    """After a session the launched server's output and temp files go (the checks kept what
    failures need); its log stays. Without ``discard_files`` (--comfy-keep-passed) all stays."""
    from comfytest.comfy.server import LaunchSpec, LocalServer

    def pool(name: str) -> tuple[ServerPool, Path]:
        server = LocalServer(LaunchSpec(comfyui_dir=tmp_path), tmp_path / name)
        for folder in server.file_folders().values():
            folder.mkdir(parents=True)
            (folder / "x_00001_.png").write_bytes(b"png")
        server.log_path.write_text("log")
        return ServerPool([ServerEntry("http://127.0.0.1:9")], [server]), tmp_path / name

    discarded, folder = pool("a")
    discarded.close(discard_files=True)
    assert sorted(p.name for p in folder.iterdir()) == ["comfyui.log"]
    kept, folder = pool("b")
    kept.close()
    assert sorted(p.name for p in folder.iterdir()) == ["comfyui.log", "output", "temp"]
