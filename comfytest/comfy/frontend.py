"""UI-format workflows converted by the server's own web frontend, in headless Chromium.

The ComfyUI frontend knows things no Python converter can: widgets that custom nodes' JavaScript
adds or changes, and the exact rules of its subgraph flattening. :class:`FrontendConverter`
opens the server's web UI in a headless Chromium from the system (Debian's ``chromium``), loads a
workflow with ``app.loadGraphData(...)`` and returns ``(await app.graphToPrompt()).output``.

Chromium is driven over the DevTools protocol (JSON messages on the page's WebSocket, with
websocket-client): no Playwright, no Selenium, nothing downloaded at run time. One browser and
one page serve a whole session; :meth:`close` ends the browser and removes its profile.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
import websocket

from comfytest.errors import ComfyTestError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-extensions", "--mute-audio", "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
INSTALL_HINT = (
    "install Chromium (Debian/Ubuntu: apt-get install chromium), or pass its path with "
    "--comfy-chromium PATH (ini comfy_chromium), or convert in Python with --comfy-convert python"
)

#: runs in the page: load the workflow, convert it, and say what went wrong if anything did
_CONVERT_JS = """
(async (workflow) => {
  // loadGraphData catches an error of graph.configure, shows a dialog and returns: catch it first
  const graph = window.app.graph;
  const configure = graph.configure;
  let failure = null;
  graph.configure = function (...args) {
    try { return configure.apply(this, args); } catch (e) { failure = e; throw e; }
  };
  try {
    await window.app.loadGraphData(workflow, true, true, null);
  } finally {
    delete graph.configure;
    if (graph.configure !== configure) graph.configure = configure;
  }
  if (failure) return {error: `${failure.name || "Error"}: ${failure.message || failure}`};
  const {output} = await window.app.graphToPrompt();
  return {output};
})
"""


class FrontendError(ComfyTestError):
    """The frontend could not be used (no browser, page not ready) or could not convert."""


def find_browser(configured: str | None = None) -> str | None:
    """The Chromium to use: ``configured`` (a path or a name on PATH), else the first found."""
    if configured:
        return shutil.which(configured) or (configured if Path(configured).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


class FrontendConverter:
    """One headless Chromium with the server's web UI open, converting workflows on demand."""

    def __init__(self, url: str, browser: str, *, ready_timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.browser = browser
        self.ready_timeout = ready_timeout
        self._profile = Path(tempfile.mkdtemp(prefix="comfytest-chromium-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: websocket.WebSocket | None = None
        self._ids = itertools.count(1)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FrontendConverter:
        """Launch the browser, open the server's page and wait until ``app`` is ready."""
        try:
            self._proc = subprocess.Popen(
                [self.browser, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise FrontendError(f"cannot start the browser {self.browser}: {exc.strerror}; {INSTALL_HINT}") from None
        try:
            self._ws = websocket.create_connection(self._page_socket(), timeout=30, suppress_origin=True)
            self._call("Page.enable")
            self._call("Page.navigate", url=self.url + "/")
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> FrontendConverter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- conversion

    def convert(self, workflow: Mapping[str, Any], where: str = "<workflow>") -> dict[str, Any]:
        """The API-format prompt the frontend makes of a UI-format workflow."""
        arg = json.dumps(json.dumps(dict(workflow)))
        result = self.evaluate(f"({_CONVERT_JS})(JSON.parse({arg}))", where)
        if not isinstance(result, dict):
            raise FrontendError(f"{where}: the frontend at {self.url} returned no prompt")
        if result.get("error"):
            raise FrontendError(f"{where}: the frontend at {self.url} cannot load this workflow: {result['error']}")
        output = result.get("output")
        if not isinstance(output, dict):
            raise FrontendError(f"{where}: the frontend at {self.url} returned no prompt for this workflow")
        return output

    def evaluate(self, expression: str, where: str = "<workflow>") -> Any:
        """Evaluate a JavaScript expression in the page (promises awaited); its JSON value."""
        reply = self._call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        details = reply.get("exceptionDetails")
        if details:
            raise FrontendError(f"{where}: JavaScript error in the frontend at {self.url}: {_js_message(details)}")
        return (reply.get("result") or {}).get("value")

    # ---------------------------------------------------------------- DevTools plumbing

    def _page_socket(self) -> str:
        """The page target's WebSocket URL, once Chromium wrote its DevTools port."""
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise FrontendError(f"the browser {self.browser} exited at start (code {self._proc.returncode}); {INSTALL_HINT}")
            if port_file.exists() and port_file.read_text().strip():
                port = port_file.read_text().split()[0]
                with contextlib.suppress(requests.RequestException, ValueError):
                    targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
                    if pages:
                        return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise FrontendError(f"the browser {self.browser} did not open its DevTools port within 30 s")

    def _wait_ready(self) -> None:
        probe = "!!(window.app && window.app.graph && typeof window.app.graphToPrompt === 'function' && window.LiteGraph)"
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.evaluate(probe) is True:
                time.sleep(0.3)  # extensions finish registering right after app is set up
                return
            time.sleep(0.2)
        raise FrontendError(
            f"the ComfyUI frontend at {self.url} did not become ready in {self.ready_timeout:.0f} s "
            "(no window.app.graphToPrompt); does the server serve its web UI? Use --comfy-convert python otherwise"
        )

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        if self._ws is None:
            raise FrontendError("the browser is not running")
        call_id = next(self._ids)
        try:
            self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
            while True:
                message = json.loads(self._ws.recv())
                if message.get("id") == call_id:
                    break
        except (websocket.WebSocketException, OSError) as exc:
            raise FrontendError(f"lost the connection to the browser {self.browser}: {exc}") from None
        if "error" in message:
            raise FrontendError(f"DevTools {method} failed: {message['error'].get('message')}")
        result: dict[str, Any] = message.get("result") or {}
        return result


def _die_with_parent() -> None:
    """In the browser's process before exec: end it when this process dies (Linux), so a killed
    test run never leaves a browser behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _js_message(details: Mapping[str, Any]) -> str:
    exception = details.get("exception") or {}
    text = exception.get("description") or details.get("text") or "unknown error"
    return str(text).splitlines()[0]
