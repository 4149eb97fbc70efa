"""Frame taps: consumers of the displayed frames (ZeroMQ frames beside a window, NDI, the web console's
preview, ...) that work off the render thread.

The render loop hands every presented canvas to `TapSet.offer`. A tap takes a frame only when its worker is
idle and its own rate allows it (latest-only: a busy tap skips the frame and counts it); taking it is one
row-contiguous copy of the surface's 32-bit pixels into the tap's preallocated buffer (a memcpy per row:
copying the strided RGB view instead cost the render thread ~7 ms per frame at 1280x720). The channel
reordering to RGB, encoding and sending happen on the tap's own `OwnedThread`, so a slow network or encoder
never costs the display a frame. A tap that takes BGRA as it is (NDI) sets `accepts_bgra` and skips the
reordering where the surface's bytes are already B, G, R, X.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.ratelog import RateLimitedLog
from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.taps")


BGR_ORDER = (2, 1, 0)  # byte index of R, G, B in a little-endian XRGB pixel: the bytes are B, G, R, X


class FrameTap(ABC):
    """One consumer of display frames. Subclasses implement `deliver` (worker thread) and may override
    `open`/`close` (worker thread, before the first and after the last delivery) and `describe`; with
    `accepts_bgra`, also `deliver_bgra`."""

    accepts_bgra = False

    def __init__(self, name: str, max_fps: float | None = None) -> None:
        self.name = name
        self.min_interval = 0.0 if not max_fps else 1.0 / max_fps
        self.offered = 0
        self.taken = 0
        self.delivered = 0
        self.skipped_busy = 0
        self.errors = 0
        self.last_error: str | None = None
        self._buf: np.ndarray | None = None  # [H, W, 3] uint8 RGB, or [H, W] uint32 pixels (see _order)
        self._order: tuple[int, int, int] | None = None  # byte index of R, G, B in a uint32 pixel
        self._rgb: np.ndarray | None = None  # the worker's RGB conversion of a uint32 frame
        self._seq = 0
        self._t = 0.0
        self._last_take = -1e9
        self._ready = threading.Event()  # a frame waits in _buf
        self._idle = threading.Event()  # the worker is not reading _buf
        self._idle.set()
        self._warn = RateLimitedLog(log, 30.0)
        self._thread = OwnedThread(self._work, f"tap-{name}", wake=self._ready.set)

    # -- render thread ---------------------------------------------------------------------------------
    def wants(self, now: float) -> bool:
        """Would a frame offered now be taken (worker idle, rate allows)?"""
        return self._idle.is_set() and not self._ready.is_set() and now - self._last_take >= self.min_interval

    def take(self, pixels: np.ndarray, seq: int, now: float, order: tuple[int, int, int] | None = None) -> bool:
        """Copy a frame into this tap's buffer if `wants(now)`; never blocks. `pixels`: [H, W, 3] uint8 RGB
        (any strides), or with `order` [H, W] uint32 pixels whose bytes `order` hold R, G and B."""
        self.offered += 1
        if not self.wants(now):
            if not self._idle.is_set() or self._ready.is_set():
                self.skipped_busy += 1
            return False
        if self._buf is None or self._buf.shape != pixels.shape or self._buf.dtype != pixels.dtype:
            self._buf = np.empty(pixels.shape, pixels.dtype)
        np.copyto(self._buf, pixels)
        self._order = order
        self._seq, self._t, self._last_take = seq, time.time(), now
        self.taken += 1
        self._ready.set()
        return True

    # -- worker thread ---------------------------------------------------------------------------------
    def open(self) -> None:
        """Acquire what `deliver` needs (sockets, an NDI sender); on the worker thread."""
        return None

    def close(self) -> None:
        """Release what `open` acquired; on the worker thread."""
        return None

    @abstractmethod
    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        """Send or store one frame ([H, W, 3] uint8, C-contiguous, valid only during the call)."""

    def deliver_bgra(self, bgra: np.ndarray, seq: int, t: float) -> None:
        """With `accepts_bgra`: one frame as [H, W, 4] uint8 B, G, R, A (A = 255), valid only during the call."""
        raise NotImplementedError

    def _deliver_taken(self) -> None:
        buf = self._buf
        assert buf is not None
        if self._order is None:
            self.deliver(buf, self._seq, self._t)
            return
        u8 = buf.view(np.uint8).reshape(*buf.shape, 4)  # [H, W, 4]: the pixel's bytes in memory order
        if self.accepts_bgra and self._order == BGR_ORDER:
            u8[..., 3] = 255  # the surface's padding byte becomes an opaque alpha
            self.deliver_bgra(u8, self._seq, self._t)
            return
        if self._rgb is None or self._rgb.shape[:2] != buf.shape:
            self._rgb = np.empty((*buf.shape, 3), np.uint8)
        for channel, byte in enumerate(self._order):
            self._rgb[..., channel] = u8[..., byte]
        self.deliver(self._rgb, self._seq, self._t)

    def _work(self, stop: threading.Event) -> None:
        self.open()
        try:
            while not stop.is_set():
                if not self._ready.wait(0.5) or stop.is_set():
                    continue
                self._idle.clear()
                self._ready.clear()
                try:
                    self._deliver_taken()
                    self.delivered += 1
                except Exception as exc:  # a failed send loses this frame, never the tap or the show
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._warn.warning(f"{self.name}-deliver", "frame tap %s: %s", self.name, self.last_error)
                finally:
                    self._idle.set()
        finally:
            self.close()

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> FrameTap:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> bool:
        return self._thread.stop(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.alive

    def describe(self) -> str:
        """One line for the operator at startup (where the frames go)."""
        return f"frames to {self.name}"

    def status(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "taken": self.taken,
            "delivered": self.delivered,
            "skipped_busy": self.skipped_busy,
            "errors": self.errors,
            "last_error": self.last_error,
            "alive": self.alive,
        }


def surface_rgb(surface: Any) -> np.ndarray:
    """A read-only [H, W, 3] view of a pygame surface's pixels (no copy; valid while the surface lives and
    is not locked elsewhere)."""
    import pygame

    view = pygame.surfarray.pixels3d(surface)  # [W, H, 3], locks the surface while referenced
    return view.transpose(1, 0, 2)  # [H, W, 3]


def surface_pixels(surface: Any) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """The surface's pixels for `FrameTap.take`, without a copy: a [H, W] uint32 view (rows contiguous) and
    the byte index of R, G and B in each pixel for a 32-bit surface, else the [H, W, 3] RGB view and None.
    Both lock the surface while referenced."""
    import sys

    import pygame

    if surface.get_bytesize() != 4:
        return surface_rgb(surface), None
    shifts = surface.get_shifts()[:3]
    if any(shift % 8 for shift in shifts):
        return surface_rgb(surface), None
    little = sys.byteorder == "little"
    order = tuple(shift // 8 if little else 3 - shift // 8 for shift in shifts)
    view = pygame.surfarray.pixels2d(surface)  # [W, H] uint32, strides (4, pitch)
    return view.T, order  # type: ignore[return-value]


def rgb_into_rgba(rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write [H, W, 3] RGB into the [H, W, 4] buffer `out` (alpha already set); one numpy copy."""
    out[..., :3] = rgb
    return out


