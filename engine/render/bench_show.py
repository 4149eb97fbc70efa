"""`synesthesia bench --show`: the real show as an operator runs it, measured from outside.

Starts `synesthesia run` in a subprocess (the demo source `synth:tour:music`, the bench's bundle and size, a
window where there is a display, else headless) with the web console on a free loopback port and, with
`--ndi`, NDI out. It then connects what the console page connects: a WebSocket taking the status pushes and
the preview polled at the page's rate. Every 5 s it reads the render loop's own figures (fps and p99 frame
time over its last 300 frames, `status.render` of the query) from the pushes. The row: fps (median of the
windows), p99 (median and worst window), the sink, preview frames fetched and status pushes received (`console`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.deps import require

WINDOW_S = 5.0
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def show_command(
    port: int, config: Path, seconds: float, bundle: str | None, ndi: bool, backend: str = "auto"
) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "run", "--config", str(config), "--source", "synth:tour:music"]
    cmd += ["--web", f"127.0.0.1:{port}", "--osc-in", "0", "--duration", f"{seconds:g}", "--backend", backend]
    cmd += ["--zmq-pub", "tcp://127.0.0.1:*", "--zmq-ctl", "tcp://127.0.0.1:*"]
    if bundle:
        cmd += ["--bundle", bundle]
    if ndi:
        cmd += ["--ndi", "Synesthesia bench"]
    return cmd


def bench_show(
    bundle: str | None,
    seconds: float = 30.0,
    width: int = 1280,
    height: int = 720,
    fps: float = 60.0,
    ndi: bool = False,
    backend: str = "auto",
) -> dict[str, Any]:
    """The row described in the module docstring; `error` (with the show's last lines) when it fails."""
    require("aiohttp", "the web console")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="syn-bench-show-") as tmp:
        config = Path(tmp) / "show.toml"
        config.write_text(f"[render]\nwidth = {width}\nheight = {height}\nfps = {fps:g}\n", encoding="utf-8")
        log_path = Path(tmp) / "show.log"
        # the show outlives the measurement: start-up and warm-up come first, then `seconds` of windows
        cmd = show_command(port, config, seconds + START_TIMEOUT_S, bundle, ndi, backend)
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ))
            try:
                row = asyncio.run(_measure(proc, port, seconds))
            except (RuntimeError, OSError, TimeoutError) as exc:
                row = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        text = log_path.read_text(encoding="utf-8", errors="replace")
    if "error" in row:
        row["show_log"] = text.splitlines()[-12:]
    row.update({"size": f"{width}x{height}", "target_fps": fps, "ndi": ndi})
    row["ndi_line"] = next((ln for ln in text.splitlines() if "NDI" in ln), None) if ndi else None
    return row


async def _measure(proc: subprocess.Popen, port: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        status = await _wait_started(session, base, proc)
        latest: dict[str, Any] = {"status": status}
        counts = {"pushes": 0, "previews": 0, "preview_bytes": 0}
        period = 1.0 / max(float(status.get("preview_fps") or 0) or 1.0, 0.1)

        async def pushes(ws: Any) -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "status" in data:
                        latest["status"] = data["status"]
                        counts["pushes"] += 1

        async def previews() -> None:
            while True:
                async with session.get(f"{base}/preview.jpg") as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        counts["previews"] += 1
                        counts["preview_bytes"] += len(body)
                await asyncio.sleep(period)

        async with session.ws_connect(f"{base}/ws") as ws:
            tasks = [asyncio.ensure_future(pushes(ws)), asyncio.ensure_future(previews())]
            try:
                await asyncio.sleep(3.0)  # the console's client settles, the ring fills with this load
                windows: list[dict[str, Any]] = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    await asyncio.sleep(min(WINDOW_S, max(0.5, end - time.monotonic())))
                    if proc.poll() is not None:
                        raise RuntimeError(f"the show ended (exit {proc.returncode}) while measured")
                    windows.append(dict(latest["status"]["now"].get("status") or {}))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    fps = [float(w.get("fps") or 0.0) for w in windows]
    p99 = [float(w.get("frame_p99_ms") or 0.0) for w in windows]
    last = windows[-1] if windows else {}
    return {
        "fps": round(float(np.median(fps)), 2) if fps else 0.0,
        "frame_ms_p99": round(float(np.median(p99)), 2) if p99 else 0.0,
        "frame_ms_p99_worst": round(max(p99), 2) if p99 else 0.0,
        "windows": len(windows),
        "seconds": seconds,
        "sink": last.get("sink"),
        "backend": last.get("backend"),
        "stride": last.get("stride"),
        "console": {"pushes": counts["pushes"], "previews": counts["previews"], "preview_fps": round(1.0 / period, 2)},
    }


async def _wait_started(session: Any, base: str, proc: subprocess.Popen) -> dict[str, Any]:
    """The console's status once the show renders frames and the engine has started (its first push)."""
    import aiohttp

    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the show exited ({proc.returncode}) before it started")
        try:
            async with session.get(f"{base}/api/status") as resp:
                if resp.status == 200:
                    status = await resp.json()
                    render = (status.get("now") or {}).get("status") or {}
                    if render.get("frames", 0) > 0 and status.get("uptime_s") is not None:
                        return status
        except (aiohttp.ClientError, TimeoutError):
            pass  # not listening yet
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the show's web console did not report frames within {START_TIMEOUT_S:g} s")
