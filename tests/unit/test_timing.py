"""comfytest.comfy.timing: run and node timings replayed from recorded traces (PROTOCOL.md §9)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from comfytest.comfy.events import Event, Received, parse_text
from comfytest.comfy.timing import RunTiming, compute_timing
from tests.unit.traces import Trace, load, replay

SUCCESS = "c0dd9e19-b4c9-4c1a-b69d-a22ae793f5dc"
P3 = "68cd6911-2021-4f67-a678-44cc10341819"  # multi_client.json, socket B, gc burst at the end
P4 = "f0c78471-c496-4538-99e3-17371e877db6"  # multi_client.json, queued without client_id
RECONNECT = "e803c979-6deb-4c63-873e-fb5f85447093"
EPOCH0 = 1_700_000_000_000.0


def timing_of(name: str, prompt_id: str, ws: str | None = None, **kwargs: Any) -> RunTiming:
    trace = load(name)
    return compute_timing(replay(trace, ws), prompt_id,
                          create_time_ms=trace.create_time(prompt_id), **kwargs)


def durations(run: RunTiming) -> dict[str, float | None]:
    return {n.node_id: n.duration_ms for n in run.nodes}


def raw_durations(trace: Trace, prompt_id: str) -> dict[str, float]:
    """§9.3 applied to the raw JSON without comfytest and without the end clamp."""
    frames = trace.messages(prompt_id)
    out: dict[str, float] = {}
    for i, frame in enumerate(frames):
        data = frame["msg"]["data"]
        if frame["msg"]["type"] == "executing" and data["node"] is not None:
            end = next(f for f in frames[i + 1:] if _ends(f["msg"], data["node"]))
            out[data["node"]] = out.get(data["node"], 0.0) + end["rel_ms"] - frame["rel_ms"]
    return out


def _ends(msg: dict[str, Any], node: str) -> bool:
    if msg["type"] == "progress_state":
        return bool(msg["data"]["nodes"].get(node, {}).get("state") == "finished")
    return bool(msg["type"] == "executing" or msg["type"].startswith("execution_"))


def server_ts(trace: Trace, prompt_id: str, kind: str) -> int:
    return int(next(f["msg"]["data"]["timestamp"] for f in trace.messages(prompt_id)
                    if f["msg"]["type"] == kind))


def first_node_delay(trace: Trace, prompt_id: str, run: RunTiming) -> float:
    """Server ms from execution_start to the first node's start, via the clock offset."""
    first = next(f for f in trace.messages(prompt_id) if f["msg"]["type"] == "executing")
    assert run.clock_offset_ms is not None
    return float(first["t_ms"]) - run.clock_offset_ms - server_ts(trace, prompt_id,
                                                                  "execution_start")


# -- success.json: the hand-checked numbers -----------------------------------------------


def test_success_node_durations_hand_checked() -> None:
    run = timing_of("success", SUCCESS)
    # receive times (rel_ms) of executing(n) and of the progress_state where n is finished
    expected = {"1": 36.751 - 36.742, "2": 44.807 - 36.766, "3": 57.831 - 44.855,
                "4": 85.071 - 57.903, "5": 88.998 - 85.142, "7": 99.528 - 89.174,
                "6": 106.108 - 99.607}
    assert [n.node_id for n in run.nodes] == ["1", "2", "3", "4", "5", "7", "6"]
    assert durations(run) == pytest.approx(expected, abs=1e-6)
    assert run.executed_total_ms == pytest.approx(68.905, abs=1e-6)
    assert [n.node_id for n in run.slowest(2)] == ["4", "3"]


def test_success_totals_hand_checked() -> None:
    run = timing_of("success", SUCCESS, client_wall_ms=123.0)
    assert run.status == "success"
    assert run.server_total_ms == 76.0  # 1795545318727 - 1795545318651
    assert run.queue_wait_ms == 0.0  # execution_start 1795545318651 - create_time (same)
    # min over start (657.850-651), cached (657.869-653), success (727.297-727)
    assert run.clock_offset_ms == pytest.approx(0.297, abs=1e-3)  # epoch ms: ~1e-4 precision
    assert run.client_wall_ms == 123.0
    assert run.cached_nodes == ()
    assert all(n.runs == 1 and not n.cached and n.steps is None for n in run.nodes)


