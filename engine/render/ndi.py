"""NDI output: the displayed frames as a named NDI source (`--ndi [NAME]`, `[ndi]`), through cyndilib (the
`ndi` extra; its wheel carries the NDI runtime). A FrameTap: the render thread only copies the frame; the
RGB -> BGRA conversion (numpy, into a preallocated buffer) and the send run on the tap's thread.

Receivers find the source by NDI discovery (mDNS). Where multicast does not reach (containers, some
managed networks), list the receivers' or sender's addresses in an NDI config file
(`$NDI_CONFIG_DIR/ndi-config.v1.json`: `{"ndi": {"networks": {"ips": "10.0.0.5"}}}`), as the tests do
with 127.0.0.1.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from engine.deps import require
from engine.render.taps import FrameTap, opaque_buffer, rgb_into_bgra


def ndi_module() -> Any:
    """cyndilib, or MissingDependencyError naming the `ndi` extra."""
    return require("cyndilib", "NDI output")


class NdiTap(FrameTap):
    """Frames to an NDI source named `source_name`, at up to `max_fps` (the display rate when None)."""

    accepts_bgra = True  # a 32-bit canvas's bytes are already B, G, R, X: sent as they are

    def __init__(self, source_name: str, fps: float, max_fps: float | None = None) -> None:
        super().__init__("ndi", max_fps)
        self.source_name = source_name
        self.fps = float(fps)
        self._ndi = ndi_module()  # a missing extra fails here, at start-up, not on the worker thread
        self._sender: Any = None
        self._size: tuple[int, int] | None = None
        self._bgra: np.ndarray | None = None

    def _open_for(self, width: int, height: int) -> None:
        ndi = self._ndi
        if self._sender is not None:
            self._sender.close()
        frame = ndi.VideoSendFrame()
        frame.set_resolution(width, height)
        frame.set_frame_rate(Fraction(self.fps).limit_denominator(1001))
        frame.set_fourcc(ndi.FourCC.BGRA)
        self._sender = ndi.Sender(self.source_name)
        self._sender.set_video_frame(frame)
        self._sender.open()
        self._size = (width, height)
        self._bgra = opaque_buffer(height, width)

    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        height, width = rgb.shape[:2]
        if self._size != (width, height):  # first frame, or the window was resized
            self._open_for(width, height)
        assert self._bgra is not None
        self._sender.write_video(rgb_into_bgra(rgb, self._bgra).reshape(-1))

    def deliver_bgra(self, bgra: np.ndarray, seq: int, t: float) -> None:
        height, width = bgra.shape[:2]
        if self._size != (width, height):
            self._open_for(width, height)
        self._sender.write_video(bgra.reshape(-1))

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None
            self._size = None

    def describe(self) -> str:
        return f"frames as the NDI source {self.source_name!r}"

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["source"] = self.source_name
        if self._sender is not None:
            out["connections"] = int(self._sender.get_num_connections(0))
        return out