def rgb_into_bgra(rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write [H, W, 3] RGB into the [H, W, 4] buffer `out` as B, G, R (alpha already set); one numpy copy."""
    out[..., :3] = rgb[..., ::-1]
    return out


def opaque_buffer(height: int, width: int) -> np.ndarray:
    """A C-contiguous [H, W, 4] uint8 buffer with alpha 255, for the conversions above."""
    buf = np.empty((height, width, 4), np.uint8)
    buf[..., 3] = 255
    return buf


class TapSet:
    """The taps of one render loop. `offer(canvas, seq)` on the render thread after each present."""

    def __init__(self, taps: list[FrameTap] | None = None) -> None:
        self.taps: list[FrameTap] = list(taps or [])

    def add(self, tap: FrameTap) -> FrameTap:
        self.taps.append(tap)
        return tap

    def __bool__(self) -> bool:
        return bool(self.taps)

    def start(self) -> None:
        for tap in self.taps:
            if not tap.alive:
                tap.start()

    def offer(self, canvas: Any, seq: int) -> None:
        """Hand the presented canvas (a pygame surface) to every tap that wants a frame now."""
        now = time.monotonic()
        wanting = [tap for tap in self.taps if tap.wants(now)]
        for tap in self.taps:
            if tap not in wanting:
                tap.offered += 1
                if not tap._idle.is_set() or tap._ready.is_set():
                    tap.skipped_busy += 1
        if not wanting:
            return
        pixels, order = surface_pixels(canvas)
        try:
            for tap in wanting:
                tap.take(pixels, seq, now, order)
        finally:
            del pixels  # unlocks the surface

    def stop(self, timeout: float = 2.0) -> bool:
        return all([tap.stop(timeout) for tap in self.taps])

    def status(self) -> dict[str, Any]:
        return {tap.name: tap.status() for tap in self.taps}


class ZmqFrameTap(FrameTap):
    """The displayed frames, JPEG or PNG, on the ZeroMQ `frame` topic (`--zmq-frames`), beside a window and
    headless alike. Encoding happens here, off the render thread; `publish(header, data)` must not block (the
    app hands it the sender's latest-only frame slot). The header: {"frame", "width", "height", "format"}.
    `zmq.frame_every` N becomes a rate of at most fps / N."""

    def __init__(self, publish: Callable[[dict[str, Any], bytes], None], fmt: str, max_fps: float | None) -> None:
        super().__init__("zmq-frames", max_fps)
        self.publish = publish
        self.fmt = fmt

    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        from engine.render.display import encode_rgb

        height, width = rgb.shape[:2]
        self.publish({"frame": seq, "width": width, "height": height, "format": self.fmt}, encode_rgb(rgb, self.fmt))

    def describe(self) -> str:
        rate = f" at up to {1.0 / self.min_interval:.0f} fps" if self.min_interval else ""
        return f"frames ({self.fmt}) on the ZeroMQ frame topic{rate}, encoded beside the render thread"
