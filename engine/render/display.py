"""Where frames go: a pygame window, or a headless sink (ZeroMQ `frame` topic and/or a folder).

The window: windowed (resizable, clock-paced) or fullscreen on a chosen display with a hidden cursor and
vsync where the driver gives it (SCALED renderer; checked by measuring the flips), otherwise a fullscreen
surface at the display's size paced by a perf_counter clock (`Pacer`).
Keys: Esc or q quits, h toggles the HUD.

The headless sink never opens a window (it needs no video driver at all): every `every`-th frame is encoded
in memory by Pillow from a numpy view of the surface (JPEG or PNG, `zmq.frame_format`; pygame's
`image.save` into a BytesIO leaks about one encoded image per call, 2.6 MB/s when publishing) and handed
to `frame_out` with a header ({"frame", "width", "height", "format"}), and/or written to
`render.frames_dir` as PNG.

pygame is imported on first use (engine.deps.require), never at import time.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import Framebuffer, RenderSettings
from engine.deps import require
from engine.render.frames import pygame_module

log = logging.getLogger("synesthesia.render")

# (header fields, encoded image) -> None; must not block. The app routes it to the sender thread, which
# sends the ZeroMQ multipart [b"frame", JSON {"v", "t", "seq", **header}, image].
FrameOut = Callable[[dict[str, Any], bytes], None]


class UiEvent(StrEnum):
    QUIT = "quit"
    TOGGLE_HUD = "toggle_hud"
    RESIZED = "resized"


class PacingMode(StrEnum):
    VSYNC = "vsync"  # flip blocks until the display's refresh
    CLOCK = "clock"  # our own perf_counter schedule


def display_unavailable(env: Mapping[str, str] | None = None) -> str | None:
    """Why no window can open here (None if one can): no X11/Wayland display and no SDL driver chosen."""
    env = os.environ if env is None else env
    if env.get("SDL_VIDEODRIVER"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return None
    return "no display (DISPLAY, WAYLAND_DISPLAY and SDL_VIDEODRIVER are unset)"


class Pacer:
    """Absolute-schedule frame pacing: sleep most of the wait, spin the last ~1 ms (perf_counter).

    A frame that runs late moves the schedule forward instead of bursting to catch up.
    """

    SPIN_S = 0.001

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / float(fps)
        self._next: float | None = None

    def wait(self) -> float:
        now = time.perf_counter()
        if self._next is None:
            self._next = now + self.period
            return now
        remaining = self._next - now
        if remaining > self.SPIN_S:
            time.sleep(remaining - self.SPIN_S)
        while time.perf_counter() < self._next:
            pass
        now = time.perf_counter()
        self._next += self.period
        if now - self._next > self.period:  # more than a frame behind: start a fresh schedule
            self._next = now + self.period
        return now

    def reset(self) -> None:
        self._next = None


def framebuffer_hint(mode: Framebuffer, env: Mapping[str, str]) -> str | None:
    """The SDL_FRAMEBUFFER_ACCELERATION value for `mode` (None: leave SDL's choice). An operator's own
    SDL_FRAMEBUFFER_ACCELERATION in the environment always wins."""
    if "SDL_FRAMEBUFFER_ACCELERATION" in env:
        return None
    if mode is Framebuffer.SOFTWARE:
        return "0"
    if mode is Framebuffer.ACCELERATED:
        return "1"
    x11 = env.get("SDL_VIDEODRIVER", "x11" if env.get("DISPLAY") else "") == "x11"
    return "0" if x11 else None


class WindowSink:
    """A pygame window. `open()` creates it; `present(canvas, overlay)` shows a frame."""

    kind = "window"
    PROBE_FRAMES = 30

    def __init__(self, settings: RenderSettings, kiosk: bool = False, caption: str = "Synesthesia") -> None:
        self.settings = settings
        self.kiosk = kiosk
        self.caption = caption
        self.fullscreen = settings.fullscreen or kiosk
        self.screen: Any = None
        self.pacing = PacingMode.CLOCK
        self.pacer = Pacer(settings.fps)
        self._cap = Pacer(settings.fps / 0.9)
        self._probe: list[float] = []
        self._last_flip: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.screen.get_size() if self.screen is not None else (self.settings.width, self.settings.height)

    def open(self) -> None:
        pg = pygame_module()
        os.environ.setdefault("SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS", "0")  # a second screen keeps the show
        hint = framebuffer_hint(self.settings.framebuffer, os.environ)
        if hint is not None:
            os.environ["SDL_FRAMEBUFFER_ACCELERATION"] = hint
        pg.display.init()
        n = pg.display.get_num_displays()
        index = self.settings.display
        if index >= n:
            log.warning("display %d requested but only %d present; using display 0", index, n)
            index = 0
        size = (self.settings.width, self.settings.height)
        self.screen = None
        self.pacing = PacingMode.CLOCK
        if self.fullscreen and self.settings.vsync and self._refresh_allows_vsync(pg, index):
            # vsync needs the SDL renderer (SCALED): the canvas keeps the configured size and the GPU scales
            # it to the display. Without a hardware renderer pygame warns and would scale in software: then a
            # plain fullscreen surface at the display's own size is better.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    self.screen = pg.display.set_mode(size, pg.FULLSCREEN | pg.SCALED, display=index, vsync=1)
                    self.pacing = PacingMode.VSYNC
                except pg.error as exc:
                    log.info("vsync not available (%s); pacing with the clock", exc)
            if self.screen is not None and any("renderer" in str(w.message) for w in caught):
                log.info("no hardware renderer for vsync; pacing with the clock")
                pg.display.quit()
                pg.display.init()
                self.screen = None
                self.pacing = PacingMode.CLOCK
        if self.screen is None and self.fullscreen:
            desktop = pg.display.get_desktop_sizes()
            full = desktop[index] if index < len(desktop) else size
            self.screen = pg.display.set_mode(full, pg.FULLSCREEN, display=index)
        elif self.screen is None:
            # windowed: a plain resizable window, paced by the clock (a compositor does not tear anyway)
            self.screen = pg.display.set_mode(size, pg.RESIZABLE, display=index)
        pg.display.set_caption(self.caption)
        if self.fullscreen:
            pg.mouse.set_visible(False)
        log.info(
            "window %dx%d on display %d (%s), pacing %s",
            *self.screen.get_size(),
            index,
            "fullscreen" if self.fullscreen else "windowed",
            self.pacing.value,
        )

    def _refresh_allows_vsync(self, pg: Any, index: int) -> bool:
        """vsync paces at the refresh rate; a target rate well below it is paced by the clock instead."""
        try:
            rates = pg.display.get_desktop_refresh_rates()
        except (AttributeError, pg.error):
            return True
        rate = rates[index] if index < len(rates) else 0
        return not rate or self.settings.fps >= 0.9 * rate

    def events(self) -> list[UiEvent]:
        pg = pygame_module()
        out: list[UiEvent] = []
        for ev in pg.event.get():
            if ev.type == pg.QUIT:
                out.append(UiEvent.QUIT)
            elif ev.type == pg.KEYDOWN:
                if ev.key in (pg.K_ESCAPE, pg.K_q):
                    out.append(UiEvent.QUIT)
                elif ev.key == pg.K_h:
                    out.append(UiEvent.TOGGLE_HUD)
            elif ev.type in (pg.VIDEORESIZE, pg.WINDOWSIZECHANGED):
                self.screen = pg.display.get_surface() or self.screen  # the resized display surface
                if UiEvent.RESIZED not in out:
                    out.append(UiEvent.RESIZED)
        return out

    def present(self, canvas: Any, overlay: Callable[[Any], None] | None = None) -> None:
        pg = pygame_module()
        if canvas.get_size() == self.screen.get_size():
            self.screen.blit(canvas, (0, 0))
        else:  # a resize arrived between painting and presenting
            pg.transform.smoothscale(canvas, self.screen.get_size(), self.screen)
        if overlay is not None:
            overlay(self.screen)
        pg.display.flip()
        self._check_vsync()

    def _check_vsync(self) -> None:
        """Keep VSYNC pacing only if flips really wait for a refresh.

        While vsync paces, a clock pacer at 1/0.9 of the target rate runs too, as a cap: with real vsync it
        never sleeps; if the driver ignored vsync, the measured intervals come out short and the clock
        takes over at the exact rate.
        """
        if self.pacing is not PacingMode.VSYNC or len(self._probe) >= self.PROBE_FRAMES:
            return
        now = time.perf_counter()
        if self._last_flip is not None:
            self._probe.append(now - self._last_flip)
        self._last_flip = now
        if len(self._probe) == self.PROBE_FRAMES:
            median = sorted(self._probe)[len(self._probe) // 2]
            if median < 0.95 * self.pacer.period:
                self.pacing = PacingMode.CLOCK
                log.info("vsync is not pacing flips (median %.1f ms); pacing with the clock", median * 1000)

    def wait(self) -> float:
        """Block until the next frame is due."""
        if self.pacing is PacingMode.VSYNC:
            return self._cap.wait()
        return self.pacer.wait()

    def close(self) -> None:
        if self.screen is not None:
            pg = pygame_module()
            pg.display.quit()
            self.screen = None


JPEG_QUALITY = 85
PNG_COMPRESS_LEVEL = 3  # zlib level: a third of level 6's time at 1280x720 for a few % more bytes


def encode_surface(surface: Any, fmt: str) -> bytes:
    """JPEG or PNG bytes of a pygame Surface (in memory, no file), encoded by Pillow."""
    pg = pygame_module()
    try:
        view = pg.surfarray.pixels3d(surface)  # [w, h, 3] view of the pixels (no copy), locks the surface
    except ValueError:  # 8/16-bit surfaces have no 3-channel view
        view = pg.surfarray.array3d(surface)
    try:
        rgb = np.ascontiguousarray(view.transpose(1, 0, 2))  # the one copy: row-major [h, w, 3] for Pillow
    finally:
        del view  # unlocks the surface
    return encode_rgb(rgb, fmt)


def encode_rgb(rgb: np.ndarray, fmt: str) -> bytes:
    """JPEG or PNG bytes of a C-contiguous [H, W, 3] uint8 array (Pillow; thread-safe, no pygame)."""
    image_mod = require("PIL.Image", "frame encoding")
    image = image_mod.fromarray(rgb, "RGB")
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


class HeadlessSink:
    """No window: frames are published (`frame_out`) and/or written to `frames_dir`, every `every`-th frame.

    `frame_out` must not block (the app hands it the ZeroMQ sender's latest-only frame slot).
    """

    kind = "headless"

    def __init__(
        self,
        settings: RenderSettings,
        frame_out: FrameOut | None = None,
        fmt: str = "jpeg",
        every: int = 1,
    ) -> None:
        self.settings = settings
        self.frame_out = frame_out
        self.fmt = fmt
        self.every = max(1, int(every))
        self.frames_dir = Path(settings.frames_dir) if settings.frames_dir else None
        self.pacer = Pacer(settings.fps)
        self.seq = 0
        self.published = 0
        self.written = 0
        self._out: Any = None

    @property
    def size(self) -> tuple[int, int]:
        return (self.settings.width, self.settings.height)

    def open(self) -> None:
        pygame_module()
        if self.frames_dir is not None:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "headless %dx%d: frames %s%s",
            *self.size,
            "published" if self.frame_out else "not published",
            f", written to {self.frames_dir}" if self.frames_dir else "",
        )

    def events(self) -> list[UiEvent]:
        return []

    def present(self, canvas: Any, overlay: Callable[[Any], None] | None = None) -> None:
        self.seq += 1
        if self.seq % self.every or (self.frame_out is None and self.frames_dir is None):
            return
        surface = canvas
        if overlay is not None:  # draw the HUD on a copy: the canvas may be held (freeze)
            if self._out is None or self._out.get_size() != canvas.get_size():
                self._out = canvas.copy()
            self._out.blit(canvas, (0, 0))
            overlay(self._out)
            surface = self._out
        width, height = surface.get_size()
        data = None
        if self.frame_out is not None:
            data = encode_surface(surface, self.fmt)
            self.frame_out({"frame": self.seq, "width": width, "height": height, "format": self.fmt}, data)
            self.published += 1
        if self.frames_dir is not None:  # always PNG (lossless; ~90 ms at 1280x720 on a small CPU)
            png = data if data is not None and self.fmt == "png" else encode_surface(surface, "png")
            (self.frames_dir / f"frame_{self.seq:07d}.png").write_bytes(png)
            self.written += 1

    def wait(self) -> float:
        return self.pacer.wait()

    def close(self) -> None:
        self._out = None


def choose_sink(
    settings: RenderSettings,
    kiosk: bool = False,
    frame_out: FrameOut | None = None,
    fmt: str = "jpeg",
    every: int = 1,
) -> tuple[WindowSink | HeadlessSink, str | None]:
    """The sink for these settings: (sink, why it is headless although a window was asked for, or None).

    A window is asked for unless `settings.headless`; with no display to open it on, the sink is headless.
    """
    if settings.headless:
        return HeadlessSink(settings, frame_out, fmt, every), None
    reason = display_unavailable()
    if reason:
        return HeadlessSink(settings, frame_out, fmt, every), reason
    return WindowSink(settings, kiosk=kiosk), None
