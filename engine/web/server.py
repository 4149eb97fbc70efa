"""The web console's HTTP side (`synesthesia run --web [HOST:]PORT`, `[web]`), served by aiohttp (extra `web`).

    GET  /                 the page (engine/web/static/index.html: no CDN, no build step)
    GET  /ws               WebSocket: the live status pushed `web.status_hz` times a second; accepts
                           {"cmd": "control", "name", "args"} | {"cmd": "preset", "name"} | {"cmd": "bundle", "path"}
    GET  /api/status       the same status once, as JSON
    POST /api/control      {"name", "args"} -> the ControlSurface (validated and counted like OSC/ZeroMQ control)
    POST /api/preset       {"name"} -> live keys applied between two frames, the rest reported as needing a restart
    POST /api/bundle       {"path"} -> loaded and swapped in between two frames; on failure the old one keeps running
    GET  /preview.jpg      the newest preview frame (204 before the first)

The server runs its own asyncio loop on a `web` OwnedThread; it never waits on the render thread (changes are
queued for the main thread's tick, see engine/web/live.py). Bound to 127.0.0.1 by default. With `web.token`
set (required off loopback, engine/config.py), every request must carry it: `?token=` (which also sets a
cookie), the `X-Synesthesia-Token` header or that cookie; without it the answer is 401 and nothing is applied.
A POST or WebSocket from a page of another origin is refused (403), and so is, without a token, any Host
that is not a loopback name (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.config import WebSettings
from engine.deps import require
from engine.io.control import ControlSurface, Outcome
from engine.threads import OwnedThread

if TYPE_CHECKING:
    from engine.app import Engine
    from engine.render.show import QueryState
    from engine.web.live import LiveSession
    from engine.web.logring import LogRing

log = logging.getLogger("synesthesia.web")

STATIC = Path(__file__).parent / "static"
COOKIE = "syn_token"
HEADER = "X-Synesthesia-Token"
START_TIMEOUT_S = 10.0
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class WebConsole:
    """Start with `start()` (returns once listening, OSError when the port cannot be bound), `stop()`."""

    def __init__(
        self,
        settings: WebSettings,
        engine: Engine,
        query: QueryState,
        surface: ControlSurface,
        live: LiveSession,
        logs: LogRing | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.query = query
        self.surface = surface
        self.live = live
        self.logs = logs
        self.port = settings.port
        self.clients = 0
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = OwnedThread(self._serve, "web", wake=self._wake)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> WebConsole:
        require("aiohttp", "the web console")
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise OSError(f"the web console did not start within {START_TIMEOUT_S:g} s")
        if self._error is not None:
            self._thread.stop(2.0)
            raise self._error
        return self

    def stop(self) -> bool:
        ok = self._thread.stop(5.0)
        self.live.stop()
        return ok

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: None)

    def describe(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        guard = "token required" if self.settings.token else "this machine only (no token)"
        return f"web console on http://{shown}:{self.port}/ ({guard})"

    def status(self) -> dict[str, Any]:
        return {
            "kind": "web",
            "address": f"{self.settings.host}:{self.port}",
            "clients": self.clients,
            "refused": self.refused,
            "serving": self._thread.alive,
        }

    # -- the server thread ---------------------------------------------------------------------------------
    def _serve(self, stop: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(stop))
        finally:
            loop.close()

    async def _main(self, stop: threading.Event) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(request: Any, handler: Any) -> Any:
            return await self._guardfn(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/api/status", self._status)
        app.router.add_post("/api/control", self._control)
        app.router.add_post("/api/preset", self._preset)
        app.router.add_post("/api/bundle", self._bundle)
        app.router.add_get("/preview.jpg", self._preview)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port, reuse_address=True)
            await site.start()
            sockets = site._server.sockets if site._server is not None else []  # the bound port (0: any)
            if sockets:
                self.port = sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            await runner.cleanup()

    # -- access ------------------------------------------------------------------------------------------------
    def _authorised(self, request: Any) -> bool:
        token = self.settings.token
        if token is None:
            return True
        given = request.query.get("token") or request.headers.get(HEADER) or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _forbidden(self, request: Any) -> str | None:
        """Why a request from another site is refused, else None. A page elsewhere can make the visitor's
        browser POST here or open the WebSocket (its Origin then differs from our Host); without a token the
        console also answers only to loopback names, so a DNS-rebound name cannot reach it."""
        origin = request.headers.get("Origin")
        acts = request.method != "GET" or request.path == "/ws"
        if origin and acts and urlsplit(origin).netloc.lower() != request.host.lower():
            return f"cross-origin request from {origin} refused"
        if self.settings.token is None:
            host = urlsplit(f"//{request.host}").hostname or ""
            if host not in LOOPBACK_NAMES:
                return f"host {request.host!r} refused: without a token the console answers to this machine only"
        return None

    async def _guardfn(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            self.refused += 1
            return web.json_response({"ok": False, "error": "a valid token is required"}, status=401)
        reason = self._forbidden(request)
        if reason is not None:
            self.refused += 1
            return web.json_response({"ok": False, "error": reason}, status=403)
        response = await handler(request)
        if self.settings.token and request.query.get("token") and hasattr(response, "set_cookie"):
            response.set_cookie(COOKIE, self.settings.token, httponly=True, samesite="Strict")
        return response

    # -- content -----------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What the page shows: emotion, render and engine status, controls, presets, bundle, log."""
        engine = self.engine
        status = engine.last_status or {}
        state = engine.latest()
        out: dict[str, Any] = {
            "now": self.query(),
            "fps": status.get("fps"),
            "latency_ms": status.get("latency_ms"),
            "uptime_s": status.get("uptime_s"),
            "backend": engine.backend_message,
            "input_db": round(float(state.rms_db), 1) if state is not None else None,
            "source": status.get("source"),
            "notices": (status.get("notices") or [])[-10:] + list(self.live.notices),
            "controls": engine.controls.as_dict(),
            "classes": list(engine.bundle.classes),
            "presets": [p.name for p in self.live.presets()],
            "preset": self.live.preset,
            "bundle": self.live.swap_status(),
            "log": self.logs.lines()[-50:] if self.logs is not None else [],
            "preview": self.live.preview is not None,
            "preview_fps": self.settings.preview_fps,
        }
        return out

    async def _index(self, request: Any) -> Any:
        from aiohttp import web

        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _status(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.snapshot(), dumps=_dumps)

    async def _preview(self, request: Any) -> Any:
        from aiohttp import web

        jpeg = self.live.preview.latest()[0] if self.live.preview is not None else None
        if jpeg is None:
            return web.Response(status=204)
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _json_body(self, request: Any) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return {}
        return body if isinstance(body, dict) else {}

    async def _control(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.command({"cmd": "control", **await self._json_body(request)}), dumps=_dumps)

    async def _preset(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(await self.acommand({"cmd": "preset", **await self._json_body(request)}), dumps=_dumps)

    async def _bundle(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.command({"cmd": "bundle", **await self._json_body(request)}), dumps=_dumps)

    async def _ws(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self.clients += 1
        period = 1.0 / self.settings.status_hz

        async def push() -> None:
            while not ws.closed:
                await ws.send_str(_dumps({"status": self.snapshot()}))
                await asyncio.sleep(period)

        pusher = asyncio.ensure_future(push())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    cmd = json.loads(msg.data)
                except ValueError:
                    cmd = None
                reply = await self.acommand(cmd if isinstance(cmd, dict) else {})
                await ws.send_str(_dumps({"reply": reply}))
        finally:
            pusher.cancel()
            self.clients -= 1
        return ws

    # -- commands --------------------------------------------------------------------------------------------
    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A control or a bundle request (never blocks); presets go through `acommand`."""
        from engine.errors import SynesthesiaError

        kind = cmd.get("cmd")
        if kind == "control":
            name, args = cmd.get("name"), cmd.get("args", [])
            if not isinstance(name, str) or not isinstance(args, list):
                self.surface.count(Outcome.MALFORMED, "web")
                return {"ok": False, "error": "a control needs a name and a list of args"}
            outcome, err = self.surface.apply(name, args, source="web")
            return {"ok": outcome in (Outcome.APPLIED, Outcome.QUERY), "outcome": outcome.value, "error": err}
        if kind == "bundle":
            path = cmd.get("path")
            if not isinstance(path, str) or not path.strip():
                return {"ok": False, "error": "a bundle swap needs a path"}
            try:
                return {"ok": True, "bundle": self.live.request_bundle(path.strip())}
            except SynesthesiaError as exc:
                return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown command {kind!r} (control, preset, bundle)"}

    async def acommand(self, cmd: dict[str, Any]) -> dict[str, Any]:
        from engine.errors import SynesthesiaError

        if cmd.get("cmd") != "preset":
            return self.command(cmd)
        name = cmd.get("name")
        if not isinstance(name, str):
            return {"ok": False, "error": "a preset needs a name"}
        try:
            future = self.live.apply_preset(name)
        except KeyError:
            return {"ok": False, "error": f"no preset {name!r}"}
        except SynesthesiaError as exc:
            return {"ok": False, "error": str(exc)}
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=10.0)
        except TimeoutError:
            return {"ok": False, "error": "the show did not take the preset within 10 s (is it rendering?)"}
        except Exception as exc:  # what applying it raised on the main thread, reported to the page
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "preset": result.as_dict()}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)
