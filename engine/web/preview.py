"""`PreviewTap`: the web console's live preview, a FrameTap (engine/render/taps.py) that scales the displayed
frame down and encodes it as JPEG on its own thread; the server hands out the newest one."""

from __future__ import annotations

import io
import threading

import numpy as np

from engine.render.taps import FrameTap


class PreviewTap(FrameTap):
    """Latest-only: at most `fps` frames a second are taken, each scaled to `width` px wide and encoded."""

    def __init__(self, fps: float, width: int, quality: int = 70) -> None:
        super().__init__("web-preview", max_fps=fps)
        self.width = int(width)
        self.quality = int(quality)
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0

    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        from PIL import Image

        h, w = rgb.shape[:2]
        image = Image.fromarray(rgb)
        if w > self.width:
            image = image.resize((self.width, max(1, round(h * self.width / w))), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=self.quality)
        with self._lock:
            self._jpeg, self._jpeg_seq = out.getvalue(), seq

    def latest(self) -> tuple[bytes | None, int]:
        """(newest JPEG or None, its frame number)."""
        with self._lock:
            return self._jpeg, self._jpeg_seq

    def describe(self) -> str:
        return f"preview for the web console ({self.width} px, <= {1.0 / self.min_interval:g} fps)"
