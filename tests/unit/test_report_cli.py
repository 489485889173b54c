"""comfytest-report merge: shard documents → one document and every rendering."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from comfytest.report.cli import main
from comfytest.report.document import new_document, new_record, write_json

REPO = Path(__file__).parents[2]


def shard(folder: Path, host: str, nodeids: list[str], image: Path | None = None) -> Path:
    records = []
    for nodeid in nodeids:
        record = new_record(nodeid, workflow=nodeid.split("::")[0], case=nodeid.split("::")[1], outcome="passed",
                            server={"url": "http://127.0.0.1:8188", "label": None, "device": "cuda:0 NVIDIA L4"},
                            models=["checkpoints/a.safetensors"],
                            model_loads=[{"node_id": "1", "class_type": "CheckpointLoaderSimple"}])
        if image is not None:
            record["comparisons"] = [{"output": "7_0", "status": "mismatch", "obtained": str(image)}]
        records.append(record)
    fingerprint = {"hostname": host, "servers": [{"url": "http://127.0.0.1:8188", "label": None, "device": "cuda:0 NVIDIA L4", "died": False}]}
    return write_json(new_document(fingerprint, records, created="2026-01-01T00:00:00+00:00"), folder / "report.json")


def test_merge_writes_every_format_and_lists_every_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = shard(tmp_path / "shard1", "runner-1", ["wf/x.json::a", "wf/x.json::b"])
    b = shard(tmp_path / "shard2", "runner-2", ["wf/y.json::c"])
    assert main(["merge", str(a), str(b), "-o", str(tmp_path / "merged")]) == 0
    doc = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert [t["nodeid"] for t in doc["tests"]] == ["wf/x.json::a", "wf/x.json::b", "wf/y.json::c"]
    assert [s["host"] for s in doc["fingerprint"]["servers"]] == ["runner-1", "runner-2"]
    assert [m["tests"] for m in doc["fingerprint"]["merged_from"]] == [2, 1]
    assert doc["summary"]["passed"] == 3 and doc["summary"]["model_loads"] == 3 and doc["summary"]["model_sets"] == 1
    assert "wf/y.json" in (tmp_path / "merged" / "report.md").read_text()
    assert 'data-nodeid="wf/y.json::c"' in (tmp_path / "merged" / "report.html").read_text()
    assert "merged 2 report(s): 3 passed" in capsys.readouterr().out


def test_merge_keeps_an_earlier_merge_as_previous(tmp_path: Path) -> None:
    a = shard(tmp_path / "s1", "h", ["wf/x.json::a"])
    out = tmp_path / "merged"
    assert main(["merge", str(a), "-o", str(out)]) == 0
    assert main(["merge", str(a), "-o", str(out)]) == 0
    assert (out / "report.previous.json").is_file()


def test_a_test_in_two_shards_is_an_error_naming_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = shard(tmp_path / "s1", "h", ["wf/x.json::a"])
    b = shard(tmp_path / "s2", "h", ["wf/x.json::a"])
    assert main(["merge", str(a), str(b), "-o", str(tmp_path / "m")]) == 2
    assert f"wf/x.json::a is in both {a} and {b}" in capsys.readouterr().err
    assert not (tmp_path / "m" / "report.json").exists()


def test_not_a_report_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "report.json"
    bad.write_text("{}")
    assert main(["merge", str(bad), "-o", str(tmp_path / "m")]) == 2
    assert f"{bad} is not a comfytest report" in capsys.readouterr().err


def test_artefacts_are_found_beside_the_downloaded_report(tmp_path: Path) -> None:
    """The shard machine's absolute path does not exist here; the artifact's copy does."""
    copy = tmp_path / "shard1" / "wf" / "x" / "a" / "7_0.obtained.png"
    copy.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(copy)
    a = shard(tmp_path / "shard1", "h", ["wf/x.json::a"], image=Path("/runner/work/comfytest-results/wf/x/a/7_0.obtained.png"))
    assert main(["merge", str(a), "-o", str(tmp_path / "m")]) == 0
    doc = json.loads((tmp_path / "m" / "report.json").read_text())
    assert doc["tests"][0]["comparisons"][0]["obtained"] == str(copy)


def test_the_console_script_is_declared() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["comfytest-report"] == "comfytest.report.cli:main"
