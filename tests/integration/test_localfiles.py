"""A --comfy-url server on this machine: its folders guessed from /system_stats and /proc,
confirmed by the first file /view serves, then read directly (the real server, no mocks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from comfytest.comfy.execution import Runner
from comfytest.comfy.localfiles import GuessedFolders, folders_from_argv, server_cwd
from tests.integration.test_client import noise_prompt


def test_a_local_url_servers_files_are_read_from_its_folders_once_confirmed(
        comfy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if comfy.server is None:
        pytest.skip("the suite runs against --comfy-url: the server's folders are not known to check against")
    guessed = GuessedFolders.of(comfy.client.url, comfy.system_stats())
    assert guessed is not None
    folders = comfy.server.file_folders()
    assert (guessed.folders["output"], guessed.folders["temp"]) == (folders["output"], folders["temp"])
    # a relative path in the command line (main.py here) is read from the server's working
    # directory, which /proc shows for the process answering on the port
    assert comfy.server.proc is not None
    argv = comfy.system_stats()["system"]["argv"]
    assert argv[0] == "main.py"
    cwd = server_cwd(urlsplit(comfy.client.url).port, argv)
    assert cwd == Path(os.readlink(f"/proc/{comfy.server.proc.pid}/cwd"))
    assert folders_from_argv(argv, cwd)["input"] == guessed.folders["input"]

    views: list[str] = []
    view = comfy.client.view
    monkeypatch.setattr(comfy.client, "view", lambda ref: views.append(ref.filename) or view(ref))
    runner = Runner(comfy.client)
    runner.guessed_files = guessed
    first = runner.run(with_preview(noise_prompt(7101)))
    assert first.ok and len(views) == 2 and guessed.trusted == {"output": True, "temp": True}
    second = runner.run(with_preview(noise_prompt(7102)))
    assert len(views) == 2, "the confirmed folders serve the second run's files"
    assert sorted(i.ref.type for i in second.images) == ["output", "temp"]
    for image in second.images:
        on_disk = folders[image.ref.type] / image.ref.subfolder / image.ref.filename
        assert image.data == on_disk.read_bytes() and image.image.size == (32, 32)


def with_preview(prompt: dict[str, Any]) -> dict[str, Any]:
    """The prompt with a PreviewImage beside its SaveImage: a file in the server's temp folder."""
    return {**prompt, "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
