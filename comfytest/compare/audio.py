"""Audio outputs (flac, wav, mp3, opus...): rate, channels, duration, then a log-mel distance.

Decoded with PyAV. Sample rate and channel count must match exactly, the duration within
``audio_duration_ms``; the content is compared as a log-mel spectrogram (32 mel bands of the
mono mix, 50 ms bins, in dB re full scale, floor -120 dB, quantised to 0.5 dB): the distance is
the mean absolute dB difference over the bins both clips have, allowed up to ``audio_distance``.
Quantising first makes a stored fingerprint and a decoded file give the same number.

Baseline: ``<node>_<index>.audio.txt`` (properties + the spectrogram fingerprint, base64) and
the audio file itself, ``<node>_<index>.<ext>``, so the report can play it (not in hash-only
mode). Artefacts: the obtained file, waveform and spectrogram PNGs of both (and their diff).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from comfytest.compare import images as ic
from comfytest.compare.baselines import (
    Artefacts,
    BaselineKey,
    BaselineStore,
    Mode,
    Outcome,
    atomic_write,
    run_lifecycle,
)
from comfytest.compare.mediacheck import (
    MediaCheck,
    RecordKind,
    format_record,
    one,
    read_record,
    save_obtained,
    stacked,
    undecodable,
    with_paths,
)
from comfytest.errors import BaselineCorrupt
from comfytest.media import Audio, MediaSettings, Undecodable, decode_audio
from comfytest.outputs import OutputFile

BANDS = 32
BIN_MS = 50.0
MAX_BINS = 1200  # longer clips get wider bins, so a record stays a few kB
FLOOR_DB = -120.0


def log_mel(samples: np.ndarray[Any, Any], rate: int, bin_ms: float = BIN_MS) -> np.ndarray[Any, Any]:
    """[BANDS, T] dB of the mono mix, quantised to 0.5 dB (see module doc)."""
    mono = samples.mean(axis=0).astype(np.float64)
    n_fft = 2 ** math.ceil(math.log2(max(64, rate * 0.04)))
    hop = max(1, round(rate * bin_ms / 1000))
    count = max(1, 1 + (len(mono) - 1) // hop)
    padded = np.concatenate([mono, np.zeros(n_fft + hop * count - len(mono) + 1)])
    window = np.hanning(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count] * window
    magnitude = np.abs(np.fft.rfft(frames, axis=1)) / (window.sum() / 2)  # full-scale sine: 1
    power = _filterbank(rate, n_fft) @ (magnitude.T ** 2)
    db = 10 * np.log10(np.maximum(power, 1e-30))
    quantised: np.ndarray[Any, Any] = np.round(np.clip(db, FLOOR_DB, 0.0) * 2) / 2
    return quantised


def _filterbank(rate: int, n_fft: int) -> np.ndarray[Any, Any]:
    def mel(f: Any) -> Any:
        return 2595 * np.log10(1 + np.asarray(f) / 700)

    edges = 700 * (10 ** (np.linspace(0, mel(rate / 2), BANDS + 2) / 2595) - 1)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    bank = np.zeros((BANDS, len(freqs)))
    for b in range(BANDS):
        lo, mid, hi = edges[b:b + 3]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        bank[b] = np.maximum(0, np.minimum(up, down))
    return bank


def bin_ms_for(duration_ms: float) -> float:
    return max(BIN_MS, math.ceil(duration_ms / MAX_BINS))


def encode_mel(db: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(((db - FLOOR_DB) * 2).astype(np.uint8).tobytes()).decode()


def decode_mel(text: str, bands: int) -> np.ndarray[Any, Any]:
    raw = np.frombuffer(base64.b64decode(text, validate=True), np.uint8)
    if raw.size % bands:
        raise ValueError(f"{raw.size} spectrogram values are not a multiple of {bands} bands")
    return raw.reshape(bands, -1).astype(np.float64) / 2 + FLOOR_DB


@dataclass(frozen=True)
class AudioSignature:
    sample_rate: int
    channels: int
    duration_ms: float
    codec: str
    bin_ms: float
    mel: np.ndarray[Any, Any]

    def describe(self) -> str:
        return f"{self.duration_ms / 1000:.3f} s, {self.sample_rate} Hz, {self.channels} channel(s)"

    def lines(self, filename: str) -> list[tuple[str, str]]:
        b64 = encode_mel(self.mel)
        return [("sample_rate", str(self.sample_rate)), ("channels", str(self.channels)),
                ("duration_ms", f"{self.duration_ms:.3f}"), ("codec", self.codec),
                ("mel_bands", str(self.mel.shape[0])), ("mel_bin_ms", f"{self.bin_ms:g}"),
                *(("mel", b64[i:i + 76]) for i in range(0, len(b64), 76))]

    @classmethod
    def of(cls, audio: Audio, bin_ms: float | None = None) -> AudioSignature:
        bins = bin_ms or bin_ms_for(audio.duration_ms)
        return cls(audio.sample_rate, audio.channels, audio.duration_ms, audio.codec, bins,
                   log_mel(audio.samples, audio.sample_rate, bins))

    @classmethod
    def parse(cls, path: Path) -> AudioSignature:
        rec = read_record(path, ("sample_rate", "channels", "duration_ms", "mel_bands", "mel_bin_ms", "mel"))
        try:
            return cls(int(one(rec, "sample_rate")), int(one(rec, "channels")), float(one(rec, "duration_ms")),
                       rec.get("codec", ["?"])[0], float(one(rec, "mel_bin_ms")),
                       decode_mel("".join(rec["mel"]), int(one(rec, "mel_bands"))))
        except ValueError as exc:
            raise BaselineCorrupt(f"baseline record {path} is malformed ({exc}); restore it from version "
                                  "control or rewrite it with --comfy-update-baselines") from exc


@dataclass(frozen=True)
class AudioComparison:
    obtained: AudioSignature
    baseline: AudioSignature
    duration_tolerance_ms: float
    tolerance: float
    distance: float

    @property
    def duration_diff_ms(self) -> float:
        return abs(self.obtained.duration_ms - self.baseline.duration_ms)

    def problems(self) -> list[str]:
        a, b = self.obtained, self.baseline
        out = []
        if a.sample_rate != b.sample_rate:
            out.append(f"sample rate {a.sample_rate} Hz, baseline {b.sample_rate} Hz")
        if a.channels != b.channels:
            out.append(f"{a.channels} channel(s), baseline {b.channels}")
        if self.duration_diff_ms > self.duration_tolerance_ms:
            out.append(f"duration {a.duration_ms:.1f} ms, baseline {b.duration_ms:.1f} ms "
                       f"({self.duration_diff_ms:.1f} ms > tolerance {self.duration_tolerance_ms:g} ms)")
        if self.distance > self.tolerance:
            out.append(f"log-mel distance {self.distance:.2f} dB > tolerance {self.tolerance:g} dB")
        return out

    @property
    def passed(self) -> bool:
        return not self.problems()

    def describe(self) -> str:
        problems = self.problems()
        if problems:
            return "; ".join(problems)
        return (f"{self.obtained.describe()}: log-mel distance {self.distance:.2f} dB <= {self.tolerance:g} dB, "
                f"duration {self.duration_diff_ms:.1f} ms off (tolerance {self.duration_tolerance_ms:g} ms)")


def mel_distance(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    n = min(a.shape[1], b.shape[1])
    if n == 0 or a.shape[0] != b.shape[0]:
        return math.inf
    return float(np.abs(a[:, :n] - b[:, :n]).mean())


def waveform_image(samples: np.ndarray[Any, Any], width: int = 600, height: int = 60) -> Image.Image:
    """Min/max envelope per pixel column, one strip per channel."""
    channels = samples.shape[0]
    img = Image.new("RGB", (width, height * channels), (30, 30, 30))
    draw = ImageDraw.Draw(img)
    for c in range(channels):
        data = samples[c]
        per = max(1, math.ceil(len(data) / width))
        padded = np.concatenate([data, np.zeros(per * width - len(data))]).reshape(width, per)
        lo, hi = padded.min(axis=1), padded.max(axis=1)
        mid = c * height + height / 2
        draw.line([(0, mid), (width, mid)], fill=(80, 80, 80))
        for x in range(width):
            draw.line([(x, mid - hi[x] * height / 2), (x, mid - lo[x] * height / 2)], fill=(90, 200, 255))
    return img


def spectrogram_image(db: np.ndarray[Any, Any], width: int = 600) -> Image.Image:
    grey = Image.fromarray(((db[::-1] - FLOOR_DB) * (255 / -FLOOR_DB)).clip(0, 255).astype(np.uint8), "L")
    rgb = Image.merge("RGB", [grey.point(lut) for lut in ic._hot_luts()])
    return rgb.resize((width, db.shape[0] * 4), Image.Resampling.NEAREST)


def _png(path: Path, img: Image.Image) -> Path:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path


class AudioKind(RecordKind[AudioSignature]):
    def __init__(self, store: BaselineStore, key: BaselineKey, file: OutputFile, settings: MediaSettings) -> None:
        super().__init__(store, key, file)
        self.settings = settings
        self.name, self.full_name = f"{key.stem}.audio.txt", f"{key.stem}{file.suffix}"
        self.audio = decode_audio(file.data)
        self.sig = AudioSignature.of(self.audio)
        self.cmp: AudioComparison | None = None
        self.files: dict[str, Path | None] = {}

    def load(self) -> AudioSignature | None:
        source = self.find_record()
        if source is None:
            return None
        full = source.parent / self.full_name
        if full.is_file():
            self.store.mark_used(full)
            self.files["baseline_media"] = full
        return AudioSignature.parse(source)

    def compare(self, baseline: AudioSignature) -> Outcome:
        if baseline.bin_ms != self.sig.bin_ms:
            self.sig = AudioSignature.of(self.audio, baseline.bin_ms)
        s = self.settings
        self.cmp = AudioComparison(self.sig, baseline, s.audio_duration_ms, s.audio_distance,
                                   mel_distance(self.sig.mel, baseline.mel))
        return Outcome(self.cmp.passed, self.cmp.describe())

    def _record(self) -> bytes:
        return format_record(self.sig.lines(self.file.ref.filename))

    def keeps_full_file(self) -> bool:
        return not self.settings.hash_only

    def artefacts(self, out_dir: Path, baseline: AudioSignature | None) -> Artefacts:
        self.files["obtained_media"] = save_obtained(out_dir, self.file, self.key.stem)
        self.pictures(out_dir, baseline)
        return Artefacts(self.files["obtained_media"])

    def pictures(self, out_dir: Path, baseline: AudioSignature | None) -> None:
        """Waveform and spectrogram PNGs: obtained, and the baseline's when there is one."""
        wave = [("obtained", waveform_image(self.audio.samples))]
        spec = [("obtained", spectrogram_image(self.sig.mel))]
        base_file = self.files.get("baseline_media")
        if base_file is not None:
            try:
                wave.insert(0, ("baseline", waveform_image(decode_audio(base_file.read_bytes()).samples)))
            except (OSError, Undecodable):
                pass
        if baseline is not None:
            spec.insert(0, ("baseline", spectrogram_image(baseline.mel)))
            n = min(baseline.mel.shape[1], self.sig.mel.shape[1])
            if n and baseline.mel.shape[0] == self.sig.mel.shape[0]:
                diff = FLOOR_DB + np.abs(self.sig.mel[:, :n] - baseline.mel[:, :n]) * 4
                spec.append(("|difference| x4", spectrogram_image(diff)))
        self.files["waveform"] = _png(out_dir / f"{self.key.stem}.waveform.png", stacked(wave))
        self.files["spectrogram"] = _png(out_dir / f"{self.key.stem}.spectrogram.png", stacked(spec))


