"""Frame taps: latest-only hand-off of display frames to a worker thread (engine/render/taps.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.render.taps import FrameTap, TapSet


class Collect(FrameTap):
    def __init__(self, delay: float = 0.0, fail: bool = False, max_fps: float | None = None) -> None:
        super().__init__("collect", max_fps)
        self.delay, self.fail = delay, fail
        self.frames: list[tuple[int, np.ndarray]] = []
        self.opened = self.closed = False
        self.got = threading.Event()

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.closed = True

    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise OSError("peer gone")
        self.frames.append((seq, rgb.copy()))
        self.got.set()


def _surface(value: int):
    pygame = pytest.importorskip("pygame")
    s = pygame.Surface((32, 16))
    s.fill((value, 255 - value, 7))
    return s


def test_tap_receives_a_copy_of_the_displayed_pixels():
    tap = Collect()
    taps = TapSet([tap])
    taps.start()
    try:
        surface = _surface(40)
        taps.offer(surface, 1)
        assert tap.got.wait(2.0)
        surface.fill((0, 0, 0))  # the tap holds its own copy
        seq, rgb = tap.frames[0]
        assert seq == 1 and rgb.shape == (16, 32, 3)
        assert (rgb[..., 0] == 40).all() and (rgb[..., 1] == 215).all() and (rgb[..., 2] == 7).all()
    finally:
        assert taps.stop()
    assert tap.opened and tap.closed


def test_a_busy_tap_skips_frames_and_never_blocks_the_render_thread():
    tap = Collect(delay=0.3)
    taps = TapSet([tap])
    taps.start()
    try:
        start = time.perf_counter()
        for i in range(50):
            taps.offer(_surface(i), i)
        assert time.perf_counter() - start < 0.25  # 50 offers while the worker sleeps 0.3 s on the first
        time.sleep(0.7)
    finally:
        taps.stop()
    st = tap.status()
    assert st["taken"] >= 1 and st["skipped_busy"] >= 40 and st["offered"] == 50
    assert tap.frames[0][0] == 0


def test_rate_limit_and_failures_are_counted():
    tap = Collect(fail=True, max_fps=5)
    taps = TapSet([tap])
    taps.start()
    try:
        for i in range(20):
            taps.offer(_surface(i), i)
            time.sleep(0.02)  # 0.4 s at 50 fps offered; 5 fps allowed -> 2 or 3 taken
        time.sleep(0.2)
    finally:
        taps.stop()
    st = tap.status()
    assert 1 <= st["taken"] <= 3
    assert st["errors"] == st["taken"] and "peer gone" in st["last_error"]
    assert st["delivered"] == 0


class CollectBgra(Collect):
    accepts_bgra = True

    def deliver_bgra(self, bgra: np.ndarray, seq: int, t: float) -> None:
        self.frames.append((seq, bgra.copy()))
        self.got.set()


@pytest.mark.parametrize("depth", [32, 24])
def test_pixels_arrive_exactly_from_32_and_24_bit_surfaces(depth: int) -> None:
    pygame = pytest.importorskip("pygame")
    image = np.random.default_rng(depth).integers(0, 256, (37, 23, 3), dtype=np.uint8)  # [W, H, 3], odd sizes
    surface = pygame.Surface((37, 23), 0, depth)
    pygame.surfarray.blit_array(surface, image)
    plain, bgra = Collect(), CollectBgra()
    taps = TapSet([plain, bgra])
    taps.start()
    try:
        taps.offer(surface, 7)
        assert plain.got.wait(2.0) and bgra.got.wait(2.0)
    finally:
        assert taps.stop()
    expected = image.transpose(1, 0, 2)  # [H, W, 3]
    assert np.array_equal(plain.frames[0][1], expected)
    got = bgra.frames[0][1]
    if depth == 32 and surface.get_shifts()[:3] == (16, 8, 0):  # bytes already B, G, R, X: sent as they are
        assert got.shape == (23, 37, 4) and np.array_equal(got[..., 2::-1], expected) and (got[..., 3] == 255).all()
    else:  # any other layout reaches even a BGRA tap as RGB through `deliver`
        assert np.array_equal(got, expected)