def test_success_matches_the_rule_applied_to_raw_json() -> None:
    trace = load("success")
    assert durations(timing_of("success", SUCCESS)) == pytest.approx(
        raw_durations(trace, SUCCESS), abs=1e-9)


def test_success_durations_add_up_to_the_server_total() -> None:
    # The server total also holds the set-up before the first node (6.6 ms here, seen as the
    # late first `executing`), so nodes + that delay must match it, not nodes alone.
    trace, run = load("success"), timing_of("success", SUCCESS)
    assert run.server_total_ms is not None
    accounted = run.executed_total_ms + first_node_delay(trace, SUCCESS, run)
    assert abs(accounted - run.server_total_ms) <= max(2.0, 0.02 * run.server_total_ms)
    assert run.overhead_ms == pytest.approx(run.server_total_ms - run.executed_total_ms)


def test_node_info_names_the_nodes() -> None:
    workflow = load("success").events[3]["request_json"]["prompt"]
    info = {nid: (node["class_type"], f"#{nid}") for nid, node in workflow.items()}
    run = compute_timing(replay(load("success")), SUCCESS, node_info=info)
    node = run.node("4")
    assert node is not None and (node.class_type, node.title) == ("ImageAddNoise", "#4")
    assert run.node("99") is None


# -- cache --------------------------------------------------------------------------------


def test_fully_cached_run_has_no_node_time_and_no_speed() -> None:
    run = timing_of("cached", "e9e642d2-eccc-47c7-830b-3857949e1916")
    assert run.cached_nodes == ("1", "2", "3", "4", "5", "6", "7")
    assert all(n.cached and n.duration_ms == 0.0 and n.runs == 0 for n in run.nodes)
    assert all(n.steps is None and n.steps_per_s is None for n in run.nodes)
    assert run.executed_total_ms == 0.0 and run.slowest() == ()
    assert (run.server_total_ms, run.queue_wait_ms) == (1.0, 4.0)  # 371-370, 370-366


def test_partly_cached_run_times_only_downstream_nodes() -> None:
    trace = load("cached_partial")
    run = timing_of("cached_partial", "0a4c5fb2-c30c-4812-b865-a65aeb8222e0")
    assert [(n.node_id, n.cached) for n in run.nodes] == [
        ("1", True), ("2", True), ("3", True),
        ("4", False), ("5", False), ("7", False), ("6", False)]
    ran = {n.node_id: n.duration_ms for n in run.nodes if not n.cached}
    assert ran == pytest.approx(raw_durations(trace, run.prompt_id), abs=1e-9)
    assert ran["4"] == pytest.approx(35.483 - 4.908, abs=1e-6)
    assert run.executed_total_ms == pytest.approx(sum(d for d in ran.values() if d))
    assert (run.server_total_ms, run.queue_wait_ms) == (60.0, 0.0)


# -- the gc burst (multi_client.json P3) --------------------------------------------------


def test_gc_burst_is_clamped_to_the_server_end() -> None:
    trace = load("multi_client")
    raw = raw_durations(trace, P3)
    assert raw["3"] > 290.0  # the burst really is in the trace: node 3 looks ~301 ms
    run = timing_of("multi_client", P3, ws="B")
    assert run.clock_offset_ms == pytest.approx(482.650 - 482, abs=1e-3)  # execution_cached
    # end of run on the monotonic clock: 258 + 1 (ms truncation) + offset - (epoch - mono)
    limit = 1795545329258 + 1 + (482.650 - 482) - (1795545329551.533 - 2540.636)
    assert durations(run)["3"] == pytest.approx(limit - 2239.073, abs=1e-3)  # ~9.7 ms
    assert durations(run)["4"] == 0.0  # it started after the server had finished
    assert durations(run)["2"] == pytest.approx(raw["2"], abs=1e-9)  # earlier nodes untouched
    assert run.server_total_ms == 779.0
    accounted = run.executed_total_ms + first_node_delay(trace, P3, run)
    assert abs(accounted - run.server_total_ms) <= 2.0


def test_foreign_events_are_ignored() -> None:
    everything = replay(load("multi_client"))  # three sockets, four prompts, broadcasts
    assert compute_timing(everything, P3) == compute_timing(replay(load("multi_client"), "B"), P3)


def test_prompt_without_client_id_is_incomplete_from_broadcasts_alone() -> None:
    run = compute_timing(replay(load("multi_client")), P4)
    assert run.status == "incomplete" and run.nodes == () and run.server_total_ms is None


