"""The client's frequent requests without ``requests``' per-request machinery (issue 26).

A test case makes two requests (``POST /prompt``, ``GET /view``). Through
``requests.Session.request`` each costs ~0.4 ms of CPU more than the request itself: preparing
it (settings and cookie jars merged, the URL parsed), hooks, the redirect loop, cookie
extraction, and a body read in 10 KB chunks. ``LeanHTTP`` sends the same request on the same
connection pool that ``requests`` uses for the URL (its TLS settings, CA bundle and
certificates included) with the headers ``requests`` would send (session headers, the
authorization it derives), reads the body in one piece, and hands back a ``requests.Response``.

Where ``requests`` does more than that, it is left to ``requests``: ``send`` returns ``None``
for a proxy, cookies (a proxy's sticky session), an authentication other than basic, a body
other than JSON, and after a redirect or a ``Set-Cookie`` reply (the cookies are kept in the
session's jar; every later request then goes through ``requests``). urllib3's errors are turned
into the ``requests`` exceptions ``requests`` raises for them, so the caller's messages do not
change.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3 import exceptions as u3

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class LeanHTTP:
    """Requests of one ``requests.Session`` to one base URL, on its urllib3 pool."""

    def __init__(self, session: requests.Session, base_url: str, connect_timeout: float) -> None:
        self.session = session
        self.base_url = base_url
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.enabled = True
        self._pool: Any = None
        self._adapter: HTTPAdapter | None = None
        self._headers: CaseInsensitiveDict[str | bytes] = CaseInsensitiveDict()

    def send(
        self, method: str, path: str, timeout: float, *, json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> requests.Response | None:
        """The response, or None where ``requests`` must send this request itself."""
        pool = self._ready()
        if pool is None:
            return None
        headers: Mapping[str, str | bytes] = self._headers
        body: bytes | None = None
        if json is not None:
            try:
                body = jsonlib.dumps(json, allow_nan=False).encode("utf-8")  # as requests does
            except (TypeError, ValueError):
                return None  # requests raises its own error for it
            headers = _with(headers, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        elif method.upper() in _BODY_METHODS:
            headers = _with(headers, {"Content-Length": "0"})
        target = self.base_path + path
        if params:
            pairs = [(k, v) for k, v in params.items() if v is not None]
            target += ("&" if "?" in path else "?") + urlencode(pairs, doseq=True)
        try:
            raw = pool.urlopen(
                method=method, url=target, body=body, headers=headers, redirect=False, assert_same_host=False,
                preload_content=False, decode_content=False, retries=self._retries(),
                timeout=urllib3.Timeout(connect=min(self.connect_timeout, timeout), read=timeout), chunked=False,
            )
        except Exception as exc:
            _reraise(exc, _sent_error(exc))
        try:
            if raw.get_redirect_location():
                self.enabled = False  # requests follows redirects; from now on it sends everything
                raw.drain_conn()
                return None
            content = raw.read(decode_content=True)
            if raw.headers.get("set-cookie"):
                self.enabled = False  # the jar holds cookies now: requests sends them from here on
                request = requests.Request(method, self.base_url + path).prepare()
                extract_cookies_to_jar(self.session.cookies, request, raw)
        except Exception as exc:
            _reraise(exc, _read_error(exc))
        finally:
            raw.release_conn()
        resp = requests.Response()
        resp.status_code = raw.status
        resp.headers = CaseInsensitiveDict(raw.headers)
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp.reason = raw.reason or ""
        resp.url = self.base_url + target[len(self.base_path):]
        resp._content = content
        resp._content_consumed = True
        return resp

    def _ready(self) -> Any:
        """The urllib3 pool requests uses for the base URL, or None when requests must be used."""
        if not self.enabled:
            return None
        if self._pool is not None and self._pool.pool is not None:  # a closed pool has none
            return self._pool if not self.session.cookies else None
        s = self.session
        adapter = s.get_adapter(self.base_url)
        auth_ok = s.auth is None or isinstance(s.auth, tuple)
        if (not isinstance(adapter, HTTPAdapter) or type(adapter).send is not HTTPAdapter.send or not auth_ok
                or s.cookies or s.hooks.get("response") or select_proxy(self.base_url, s.proxies)):
            self.enabled = False
            return None
        prepared = s.prepare_request(requests.Request("GET", self.base_url))
        self._pool = adapter.get_connection_with_tls_context(prepared, s.verify, proxies=s.proxies, cert=s.cert)
        adapter.cert_verify(self._pool, self.base_url, s.verify, s.cert)
        self._headers = prepared.headers.copy()
        self._adapter = adapter
        return self._pool

    def _retries(self) -> Any:
        return self._adapter.max_retries if self._adapter is not None else False


def _with(headers: Mapping[str, str | bytes], more: Mapping[str, str]) -> CaseInsensitiveDict[str | bytes]:
    """A copy of ``headers`` (case-insensitive, as requests keeps them) with ``more`` set."""
    out: CaseInsensitiveDict[str | bytes] = CaseInsensitiveDict(headers)
    out.update(more)
    return out


def _reraise(exc: Exception, mapped: Exception) -> None:
    if mapped is exc:
        raise exc
    raise mapped from exc


#: urllib3's errors and the requests exceptions raised for them, the first that matches: as
#: ``HTTPAdapter.send`` maps a ``MaxRetryError``'s reason, the errors it raises itself, and
#: ``Response.content`` the errors met while reading the body
_RETRY_REASONS: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (u3.ResponseError, requests.exceptions.RetryError), (u3.ProxyError, requests.exceptions.ProxyError),
    (u3.SSLError, requests.exceptions.SSLError))
_SENDING: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (u3.ClosedPoolError, requests.ConnectionError), (u3.ProxyError, requests.exceptions.ProxyError),
    (u3.SSLError, requests.exceptions.SSLError), (u3.ReadTimeoutError, requests.ReadTimeout),
    (u3.InvalidHeader, requests.exceptions.InvalidHeader))
_READING: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (u3.ProtocolError, requests.exceptions.ChunkedEncodingError),
    (u3.DecodeError, requests.exceptions.ContentDecodingError),
    (u3.ReadTimeoutError, requests.ConnectionError), (u3.SSLError, requests.exceptions.SSLError))


def _mapped(exc: Exception, match: object, table: tuple[tuple[type[Exception], type[Exception]], ...],
            default: Exception) -> Exception:
    """``exc`` wrapped in the requests exception of the first row ``match`` is an instance of."""
    return next((to(exc) for cls, to in table if isinstance(match, cls)), default)


def _sent_error(exc: Exception) -> Exception:
    """The requests exception ``HTTPAdapter.send`` raises for urllib3's ``exc``."""
    if isinstance(exc, (u3.ProtocolError, OSError)):
        return requests.ConnectionError(exc)
    if isinstance(exc, u3.MaxRetryError):
        reason = exc.reason
        if isinstance(reason, u3.ConnectTimeoutError) and not isinstance(reason, u3.NewConnectionError):
            return requests.ConnectTimeout(exc)
        return _mapped(exc, reason, _RETRY_REASONS, requests.ConnectionError(exc))
    return _mapped(exc, exc, _SENDING, exc)


def _read_error(exc: Exception) -> Exception:
    """The requests exception ``Response.content`` raises for urllib3's ``exc`` while reading."""
    return _mapped(exc, exc, _READING, exc)


__all__ = ["LeanHTTP"]
