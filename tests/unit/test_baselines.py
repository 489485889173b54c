from __future__ import annotations

import io
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from comfytest.compare.baselines import (
    HASHES_FILE,
    UPDATE_OPTION,
    BaselineKey,
    BaselineStore,
    CheckResult,
    HashRecord,
    check_image,
    check_text,
    read_hashes,
    safe_name,
    unused_baselines,
    upsert_hash,
)
from comfytest.compare.criteria import HASH_BACKSTOP
from comfytest.compare.images import ImageComparison, image_hash
from comfytest.compare.perceptual import ColourSignature
from comfytest.compare.store import Stack, file_digest
from comfytest.errors import BaselineCorrupt, BaselineMissing, ComparisonError, ImageMismatch, StorageError
from comfytest.media import png_image_digest
from comfytest.outputs import FileRef, OutputImage

KEY = BaselineKey("txt2img", "seed[42]", "9_0")


def scene(seed: int = 0, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * (255.0 / size)
    base = np.stack([x, y, (x + y) / 2], axis=-1) + rng.normal(0, 6, (size, size, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    ImageDraw.Draw(img).ellipse((8, 8, 30, 30), fill=(250, 20, 20))
    return img


def changed(img: Image.Image) -> Image.Image:
    out = img.transpose(Image.Transpose.ROTATE_90)
    ImageDraw.Draw(out).rectangle((0, 30, 63, 63), fill=(0, 220, 0))
    return out


def nudged(img: Image.Image) -> Image.Image:
    """One channel value off by one: within tolerance, but not identical pixels."""
    out = img.copy()
    r, g, b = out.getpixel((0, 0))  # type: ignore[misc]
    out.putpixel((0, 0), (r + 1 if r < 255 else r - 1, g, b))
    return out


def files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


class Lifecycle:
    def __init__(self, tmp_path: Path, profile: str | None = None, **kw: object) -> None:
        self.root, self.results = tmp_path / "baselines", tmp_path / "results"
        self.store = BaselineStore(self.root, profile)
        self.kw = kw

    def check(self, img: Image.Image, mode: str = "compare") -> CheckResult:
        return check_image(self.store, KEY, img, mode=mode,  # type: ignore[arg-type]
                           results_dir=self.results, **self.kw)  # type: ignore[arg-type]


def test_safe_names() -> None:
    assert safe_name("seed-42") == "seed-42"
    assert safe_name("9_0") == "9_0"
    unsafe = ["seed[42]", "a/b", "a_b_", "..", "CON", "_profiles", "x y", ""]
    names = [safe_name(n) for n in unsafe]
    assert len(set(names)) == len(names)
    for name in names:
        assert name and "/" not in name and "[" not in name and not name.startswith((".", "_"))
    assert safe_name("seed[42]").startswith("seed_42-")
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name("seed[42]") == safe_name("seed[42]")  # stable
    assert KEY.relative_dir == Path("txt2img", safe_name("seed[42]"))
    assert BaselineKey("sd15/txt2img", "c", "1_0").relative_dir == Path("sd15", "txt2img", "c")


def test_full_lifecycle_on_disk(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    img = scene()
    case_dir = life.root / KEY.relative_dir
    png = case_dir / "9_0.png"

    missing = life.check(img)
    assert missing.status == "missing" and not missing.ok
    assert isinstance(missing.error(), BaselineMissing)
    assert missing.obtained_path == life.results / KEY.relative_dir / "9_0.obtained.png"
    assert missing.obtained_path.is_file()
    assert str(png) in missing.message and UPDATE_OPTION in missing.message
    assert not life.root.exists()  # compare mode never writes baselines

    created = life.check(img, "update")
    assert created.status == "created" and created.ok and created.baseline_path == png
    assert files_under(life.root) == [KEY.relative_dir / "9_0.png", KEY.relative_dir / HASHES_FILE]
    assert read_hashes(case_dir / HASHES_FILE)["9_0"] == HashRecord(
        (image_hash(img),), (64, 64), "RGB", colour=(str(ColourSignature.of(img)),))

    passed = life.check(img.copy())
    assert passed.status == "passed" and passed.error() is None
    assert isinstance(passed.comparison, ImageComparison) and passed.comparison.distance == 0

    bad = changed(img)
    mismatch = life.check(bad)
    assert mismatch.status == "mismatch"
    assert isinstance(mismatch.error(), ImageMismatch)
    assert isinstance(mismatch.comparison, ImageComparison)
    assert mismatch.comparison.distance > 2
    for path in (mismatch.obtained_path, mismatch.diff_path, mismatch.side_by_side_path):
        assert path is not None and path.is_file() and str(path) in mismatch.message
    assert f"phash distance {mismatch.comparison.distance} > tolerance {2 * HASH_BACKSTOP}" in mismatch.message
    assert mismatch.message.endswith(f"run pytest with {UPDATE_OPTION} to accept it.")
    with Image.open(png) as on_disk:  # the baseline was not touched
        assert on_disk.tobytes() == img.tobytes()

    before = png.read_bytes()
    os.utime(png, ns=(1, 1))
    unchanged = life.check(img.copy(), "update")
    assert unchanged.status == "unchanged"
    assert png.stat().st_mtime_ns == 1 and png.read_bytes() == before

    updated = life.check(bad, "update")
    assert updated.status == "updated" and png.stat().st_mtime_ns != 1
    assert read_hashes(case_dir / HASHES_FILE)["9_0"].hashes == (image_hash(bad),)
    assert life.check(bad).status == "passed"
    assert life.check(img).status == "mismatch"


def test_update_rewrites_any_pixel_change_even_within_tolerance(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    img = scene()
    life.check(img, "update")
    assert life.check(nudged(img)).status == "passed"
    assert life.check(nudged(img), "update").status == "updated"
    with Image.open(life.root / KEY.relative_dir / "9_0.png") as on_disk:
        assert on_disk.tobytes() == nudged(img).tobytes()


def test_size_mismatch_fails_with_artefacts(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.check(scene(), "update")
    result = life.check(scene().resize((32, 32)))
    assert result.status == "mismatch" and "size 32x32 differs from baseline 64x64" in result.message
    assert result.diff_path is not None and result.diff_path.is_file()


def test_hash_only_lifecycle_keeps_no_images(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path, hash_only=True)
    img = scene()
    assert life.check(img).status == "missing"
    assert life.check(img, "update").status == "created"
    assert files_under(life.root) == [KEY.relative_dir / HASHES_FILE]
    hashes = life.root / KEY.relative_dir / HASHES_FILE
    assert hashes.read_text() == f"9_0  {image_hash(img)}  64x64 RGB  colour={ColourSignature.of(img)}\n"
    assert life.check(nudged(img)).status == "passed"
    result = life.check(changed(img))
    assert result.status == "mismatch" and "(hash only + colour signature" in result.message
    assert result.obtained_path is not None and result.obtained_path.is_file()
    assert result.diff_path is None
    os.utime(hashes, ns=(1, 1))
    assert life.check(img, "update").status == "unchanged"
    assert hashes.stat().st_mtime_ns == 1
    assert life.check(changed(img), "update").status == "updated"
    assert life.check(changed(img)).status == "passed"


def test_hash_only_with_another_method_says_so(tmp_path: Path) -> None:
    Lifecycle(tmp_path, hash_only=True).check(scene(), "update")
    expected = r"hashes.txt: cannot compare a dhash:8 hash with a phash:8 hash.*re-hash"
    with pytest.raises(ComparisonError, match=expected):
        Lifecycle(tmp_path, hash_only=True, method="dhash").check(scene())


def test_corrupt_png_raises_names_file_and_is_left_alone(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    png = life.root / KEY.relative_dir / "9_0.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(BaselineCorrupt, match=str(png)) as info:
        life.check(scene())
    assert "obtained output is in" in str(info.value)
    assert png.read_bytes() == b"\x89PNG\r\n\x1a\nnot really"
    assert (life.results / KEY.relative_dir / "9_0.obtained.png").is_file()
    assert life.check(scene(), "update").status == "updated"
    assert life.check(scene()).status == "passed"


def test_malformed_hash_line_raises_with_line_number(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path, hash_only=True)
    hashes = life.root / KEY.relative_dir / HASHES_FILE
    hashes.parent.mkdir(parents=True)
    hashes.write_text("1_0  phash:8:zz  64x64 RGB\n")
    with pytest.raises(BaselineCorrupt, match=f"{hashes}:1: malformed line"):
        life.check(scene())
    assert hashes.read_text() == "1_0  phash:8:zz  64x64 RGB\n"


def test_profile_falls_back_to_common_and_overrides_only_what_differs(tmp_path: Path) -> None:
    common = Lifecycle(tmp_path)
    common.check(scene(), "update")
    cuda = Lifecycle(tmp_path, profile="cuda")
    profile_png = cuda.root / "_profiles" / "cuda" / KEY.relative_dir / "9_0.png"

    fallback = cuda.check(scene())
    assert fallback.status == "passed"
    assert fallback.baseline_path == common.root / KEY.relative_dir / "9_0.png"
    assert cuda.check(scene(), "update").status == "unchanged"
    assert not profile_png.exists()

    assert cuda.check(changed(scene()), "update").status == "updated"
    assert profile_png.is_file()
    assert cuda.check(changed(scene())).status == "passed"
    assert common.check(scene()).status == "passed"  # the common baseline is untouched


def test_text_lifecycle_with_diff(tmp_path: Path) -> None:
    store, results = BaselineStore(tmp_path / "b"), tmp_path / "r"
    key = BaselineKey("wf", "case", "5_0")
    assert check_text(store, key, "a\nb\n", results_dir=results).status == "missing"
    assert check_text(store, key, "a\nb\n", mode="update", results_dir=results).status == "created"
    assert check_text(store, key, "a\nb\n", results_dir=results).status == "passed"
    result = check_text(store, key, "a\nc\n", results_dir=results)
    assert result.status == "mismatch" and isinstance(result.error(), ComparisonError)
    assert result.text_diff is not None and "-b\n+c\n" in result.text_diff
    assert "-b" in result.message and UPDATE_OPTION in result.message
    assert result.obtained_path is not None and result.obtained_path.read_text() == "a\nc\n"
    txt = tmp_path / "b" / "wf" / "case" / "5_0.txt"
    os.utime(txt, ns=(1, 1))
    assert check_text(store, key, "a\nb\n", mode="update", results_dir=results).status \
        == "unchanged"
    assert txt.stat().st_mtime_ns == 1


def test_animated_baseline_frame_count_mismatch(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    shots = [scene(i) for i in range(3)]
    life.check(_animated(shots), "update")
    assert life.check(_animated(shots)).status == "passed"
    result = life.check(_animated(shots[:2]))
    assert result.status == "mismatch" and "2 frames, baseline has 3" in result.message


def _animated(shots: list[Image.Image]) -> Image.Image:
    import io
    buffer = io.BytesIO()
    shots[0].save(buffer, format="PNG", save_all=True, append_images=shots[1:])
    buffer.seek(0)
    return Image.open(buffer)


def test_unused_baselines_lists_untouched_files(tmp_path: Path) -> None:
    root = tmp_path / "b"
    writer = BaselineStore(root)
    other = BaselineKey("wf", "other", "1_0")
    for key in (KEY, other):
        check_image(writer, key, scene(), mode="update", results_dir=tmp_path / "r")
    check_text(writer, BaselineKey("wf", "other", "2_0"), "t", mode="update",
               results_dir=tmp_path / "r")
    (root / "_profiles" / "cpu").mkdir(parents=True)
    (root / "_profiles" / "cpu" / "x.png").write_bytes(b"")  # another profile: not ours
    reader = BaselineStore(root)
    check_image(reader, KEY, scene(), results_dir=tmp_path / "r")
    unused = unused_baselines(reader, reader.used)
    assert [p.relative_to(root) for p in unused] == [
        Path("wf/other/1_0.png"), Path("wf/other/2_0.txt"), Path("wf/other/hashes.txt")]
    assert unused_baselines(reader, reader.used | writer.used) == []


def _upsert_many(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(20):
        record = HashRecord((f"phash:8:{worker * 100 + i:016x}",), (8, 8), "RGB")
        upsert_hash(Path(path), f"{worker}_{i}", record)


def test_concurrent_hash_updates_keep_every_line(tmp_path: Path) -> None:
    path = tmp_path / "case" / HASHES_FILE
    # separate processes like xdist workers; fork where there is one because spawn takes seconds
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(4) as pool:
        pool.map(_upsert_many, [(str(path), w) for w in range(4)])
    records = read_hashes(path)
    assert len(records) == 80
    assert records["3_19"].hashes == (f"phash:8:{319:016x}",)
    lines = path.read_text().splitlines()
    assert lines == sorted(lines)
    assert [p.name for p in path.parent.iterdir()] == [HASHES_FILE]  # no temp or lock files


def test_update_refreshes_a_stale_hash_line_without_rewriting_the_png(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.check(scene(), "update")
    png, hashes = (life.root / KEY.relative_dir / n for n in ("9_0.png", HASHES_FILE))
    os.utime(png, ns=(1, 1))
    hashes.write_text("9_0  phash:8:0000000000000000  64x64 RGB\n")
    result = life.check(scene(), "update")
    assert result.status == "updated" and result.baseline_path == png
    assert png.stat().st_mtime_ns == 1
    assert read_hashes(hashes)["9_0"].hashes == (image_hash(scene()),)


# -- issue 11: the file system in the way is one readable message, never a traceback or a loss


def test_a_directory_where_the_baseline_belongs_is_named_and_left_alone(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    obstacle = life.root / KEY.relative_dir / "9_0.png"
    (obstacle / "inside").mkdir(parents=True)
    for mode in ("compare", "update"):
        with pytest.raises((BaselineCorrupt, StorageError)) as info:
            life.check(scene(), mode)
        text = str(info.value)
        assert f"{obstacle} is a directory" in text or f"{obstacle}: Is a directory" in text, text
        assert "does not exist" not in text
    assert (obstacle / "inside").is_dir(), "comfytest never deletes what is in the way"


def test_baselines_root_that_is_a_file_is_a_storage_error_in_update_mode(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.root.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        life.check(scene(), "update")
    assert "cannot write the baseline file" in str(info.value) and str(life.root) in str(info.value)
    assert life.root.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: no PermissionError to meet")
def test_read_only_baselines_in_update_mode_is_a_storage_error(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.root.mkdir()
    life.root.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            life.check(scene(), "update")
    finally:
        life.root.chmod(0o755)


# -- issue 26: an output whose image data is its baseline's source passes without being decoded


def served(img: Image.Image, text: str = "prompt") -> OutputImage:
    """The image as ComfyUI's SaveImage serves it: a PNG at compress level 4 with the prompt
    in a text chunk, decoded only when the check needs it."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", text)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return OutputImage("9", 0, FileRef("x.png"), data=buffer.getvalue())


def decoded_yet(image: OutputImage) -> bool:
    return "image" in vars(image)  # the cached_property has run


def test_an_unchanged_output_passes_without_decoding_and_its_line_binds_the_png(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    stack = Stack("cpu", "2.4.1", "0.3.75", "none")
    life.store = BaselineStore(life.root, stack=stack)
    assert life.check(served(scene()), "update").status == "created"  # type: ignore[arg-type]
    png, hashes = (life.root / KEY.relative_dir / n for n in ("9_0.png", HASHES_FILE))
    line = read_hashes(hashes)["9_0"]
    assert line.served == png_image_digest(served(scene()).data or b"") and line.file == file_digest(png.read_bytes())
    assert line.stack == stack, "a new PNG's line keeps the whole stack, not the device alone"

    again = served(scene(), text="another prompt: metadata is not image data")
    result = life.check(again)  # type: ignore[arg-type]
    assert result.status == "passed" and not decoded_yet(again)
    assert isinstance(result.comparison, ImageComparison) and result.comparison.same_source
    assert result.comparison.max_abs_diff == 0 and result.comparison.obtained_hash == line.hashes[0]
    assert "identical pixels: the server sent the image data the baseline was made from" in result.message

    # a change still decodes and compares
    moved = served(nudged(scene()))
    assert life.check(moved).status == "passed" and decoded_yet(moved)  # type: ignore[arg-type]
    assert life.check(served(changed(scene()))).status == "mismatch"  # type: ignore[arg-type]

    # the PNG replaced behind the line's back: the line no longer binds it, the full check says so
    changed(scene()).save(png)
    with pytest.raises(BaselineCorrupt, match="does not match"):
        life.check(served(scene()))  # type: ignore[arg-type]


def test_a_line_whose_served_digest_is_stale_only_costs_the_shortcut(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.check(served(scene()), "update")  # type: ignore[arg-type]
    hashes = life.root / KEY.relative_dir / HASHES_FILE
    old = read_hashes(hashes)["9_0"].served
    assert old is not None
    hashes.write_text(hashes.read_text().replace(old, "sha256:" + "0" * 32))  # as from another encoder
    again = served(scene())
    result = life.check(again)  # type: ignore[arg-type]
    assert result.status == "passed" and decoded_yet(again)
    assert isinstance(result.comparison, ImageComparison) and not result.comparison.same_source
    # an update that changes nothing leaves the line alone (the digest only costs the shortcut);
    # a line rewritten for a change gets the new one
    assert life.check(served(scene()), "update").status == "unchanged"
    assert read_hashes(hashes)["9_0"].served == "sha256:" + "0" * 32
    life.check(served(nudged(scene())), "update")
    assert life.check(fresh := served(nudged(scene()))).status == "passed" and not decoded_yet(fresh)


def test_hash_only_lines_carry_the_served_digest_too(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path, hash_only=True)
    life.check(served(scene()), "update")  # type: ignore[arg-type]
    again = served(scene())
    result = life.check(again)  # type: ignore[arg-type]
    assert result.status == "passed" and not decoded_yet(again)
    assert isinstance(result.comparison, ImageComparison) and result.comparison.metrics is None
    assert life.check(served(changed(scene()))).status == "mismatch"  # type: ignore[arg-type]


def test_lines_without_digests_still_read_and_compare(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.check(scene(), "update")  # a decoded image: no served digest to record
    line = read_hashes(life.root / KEY.relative_dir / HASHES_FILE)["9_0"]
    assert (line.served, line.file) == (None, None)
    again = served(scene())
    assert life.check(again).status == "passed" and decoded_yet(again)  # type: ignore[arg-type]


def test_a_damaged_digest_field_names_the_line(tmp_path: Path) -> None:
    life = Lifecycle(tmp_path)
    life.check(served(scene()), "update")  # type: ignore[arg-type]
    hashes = life.root / KEY.relative_dir / HASHES_FILE
    hashes.write_text(hashes.read_text().replace("file=sha256:", "file=sha256:zz"))
    with pytest.raises(BaselineCorrupt, match=r"hashes.txt:1.*file= is not sha256"):
        life.check(served(scene()))  # type: ignore[arg-type]
