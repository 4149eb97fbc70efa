"""Generator stepping (keyframe interpolation, adaptive stride) and post-processing, with real pygame surfaces.

No window is opened: pygame Surfaces, smoothscale and fonts work without a video driver.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np
import pytest

from engine.emotions import CIRCUMPLEX
from engine.inference.base import BackendKind, Component, Runner
from engine.render.frames import (
    ColourGrade,
    FramePainter,
    FrameStats,
    GeneratorStep,
    GeneratorThread,
    Hud,
    Keyframes,
    PostSettings,
)
from trainer.art.painter import EXPECTED_DIRECTIONS, colour_stats

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")

CLASSES = ["angry", "happy", "sad", "neutral"]
R = 16


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeRunner(Runner):
    """Each call returns a flat image whose value counts the calls; `cost_ms` advances the fake clock."""

    kind = BackendKind.TORCH
    device = "cpu"
    component = Component.GENERATOR

    def __init__(self, clock: FakeClock, cost_ms: float) -> None:
        self.clock = clock
        self.cost_ms = cost_ms
        self.calls = 0

    def __call__(self, z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        self.calls += 1
        self.clock.t += self.cost_ms / 1000.0
        value = -1.0 + 0.01 * self.calls  # in [-1, 1], rising by 0.01 per call
        return (np.full((1, 3, R, R), value, dtype=np.float32),)


def test_keyframes_map_to_unit_range_and_blend_linearly() -> None:
    keys = Keyframes(R)
    out = np.zeros((R, R, 3), dtype=np.float32)
    keys.push(np.full((3, R, R), -1.0, dtype=np.float32))
    np.testing.assert_allclose(keys.blend(0.5, out), 0.0)  # first key: both ends equal
    keys.push(np.full((3, R, R), 1.0, dtype=np.float32))
    np.testing.assert_allclose(keys.blend(0.0, out), 0.0)
    np.testing.assert_allclose(keys.blend(0.25, out), 0.25)
    np.testing.assert_allclose(keys.blend(1.0, out), 1.0)
    chw = np.stack([np.zeros((R, R)), np.ones((R, R)), -np.ones((R, R))]).astype(np.float32)
    keys.push(chw)
    np.testing.assert_allclose(keys.blend(1.0, out)[0, 0], [0.5, 1.0, 0.0])


def step_frames(step: GeneratorStep, clock: FakeClock, n: int, post_ms: float = 2.0) -> list[float]:
    z, c = np.zeros(4, np.float32), np.zeros(8, np.float32)
    values = []
    for _ in range(n):
        values.append(float(step(z, c)[0, 0, 0]))
        step.report_post_ms(post_ms)
        clock.t += post_ms / 1000.0
    return values


def test_fast_generator_runs_every_frame() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, cost_ms=3.0)
    step = GeneratorStep(runner, R, 4, 8, fps=60, clock=clock)
    values = step_frames(step, clock, 120)
    assert step.stride == 1
    assert runner.calls == 120
    assert all(b > a for a, b in itertools.pairwise(values))


def test_slow_generator_is_interpolated_instead_of_stalling() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, cost_ms=35.0)  # 2.1 frame budgets at 60 fps
    step = GeneratorStep(runner, R, 4, 8, fps=60, clock=clock)
    values = step_frames(step, clock, 180)
    assert step.stride == 3  # ceil(35 * 1.1 / (16.7 - 2))
    assert runner.calls < 0.4 * 180
    steady = values[30:]
    diffs = np.diff(steady)
    assert np.all(diffs > 0), "every frame moves on (blended), none repeats"
    # piecewise linear: each step is one key interval (0.005 in [0, 1]) divided by the stride
    np.testing.assert_allclose(diffs, 0.005 / 3, atol=1e-6)


def test_stride_comes_back_down_when_there_is_room_again() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, cost_ms=40.0)
    step = GeneratorStep(runner, R, 4, 8, fps=60, clock=clock)
    step_frames(step, clock, 60)
    assert step.stride > 1
    runner.cost_ms = 2.0
    step_frames(step, clock, 60)  # under a second of room: not yet all the way down
    assert step.stride > 1
    step_frames(step, clock, 300)
    assert step.stride == 1


def test_heavy_post_processing_also_raises_the_stride() -> None:
    clock = FakeClock()
    step = GeneratorStep(FakeRunner(clock, cost_ms=10.0), R, 4, 8, fps=60, clock=clock)
    step_frames(step, clock, 60, post_ms=12.0)
    assert step.stride >= 2


def painter(size=(64, 36), **kw) -> FramePainter:
    return FramePainter(R, size, CLASSES, PostSettings(**kw))


def canvas_rgb(surface) -> np.ndarray:
    return pygame.surfarray.array3d(surface).swapaxes(0, 1)


def texture(seed: int = 0) -> np.ndarray:
    """A colourful mid-grey texture (what a generator gives), HWC float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.2 * rng.standard_normal((R, R, 3)), 0.0, 1.0).astype(np.float32)


def test_upscale_fills_the_display_size_and_crops_to_cover() -> None:
    p = painter(size=(64, 32), grade=0.0)
    img = np.zeros((R, R, 3), dtype=np.float32)
    img[:4] = 1.0  # top quarter white: cropped away at 2:1
    img[4:12, :, 0] = 1.0  # the visible middle half is red
    out = canvas_rgb(p(img))
    assert out.shape == (32, 64, 3)
    assert out[:, :, 0].min() > 200 and out[:, :, 1].max() < 60
    p.resize((32, 64))  # portrait: columns cropped instead
    assert canvas_rgb(p(img)).shape == (64, 32, 3)


