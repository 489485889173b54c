"""Custom node packs that failed to import, found in a ComfyUI 0.3.75 log (the lines as that
version writes them: nodes.py load_custom_node and init_external_custom_nodes)."""

from __future__ import annotations

import pytest

from comfytest.comfy.packimport import check_log, import_failures
from comfytest.errors import NodePackImportError

LOG = """\
Traceback (most recent call last):
  File "/c/comfyui/nodes.py", line 2146, in load_custom_node
    module_spec.loader.exec_module(module)
  File "/c/comfyui/comfy_extras/nodes_audio.py", line 4, in <module>
    import torchaudio
ModuleNotFoundError: No module named 'torchaudio'

Cannot import /c/comfyui/comfy_extras/nodes_audio.py module for custom nodes: No module named 'torchaudio'
Traceback (most recent call last):
  File "/c/comfyui/nodes.py", line 2146, in load_custom_node
    module_spec.loader.exec_module(module)
  File "<frozen importlib._bootstrap_external>", line 936, in exec_module
  File "<frozen importlib._bootstrap_external>", line 1074, in get_code
  File "<frozen importlib._bootstrap_external>", line 1004, in source_to_code
  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed
  File "/c/base/custom_nodes/my_pack/nodes.py", line 12
    def run(self, image:
                       ^
SyntaxError: '(' was never closed

Cannot import /c/base/custom_nodes/my_pack module for custom nodes: '(' was never closed

Import times for custom nodes:
   0.0 seconds: /c/base/custom_nodes/websocket_image_save.py
   0.0 seconds (IMPORT FAILED): /c/base/custom_nodes/my_pack

IMPORT FAILED: nodes_audio.py
"""


def test_a_broken_pack_is_found_with_its_exception_file_and_line_and_comfy_extras_are_not() -> None:
    (failure,) = import_failures(LOG)
    assert failure.pack == "/c/base/custom_nodes/my_pack"
    assert failure.exception == "SyntaxError: '(' was never closed"
    assert (failure.file, failure.line) == ("/c/base/custom_nodes/my_pack/nodes.py", 12)
    assert failure.source is not None and "def run(self, image:" in failure.source


def test_check_log_raises_one_error_naming_pack_file_and_line() -> None:
    with pytest.raises(NodePackImportError) as err:
        check_log(LOG, "/tmp/comfyui.log")
    text = str(err.value)
    assert "1 custom node pack(s) failed to import" in text
    assert "my_pack (/c/base/custom_nodes/my_pack): SyntaxError: '(' was never closed" in text
    assert "at /c/base/custom_nodes/my_pack/nodes.py, line 12" in text
    assert "exit code 1" in text and "--comfy-missing=skip does not skip it" in text


def test_a_clean_log_passes() -> None:
    check_log(LOG.replace(" (IMPORT FAILED)", ""), "x.log")
