"""The exception tree of comfytest.

Every error a user can meet is a ``ComfyTestError``; its ``str()`` is the whole message a user
reads (what, where, by how much, how to fix). The plugin layer shows it without a traceback.

    ComfyTestError
    ├── ConfigError            an option, ini key, env var or settings file is invalid
    ├── WorkflowError          a workflow file cannot be loaded, or a patch/selector is wrong
    │   └── PatchError         a selector matched nothing / too much, or an input name is unknown
    ├── ServerError            infrastructure: the server cannot be used (CI may retry these)
    │   ├── ServerUnavailable  nothing answers at the URL, or the server died
    │   ├── LaunchError        a local ComfyUI could not be started
    │   ├── PromptVanished     our prompt left the queue without running (cleared, never queued)
    │   └── ProtocolError      the server replied with something we cannot read
    ├── NodePackImportError    a custom node pack failed to import in a server comfytest started
    ├── PreflightError         the server lacks a node class or model the workflow needs
    ├── UnsupportedServer      the server refused a request for comfytest's own reasons (a
    │                          protocol change): not a regression, and retrying will not help
    ├── RunError               the prompt ran (or was queued) and did not succeed
    │   ├── PromptRejected     validation failed (HTTP 400, or node_errors in a 200)
    │   ├── ExecutionFailed    execution_error from a node
    │   ├── ExecutionInterrupted  execution_interrupted that comfytest did not ask for
    │   ├── OutputRefused      /view refused (HTTP 400/403) the file path a node reported
    │   └── ExecutionTimeout   the deadline or the inactivity timeout passed; we interrupted
    ├── StorageError           a baseline or result file cannot be read or written (permissions, a folder in the way)
    └── ComparisonError        outputs differ from the baselines
        ├── BaselineMissing    no baseline yet for an output
        ├── BaselineCorrupt    a baseline file cannot be read
        └── ImageMismatch      perceptual distance above the tolerance (and friends)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides that
# reorder what a reader sees (Trojan Source)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with terminal control characters written out (``ESC[2J`` → ``\\x1b[2J``): a
    node's error text, a title or a server's reply is shown, never obeyed by a terminal (clear
    the screen, set its title, rewrite a line with a carriage return)."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                         else f"\\u{ord(m.group()):04x}", text)


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with the count of what was left out: node titles and
    values come from workflow files and servers, and a 5 MB title must not fill a terminal.
    Control characters are escaped (``escape_controls``)."""
    text = escape_controls(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class ComfyTestError(Exception):
    """Base of every comfytest error; ``str(err)`` is the user-facing message."""

    #: appended to the message by the plugin when the plugin started the server
    server_log_tail: str | None = None

    def __str__(self) -> str:
        base = super().__str__()
        if self.server_log_tail:
            return f"{base}\n\n--- last lines of the ComfyUI server log ---\n{self.server_log_tail}"
        return base


class ConfigError(ComfyTestError):
    """An option, ini key, environment variable or settings file is invalid."""


class WorkflowError(ComfyTestError):
    """A workflow file cannot be loaded or is not an API-format workflow."""


class PatchError(WorkflowError):
    """A selector matched nothing or too much, or an input name is unknown."""


class ServerError(ComfyTestError):
    """The server cannot be used: an infrastructure failure, not a regression."""


class ServerUnavailable(ServerError):
    """Nothing answers at the URL, or the server died during the session."""


class LaunchError(ServerError):
    """A local ComfyUI could not be started."""


class PromptVanished(ServerError):
    """Our prompt is neither queued, running nor in /history: another client cleared the queue
    or deleted it, or the server answered 200 to POST /prompt and never queued it."""


class ProtocolError(ServerError):
    """The server sent a reply comfytest cannot read (names the endpoint)."""


class NodePackImportError(ComfyTestError):
    """A custom node pack raised on import (the author's failure: exit 1, never skipped)."""


class PreflightError(ComfyTestError):
    """The server lacks a node class or a model file that a workflow needs."""


class UnsupportedServer(ComfyTestError):
    """The server refused a request for comfytest's own reasons, not the workflow's.

    A newer (or older) ComfyUI changed its protocol: an id format, a field, a route. The code
    under test is fine and the server is up, so this is neither a regression nor
    infrastructure; the message names the server's version.
    """


class RunError(ComfyTestError):
    """The prompt was queued and did not finish successfully."""


class PromptRejected(RunError):
    """Validation failed: HTTP 400, or a 200 whose node_errors is not empty."""


class ExecutionFailed(RunError):
    """A node raised while the prompt ran (execution_error)."""


class ExecutionInterrupted(RunError):
    """The prompt was interrupted by someone else (execution_interrupted)."""


class OutputRefused(RunError):
    """``/view`` refused (HTTP 400 or 403) the path of a file a node reported as its output:
    the node's deterministic bug (the workflow's failure), not the server's; a retry cannot help."""


class ExecutionTimeout(RunError):
    """The wall-clock deadline or the inactivity timeout passed; the prompt was interrupted."""


class StorageError(ComfyTestError):
    """A baseline or result file cannot be written or read: the file system refused (not a regression)."""


class ComparisonError(ComfyTestError):
    """Outputs differ from the baselines."""


class BaselineMissing(ComparisonError):
    """No baseline exists yet for an output."""


class BaselineCorrupt(ComparisonError):
    """A baseline file exists but cannot be read."""


class ImageMismatch(ComparisonError):
    """An output differs from its baseline by more than the tolerance."""


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