def test_back_to_back_prompts_on_one_socket() -> None:
    trace = load("multi_client")
    for prompt_id in ("1406d5fd-3ef4-440e-b9bd-7514f63e8b02",
                      "d8717d93-8dbc-47b3-a169-92d79bffa168"):
        run = timing_of("multi_client", prompt_id, ws="A")
        assert durations(run) == pytest.approx(raw_durations(trace, prompt_id), abs=1e-9)
        start = server_ts(trace, prompt_id, "execution_start")
        assert run.queue_wait_ms == start - trace.create_time(prompt_id)


# -- error, interrupt, reconnect ----------------------------------------------------------


def test_execution_error_status_and_failed_node() -> None:
    trace = load("execution_error")
    run = timing_of("execution_error", "76bcdf8f-16ee-48a3-b46c-cf848c07427f")
    error = next(f["msg"]["data"] for f in trace.messages(run.prompt_id)
                 if f["msg"]["type"] == "execution_error")
    assert run.status == "error"
    assert run.cached_nodes == ("1",)
    ran = [n.node_id for n in run.nodes if not n.cached]
    assert ran[-1] == error["node_id"] == "5"
    assert set(ran[:-1]) == set(error["executed"])
    # the end arrived 1.3 ms later than the best latency predicts: jitter, so no clamping
    assert durations(run)["5"] == pytest.approx(37.674 - 37.669, abs=1e-6)
    ran_durations = {n.node_id: n.duration_ms for n in run.nodes if not n.cached}
    assert ran_durations == pytest.approx(raw_durations(trace, run.prompt_id), abs=1e-9)
    assert run.server_total_ms == error["timestamp"] - server_ts(trace, run.prompt_id,
                                                                 "execution_start")


def test_failed_node_runs_again_when_requeued() -> None:
    # this prompt's /history was not fetched in the trace: no create_time
    run = compute_timing(replay(load("execution_error")), "ab7fd423-aeb8-498a-9cf4-98f5003fe506")
    assert run.status == "error"
    assert [n.node_id for n in run.nodes if not n.cached] == ["5"]


def test_interrupted_status_and_node() -> None:
    trace = load("interrupted")
    run = timing_of("interrupted", "9b12a80a-c3a4-4cd8-b92d-969ab1ff02b4")
    assert run.status == "interrupted"
    assert [n.node_id for n in run.nodes] == ["1", "10", "11", "12"]
    assert durations(run)["10"] == pytest.approx(2769.289 - 30.519, abs=1e-6)
    assert durations(run)["12"] == pytest.approx(5481.794 - 5481.759, abs=1e-6)
    assert run.server_total_ms == 1795545326490 - 1795545321014
    after = timing_of("interrupted", "1c091fce-73cd-430e-962c-e8e5f4a0c746")
    assert after.status == "success"
    assert after.queue_wait_ms == 1795545326491 - 1795545321018  # waited behind the first
    assert durations(after) == pytest.approx(raw_durations(trace, after.prompt_id), abs=1e-9)


def test_reconnect_replay_does_not_restart_the_running_node() -> None:
    both = compute_timing(replay(load("ws_reconnect")), RECONNECT)
    assert both.status == "success"
    assert durations(both)["11"] == pytest.approx(3093.772 - 1556.733, abs=1e-6)
    assert all(n.runs == 1 for n in both.nodes)


def test_reconnect_on_the_new_socket_alone_starts_at_the_replay() -> None:
    new = compute_timing(replay(load("ws_reconnect"), "new"), RECONNECT)
    assert [n.node_id for n in new.nodes] == ["11", "12", "90", "99"]
    assert durations(new)["11"] == pytest.approx(3093.772 - 1561.368, abs=1e-6)
    old = compute_timing(replay(load("ws_reconnect"), "old"), RECONNECT)
    assert old.status == "incomplete" and durations(old)["11"] is None


# -- progress steps -----------------------------------------------------------------------


@pytest.mark.parametrize("ws", ["plain", "meta"])
def test_steps_and_speed_from_progress(ws: str) -> None:
    trace = load("binary_previews")
    prompt_id = next(p for p in trace.queued_prompt_ids()
                     if any(f["ws"] == ws for f in trace.messages(p)))
    progress = [f for f in trace.messages(prompt_id) if f["msg"]["type"] == "progress"]
    run = compute_timing(replay(trace, ws), prompt_id)
    node = run.node("2")
    assert node is not None and node.steps == 1  # SaveImageWebsocket reports 0/2, 1/2
    assert node.steps_per_s == pytest.approx(1000.0 / (progress[1]["rel_ms"] - progress[0]["rel_ms"]))
    empty = run.node("1")
    assert empty is not None and (empty.steps, empty.steps_per_s) == (None, None)


