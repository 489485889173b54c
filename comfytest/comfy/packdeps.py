"""A node pack's requirements, installed where the pack runs and never into the user's environment.

``ensure(python, packs, home)`` reads each pack's ``requirements.txt`` and asks the server's
Python which requirements it already satisfies. One it has in another version is an error that
names both (the pack's line, and the server's version: for the embedded server, pinned by
``comfytest/embedded_constraints.txt``). The rest are installed once with ``pip install
--prefix <home>/packdeps/<hash>``, constrained to every version the server's Python already has
(so pip adds packages and never changes one), and the folder goes on the server's PYTHONPATH;
the same requirements reuse it. The server also gets ``PIP_PREFIX`` and ``PIP_CONSTRAINT``: a
pack that runs ``pip install`` while ComfyUI imports it installs into that folder too, under
the same pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfytest.errors import LaunchError, NodePackImportError

DONE = ".comfytest-complete"

# run by the server's Python: every installed distribution, and which requirements it satisfies
_PROBE = r"""
import json, sys, importlib.metadata as md
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
dists = {}
for d in md.distributions():
    name = (d.metadata["Name"] or "").lower().replace("_", "-")
    if name and name not in dists:
        dists[name] = d.version
out = {"python": "%d.%d" % sys.version_info[:2], "installed": dists, "reqs": []}
for line in sys.argv[1:]:
    req = Requirement(line)
    key = req.name.lower().replace("_", "-")
    have = dists.get(key)
    applies = req.marker is None or req.marker.evaluate()
    ok = have is not None and (not req.specifier or req.specifier.contains(have, prereleases=True))
    out["reqs"].append({"line": line, "name": key, "have": have, "ok": ok, "applies": applies})
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Requirement:
    line: str
    pack: Path
    lineno: int

    @property
    def where(self) -> str:
        return f"{self.pack / 'requirements.txt'}, line {self.lineno}"


@dataclass(frozen=True)
class PackDeps:
    """What the server's process needs so the packs find their requirements."""

    site: Path | None  # on PYTHONPATH; None when nothing had to be installed
    prefix: Path | None
    constraints: Path | None

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        if self.prefix is None or self.site is None or self.constraints is None:
            return {}
        path = os.pathsep.join(p for p in (str(self.site), base.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, "PIP_PREFIX": str(self.prefix), "PIP_CONSTRAINT": str(self.constraints)}


def pinned_by(constraints_text: str, source: str) -> dict[str, str]:
    """``{name: source}`` for every ``name==version`` line of a constraints file."""
    names = (ln.split("==", 1)[0].strip().lower().replace("_", "-") for ln in constraints_text.splitlines()
             if "==" in ln and not ln.lstrip().startswith("#"))
    return {name: source for name in names}


def read_requirements(pack: Path) -> list[Requirement]:
    """The requirement lines of ``pack/requirements.txt`` (comments, blanks and pip options left out)."""
    path = pack / "requirements.txt"
    if not path.is_file():
        return []
    found = []
    for n, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            found.append(Requirement(line, pack, n))
    return found


def ensure(python: Path, packs: Sequence[Path], home: Path, pins: Mapping[str, str] | None = None) -> PackDeps:
    """Install what the packs require and ``python`` lacks; reused while nothing changes. The
    folder exists (on PYTHONPATH) even when nothing is missing: a pack that pip-installs while
    ComfyUI imports it installs there."""
    if not packs:
        return PackDeps(None, None, None)
    reqs = [r for pack in packs for r in read_requirements(pack)]
    probe = _probe(python, reqs)
    _check_conflicts(reqs, probe, python, pins or {})
    rows = probe["reqs"]
    assert isinstance(rows, list)
    missing = [r.line for r, p in zip(reqs, rows) if p["applies"] and not p["ok"]]
    names = sorted(str(p.resolve()) for p in packs)
    digest = hashlib.sha256("\0".join([str(python), *sorted(missing), *names]).encode()).hexdigest()[:16]
    prefix = home / "packdeps" / digest
    site = prefix / "lib" / f"python{probe['python']}" / "site-packages"
    constraints = prefix.parent / f"{digest}.constraints.txt"
    constraints.parent.mkdir(parents=True, exist_ok=True)
    installed = probe["installed"]
    assert isinstance(installed, dict)
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(installed.items())))
    if not (prefix / DONE).is_file():
        _install(python, prefix, missing, constraints, reqs)
    site.mkdir(parents=True, exist_ok=True)
    return PackDeps(site, prefix, constraints)


def _probe(python: Path, reqs: Sequence[Requirement]) -> dict[str, object]:
    res = subprocess.run([str(python), "-c", _PROBE, *(r.line for r in reqs)], capture_output=True, text=True)
    if res.returncode != 0:
        bad = re.search(r"InvalidRequirement: (.*)", res.stderr)
        raise NodePackImportError(f"cannot read the node pack requirements with {python}: "
                          f"{bad.group(1) if bad else res.stderr[-1500:]}\n"
                          f"(requirements: {', '.join(r.where for r in reqs)})")
    data: dict[str, object] = json.loads(res.stdout)
    return data


def _check_conflicts(reqs: Sequence[Requirement], probe: Mapping[str, object], python: Path,
                     pins: Mapping[str, str]) -> None:
    rows = probe["reqs"]
    assert isinstance(rows, list)
    clashes = [(r, p) for r, p in zip(reqs, rows) if p["applies"] and p["have"] is not None and not p["ok"]]
    if not clashes:
        return
    lines = [f"  - {r.line!r} ({r.where}) conflicts with {p['name']}=={p['have']}, installed in {python}"
             + (f" (pinned by {pins[p['name']]})" if p["name"] in pins else "") for r, p in clashes]
    raise NodePackImportError(
        "a node pack requires a version the server's Python does not have:\n" + "\n".join(lines)
        + "\ncomfytest never changes a version the server runs with. Relax the requirement so the installed "
        "version satisfies it, or run the pack on your own ComfyUI (--comfy-launch=DIR --comfy-python=PY) "
        "whose environment has the version it needs."
    )


def _install(python: Path, prefix: Path, missing: Sequence[str], constraints: Path,
             reqs: Sequence[Requirement]) -> None:
    partial = prefix.with_name(prefix.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if missing:
        _pip_prefix(python, partial, missing, constraints, reqs)
    shutil.rmtree(prefix, ignore_errors=True)
    partial.rename(prefix)
    (prefix / DONE).write_text(" ".join(missing) + "\n")


def _pip_prefix(python: Path, partial: Path, missing: Sequence[str], constraints: Path,
                reqs: Sequence[Requirement]) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
           "--prefix", str(partial), "-c", str(constraints), *missing]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"
        err = "\n".join(ln for ln in res.stderr.splitlines() if noise not in ln)
        raise LaunchError(
            f"cannot install the node pack requirements {', '.join(missing)} "
            f"(from {', '.join(sorted({str(r.pack / 'requirements.txt') for r in reqs}))}):\n{err[-2500:]}\n"
            f"Command: {' '.join(cmd)}\nWhen pip reports a conflict, a requirement needs another version of a "
            "package the server already has (listed in the constraints file above)."
        )


__all__ = ["PackDeps", "Requirement", "ensure", "pinned_by", "read_requirements"]
