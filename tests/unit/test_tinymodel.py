"""The tiny checkpoint generator: layout, determinism, file format and the up-to-date check.

A small layout stands in for the 278 MB checkpoint wherever bytes are written; the real SD1.5
layout is only inspected as data, so this file runs in well under a second.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from comfytest.comfy import tinymodel
from comfytest.comfy.tinymodel import Init, TensorSpec

SMALL = [
    TensorSpec("b.weight", (16, 8, 3, 3), Init(std=0.1)),
    TensorSpec("a.bias", (16,), Init()),
    TensorSpec("a.norm", (5,), Init(mean=1.0)),
    TensorSpec("c.out", (3, 64, 3, 3), Init(std=0.2, centred=True, mean=0.5)),
    TensorSpec("d.scale", (), Init(mean=0.02)),
    TensorSpec("e.big", (3, 4099), Init(std=1.0)),
]


def read_tensors(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Parse a safetensors file by hand, as a reader independent of the writer."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    data = raw[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F16"
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f2").reshape(entry["shape"])
    return header, tensors


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    assert tinymodel.ensure_checkpoint(tmp_path / "one.safetensors", SMALL, seed=3)
    assert tinymodel.ensure_checkpoint(tmp_path / "two.safetensors", SMALL, seed=3)
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()


def test_other_seed_gives_other_weights(tmp_path: Path) -> None:
    tinymodel.ensure_checkpoint(tmp_path / "one.safetensors", SMALL, seed=3)
    tinymodel.ensure_checkpoint(tmp_path / "two.safetensors", SMALL, seed=4)
    _, one = read_tensors(tmp_path / "one.safetensors")
    _, two = read_tensors(tmp_path / "two.safetensors")
    assert not np.array_equal(one["b.weight"], two["b.weight"])
    assert np.array_equal(one["a.norm"], two["a.norm"])  # constants do not depend on the seed


def test_chunk_size_does_not_change_the_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tinymodel.ensure_checkpoint(tmp_path / "one.safetensors", SMALL, seed=3)
    monkeypatch.setattr(tinymodel, "_CHUNK", 16)  # every random tensor now spans many chunks
    tinymodel.ensure_checkpoint(tmp_path / "two.safetensors", SMALL, seed=3)
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()


def test_header_is_sorted_aligned_and_contiguous(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    names = [k for k in header if k != "__metadata__"]
    assert names == sorted(s.name for s in SMALL)
    offsets = [header[n]["data_offsets"] for n in names]
    assert offsets[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(offsets))
    assert len(raw) == 8 + length + offsets[-1][1]
    assert list(header["__metadata__"]) == [tinymodel.METADATA_KEY]


def test_values_follow_their_init(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    _, t = read_tensors(path)
    assert t["d.scale"].shape == () and float(t["d.scale"]) == pytest.approx(0.02, rel=1e-3)
    assert np.all(t["a.bias"] == 0) and np.all(t["a.norm"] == 1)
    assert float(t["b.weight"].std()) == pytest.approx(0.1, rel=0.1)
    assert float(np.abs(t["b.weight"]).max()) <= 0.1 * np.sqrt(3) * 1.001
    filters = t["c.out"].reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(filters.mean(axis=1), 0.5, atol=2e-3)
    assert float(t["e.big"].astype(np.float64).std()) == pytest.approx(1.0, rel=0.03)


def test_up_to_date_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    assert tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    before = path.stat().st_mtime_ns
    assert not tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    assert path.stat().st_mtime_ns == before
    assert tinymodel.ensure_checkpoint(path, SMALL, seed=1)  # another seed rewrites


def test_truncated_or_foreign_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    path.write_bytes(path.read_bytes()[:-2])
    assert tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    path.write_bytes(b"not a checkpoint")
    assert tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    assert tinymodel.read_header(path) is not None


def test_edited_generator_rewrites_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.safetensors"
    tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    old_inode = path.stat().st_ino
    monkeypatch.setattr(tinymodel, "source_digest", lambda: "edited")
    assert tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    header, _ = read_tensors(path)
    assert "source=edited" in header["__metadata__"][tinymodel.METADATA_KEY]
    assert path.stat().st_ino != old_inode  # a new file was moved into place, not rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.safetensors"
    tinymodel.ensure_checkpoint(path, SMALL, seed=0)
    before = path.read_bytes()

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tinymodel, "write_safetensors", broken)
    with pytest.raises(OSError):
        tinymodel.ensure_checkpoint(path, SMALL, seed=1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_sd15_layout_has_the_keys_comfyui_detects() -> None:
    specs = {s.name: s.shape for s in tinymodel.sd15_layout()}
    unet, clip = "model.diffusion_model.", "cond_stage_model.transformer.text_model."
    assert specs[f"{unet}input_blocks.0.0.weight"] == (320, 4, 3, 3)  # model_channels 320
    assert specs[f"{unet}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)
    assert len(specs[f"{unet}input_blocks.1.1.proj_in.weight"]) == 4  # conv, not linear
    assert specs[f"{clip}embeddings.token_embedding.weight"] == (49408, 768)
    assert all(f"{clip}encoder.layers.{i}.mlp.fc2.weight" in specs for i in range(12))
    assert specs["first_stage_model.taesd_decoder.1.weight"] == (64, 4, 3, 3)
    assert specs["first_stage_model.vae_scale"] == ()
    assert 138e6 < sum(int(np.prod(s)) for s in specs.values()) < 140e6


def test_main_reports_what_it_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tinymodel, "sd15_layout", lambda: list(SMALL))
    path = tmp_path / "m.safetensors"
    assert tinymodel.main([str(path), "--seed", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}")
    assert tinymodel.main([str(path), "--seed", "2"]) == 0
    assert "up to date" in capsys.readouterr().out
