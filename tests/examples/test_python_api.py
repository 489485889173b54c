"""How to run a workflow from Python with the ``comfy`` fixture (the README includes this file).

``comfy`` is the session's ComfyUI: the server at ``--comfy-url``, or the one comfytest starts.
``comfy.run`` pins every seed input, applies patches (``{selector: {input: value}}``), uploads
input images under content-addressed names, queues the prompt and waits for its outputs; it
raises a readable error when the server rejects the prompt or a node fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comfytest.compare.baselines import BaselineKey, BaselineStore, check_image

WORKFLOWS = Path(__file__).parents[2] / "workflows"


def test_run_a_workflow_with_seed_patches_and_an_input_image(comfy: Any) -> None:
    result = comfy.run(
        WORKFLOWS / "tiny_img2img.json",
        seed=7,  # every seed input of the workflow
        patches={
            "positive": {"text": "a lighthouse in fog"},  # the node wired into `positive`
            "KSampler": {"steps": 2},  # the one node of class KSampler
        },
        inputs={"title:Load input image": WORKFLOWS / "inputs" / "gradient_64.png"},
    )

    # the images, decoded (PIL), one per output node and batch index
    (image,) = result.images
    assert (image.node_id, image.image.size) == ("7", (64, 64))

    # the prompt exactly as it was sent: seed pinned, patches applied, upload renamed
    sent = result.prompt
    assert sent["5"]["inputs"]["seed"] == 7
    assert sent["2"]["inputs"]["text"] == "a lighthouse in fog"
    assert sent["8"]["inputs"]["image"].startswith("comfytest_")  # same bytes, same name

    # what was pinned and patched, for your own reports
    assert [(s.node_id, s.input, s.new) for s in result.seeds] == [("5", "seed", 7)]
    assert {(p.node_id, p.input) for p in result.patches} == {("2", "text"), ("5", "steps")}

    # timings: the server's total and each node's share (cached nodes take 0 ms)
    assert result.timing.server_total_ms is not None and result.timing.server_total_ms > 0
    sampler = next(n for n in result.timing.nodes if n.class_type == "KSampler")
    assert sampler.duration_ms is not None


def test_compare_an_output_with_a_baseline(comfy: Any, tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "baselines")
    key = BaselineKey(workflow="noise_blur_chain", case="from_python", output_key="5_0")

    def check(mode: Any = "compare") -> Any:
        result = comfy.run(WORKFLOWS / "noise_blur_chain.json", seed=3)
        image = result.images_of("5")[0].image
        return check_image(store, key, image, mode=mode, tolerance=2,
                           results_dir=tmp_path / "results")

    missing = check()  # no baseline yet: fails, and leaves the obtained image in results/
    assert missing.status == "missing" and missing.obtained_path.exists()
    assert "--comfy-update-baselines" in missing.message  # says how to fix it
    assert check("update").status == "created"  # what --comfy-update-baselines does
    same = check()  # the same seed gives the same image: within the tolerance
    assert same.ok, same.message
    assert same.error() is None  # else a ComparisonError, ready to raise


def test_video_and_audio_outputs_from_python(comfy: Any) -> None:
    from comfytest.media import decode_audio, decode_video

    # a video output: SaveVideo's mp4 is in result.files (kind "video"), as bytes
    video = comfy.run(WORKFLOWS / "video_noise.json", patches={"title:Make video": {"fps": 12.0}})
    (mp4,) = video.files_of("3", "video")
    frames: list[int] = []
    info = decode_video(mp4.data, lambda count: range(count), lambda index, image: frames.append(index))
    assert (info.frames, info.width, float(info.fps), frames) == (8, 64, 12.0, list(range(8)))

    # an audio output of ComfyUI's own audio nodes, on an uploaded clip (LoadAudio's audio_upload)
    audio = comfy.run(WORKFLOWS / "audio_volume.json",
                      inputs={"title:Load clip": WORKFLOWS / "inputs" / "chirp_16k.wav"})
    (flac,) = audio.files_of("3", "audio")
    clip = decode_audio(flac.data)
    assert (clip.sample_rate, clip.channels, round(clip.duration_ms)) == (16000, 1, 1000)