def check_audio(store: BaselineStore, key: BaselineKey, file: OutputFile, *, mode: Mode,
                results_dir: Path, settings: MediaSettings, node: str) -> MediaCheck:
    try:
        kind = AudioKind(store, key, file, settings)
    except Undecodable as exc:
        return undecodable(key, file, str(exc), results_dir, node)
    result = run_lifecycle(kind, mode, results_dir)
    out_dir = results_dir / key.relative_dir
    if "obtained_media" not in kind.files:  # the report plays and shows it even when it passed
        kind.files["obtained_media"] = save_obtained(out_dir, file, key.stem)
        kind.pictures(out_dir, kind.cmp.baseline if kind.cmp else None)
    elif not result.ok:
        result = with_paths(result, {r: kind.files.get(r) for r in ("waveform", "spectrogram")})
    sig, cmp = kind.sig, kind.cmp
    metrics: dict[str, Any] = {"method": "log-mel", "sample_rate": sig.sample_rate, "channels": sig.channels,
                               "duration_ms": round(sig.duration_ms, 3), "codec": sig.codec}
    if cmp is not None:
        metrics.update(distance=round(cmp.distance, 4), tolerance=cmp.tolerance,
                       duration_diff_ms=round(cmp.duration_diff_ms, 3))
    how = (f"sample rate and channels exactly, duration within {settings.audio_duration_ms:g} ms, "
           f"log-mel spectrogram distance within {settings.audio_distance:g} dB")
    return MediaCheck(result, "audio", how, metrics, kind.files)
