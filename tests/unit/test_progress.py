"""The live progress display, driven by events and a fake clock: the in-place line (running node,
step k/K, it/s, elapsed; erased at the end; never wider than the room left) and a line per node."""

from __future__ import annotations

from comfytest.comfy.events import Executing, ExecutionCached, Progress, Received
from comfytest.plugin.progress import CLEAR, RESTORE, SAVE, ProgressDisplay

NODES = {"1": ("ComfyTestNoiseImage", None), "2": ("KSampler", "Sampler")}
AT = Received(0.0, 0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def executing(node: str | None) -> Executing:
    return Executing(type="executing", data={}, at=AT, prompt_id="p", node=node, display_node=node)


def progress(value: int, total: int) -> Progress:
    return Progress(type="progress", data={}, at=AT, prompt_id="p", node="2", value=value, max=total)


def drive(mode: str, column: int = 20, width: int = 120) -> tuple[list[tuple[str, bool]], Clock]:
    out: list[tuple[str, bool]] = []
    clock = Clock()
    display = ProgressDisplay(lambda text, raw: out.append((text, raw)), mode, column=lambda: column,
                              width=lambda: width, clock=clock, label="w.json::a")
    display.run_started("p", NODES)
    display.run_event(ExecutionCached(type="execution_cached", data={}, at=AT, prompt_id="p", nodes=("1",), timestamp=0))
    clock.t += 0.5
    display.run_event(executing("2"))
    for step in range(1, 5):
        clock.t += 0.25
        display.run_event(progress(step, 20))
    clock.t += 0.05
    display.run_event(progress(5, 20))  # within 0.1 s of the last rewrite: throttled
    display.run_event(executing(None))
    display.run_ended()
    return out, clock


def test_the_line_shows_node_step_speed_and_elapsed_time_and_is_erased_at_the_end() -> None:
    out, _ = drive("line")
    assert all(raw for _, raw in out)  # never moves pytest's column
    texts = [t.removeprefix(SAVE + " ").removesuffix(CLEAR + RESTORE) for t, _ in out]
    # pytest has written "w.json " on this line already: the case id alone follows it
    assert texts[0] == "a: waiting 0.0 s"
    assert "a: 2 KSampler 'Sampler' step 4/20 4.00 it/s 1.5 s" in texts
    assert not any("step 5/20" in t for t in texts), "rewrites are throttled"
    assert out[-1][0] == SAVE + CLEAR + RESTORE


def test_the_line_is_cut_to_the_room_left_and_skipped_when_there_is_none() -> None:
    out, _ = drive("line", column=60, width=80)
    assert all(len(t) - len(SAVE + " " + CLEAR + RESTORE) <= 18 for t, _ in out[:-1])
    out, _ = drive("line", column=75, width=80)
    assert out == []  # nothing shown, so nothing to erase


def test_nodes_mode_prints_a_plain_line_per_node_below_pytests_line() -> None:
    out, _ = drive("nodes")
    assert [raw for _, raw in out] == [False, False]
    assert out[0][0] == "\ncomfytest: w.json::a 1 node(s) cached: 1\n"
    assert out[1][0] == "comfytest: w.json::a 2 KSampler 'Sampler' 1.05 s (5 steps, 5.00 it/s)\n"
