"""Record a live ComfyUI's WebSocket and HTTP exchanges as replayable traces (maintainers' tool).

Adapted from the team's protocol-study recorder (the 0.3.75 traces in tests/data/traces) for
newer servers: canonical UUID prompt ids, the jobs API, the server URL and version from the
environment. It needs aiohttp, which every ComfyUI venv has, so run it with that venv's python:

    COMFY_URL=http://127.0.0.1:PORT TRACE_OUT=tests/data/traces/0.26.0 \\
        /path/to/ComfyUI/venv/bin/python scripts/record_traces.py success error interrupt \\
        validation reconnect jobs

Run ``success`` first on a freshly started server (it records the cold run, then the cached
rerun). The server needs only core nodes. Each trace is ``{scenario, description, server,
events: [...]}``; see tests/unit/traces.py for the event format.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import os
import struct
import sys
import time
import uuid
from typing import Any

import aiohttp
from PIL import Image, ImageDraw  # imported up front: a lazy import would delay frame stamps

BASE = os.environ.get("COMFY_URL", "").rstrip("/")
OUT = os.environ.get("TRACE_OUT", "traces")


def now_ms() -> float:
    return round(time.time() * 1000, 3)


def new_id() -> str:
    return str(uuid.uuid4())


class Recorder:
    def __init__(self, scenario: str, description: str = "") -> None:
        self.scenario, self.description = scenario, description
        self.t0_mono, self.t0_epoch_ms = time.monotonic(), now_ms()
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.sockets: dict[str, Any] = {}
        self.waiters: list[Any] = []
        self.session: aiohttp.ClientSession | None = None
        self.server = ""

    def rel(self) -> float:
        return round((time.monotonic() - self.t0_mono) * 1000, 3)

    def _add(self, ev: dict[str, Any]) -> dict[str, Any]:
        ev = {"seq": len(self.events), **ev}
        self.events.append(ev)
        for w in list(self.waiters):
            pred, fut = w
            if not fut.done() and pred(ev):
                fut.set_result(ev)
                self.waiters.remove(w)
        return ev

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._add({"kind": "note", "t_ms": now_ms(), "rel_ms": self.rel(), "text": text})

    async def __aenter__(self) -> Recorder:
        self.session = aiohttp.ClientSession()
        async with self.session.get(BASE + "/system_stats") as resp:
            system = (await resp.json())["system"]
        self.server = (f"ComfyUI {system['comfyui_version']}, torch {system['pytorch_version']}, "
                       f"argv {' '.join(system['argv'][1:])}")
        return self

    async def __aexit__(self, *a: Any) -> None:
        for label in list(self.sockets):
            await self.close_ws(label)
        assert self.session is not None
        await self.session.close()

    async def open_ws(self, label: str, client_id: str | None = None, feature_flags: dict[str, Any] | None = None) -> Any:
        assert self.session is not None
        path = "/ws" + (f"?clientId={client_id}" if client_id is not None else "")
        self._add({"kind": "ws_open", "ws": label, "t_ms": now_ms(), "rel_ms": self.rel(), "url": path})
        ws = await self.session.ws_connect(BASE + path, max_msg_size=0)
        if feature_flags is not None:
            msg = {"type": "feature_flags", "data": feature_flags}
            await ws.send_json(msg)
            self._add({"kind": "ws_send", "ws": label, "t_ms": now_ms(), "rel_ms": self.rel(), "msg": msg})
        self.sockets[label] = (ws, asyncio.create_task(self._reader(label, ws)))
        return ws

    async def close_ws(self, label: str) -> None:
        ws, task = self.sockets.pop(label)
        await ws.close()
        try:
            await asyncio.wait_for(task, 5)
        except Exception:
            task.cancel()
        self._add({"kind": "ws_closed_by_client", "ws": label, "t_ms": now_ms(), "rel_ms": self.rel()})

    async def _reader(self, label: str, ws: Any) -> None:
        async for m in ws:
            t, r = now_ms(), self.rel()
            if m.type == aiohttp.WSMsgType.TEXT:
                try:
                    d = json.loads(m.data)
                except ValueError:
                    d = {"_raw": m.data}
                self._add({"kind": "ws_recv", "ws": label, "t_ms": t, "rel_ms": r, "frame": "text", "msg": d})
            elif m.type == aiohttp.WSMsgType.BINARY:
                self._add({"kind": "ws_recv", "ws": label, "t_ms": t, "rel_ms": r, "frame": "binary", **describe_binary(m.data)})
        self._add({"kind": "ws_closed", "ws": label, "t_ms": now_ms(), "rel_ms": self.rel(), "close_code": ws.close_code})

    def wait_for(self, pred: Any, timeout: float = 120, include_past: bool = False) -> Any:
        fut = asyncio.get_event_loop().create_future()
        past = next((ev for ev in self.events if pred(ev)), None) if include_past else None
        if past is not None:
            fut.set_result(past)
        else:
            self.waiters.append((pred, fut))
        return asyncio.wait_for(fut, timeout)

    def wait_msg(self, mtype: str, prompt_id: str | None = None, ws: str | None = None, timeout: float = 120,
                 include_past: bool = False, extra: Any = None) -> Any:
        def pred(ev: dict[str, Any]) -> bool:
            if ev["kind"] != "ws_recv" or ev.get("frame") != "text" or (ws is not None and ev["ws"] != ws):
                return False
            m = ev["msg"]
            if m.get("type") != mtype:
                return False
            if prompt_id is not None and (m.get("data") or {}).get("prompt_id") != prompt_id:
                return False
            return not extra or bool(extra(m))
        return self.wait_for(pred, timeout, include_past)

    def wait_end(self, pid: str, timeout: float = 120) -> Any:
        """executing {node: null} for ``pid``: the prompt is over and in /history."""
        return self.wait_msg("executing", timeout=timeout, include_past=True,
                             extra=lambda m: m["data"]["node"] is None and m["data"].get("prompt_id") == pid)

    async def http(self, method: str, path: str, json_body: Any = None, data: Any = None,
                   data_desc: Any = None, label: str | None = None) -> tuple[int, Any]:
        assert self.session is not None
        t_send, r_send = now_ms(), self.rel()
        kw: dict[str, Any] = {}
        if json_body is not None:
            kw["json"] = json_body
        if data is not None:
            kw["data"] = data
        async with self.session.request(method, BASE + path, **kw) as resp:
            raw = await resp.read()
            t, r = now_ms(), self.rel()
            ctype = resp.headers.get("Content-Type", "")
            body: Any
            if "json" in ctype:
                try:
                    body, kind = json.loads(raw), "json"
                except ValueError:
                    body, kind = raw.decode("utf-8", "replace"), "text"
            elif ctype.startswith("text/"):
                body, kind = raw.decode("utf-8", "replace"), "text"
            else:
                body, kind = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "head_hex": raw[:16].hex()}, "binary"
            hdrs = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "content-length")}
            self._add({"kind": "http", "label": label, "method": method, "path": path,
                       "request_json": json_body, "request_form": data_desc,
                       "t_send_ms": t_send, "rel_send_ms": r_send, "t_ms": t, "rel_ms": r,
                       "status": resp.status, "response_headers": hdrs, "response_kind": kind, "response": body})
            return resp.status, body

    def dump(self) -> None:
        out = {"scenario": self.scenario, "description": self.description, "server": self.server,
               "recorder": "scripts/record_traces.py",
               "time_fields": "t_ms = client wall clock (epoch ms) when the frame/response was received; "
                              "rel_ms = ms since trace start (monotonic); t_send_ms = when the HTTP request was sent",
               "trace_start_epoch_ms": self.t0_epoch_ms, "notes": self.notes, "events": self.events}
        os.makedirs(OUT, exist_ok=True)
        with open(f"{OUT}/{self.scenario}.json", "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


def describe_binary(b: bytes) -> dict[str, Any]:
    d: dict[str, Any] = {"len": len(b), "header_hex": b[:8].hex()}
    if len(b) < 8:
        return d
    ev = struct.unpack(">I", b[:4])[0]
    d["event_type"] = ev
    if ev == 1:
        d["image_format"] = {1: "JPEG", 2: "PNG"}.get(struct.unpack(">I", b[4:8])[0])
        img = b[8:]
    elif ev == 4:
        n = struct.unpack(">I", b[4:8])[0]
        d["metadata_len"] = n
        d["metadata"] = json.loads(b[8:8 + n])
        img = b[8 + n:]
    else:
        return d
    d["image_bytes"], d["image_magic_hex"] = len(img), img[:8].hex()
    return d


# ---------------------------------------------------------------- prompts

def src_png() -> bytes:
    im = Image.new("RGB", (320, 240))
    px = im.load()
    for y in range(240):
        for x in range(320):
            px[x, y] = (x * 255 // 319, y * 255 // 239, 128)
    draw = ImageDraw.Draw(im)
    draw.rectangle([40, 40, 140, 120], fill=(255, 255, 255))
    draw.ellipse([180, 100, 290, 210], fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def success_prompt(seed: int = 42, prefix: str = "comfytest/success") -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "comfytest/comfytest_src.png"}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 256, "height": 192, "crop": "disabled"}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 3, "sigma": 1.5}},
        "4": {"class_type": "ImageAddNoise", "inputs": {"image": ["3", 0], "seed": seed, "strength": 0.25}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": prefix}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }


def slow_prompt(n_blur: int = 4, size: int = 2048, color: int = 123456) -> dict[str, Any]:
    p: dict[str, Any] = {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}}}
    prev = "1"
    for i in range(n_blur):
        nid = str(10 + i)
        p[nid] = {"class_type": "ImageBlur", "inputs": {"image": [prev, 0], "blur_radius": 31, "sigma": 10.0}}
        prev = nid
    p["90"] = {"class_type": "ImageScale", "inputs": {"image": [prev, 0], "upscale_method": "area", "width": 256, "height": 256, "crop": "disabled"}}
    p["99"] = {"class_type": "PreviewImage", "inputs": {"images": ["90", 0]}}
    return p


def tiny_prompt(color: int) -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


async def upload(R: Recorder) -> None:
    png = src_png()
    fd = aiohttp.FormData()
    fd.add_field("image", png, filename="comfytest_src.png", content_type="image/png")
    fd.add_field("subfolder", "comfytest")
    fd.add_field("type", "input")
    fd.add_field("overwrite", "true")
    desc = {"multipart": {"image": f"<file comfytest_src.png, {len(png)} bytes, sha256 {hashlib.sha256(png).hexdigest()}>",
                          "subfolder": "comfytest", "type": "input", "overwrite": "true"}}
    await R.http("POST", "/upload/image", data=fd, data_desc=desc)


async def queue(R: Recorder, prompt: dict[str, Any], cid: str, label: str | None = None, **extra: Any) -> str:
    pid = new_id()
    st, body = await R.http("POST", "/prompt", {"prompt": prompt, "client_id": cid, "prompt_id": pid, **extra}, label=label)
    assert st == 200 and body["prompt_id"] == pid, body
    return pid


async def view_outputs(R: Recorder, entry: dict[str, Any]) -> None:
    for nid, out in entry.get("outputs", {}).items():
        for img in out.get("images", []):
            q = f"/view?filename={img['filename']}&subfolder={img['subfolder']}&type={img['type']}"
            await R.http("GET", q, label=f"view node {nid}")


async def opened(R: Recorder, label: str, cid: str | None) -> None:
    await R.open_ws(label, cid, feature_flags={"supports_preview_metadata": True})
    await R.wait_msg("status", ws=label, include_past=True)


# ---------------------------------------------------------------- scenarios

async def scen_success() -> None:
    cid = new_id()
    async with Recorder("success", "Uploaded image -> ImageScale -> ImageBlur -> ImageAddNoise(seed 42) -> ImageInvert -> SaveImage + PreviewImage on a fresh server, with a client-chosen UUID prompt_id; /history and /api/jobs/{id} after executing(node=null), then /view of each output.") as R:
        await opened(R, "A", cid)
        await upload(R)
        pid = await queue(R, success_prompt(), cid)
        await R.wait_end(pid)
        st, h = await R.http("GET", f"/history/{pid}", label="history after executing(node=null)")
        await R.http("GET", f"/api/jobs/{pid}", label="the job of a finished prompt")
        await view_outputs(R, h[pid])
        await asyncio.sleep(0.3)
        R.dump()
    async with Recorder("cached", "The same prompt queued again right after success.json (same server, same client): what the server's default cache serves.") as R:
        await opened(R, "A", cid)
        pid = await queue(R, success_prompt(), cid)
        await R.wait_end(pid)
        st, h = await R.http("GET", f"/history/{pid}")
        await view_outputs(R, h[pid])
        await asyncio.sleep(0.3)
        R.dump()


async def scen_validation() -> None:
    cid = new_id()
    base = success_prompt(prefix="comfytest/validation")
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    p = copy.deepcopy(base)
    p["5"]["inputs"]["image"] = ["1", 1]
    cases.append(("wrong link type (MASK output into IMAGE input)", p, {}))
    p = copy.deepcopy(base)
    del p["3"]["inputs"]["blur_radius"]
    cases.append(("missing required input", p, {}))
    p = copy.deepcopy(base)
    p["5"]["class_type"] = "NoSuchNode"
    cases.append(("unknown class_type", p, {}))
    p = copy.deepcopy(base)
    p["3"]["inputs"]["blur_radius"] = 100
    cases.append(("value above max", p, {}))
    p = copy.deepcopy(base)
    p["2"]["inputs"]["upscale_method"] = "foo"
    cases.append(("value not in combo list", p, {}))
    p = {k: v for k, v in copy.deepcopy(base).items() if k not in ("6", "7")}
    cases.append(("no output node", p, {}))
    cases.append(("client-chosen prompt_id that is not a UUID (comfytest before 0.26 support)", base, {"prompt_id": "comfytest-0123456789abcdef"}))
    cases.append(("client-chosen prompt_id: an uppercase UUID", base, {"prompt_id": new_id().upper()}))
    async with Recorder("validation_errors", "POST /prompt bodies that fail validation, each a separate request, and two client-chosen prompt ids the server refuses (not canonical lowercase UUIDs).") as R:
        await opened(R, "A", cid)
        await upload(R)
        for label, prompt, extra in cases:
            body = {"prompt": prompt, "client_id": cid, "prompt_id": new_id(), **extra}
            await R.http("POST", "/prompt", body, label=label)
        await asyncio.sleep(0.5)
        R.dump()


async def scen_error() -> None:
    cid = new_id()
    p = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 96, "batch_size": 1, "color": 77}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}},
        "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}},
        "5": {"class_type": "ImageBlend", "inputs": {"image1": ["3", 0], "image2": ["4", 0], "blend_factor": 0.5, "blend_mode": "normal"}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "comfytest/exec_error"}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    async with Recorder("execution_error", "Passes validation, fails while running: ImageBlend of a batch of 2 with a batch of 3. Node 7 is a healthy second output. Then /history and /api/jobs/{id} of the failed prompt.") as R:
        await opened(R, "A", cid)
        pid = await queue(R, p, cid)
        await R.wait_end(pid)
        await R.http("GET", f"/history/{pid}", label="history of the failed prompt")
        await R.http("GET", f"/api/jobs/{pid}", label="the job of the failed prompt")
        await asyncio.sleep(0.3)
        R.dump()


async def scen_interrupt() -> None:
    cid = new_id()
    async with Recorder("interrupted", "Slow chain (EmptyImage 2048 -> 4x ImageBlur r=31), a second prompt queued behind it. While the 2nd blur runs: POST /interrupt {prompt_id: running}. The queued prompt then runs normally.") as R:
        await opened(R, "A", cid)
        p1 = await queue(R, slow_prompt(color=111), cid, label="slow prompt")
        p2 = await queue(R, slow_prompt(n_blur=1, size=512, color=222), cid, label="second prompt queued behind it")
        await R.wait_msg("executing", p1, extra=lambda m: m["data"]["node"] == "11")
        await R.http("POST", "/interrupt", {"prompt_id": p1}, label="interrupt naming the running prompt")
        await R.wait_end(p1)
        await R.http("GET", f"/history/{p1}", label="history of the interrupted prompt")
        await R.http("GET", f"/api/jobs/{p1}", label="the job of the interrupted prompt")
        await R.wait_end(p2)
        await R.http("GET", f"/history/{p2}", label="history of the prompt that ran after the interrupt")
        await asyncio.sleep(0.3)
        R.dump()


async def scen_reconnect() -> None:
    cid = new_id()
    async with Recorder("ws_reconnect", "A client reconnects (same clientId) while its slow prompt runs: the new socket gets status and an 'executing' for the current node, then the rest of the run. Between the two sockets the client asks /api/jobs/{id} and /queue where its prompt is, as comfytest resyncs.") as R:
        await opened(R, "old", cid)
        pid = await queue(R, slow_prompt(n_blur=3, size=1536, color=31), cid, label="slow prompt")
        await R.wait_msg("executing", pid, ws="old", extra=lambda m: m["data"]["node"] == "11")
        await R.close_ws("old")
        await R.http("GET", f"/api/jobs/{pid}", label="where is the prompt (jobs API) while no socket is open")
        await R.http("GET", "/queue", label="where is the prompt (queue) while no socket is open")
        await opened(R, "new", cid)
        await R.wait_end(pid)
        await R.http("GET", f"/history/{pid}", label="history after the reconnect")
        await asyncio.sleep(0.3)
        R.dump()


async def scen_jobs() -> None:
    cid = new_id()
    unknown = new_id()
    async with Recorder("jobs_api", "The jobs API beside the old routes: GET /api/jobs/{id} of an unknown, a pending, a running and a finished prompt; POST /api/jobs/{id}/cancel of a pending prompt (dequeued), of the running one (interrupted) and of an unknown id (a no-op); GET /api/jobs?limit=1 as a probe.") as R:
        await opened(R, "A", cid)
        await R.http("GET", "/api/jobs?limit=1", label="probe: the jobs API exists")
        await R.http("GET", f"/api/jobs/{unknown}", label="unknown id")
        run = await queue(R, slow_prompt(n_blur=3, size=1536, color=41), cid, label="slow prompt (will run)")
        pend = await queue(R, tiny_prompt(42), cid, label="pending prompt (will be cancelled)")
        await R.wait_msg("executing", run, extra=lambda m: m["data"]["node"] == "10")
        await R.http("GET", f"/api/jobs/{run}", label="running job")
        await R.http("GET", f"/api/jobs/{pend}", label="pending job")
        await R.http("POST", f"/api/jobs/{pend}/cancel", label="cancel the pending job")
        await R.http("GET", f"/api/jobs/{pend}", label="the cancelled pending job")
        await R.http("POST", f"/api/jobs/{run}/cancel", label="cancel the running job")
        await R.wait_end(run)
        await R.http("GET", f"/api/jobs/{run}", label="the cancelled running job")
        await R.http("POST", f"/api/jobs/{unknown}/cancel", label="cancel an unknown id")
        await R.http("GET", "/queue", label="queue after the cancels")
        await asyncio.sleep(0.3)
        R.dump()


SCENARIOS = {"success": scen_success, "validation": scen_validation, "error": scen_error,
             "interrupt": scen_interrupt, "reconnect": scen_reconnect, "jobs": scen_jobs}

if __name__ == "__main__":
    if not BASE:
        sys.exit("set COMFY_URL to the server's URL, e.g. http://127.0.0.1:8188")
    for name in sys.argv[1:]:
        started = time.time()
        asyncio.run(SCENARIOS[name]())
        print(name, "done", round(time.time() - started, 2), "s", flush=True)
