"""HTTP + WebSocket connection to one ComfyUI server (no pytest here).

* HTTP goes through one keep-alive ``requests.Session`` with the user's extra headers.
* One WebSocket per client id, read by a light background thread that stamps each frame with
  the injected clock and parses it once (``events``) into a queue; a dropped socket shows up as
  a ``Disconnected`` item so the run can resynchronise instead of hanging.
* Every failure is a ``ComfyTestError`` naming the URL or endpoint; secrets never appear.
"""

from __future__ import annotations

import json
import os
import queue
import re
import ssl
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
import websocket

from comfytest.comfy.events import Clock, Event, Received, SystemClock, parse_binary, parse_text
from comfytest.comfy.leanhttp import LeanHTTP
from comfytest.errors import OutputRefused, ProtocolError, ServerUnavailable, redact
from comfytest.outputs import FileRef

_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Disconnected:
    """Put on the event queue when the reader thread sees the socket end."""

    at: Received
    reason: str


_REASONS = (
    ("refused", "connection refused"),
    ("name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("temporary failure in name resolution", "host name not found"),
    ("timed out", "connection timed out"),
    ("certificate verify failed", "TLS certificate not trusted: give the PEM file of its CA with "
     "--comfy-ca-bundle (ini comfy_ca_bundle, env COMFYTEST_CA_BUNDLE)"),
    ("reset by peer", "connection reset"),
)


def _excerpt(resp: requests.Response) -> str:
    """A short readable excerpt of a reply: an HTML page's title, else its first characters."""
    text = resp.text
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return f"a web page titled {' '.join(title.group(1).split())[:100]!r}"
    return repr(" ".join(re.sub(r"<[^>]+>", " ", text).split())[:160])


def _reason(exc: Exception) -> str:
    """The short cause of a connection failure, not urllib3's nested repr."""
    text = str(exc).lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first[:160]


class ComfyClient:
    """A connection to one ComfyUI server at ``url`` (http:// or https://)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        request_timeout: float = 30.0,
        hint: str = "",
        ca_bundle: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url[len("http"):] + "/ws"
        self.client_id = uuid.uuid4().hex
        self.clock: Clock = clock or SystemClock()
        self.request_timeout = request_timeout
        self.hint = hint  # which options set the URL, for "nothing answers" errors
        self._headers = dict(headers or {})
        self._secrets = tuple(v for v in self._headers.values() if v)
        self.http = requests.Session()
        self.http.headers.update(self._headers)
        self._freeze_environment()
        if ca_bundle:  # --comfy-ca-bundle wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
            self.http.verify = ca_bundle
        # the same requests on the same connections without requests' per-request machinery
        # (where requests would do nothing more: see leanhttp)
        self.lean = LeanHTTP(self.http, self.url, _CONNECT_TIMEOUT)
        self.events: queue.Queue[Event | Disconnected] = queue.Queue()
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._pongs = 0  # pong frames the reader has seen (``answers_ping``)
        self._jobs_api: bool | None = None  # probed on first use

    # ------------------------------------------------------------ HTTP

    def _freeze_environment(self) -> None:
        """Read the proxy, CA bundle and .netrc settings from the environment once, here.

        With ``trust_env`` requests reads them again on every request (~0.3 ms each, about a
        tenth of the harness overhead of a small run); the settings are the same for one URL.
        """
        env = self.http.merge_environment_settings(self.url, {}, None, None, None)
        self.http.proxies.update(env["proxies"])
        self.http.verify = env["verify"]
        netrc = requests.utils.get_netrc_auth(self.url)
        if netrc:
            self.http.auth = netrc
        self.http.trust_env = False

    def request(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> requests.Response:
        """Send one request; connection problems become ServerUnavailable naming the URL."""
        limit = timeout or self.request_timeout
        try:
            lean = self.lean.send(method, path, limit, **kw) if kw.keys() <= {"json", "params"} else None
            resp = lean if lean is not None else \
                self.http.request(method, self.url + path, timeout=(min(_CONNECT_TIMEOUT, limit), limit), **kw)
        except requests.ConnectTimeout as exc:
            raise ServerUnavailable(self._unreachable(f"{method} {path}", exc)) from None
        except requests.Timeout:
            raise ServerUnavailable(
                f"ComfyUI at {self.url} did not answer {method} {path} within {limit:g} s "
                "(the server is frozen, overloaded, or a proxy stalls the connection)"
            ) from None
        except requests.ConnectionError as exc:
            raise ServerUnavailable(self._unreachable(f"{method} {path}", exc)) from None
        except requests.RequestException as exc:  # a body cut mid-way, a broken encoding
            raise ProtocolError(
                f"the reply of ComfyUI at {self.url} to {method} {path} broke off: "
                f"{type(exc).__name__}: {redact(_reason(exc), self._secrets)}"
            ) from None
        if resp.status_code == 401 or (resp.status_code == 403 and not path.startswith("/view")):
            # ComfyUI itself answers 403 only for /view paths outside its folders; elsewhere
            # a 401/403 comes from an authenticating proxy in front of it
            raise ServerUnavailable(
                f"ComfyUI at {self.url} refused {method} {path} with HTTP {resp.status_code}: "
                "check the credentials given with --comfy-header / --comfy-token-env "
                "(or the access rules of a proxy in front of the server)"
            )
        return resp

    def _unreachable(self, what: str, exc: Exception) -> str:
        reason = redact(_reason(exc), self._secrets)
        msg = f"No ComfyUI server answers at {self.url} ({what}: {reason})."
        return msg + (f"\n{self.hint}" if self.hint else "")

    def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        return self._json(self.request("GET", path, timeout=timeout), "GET", path)

    def _json(self, resp: requests.Response, method: str, path: str) -> Any:
        if resp.status_code != 200:
            raise ProtocolError(
                f"{method} {path} on {self.url} answered HTTP {resp.status_code}: {_excerpt(resp)}"
                + self._not_comfyui(resp)
            )
        try:
            return resp.json()
        except ValueError:
            raise ProtocolError(
                f"{method} {path} on {self.url} did not answer JSON "
                f"(content-type {resp.headers.get('content-type')!r}): {_excerpt(resp)}"
                + self._not_comfyui(resp)
            ) from None

    def _not_comfyui(self, resp: requests.Response) -> str:
        """ComfyUI answers its API in JSON; an HTML page means some other server (or a login page)."""
        if "html" not in str(resp.headers.get("content-type", "")).lower() and not resp.text.lstrip().startswith("<"):
            return ""
        return (f"\n{self.url} does not look like a ComfyUI server (it answered a web page); check "
                "the URL, and the path and login of a proxy in front of ComfyUI")

    def _json_object(self, method: str, path: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ProtocolError(f"{method} {path} on {self.url} answered {type(data).__name__}, expected an object")
        return data

    def system_stats(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._json_object("GET", "/system_stats", self.get_json("/system_stats", timeout=timeout))

    def object_info(self) -> dict[str, Any]:
        return self._json_object("GET", "/object_info", self.get_json("/object_info", timeout=120))

    def queue_state(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._json_object("GET", "/queue", self.get_json("/queue", timeout=timeout))

    def history(self, prompt_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The history entry of ``prompt_id``, or ``{}`` when the server has none (yet)."""
        path = f"/history/{prompt_id}"
        data = self._json_object("GET", path, self.get_json(path, timeout=timeout))
        entry = data.get(prompt_id, {})
        return entry if isinstance(entry, dict) else {}

    def queue_prompt(self, prompt: Mapping[str, Any], prompt_id: str, extra_data: Mapping[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """POST /prompt; returns (200 or 400, body). Anything else is a ProtocolError."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        resp = self.request("POST", "/prompt", json=body)
        if resp.status_code == 400:
            try:
                return 400, self._json_object("POST", "/prompt", resp.json())
            except ValueError:
                return 400, {"error": {"type": "unknown", "message": resp.text[:500]}}
        return 200, self._json_object("POST", "/prompt", self._json(resp, "POST", "/prompt"))

    def interrupt(self, prompt_id: str | None = None, *, timeout: float | None = None) -> None:
        self.request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}, timeout=timeout)

    def delete_pending(self, prompt_ids: Sequence[str], *, timeout: float | None = None) -> None:
        self.request("POST", "/queue", json={"delete": list(prompt_ids)}, timeout=timeout)

    def free(self, *, unload_models: bool = False, free_memory: bool = True, timeout: float | None = None) -> None:
        self.request("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory}, timeout=timeout)

    # ------------------------------------------------------------ jobs API (newer ComfyUI)

    def has_jobs_api(self, *, timeout: float | None = None) -> bool:
        """True when the server has ``/api/jobs`` (ComfyUI 0.26 and later); asked once."""
        if self._jobs_api is None:
            resp = self.request("GET", "/api/jobs?limit=1", timeout=timeout)
            try:
                self._jobs_api = resp.status_code == 200 and isinstance(resp.json().get("jobs"), list)
            except (ValueError, AttributeError):
                self._jobs_api = False
        return self._jobs_api

    def job_status(self, prompt_id: str, *, timeout: float | None = None) -> str | None:
        """``GET /api/jobs/{id}``: pending, in_progress, completed, failed, cancelled, or
        ``None`` when the server knows no such job."""
        path = f"/api/jobs/{prompt_id}"
        resp = self.request("GET", path, timeout=timeout)
        if resp.status_code == 404:
            return None
        status = self._json_object("GET", path, self._json(resp, "GET", path)).get("status")
        return str(status) if status else None

    def cancel_job(self, prompt_id: str, *, timeout: float | None = None) -> bool:
        """``POST /api/jobs/{id}/cancel``: dequeues or interrupts it; False when nothing to cancel."""
        path = f"/api/jobs/{prompt_id}/cancel"
        reply = self._json_object("POST", path, self._json(self.request("POST", path, timeout=timeout), "POST", path))
        return bool(reply.get("cancelled"))

    def upload_image(self, data: bytes, name: str, *, subfolder: str = "", overwrite: bool = True, kind: str = "image") -> str:
        """Upload to the input folder; returns the name to put in a LoadImage node."""
        files = {"image": (name, data, "application/octet-stream")}
        form = {"type": "input", "subfolder": subfolder, "overwrite": "true" if overwrite else "false"}
        path = "/upload/mask" if kind == "mask" else "/upload/image"
        reply = self._json_object("POST", path, self._json(self.request("POST", path, files=files, data=form), "POST", path))
        if "name" not in reply:
            raise ProtocolError(f"POST {path} on {self.url} answered without a 'name': {reply!r}")
        sub = str(reply.get("subfolder") or "")
        return f"{sub}/{reply['name']}" if sub else str(reply["name"])

    def view(self, ref: FileRef) -> bytes:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        resp = self.request("GET", "/view", params=params)
        where = f"GET /view for {ref.type}/{ref.subfolder + '/' if ref.subfolder else ''}{ref.filename} on {self.url}"
        if resp.status_code == 403:
            raise OutputRefused(
                f"{where} answered HTTP 403: ComfyUI refuses file paths outside its {ref.type} folder; "
                "the node that produced this output reported a path ComfyUI does not serve"
            )
        if resp.status_code == 400:  # ComfyUI: an empty name, one starting with '/' or holding '..'
            raise OutputRefused(
                f"{where} answered HTTP 400: ComfyUI refuses file names that are empty, start with '/' "
                "or contain '..'; the node that produced this output reported such a name"
            )
        if resp.status_code != 200:
            raise ProtocolError(f"{where} answered HTTP {resp.status_code}")
        return resp.content

    # ------------------------------------------------------------ WebSocket

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and self._reader.is_alive()

    def connect(self) -> None:
        """Open the socket (closing any old one first: see PROTOCOL §7, the reconnect trap)."""
        self.close_socket()
        self.events = queue.Queue()
        url = f"{self.ws_url}?clientId={self.client_id}"
        header = [f"{k}: {v}" for k, v in self._headers.items()]
        try:
            ws = websocket.create_connection(
                url, timeout=min(_CONNECT_TIMEOUT, self.request_timeout), header=header,
                enable_multithread=True, sslopt=self._sslopt(),
            )
            # opt in to type-4 previews: they carry node and prompt ids (PROTOCOL §6)
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerUnavailable(self._unreachable("WebSocket /ws", exc)) from None
        # the reader blocks in recv without a timeout (a quiet node is not an error: the run's
        # idle timeout decides); close_socket() shuts the socket down to wake it
        ws.settimeout(None)
        self._ws = ws
        self._reader = threading.Thread(target=self._read_loop, args=(ws, self.events), name="comfytest-ws", daemon=True)
        self._reader.start()

    def _sslopt(self) -> dict[str, Any]:
        """The WebSocket trusts what HTTP trusts: --comfy-ca-bundle or REQUESTS_CA_BUNDLE."""
        verify = self.http.verify
        if verify is False:
            return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
        if isinstance(verify, str):
            return {"ca_cert_path": verify} if os.path.isdir(verify) else {"ca_certs": verify}
        return {}

    def ensure_connected(self) -> None:
        if not self.connected:
            self.connect()

    def _read_loop(self, ws: websocket.WebSocket, out: queue.Queue[Event | Disconnected]) -> None:
        now = self.clock.now
        binary, pong, ping = websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_PONG, websocket.ABNF.OPCODE_PING
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except Exception as exc:  # any end of the socket is reported, never raised here
                out.put(Disconnected(now(), f"{type(exc).__name__}: {exc}"))
                return
            if opcode in (pong, ping):  # websocket-client has answered a ping already
                self._pongs += opcode == pong
                continue
            at = now()
            try:
                if opcode == binary:
                    out.put(parse_binary(data, at))
                elif isinstance(data, (bytes, bytearray)):
                    out.put(parse_text(data.decode("utf-8"), at))
            except ProtocolError:
                continue  # one unreadable frame must not stop the run; it has no prompt_id anyway
            except UnicodeDecodeError:
                continue

    def answers_ping(self, timeout: float) -> bool:
        """Whether the open socket still carries the server's frames: a ping, and its pong
        within ``timeout`` s (aiohttp answers pings itself, whatever a node is doing). False on
        a stalled connection: TCP open, nothing coming back."""
        ws, seen = self._ws, self._pongs
        if ws is None or not self.connected:
            return False
        try:
            ws.ping(b"comfytest")
        except (OSError, websocket.WebSocketException):
            return False
        deadline = time.monotonic() + timeout
        while self._pongs == seen and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._pongs != seen

    def next_event(self, timeout: float) -> Event | Disconnected | None:
        try:
            return self.events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def drain(self) -> bool:
        """Drop queued events; True when the socket ended meanwhile (the caller reconnects)."""
        dropped = False
        while True:
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return dropped
            dropped = dropped or isinstance(item, Disconnected)

    def close_socket(self) -> None:
        """Close the socket in bounded time whatever the peer does.

        ``ws.close()`` would send a close frame and wait for the read lock the reader holds
        while it blocks in recv; on a stalled connection both wait forever. Shutting the TCP
        socket down wakes the reader (it reports Disconnected to the old queue and ends)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.abort()  # type: ignore[no-untyped-call]
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if ws is not None:
            ws.shutdown()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.close_socket()
        self.http.close()
