"""Generator stepping, frame interpolation and post-processing (docs/design.md §2, render loop).

Per frame, on the render (main) thread:

1. `GeneratorStep` runs G(z, c) every `stride`-th frame and blends linearly between the last two
   generated keyframes in between. The stride adapts to the measured cost: when generating every frame
   would make frames late (generator + post-processing over the frame budget) it rises, when there is
   room again it falls (after a second of room, so it does not flap). The picture therefore never
   stalls on a slow backend; it trails the walk by at most `stride - 1` frames.
2. `FramePainter` post-processes at the generator's resolution (cheap: 128x128), then upscales once:
   feedback trails, a colour grade from valence and arousal (one 3x3 affine colour transform: tint,
   saturation, brightness, contrast), the audio pulse, then `pygame.transform.smoothscale` into a
   display-sized canvas ("cover" crop for non-square displays). Blackout fills black.
3. `Hud` draws label, probabilities, valence/arousal, fps, latency and backend with pygame.font,
   re-rendering its text a few times a second only.

Buffers and surfaces are allocated once (and again on resize), not per frame.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.deps import require
from engine.emotions import CIRCUMPLEX
from engine.inference.base import Runner
from engine.threads import OwnedThread, ThreadStillRunningError

LUMA = np.array([0.2126, 0.7152, 0.0722])


def pygame_module() -> Any:
    """pygame, imported on first use (no display or audio subsystem is initialised here)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return require("pygame", "rendering")


# ----------------------------------------------------------------------------------------------------
# keyframes and generator stepping


class Keyframes:
    """The last two generated frames (HWC float32 in [0, 1]) and the blend between them."""

    def __init__(self, resolution: int) -> None:
        shape = (resolution, resolution, 3)
        self.prev = np.zeros(shape, dtype=np.float32)
        self.next = np.zeros(shape, dtype=np.float32)
        self.count = 0

    def push(self, image_chw: np.ndarray) -> None:
        """Add a generator output [3, R, R] in [-1, 1]; the older keyframe is recycled as the new one."""
        self.prev, self.next = self.next, self.prev
        np.multiply(image_chw.transpose(1, 2, 0), 0.5, out=self.next)
        self.next += 0.5
        if self.count == 0:
            self.prev[...] = self.next
        self.count += 1

    def blend(self, w: float, out: np.ndarray) -> np.ndarray:
        """out = prev + w * (next - prev), w in [0, 1]."""
        w = min(1.0, max(0.0, float(w)))
        if w >= 1.0:
            out[...] = self.next
        else:
            np.subtract(self.next, self.prev, out=out)
            out *= w
            out += self.prev
        return out

    def reset(self) -> None:
        self.prev[...] = 0.0
        self.next[...] = 0.0
        self.count = 0