# -- synthetic streams --------------------------------------------------------------------


def stream(*messages: tuple[float, str, dict[str, Any]], epoch0: float = EPOCH0) -> list[Event]:
    return [parse_text(json.dumps({"type": kind, "data": {"prompt_id": "p", **data}}),
                       Received(mono_ms=t, epoch_ms=epoch0 + t)) for t, kind, data in messages]


def test_a_node_that_runs_twice_adds_its_intervals_and_restarts_speed() -> None:
    events = stream(
        (0.0, "execution_start", {"timestamp": 1_000}),
        (1.0, "executing", {"node": "1"}),
        (2.0, "progress", {"node": "1", "value": 1, "max": 3}),
        (4.0, "progress", {"node": "1", "value": 3, "max": 3}),
        (5.0, "executing", {"node": "2"}),
        (7.0, "executing", {"node": "1"}),
        (8.0, "progress", {"node": "1", "value": 1, "max": 2}),
        (12.0, "progress", {"node": "1", "value": 2, "max": 2}),
        (13.0, "execution_success", {"timestamp": 1_013}),
    )
    run = compute_timing(events, "p")
    node = run.node("1")
    assert node is not None
    assert (node.duration_ms, node.runs, node.steps) == (4.0 + 6.0, 2, 3)
    assert node.steps_per_s == pytest.approx((2 + 1) / (2.0 + 4.0) * 1000.0)
    assert durations(run)["2"] == 2.0 and run.server_total_ms == 13.0


def test_clamp_uses_the_epoch_to_monotonic_difference() -> None:
    # monotonic and epoch clocks differ by an arbitrary amount; the server clock is 50 ms behind
    events = stream(
        (100.0, "execution_start", {"timestamp": 1_000 - 50}),
        (101.0, "executing", {"node": "1"}),
        (400.0, "execution_success", {"timestamp": 1_010 - 50}),  # delivered 290 ms late
        epoch0=900.0,  # epoch = mono + 900
    )
    run = compute_timing(events, "p")
    assert run.clock_offset_ms == 50.0  # execution_start: 1000 - 950
    # end on the mono clock: 960 + 1 (truncation) + 50 - 900 = 111; the node started at 101
    assert durations(run)["1"] == pytest.approx(10.0)


def test_incomplete_run_leaves_the_running_node_open() -> None:
    events = stream((0.0, "execution_start", {"timestamp": 5}), (1.0, "executing", {"node": "1"}))
    run = compute_timing(events, "p", create_time_ms=2)
    assert (run.status, run.server_total_ms, run.queue_wait_ms) == ("incomplete", None, 3.0)
    assert durations(run) == {"1": None} and run.executed_total_ms == 0.0


# -- repeated runs ------------------------------------------------------------------------


# -- queue wait without /history (issue 26) -----------------------------------------------


@pytest.mark.parametrize(("name", "label"), [("interrupted", "second prompt queued behind it"),
                                             ("interrupted", "slow prompt")])
def test_queue_wait_from_the_send_time_is_close_to_the_servers_and_never_shorter(name: str, label: str) -> None:
    """Without /history's create_time, the POST's send time on the server's clock (through the
    clock offset) gives the queue wait: never shorter than the exact one, and longer by at most
    the offset's latency plus the POST's round trip (a few ms here)."""
    trace = load(name)
    post = next(e for e in trace.events if e["kind"] == "http" and e.get("label") == label)
    prompt_id = post["response"]["prompt_id"]
    exact = timing_of(name, prompt_id)
    estimated = compute_timing(replay(trace), prompt_id, sent_epoch_ms=post["t_send_ms"])
    assert exact.queue_wait_ms is not None and estimated.queue_wait_ms is not None
    assert exact.clock_offset_ms is not None
    bound = exact.clock_offset_ms + (post["t_ms"] - post["t_send_ms"])
    assert exact.queue_wait_ms <= estimated.queue_wait_ms <= exact.queue_wait_ms + bound
    assert bound < 10
    assert compute_timing(replay(trace), prompt_id).queue_wait_ms is None  # neither: unknown
