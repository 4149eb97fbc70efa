"""The render loop in-process with the real generator of a tiny bundle (ONNX Runtime) and real surfaces."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.analysis.state import EmotionState
from engine.config import GeneratorMode, build_config
from engine.controls import Controls
from engine.errors import ConfigError
from engine.models.bundle import load_bundle
from engine.render.display import UiEvent
from engine.render.frames import GeneratorThread
from engine.render.loop import RenderMode, build_render_loop, choose_generator_mode, control_state_from_config

pygame = pytest.importorskip("pygame")


def room_state(
    shared: np.ndarray, valence: float, arousal: float, captured_at: float, silent: bool = False
) -> EmotionState:
    """An EmotionState placed where the test wants the room (silent: the tracker's silent state)."""
    classes = ("angry", "happy", "sad", "neutral")
    return EmotionState.placed(classes, shared, valence, arousal, captured_at, label="happy", silent=silent)


class Sink:
    kind = "test"
    size = (64, 36)

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.pending: list[UiEvent] = []
        self.overlays = 0

    def open(self) -> None: ...

    def events(self) -> list[UiEvent]:
        out, self.pending = self.pending, []
        return out

    def present(self, canvas, overlay=None) -> None:
        self.frames.append(pygame.surfarray.array3d(canvas).copy())
        if overlay is not None:
            self.overlays += 1

    def wait(self) -> float:
        return 0.0

    def close(self) -> None: ...


@pytest.fixture
def loop_parts(full_bundle):
    bundle = load_bundle(full_bundle)
    cfg = build_config({"render": {"backend": "onnx", "device": "cpu", "generator_mode": "inline", "fps": 60}})
    controls = Controls(bundle.classes, control_state_from_config(cfg))
    box: list = [None]
    sink = Sink()
    loop = build_render_loop(cfg, bundle, controls, sink, emotion=lambda: box[0])
    loop.open()
    yield loop, sink, controls, box, bundle
    loop.close()


def run(loop, n: int, t0: float = 0.0) -> float:
    t = t0
    for _ in range(n):
        loop.step(now=t)
        t += 1 / 60
    return t


def test_a_new_state_is_measured_to_its_first_frame(loop_parts) -> None:
    loop, _, _, box, bundle = loop_parts
    t = run(loop, 5)
    vec = np.ones(bundle.manifest.shared_dim) / np.sqrt(bundle.manifest.shared_dim)
    box[0] = room_state(vec, 0.7, 0.5, captured_at=time.monotonic() - 0.3)  # window ended 300 ms ago
    for _ in range(loop.generator.max_stride):  # the next generated keyframe carries it
        t = run(loop, 1, t)
        if loop.status.latency_ms is not None:
            break
    assert 300 <= loop.status.latency_ms < 5000
    assert loop.snapshot()["latency_ms"] == pytest.approx(loop.status.latency_ms, abs=0.1)


def test_freeze_holds_and_pauses_the_walk_blackout_keeps_walking(loop_parts) -> None:
    loop, sink, controls, _, _ = loop_parts
    t = run(loop, 10)
    controls.apply("freeze", 1)
    phase = loop.walk.phase
    t = run(loop, 10, t)
    assert all(np.array_equal(sink.frames[-1], f) for f in sink.frames[-10:])
    assert loop.walk.phase == phase and loop.status.mode is RenderMode.FROZEN
    controls.apply("freeze", 0)
    controls.apply("blackout", 1)
    t = run(loop, 5, t)
    assert sink.frames[-1].max() == 0 and loop.walk.phase > phase
    assert loop.status.mode is RenderMode.BLACKOUT
    controls.apply("blackout", 0)
    run(loop, 3, t)
    assert sink.frames[-1].max() > 0 and loop.status.mode is RenderMode.LIVE


def test_h_toggles_the_hud_and_quit_ends_the_run(loop_parts) -> None:
    loop, sink, controls, _, _ = loop_parts
    sink.pending = [UiEvent.TOGGLE_HUD]
    run(loop, 2)
    assert controls.snapshot().hud and sink.overlays == 2
    sink.pending = [UiEvent.QUIT]
    assert loop.run(duration_s=5.0) <= 4


def test_silence_moves_the_condition_back_to_neutral(loop_parts) -> None:
    loop, _, controls, box, _bundle = loop_parts
    controls.apply("smoothing", 0.2)
    space = loop.walk.space
    box[0] = room_state(space.centroid("angry"), -0.7, 0.75, captured_at=time.monotonic())
    t = run(loop, 90)
    assert float(loop.walk.condition @ space.centroid("angry")) > 0.99
    box[0] = room_state(space.centroid("angry"), -0.7, 0.75, captured_at=time.monotonic(), silent=True)
    run(loop, 90, t)
    assert float(loop.walk.condition @ space.neutral) > 0.99


class SleepyRunner:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, z, c):
        time.sleep(self.seconds)
        return (np.zeros((1, 3, 8, 8), np.float32),)