def test_blackout_is_black() -> None:
    p = painter()
    p(texture())
    assert canvas_rgb(p(texture(), blackout=True)).max() == 0


def test_trails_keep_a_share_of_the_previous_frame() -> None:
    p = painter(trails=0.5, grade=0.0)
    p(np.zeros((R, R, 3), dtype=np.float32))
    out = canvas_rgb(p(np.ones((R, R, 3), dtype=np.float32)))
    assert 120 <= out.mean() <= 135
    assert canvas_rgb(p(np.ones((R, R, 3), dtype=np.float32))).mean() > 180


def test_no_grade_no_change() -> None:
    p = painter(grade=0.0)
    img = texture()
    out = canvas_rgb(p(img, valence=0.9, arousal=0.9)).astype(np.float64) / 255.0
    assert abs(out.mean() - img.mean()) < 0.02


def test_colour_grade_pushes_in_the_art_corpus_directions() -> None:
    """The grade alone (on emotion-neutral textures) reproduces every EXPECTED_DIRECTIONS relation."""
    p = painter(size=(48, 48))
    frames = {}
    for label in CLASSES:
        v, a = CIRCUMPLEX[label]
        frames[label] = np.stack([canvas_rgb(p(texture(s), valence=v, arousal=a)).copy() for s in range(4)])
    stats = {label: colour_stats(imgs) for label, imgs in frames.items()}
    failed = [
        f"{d.stat}: {d.higher} {stats[d.higher][d.stat]:.3f} <= {d.lower} {stats[d.lower][d.stat]:.3f}"
        for d in EXPECTED_DIRECTIONS
        if not stats[d.higher][d.stat] > stats[d.lower][d.stat]
    ]
    assert not failed, failed


def test_grade_is_continuous_in_valence_and_arousal() -> None:
    grade = ColourGrade(CLASSES, 0.6)
    prev = None
    for t in np.linspace(-1, 1, 81):
        A, contrast = grade.matrix(t, -t)
        cur = np.append(A.ravel(), contrast)
        if prev is not None:
            assert np.abs(cur - prev).max() < 0.06
        prev = cur


def test_hud_draws_text_on_the_target() -> None:
    target = pygame.Surface((320, 200), 0, 32)
    target.fill((0, 0, 0))
    Hud().draw(target, lambda: ["happy   [live]", "valence +0.50   arousal +0.20"], now=0.0)
    pixels = canvas_rgb(target)
    assert pixels[10:60, 10:200].max() > 200  # white text
    assert pixels[150:, 250:].max() == 0  # nothing outside the panel


def test_frame_stats_fps_and_p99() -> None:
    stats = FrameStats(window=100)
    t = 0.0
    for i in range(101):
        stats.tick(t)
        t += 0.05 if i == 50 else 0.01
    assert stats.fps == pytest.approx(100 / (99 * 0.01 + 0.05), rel=1e-6)
    assert stats.p99_ms == pytest.approx(10.0 + 0.01 * 40, rel=0.2)
    assert stats.frames == 101


class GatedRunner(Runner):
    """Blocks in each call until the test opens the gate; returns images whose value counts the calls."""

    kind = BackendKind.TORCH
    device = "cpu"
    component = Component.GENERATOR

    def __init__(self, fail_on: int | None = None) -> None:
        self.gate = threading.Semaphore(0)
        self.calls = 0
        self.fail_on = fail_on

    def __call__(self, z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        self.gate.acquire()
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("device lost")
        return (np.full((1, 3, R, R), -1.0 + 0.25 * self.calls, dtype=np.float32),)


def wait_until(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def test_generator_thread_never_waits_for_the_generator_and_crossfades() -> None:
    clock = FakeClock()
    runner = GatedRunner()
    step = GeneratorThread(runner, R, 4, 8, fps=60, clock=clock)
    step.start()
    try:
        z, c = np.zeros(4, np.float32), np.zeros(8, np.float32)
        for _ in range(10):  # the generator is blocked: frames still come (black until the first result)
            assert step(z, c)[0, 0, 0] == 0.0
            clock.t += 1 / 60
        values = []
        for k in range(3):  # results arrive every 6 frames
            runner.gate.release()
            wait_until(lambda k=k: step._has_result or step.generated > k)
            for _ in range(6):
                values.append(float(step(z, c)[0, 0, 0]))
                clock.t += 1 / 60
        assert step.generated == 3
        assert step.stride == 6
        assert all(b >= a for a, b in itertools.pairwise(values)), values
        # once the period is known, each frame moves a sixth of a key interval (0.125 in [0, 1])
        np.testing.assert_allclose(np.diff(values[-6:]), 0.125 / 6, atol=1e-6)
    finally:
        for _ in range(10):
            runner.gate.release()
        step.stop()


def test_generator_thread_hands_errors_to_the_render_thread() -> None:
    runner = GatedRunner(fail_on=1)
    step = GeneratorThread(runner, R, 4, 8, fps=60)
    step.start()
    try:
        z, c = np.zeros(4, np.float32), np.zeros(8, np.float32)
        step(z, c)
        runner.gate.release()
        wait_until(lambda: step._error is not None)
        with pytest.raises(RuntimeError, match="device lost"):
            step(z, c)
        step.replace_runner(GatedRunner())  # a restart: a fresh worker with the new runner
        step(z, c)
        assert step.alive
    finally:
        step.runner.gate.release()
        step.stop()