class GeneratorStep:
    """Stage: `__call__(z, c) -> image` (HWC float32 in [0, 1], a buffer owned by the stage).

    `report_post_ms(ms)` feeds the cost of everything else in the frame, so the stride covers it too.
    """

    def __init__(
        self,
        runner: Runner,
        resolution: int,
        z_dim: int,
        cond_dim: int,
        fps: float,
        max_stride: int = 8,
        adapt: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.runner = runner
        self.clock = clock
        self.resolution = int(resolution)
        self.budget_ms = 1000.0 / float(fps)
        self.max_stride = int(max_stride)
        self.adapt = adapt
        self._z = np.zeros((1, z_dim), dtype=np.float32)
        self._c = np.zeros((1, cond_dim), dtype=np.float32)
        self.keys = Keyframes(self.resolution)
        self.out = np.zeros((self.resolution, self.resolution, 3), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self.keys.reset()
        self.stride = 1
        self.gen_ms = 0.0  # EMA of the generator call
        self.post_ms = 0.0  # EMA of the rest of the frame
        self.generated = 0
        self.frames = 0
        self.last_ms = 0.0  # the generator call in the latest frame (0: none)
        self.key_frame = -1  # index (in calls) of the frame whose (z, c) the newest keyframe was made from
        self._since_key = 0
        self._room_frames = 0

    def replace_runner(self, runner: Runner) -> None:
        """Use another runner (a restarted backend) from the next frame on."""
        self.runner = runner
        self.reset()

    def start(self) -> None:
        """Nothing to start: the generator runs inline, in the render thread."""

    def stop(self) -> None:
        """Nothing to stop."""

    def report_post_ms(self, ms: float) -> None:
        self.post_ms = ms if self.post_ms == 0.0 else 0.9 * self.post_ms + 0.1 * ms

    @property
    def due(self) -> bool:
        return self.keys.count < 2 or self._since_key >= self.stride

    def __call__(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
        self.last_ms = 0.0
        if self.due:
            self._z[0] = z
            self._c[0] = c
            start = self.clock()
            (image,) = self.runner(self._z, self._c)
            ms = (self.clock() - start) * 1000.0
            self.last_ms = ms
            self.key_frame = self.frames
            self.gen_ms = ms if self.generated == 0 else 0.8 * self.gen_ms + 0.2 * ms
            self.keys.push(image[0])
            self.generated += 1
            self._since_key = 0
            self._adapt()
        self._since_key += 1
        self.frames += 1
        return self.keys.blend(self._since_key / self.stride, self.out)

    def needed_stride(self) -> int:
        """Frames per generator call so that the average frame fits the budget (>= 1)."""
        room = max(self.budget_ms - self.post_ms, 0.2 * self.budget_ms)
        return max(1, min(self.max_stride, math.ceil(self.gen_ms * 1.1 / room)))

    def _adapt(self) -> None:
        if not self.adapt or self.generated < 3:
            return
        need = self.needed_stride()
        if need > self.stride:
            self.stride = need
            self._room_frames = 0
        elif need < self.stride:
            self._room_frames += self.stride
            if self._room_frames * self.budget_ms >= 1000.0:  # a second of room: step down by one
                self.stride -= 1
                self._room_frames = 0
        else:
            self._room_frames = 0


class GeneratorThread:
    """Stage with the GeneratorStep interface whose generator runs at its own pace on an explicit thread.

    For generators slower than the frame budget (a CPU-only machine, a large bundle): the render loop never
    waits for G. Each frame posts the walk's newest (z, c) into a one-slot mailbox (an unserved request
    is replaced: the worker always paints the newest position, nothing queues up) and takes the newest
    finished image, if any, from a one-slot result box. The picture crossfades over time from the
    previous generated frame to the newest one across one generator period, so it moves continuously and
    trails the walk by about one period. If a result is late, the newest frame is held until it comes.

    The thread is started and stopped by the owner of the render loop (`start()` / `stop()`); a runner
    error is raised again in the render thread on the next call (so a supervisor sees it).
    """

    def __init__(
        self,
        runner: Runner,
        resolution: int,
        z_dim: int,
        cond_dim: int,
        fps: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.runner = runner
        self.clock = clock
        self.resolution = int(resolution)
        self.frame_s = 1.0 / float(fps)
        self.keys = Keyframes(self.resolution)
        self.out = np.zeros((self.resolution, self.resolution, 3), dtype=np.float32)
        self._req_z = np.zeros((1, z_dim), dtype=np.float32)
        self._req_c = np.zeros((1, cond_dim), dtype=np.float32)
        self._work_z = np.zeros((1, z_dim), dtype=np.float32)
        self._work_c = np.zeros((1, cond_dim), dtype=np.float32)
        self._result = np.zeros((3, self.resolution, self.resolution), dtype=np.float32)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = OwnedThread(self._work, "generator", wake=self._wake.set)
        self._error: BaseException | None = None
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.keys.reset()
            self._has_request = False
            self._has_result = False
            self._result_ms = 0.0
            self._req_frame = self._work_frame = self._result_frame = -1
        self.gen_ms = 0.0
        self.post_ms = 0.0
        self.period_s = 0.0  # EMA of the time between results arriving
        self.generated = 0
        self.frames = 0
        self.last_ms = 0.0  # always 0: the generator never runs in the render thread
        self.key_frame = -1  # index (in calls) of the frame whose (z, c) the newest keyframe was made from
        self._t_next: float | None = None

    @property
    def stride(self) -> int:
        """Display frames per generated frame (for the status), from the measured period."""
        return max(1, round(self.period_s / self.frame_s)) if self.period_s else 1

    @property
    def alive(self) -> bool:
        return self._thread.alive

    def start(self) -> None:
        """Start the worker (a no-op while it runs)."""
        if not self._thread.alive:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker; False when it is still inside a generator call after `timeout`."""
        return self._thread.stop(timeout)

    def replace_runner(self, runner: Runner) -> None:
        if not self.stop():  # the old runner is still busy in its call: never run two side by side
            raise ThreadStillRunningError("the generator thread is stuck in a runner call; cannot replace it")
        self.runner = runner
        self._error = None
        self.reset()
        self.start()

    def report_post_ms(self, ms: float) -> None:
        self.post_ms = ms if self.post_ms == 0.0 else 0.9 * self.post_ms + 0.1 * ms

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self._wake.wait(timeout=0.2):
                continue
            with self._lock:
                self._wake.clear()
                if not self._has_request:
                    continue
                self._work_z[...] = self._req_z
                self._work_c[...] = self._req_c
                self._work_frame = self._req_frame
                self._has_request = False
            start = time.perf_counter()
            try:
                (image,) = self.runner(self._work_z, self._work_c)
            except Exception as exc:  # handed to the render thread, which decides (supervisor or crash)
                self._error = exc
                return
            ms = (time.perf_counter() - start) * 1000.0
            with self._lock:
                self._result[...] = image[0]
                self._has_result = True
                self._result_ms = ms
                self._result_frame = self._work_frame

    def __call__(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if not self._thread.started:
            raise RuntimeError("GeneratorThread used before start(): its owner starts and stops the thread")
        now = self.clock()
        with self._lock:
            self._req_z[0] = z
            self._req_c[0] = c
            self._req_frame = self.frames
            self._has_request = True
            if self._has_result:
                self.keys.push(self._result)
                self.key_frame = self._result_frame
                self._has_result = False
                ms = self._result_ms
                arrived = True
            else:
                arrived = False
        self._wake.set()
        if arrived:
            self.gen_ms = ms if self.generated == 0 else 0.8 * self.gen_ms + 0.2 * ms
            if self._t_next is not None:
                gap = now - self._t_next
                self.period_s = gap if self.period_s == 0.0 else 0.8 * self.period_s + 0.2 * gap
            self._t_next = now
            self.generated += 1
        self.frames += 1
        if self._t_next is None:  # nothing generated yet: black until the first frame
            return self.keys.blend(1.0, self.out)
        w = (now - self._t_next) / self.period_s if self.period_s > 0 else 1.0
        return self.keys.blend(w, self.out)


# ----------------------------------------------------------------------------------------------------
# colour grade

# Per-channel gains for each emotion's region, in the art corpus's directions (trainer/art/painter.py,
# docs/art.md): joy warm yellow-orange, anger red, sadness blue, neutral a warm grey, calm green-cyan.
GRADE_TINT: dict[str, tuple[float, float, float]] = {
    "happy": (1.25, 1.06, 0.68),
    "angry": (1.35, 0.60, 0.52),
    "sad": (0.70, 0.86, 1.25),
    "neutral": (1.02, 1.00, 0.96),
    "fearful": (0.88, 0.78, 1.08),
    "surprised": (1.15, 1.10, 0.85),
    "disgust": (0.95, 1.05, 0.70),
    "calm": (0.85, 1.08, 1.00),
}


class ColourGrade:
    """Valence/arousal -> a 3x3 colour matrix and offset (tint, saturation, brightness, contrast).

    Pleasure brightens and warms, arousal saturates and adds contrast; the tint interpolates between
    the bundle's classes' tints on the circumplex (neutral always anchors the centre).
    """

    def __init__(self, classes: Sequence[str], strength: float = 0.6, kernel_width: float = 0.4) -> None:
        names = [c for c in classes if c in GRADE_TINT and c in CIRCUMPLEX]
        if "neutral" not in names:
            names.append("neutral")
        self.strength = float(strength)
        self._va = np.array([CIRCUMPLEX[n] for n in names])
        self._tint = np.array([GRADE_TINT[n] for n in names])
        self._width = kernel_width

    def tint(self, valence: float, arousal: float) -> np.ndarray:
        d2 = ((self._va - np.array([valence, arousal])) ** 2).sum(axis=1)
        w = np.exp(-d2 / (2.0 * self._width**2))
        if float(w.sum()) < 1e-9:
            w = (d2 == d2.min()).astype(np.float64)
        return (w / w.sum()) @ self._tint

    def matrix(self, valence: float, arousal: float, pulse: float = 0.0) -> tuple[np.ndarray, float]:
        """(A, c): out = c * (A x - A mean) + A mean for x a column RGB vector (mean: the image's mean colour).

        c is chosen so that luma deviations scale by the arousal contrast whatever the tint and brightness.
        """
        k = self.strength
        v, a = float(valence), float(arousal)
        gains = 1.0 + k * (self.tint(v, a) - 1.0)
        sat = max(0.0, 1.0 + k * (0.4 * a + 0.25 * v))
        bright = max(0.0, 1.0 + k * 0.4 * v + 0.12 * float(pulse))
        contrast = max(0.2, 1.0 + k * 0.45 * a)
        m_sat = sat * np.eye(3) + (1.0 - sat) * np.outer(np.ones(3), LUMA)
        A = bright * (np.diag(gains) @ m_sat)
        # contrast is meant as the factor on luma deviations: undo what tint and brightness did to them
        luma_gain = float(LUMA @ A @ np.ones(3))
        return A, contrast / max(luma_gain, 0.2)


# ----------------------------------------------------------------------------------------------------
# post-processing and upscaling


@dataclass
class PostSettings:
    trails: float = 0.0  # share of the previous output kept (feedback), 0..<1
    grade: float = 0.6  # colour grade strength, 0 = none


GRADE_BLOCK_ROWS = 16384  # pixels per BLAS call in the grade (OpenBLAS goes multi-threaded above ~29k x 3 x 3)


class FramePainter:
    """Stage: low-res image -> display-sized pygame Surface (`canvas`), post-processed.

    Works with or without a display: surfaces are 32-bit; with a display they take its pixel format.
    """

    def __init__(
        self,
        resolution: int,
        size: tuple[int, int],
        classes: Sequence[str],
        settings: PostSettings | None = None,
        like: Any = None,
    ) -> None:
        self.pg = pygame_module()
        self.resolution = int(resolution)
        self.settings = settings or PostSettings()
        self.grade = ColourGrade(classes, self.settings.grade)
        r = self.resolution
        self._work = np.zeros((r, r, 3), dtype=np.float32)
        self._prev = np.zeros((r, r, 3), dtype=np.float32)
        self._have_prev = False
        self._graded = np.zeros((r, r, 3), dtype=np.float32)
        self._u8 = np.zeros((r, r, 3), dtype=np.uint8)
        self._mean_weights = np.full(r * r, 1.0 / (r * r), dtype=np.float32)  # mean colour as one BLAS dot
        self._like = like
        self.low = self._surface((r, r))
        self.size = (0, 0)
        self.resize(size)

    def _surface(self, size: tuple[int, int]) -> Any:
        if self._like is not None:
            return self.pg.Surface(size, 0, self._like)
        return self.pg.Surface(size, 0, 32)

    def resize(self, size: tuple[int, int]) -> None:
        """(Re)allocate the canvas for a display size and choose the crop that covers it."""
        size = (max(1, int(size[0])), max(1, int(size[1])))
        if size == self.size:
            return
        self.size = size
        self.canvas = self._surface(size)
        r = self.resolution
        w, h = size
        if w >= h:  # crop rows
            rows = max(1, min(r, round(r * h / w)))
            self._crop = (0, (r - rows) // 2, r, rows)
        else:
            cols = max(1, min(r, round(r * w / h)))
            self._crop = ((r - cols) // 2, 0, cols, r)
        self._src = self.low.subsurface(self._crop)

    def adopt_format(self, like: Any) -> None:
        """Re-create the surfaces in `like`'s pixel format (the window's), so presenting is a plain copy."""
        self._like = like
        self.low = self._surface((self.resolution, self.resolution))
        size, self.size = self.size, (0, 0)
        self.resize(size)

    def reset(self) -> None:
        self._have_prev = False

    def __call__(
        self,
        image: np.ndarray | None,
        valence: float = 0.0,
        arousal: float = 0.0,
        pulse: float = 0.0,
        blackout: bool = False,
    ) -> Any:
        """Post-process `image` (HWC float32 in [0, 1] at the generator resolution) into `canvas`."""
        if blackout or image is None:
            self.canvas.fill((0, 0, 0))
            self._have_prev = False
            return self.canvas
        work = self._work
        trails = self.settings.trails
        if trails > 0.0 and self._have_prev:
            np.multiply(image, 1.0 - trails, out=work)
            np.multiply(self._prev, trails, out=self._graded)  # _graded is free until the grade below
            work += self._graded
        else:
            work[...] = image
        if self.settings.trails > 0.0:
            self._prev[...] = work
            self._have_prev = True
        out = self._graded
        if self.grade.strength > 0.0 or pulse > 0.0:
            self._grade(work, out, valence, arousal, pulse)
        else:
            out[...] = work
        np.clip(out, 0.0, 1.0, out=out)
        out *= 255.0
        out += 0.5
        np.copyto(self._u8, out, casting="unsafe")
        self.pg.surfarray.blit_array(self.low, self._u8.swapaxes(0, 1))
        self.pg.transform.smoothscale(self._src, self.size, self.canvas)
        return self.canvas

    def _grade(self, work: np.ndarray, out: np.ndarray, valence: float, arousal: float, pulse: float) -> None:
        A, contrast = self.grade.matrix(valence, arousal, pulse)
        src = work.reshape(-1, 3)
        dst = out.reshape(-1, 3)
        # BLAS calls in row blocks small enough that OpenBLAS stays on this thread: one multi-threaded call
        # on a large frame waits for cores the generator thread holds (30 ms instead of 1 at 512 px)
        rows = GRADE_BLOCK_ROWS
        total = np.zeros(3, dtype=np.float32)
        for i in range(0, len(src), rows):
            total += self._mean_weights[i : i + rows] @ src[i : i + rows]
        mean = total @ A.T  # mean colour after the linear part
        # out = contrast * (A x) + (1 - contrast) * mean: one matmul plus a broadcast add
        matrix = (contrast * A).T.astype(np.float32)
        for i in range(0, len(src), rows):
            np.matmul(src[i : i + rows], matrix, out=dst[i : i + rows])
        dst += ((1.0 - contrast) * mean).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# on-screen readout


class Hud:
    """Text readout in the top-left corner; text is re-rendered at `refresh_hz`, drawn every frame."""

    def __init__(self, font_px: int = 18, refresh_hz: float = 4.0) -> None:
        self.font_px = font_px
        self.refresh_s = 1.0 / refresh_hz
        self._font: Any = None
        self._panel: Any = None
        self._next = 0.0

    def draw(self, target: Any, lines: Callable[[], Sequence[str]], now: float | None = None) -> None:
        pg = pygame_module()
        now = time.monotonic() if now is None else now
        if self._font is None:
            if not pg.font.get_init():
                pg.font.init()
            self._font = pg.font.Font(None, self.font_px)
        if self._panel is None or now >= self._next:
            self._next = now + self.refresh_s
            rendered = [self._font.render(text, True, (240, 240, 240)) for text in lines()]
            width = max((s.get_width() for s in rendered), default=0) + 16
            line_h = self._font.get_linesize()
            panel = pg.Surface((width, line_h * len(rendered) + 12), pg.SRCALPHA)
            panel.fill((0, 0, 0, 150))
            for i, s in enumerate(rendered):
                panel.blit(s, (8, 6 + i * line_h))
            self._panel = panel
        target.blit(self._panel, (10, 10))

    def reset(self) -> None:
        self._panel = None


def hud_lines(
    label: str | None,
    probs: Mapping[str, float] | None,
    valence: float,
    arousal: float,
    fps: float,
    frame_p99_ms: float,
    latency_ms: float | None,
    backend: str,
    stride: int,
    state: str,
) -> list[str]:
    lines = [f"{label or '-'}   [{state}]"]
    if probs:
        lines.append("  ".join(f"{k} {v:.2f}" for k, v in probs.items()))
    lines.append(f"valence {valence:+.2f}   arousal {arousal:+.2f}")
    lines.append(f"{fps:5.1f} fps   p99 {frame_p99_ms:.1f} ms   generator every {stride} frame(s)")
    lat = f"{latency_ms:.0f} ms" if latency_ms is not None else "-"
    lines.append(f"latency {lat}   {backend}")
    return lines


# ----------------------------------------------------------------------------------------------------
# frame statistics


class FrameStats:
    """Frame intervals in a ring: fps and p99 frame time over the last `window` frames."""

    def __init__(self, window: int = 300) -> None:
        self._dt = np.zeros(window, dtype=np.float64)
        self._n = 0
        self._last: float | None = None
        self.frames = 0

    def tick(self, now: float) -> None:
        if self._last is not None:
            self._dt[self._n % len(self._dt)] = now - self._last
            self._n += 1
        self._last = now
        self.frames += 1

    def _valid(self) -> np.ndarray:
        return self._dt[: min(self._n, len(self._dt))]

    @property
    def fps(self) -> float:
        d = self._valid()
        return float(len(d) / d.sum()) if len(d) and d.sum() > 0 else 0.0

    @property
    def p99_ms(self) -> float:
        d = self._valid()
        return float(np.percentile(d, 99) * 1000.0) if len(d) else 0.0

    def reset(self) -> None:
        self._n = 0
        self._last = None