def test_auto_mode_runs_a_slow_generator_on_its_own_thread(full_bundle) -> None:
    manifest = load_bundle(full_bundle).manifest
    settings = build_config({"render": {"fps": 60}}).render
    assert choose_generator_mode(settings, SleepyRunner(0.0), manifest) is GeneratorMode.INLINE
    assert choose_generator_mode(settings, SleepyRunner(0.02), manifest) is GeneratorMode.THREAD
    forced = build_config({"render": {"fps": 60, "generator_mode": "inline"}}).render
    assert choose_generator_mode(forced, SleepyRunner(0.02), manifest) is GeneratorMode.INLINE


def test_the_render_loop_works_with_the_generator_thread(full_bundle) -> None:
    bundle = load_bundle(full_bundle)
    cfg = build_config({"render": {"backend": "onnx", "device": "cpu", "generator_mode": "thread", "fps": 60}})
    sink = Sink()
    loop = build_render_loop(cfg, bundle, Controls(bundle.classes), sink)
    assert isinstance(loop.generator, GeneratorThread)
    loop.open()
    try:
        end = time.monotonic() + 10
        while loop.generator.generated < 3 and time.monotonic() < end:
            loop.step()
            time.sleep(0.005)
        assert loop.generator.generated >= 3
        assert sink.frames[-1].max() > 0
    finally:
        loop.close()
    assert not loop.generator.alive


def test_generator_threads_reach_onnx_runtime(full_bundle, monkeypatch) -> None:
    from engine.config import RenderSettings, generator_cpu_threads
    from engine.inference.base import Component
    from engine.inference.select import open_runner

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert generator_cpu_threads(RenderSettings()) == 1  # two cores: one for the generator, one for the render
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert generator_cpu_threads(RenderSettings()) == 4
    assert generator_cpu_threads(RenderSettings(generator_threads=3)) == 3
    with pytest.raises(ConfigError, match="generator_threads"):
        build_config({"render": {"generator_threads": -1}})
    runner = open_runner(load_bundle(full_bundle), Component.GENERATOR, "onnx", "cpu", threads=1).runner
    assert runner.session.get_session_options().intra_op_num_threads == 1


def test_render_bench_rows_have_the_numbers(full_bundle) -> None:
    from engine.render.bench import render_rows

    rows = render_rows(load_bundle(full_bundle), ["onnx", "tensorrt"], "cpu", seconds=0.3, width=128, height=72)
    onnx = rows["onnx/cpu"]
    assert onnx["generator_ms"]["mean"] > 0 and onnx["unpaced"]["fps"] > 0
    for mode in ("paced_inline", "paced_thread"):
        assert onnx[mode]["fps"] > 0 and onnx[mode]["generated_per_s"] > 0
    assert "error" in rows["tensorrt/cpu"]  # needs CUDA: says why


def test_a_resized_window_is_painted_to_its_new_size(full_bundle, monkeypatch) -> None:
    """The real window sink (SDL dummy driver): after a resize the canvas follows and covers the window."""
    from engine.render.display import WindowSink

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    bundle = load_bundle(full_bundle)
    cfg = build_config(
        {"render": {"backend": "onnx", "device": "cpu", "generator_mode": "inline", "width": 320, "height": 180}}
    )
    controls = Controls(bundle.classes, control_state_from_config(cfg))
    sink = WindowSink(cfg.render)
    loop = build_render_loop(cfg, bundle, controls, sink)
    loop.open()
    try:
        run(loop, 3)
        assert loop.painter.canvas.get_size() == (320, 180)
        # what SDL does when the window manager resizes the window: a new display surface, then the event
        pygame.display.set_mode((200, 300), pygame.RESIZABLE)
        pygame.event.post(pygame.event.Event(pygame.VIDEORESIZE, size=(200, 300), w=200, h=300))
        run(loop, 3, 1.0)
        assert sink.size == (200, 300) and loop.painter.canvas.get_size() == (200, 300)
        pixels = pygame.surfarray.array3d(pygame.display.get_surface())  # [W, H, 3]
        assert pixels.shape[:2] == (200, 300)
        # the image covers the window: no untouched black band at the bottom or the right
        assert pixels[:, -10:].max() > 0 and pixels[-10:, :].max() > 0
    finally:
        loop.close()
