"""Video, audio, latent and 3D outputs through the whole lifecycle on the real ComfyUI.

Each example workflow of ``workflows/`` (video, audio, latent) is recorded, then run with a
changed input and must fail as a mismatch that leaves its artefacts. Broken output files come
from the real server too (the nodepack's ``ComfyTestFile`` writes chosen bytes as an output of
any kind): they must fail as regressions naming node and file, never as infrastructure.
"""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import struct
import wave
from pathlib import Path

import av  # noqa: F401  imported before in-process pytester runs (C extension, see lifecycle.py)
import pytest
from PIL import Image

from comfytest.media import png_image_digest
from tests.integration.lifecycle import REPO, Workspace, text

UPDATE = "--comfy-update-baselines"
EXAMPLES = REPO / "workflows"


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


def _example(ws: Workspace, name: str) -> str:
    ws.workflow(name, EXAMPLES / f"{name}.json")
    shutil.copytree(EXAMPLES / "inputs", ws.pytester.path / "workflows" / "inputs")
    return (EXAMPLES / f"{name}.toml").read_text()


def _tone(path: Path, freq: float) -> Path:
    rate = 16000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", int(0.4 * 32767 * math.sin(2 * math.pi * freq * n / rate)))
                                 for n in range(rate)))
    return path


CHANGES = {
    # workflow: (how its input changes, files the mismatch must leave, words of the message)
    "video_noise": (lambda toml: toml.replace("seed = 3", "seed = 4"),
                    ["3_0.obtained.mp4", "3_0.obtained.png", "3_0.diff.png", "3_0.side_by_side.png"],
                    "hashed frames differ: first frame 0 ("),
    "latent_noise": (lambda toml: toml.replace("seed = 5", "seed = 6"),
                     ["4_0.obtained.latent"], "largest value difference"),
    "audio_volume": (lambda toml: toml.replace("inputs/chirp_16k.wav", "inputs/tone_440.wav"),
                     ["3_0.obtained.flac", "3_0.waveform.png", "3_0.spectrogram.png"], "log-mel distance"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_example_changed_input_is_a_mismatch_with_artefacts(ws: Workspace, name: str) -> None:
    toml = _example(ws, name)
    _tone(ws.pytester.path / "workflows" / "inputs" / "tone_440.wav", 440.0)
    ws.settings(name, toml)
    ws.run(UPDATE).assert_outcomes(passed=1)
    recorded = ws.snapshot()
    assert recorded and not any(p.endswith((".mp4", ".webm")) for p in recorded), "no full video by default"
    kind = name.split("_")[0]
    ws.run().assert_outcomes(passed=1)  # by default a pass leaves no full obtained media file
    assert not [p for p in ws.results.rglob("*.obtained.*")], "passing outputs keep no obtained copy"
    assert f'<{kind} class="media" data-role="obtained_media"' not in (ws.results / "report.html").read_text()
    ws.run("--comfy-keep-passed").assert_outcomes(passed=1)
    (same,) = ws.comparisons()
    assert same["status"] == "passed" and same["kind"] == kind and same["compared"]
    page = (ws.results / "report.html").read_text()
    assert f'data-kind="{kind}"' in page and f"compared: {same['compared']}" in page
    if kind in ("video", "audio"):  # playable, beside its contact sheet / waveform
        assert f'<{kind} class="media" data-role="obtained_media" controls' in page
        assert f'<{kind} class="media" data-role="baseline_media"' in page or kind == "video"
        picture = "baseline" if kind == "video" else "waveform"
        assert f'<img class="artefact" data-role="{picture}"' in page
    markdown = (ws.results / "report.md").read_text()
    assert f"| {same['output']} | {kind} | {same['compared']} | passed |" in markdown

    change, artefacts, words = CHANGES[name]
    ws.settings(name, change(toml))
    changed = ws.run()
    changed.assert_outcomes(failed=1)
    (diff,) = ws.comparisons()
    case = ws.report()["tests"][0]["case"]
    assert diff["status"] == "mismatch" and ws.report()["tests"][0]["failure_kind"] == "regression"
    assert words in text(changed) and f"run pytest with {UPDATE} to accept it" in text(changed)
    for artefact in artefacts:
        path = ws.artefact(name, case, artefact)
        assert path.is_file() and path.stat().st_size > 0, artefact
    assert ws.snapshot() == recorded, "a mismatch must not touch the baselines"


BROKEN = {
    "1": ("broken.mp4", "images"), "2": ("broken.flac", "audio"),
    "3": ("broken.latent", "latents"), "4": ("broken.png", "images"),
}


def _damaged_png() -> str:
    """A PNG whose chunks are all in place (so it is kept as served, to be decoded when the check
    needs it) with a flipped byte in its image data: it decodes no more than garbage does."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[data.index(b"IDAT") + 8] ^= 0xFF
    assert png_image_digest(bytes(data)) is not None
    return base64.b64encode(bytes(data)).decode()


def test_undecodable_outputs_fail_as_regressions_naming_node_and_file(ws: Workspace) -> None:
    workflow = {node: {"class_type": "ComfyTestFile", "_meta": {"title": f"Broken {name}"},
                       "inputs": {"name": name, "content": "not a media file", "base64": False, "output_key": key}}
                for node, (name, key) in BROKEN.items()}
    workflow["5"] = {"class_type": "ComfyTestFile", "_meta": {"title": "Broken damaged.png"},
                     "inputs": {"name": "damaged.png", "content": _damaged_png(), "base64": True, "output_key": "images"}}
    ws.workflow("broken", workflow)
    result = ws.run(UPDATE)  # even update mode must not record an undecodable output
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "exit 75 is for a broken server only"
    record = ws.report()["tests"][0]
    assert record["failure_kind"] == "regression"
    out = text(result)
    for node, (name, _) in [*BROKEN.items(), ("5", ("damaged.png", ""))]:
        assert f"node {node} 'Broken {name}' (ComfyTestFile) produced {name}" in out
    # count in the failure section only: with CI set, pytest repeats the message untruncated
    # in its short summary
    assert out.split("short test summary info")[0].count("which cannot be decoded") == 5
    assert not ws.baselines.exists() or ws.snapshot() == {}


def _glb(vertices: int, extras: str) -> bytes:
    """A minimal GLB: a JSON chunk with one triangle-mesh accessor pair, and a BIN chunk."""
    gltf = {"asset": {"version": "2.0", "extras": {"prompt": extras}},
            "accessors": [{"count": vertices, "type": "VEC3"}, {"count": 3 * (vertices - 2), "type": "SCALAR"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}]}
    body = json.dumps(gltf).encode()
    body += b" " * (-len(body) % 4)
    binary = bytes(range(vertices * 4))
    chunks = struct.pack("<II", len(body), 0x4E4F534A) + body + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def test_3d_output_is_compared_exactly_with_its_mesh_counts(ws: Workspace) -> None:
    def mesh(vertices: int, extras: str) -> dict[str, object]:
        content = base64.b64encode(_glb(vertices, extras)).decode()
        return {"1": {"class_type": "ComfyTestFile", "_meta": {"title": "Mesh"},
                      "inputs": {"name": "mesh.glb", "content": content, "base64": True, "output_key": "3d"}}}

    ws.workflow("mesh", mesh(4, "first"))
    ws.run(UPDATE).assert_outcomes(passed=1)
    assert sorted(ws.snapshot()) == ["mesh/default/1_0.file.txt"]
    ws.workflow("mesh", mesh(4, "edited prompt"))  # metadata only: the same mesh
    ws.run().assert_outcomes(passed=1)
    (same,) = ws.comparisons()
    assert same["kind"] == "file" and same["compared"].startswith("compared exactly")
    assert (same["metrics"]["vertices"], same["metrics"]["faces"]) == (4, 2)
    ws.workflow("mesh", mesh(5, "first"))
    changed = ws.run()
    changed.assert_outcomes(failed=1)
    assert "compared exactly: content differs; obtained" in text(changed)
    assert "5 vertices, 3 faces" in text(changed)
    assert ws.artefact("mesh", "default", "1_0.obtained.glb").is_file()
