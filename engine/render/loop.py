"""The render loop (main thread): LatentWalk -> generator -> post -> window or headless sink.

One frame:

    events (quit, HUD toggle, resize) -> one Controls snapshot -> latest emotion + audio features
    -> walk (z, c) -> generator step (keyframes, blended) -> painter (trails, grade, upscale) -> sink
    -> pacing (vsync or clock)

Freeze holds the painted canvas and pauses the walk (it resumes where it stopped); blackout paints black
while the walk keeps easing, so the picture returns where the room is now. Controls land between frames.

In kiosk mode a `StageSupervisor` (engine/kiosk.py) catches a failing render stage, keeps the window
(showing the last canvas), and restarts the stage in-process with exponential backoff, counting restarts;
past the limit the error propagates (and systemd restarts the process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from engine.analysis.state import EmotionState, StateKind
from engine.config import EngineConfig, GeneratorMode, RenderSettings, generator_cpu_threads
from engine.controls import Controls, ControlState
from engine.kiosk import StageSupervisor
from engine.render.frames import (
    FramePainter,
    FrameStats,
    GeneratorStep,
    GeneratorThread,
    Hud,
    PostSettings,
    hud_lines,
)
from engine.render.latent import ConditionSpace, FeatureLike, LatentWalk
from engine.render.taps import TapSet

if TYPE_CHECKING:
    from engine.inference.base import Runner
    from engine.models.bundle import Bundle

log = logging.getLogger("synesthesia.render")


class Sink(Protocol):
    kind: str

    @property
    def size(self) -> tuple[int, int]: ...

    def open(self) -> None: ...
    def events(self) -> list: ...
    def present(self, canvas: Any, overlay: Callable[[Any], None] | None = None) -> None: ...
    def wait(self) -> float: ...
    def close(self) -> None: ...


class RenderMode(StrEnum):
    LIVE = "live"
    FROZEN = "frozen"
    BLACKOUT = "blackout"
    RECOVERING = "recovering"  # a stage failed; showing the last canvas until it restarts


def is_silent(state: EmotionState) -> bool:
    """Silent by the tracker's state (after its silence hysteresis), not by one quiet window."""
    return state.state is StateKind.SILENT


def emotion_target(state: EmotionState | None) -> tuple[np.ndarray | None, tuple[float, float] | None]:
    """(shared vector, (valence, arousal)) to walk toward; (None, None) when silent or before the first."""
    if state is None or is_silent(state):
        return None, None
    return np.asarray(state.shared, dtype=np.float64), (state.valence, state.arousal)


def state_time(state: EmotionState | None) -> float | None:
    """time.monotonic() at which the state's analysis window ended (captured); None when not set."""
    return state.captured_at if state is not None and state.captured_at > 0 else None


def control_state_from_config(cfg: EngineConfig) -> ControlState:
    """The initial operator controls from the config (render intensity, speed, seed, HUD; kiosk: no HUD)."""
    r = cfg.render
    return ControlState(intensity=r.intensity, speed=r.speed, seed=r.seed, hud=r.hud and not cfg.kiosk.enabled)


@dataclass
class RenderStatus:
    frames: int = 0
    fps: float = 0.0
    frame_p99_ms: float = 0.0
    generator_ms: float = 0.0
    post_ms: float = 0.0
    stride: int = 1
    latency_ms: float | None = None
    backend: str = ""
    sink: str = ""
    mode: RenderMode = RenderMode.LIVE
    restarts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "frame_p99_ms": round(self.frame_p99_ms, 2),
            "generator_ms": round(self.generator_ms, 3),
            "post_ms": round(self.post_ms, 3),
            "stride": self.stride,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "backend": self.backend,
            "sink": self.sink,
            "mode": self.mode.value,
            "restarts": self.restarts,
        }


class RenderLoop:
    """Owns the render stages and the sink; `run()` on the main thread, or `step()` frame by frame."""

    def __init__(
        self,
        settings: RenderSettings,
        walk: LatentWalk,
        generator: GeneratorStep | GeneratorThread,
        painter: FramePainter,
        sink: Sink,
        controls: Controls,
        emotion: Callable[[], EmotionState | None] = lambda: None,
        features: Callable[[], FeatureLike | None] = lambda: None,
        backend: str = "",
        supervise: bool = False,
        restart_limit: int = 100,
        reopen_generator: Callable[[], Any] | None = None,
        probs: Callable[[EmotionState | None], Mapping[str, float] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.walk = walk
        self.generator = generator
        self.painter = painter
        self.sink = sink
        self.controls = controls
        self.emotion = emotion
        self.features = features
        self.supervise = supervise
        self.supervisor = StageSupervisor("render", restart_limit if supervise else 0)
        self.reopen_generator = reopen_generator
        self.probs = probs or _probs
        self.hud = Hud()
        self.stats = FrameStats()
        self.status = RenderStatus(backend=backend, sink=sink.kind, stride=generator.stride)
        self._lock = threading.Lock()
        self._snapshot = self.status.as_dict()
        self._last: float | None = None
        self._seen_state: EmotionState | None = None
        self._pending_latency: tuple[float, int] | None = None  # (window end, first frame) of a state not on screen
        self._canvas: Any = None
        self._view: tuple[str | None, Mapping[str, float] | None] = (None, None)
        self.quit_requested = False
        self.taps = TapSet()  # frame consumers off the render thread (engine/render/taps.py)

    # -- lifecycle ------------------------------------------------------------------------------------
    def open(self) -> None:
        self.sink.open()
        self.generator.start()
        screen = getattr(self.sink, "screen", None)
        if screen is not None:
            self.painter.adopt_format(screen)
        self.painter.resize(self.sink.size)
        self.taps.start()

    def close(self) -> None:
        self.generator.stop()
        self.taps.stop()
        self.sink.close()

    def snapshot(self) -> dict[str, Any]:
        """Thread-safe copy of the status (for the control servers' query and the status publisher)."""
        with self._lock:
            return dict(self._snapshot)

    def run(
        self,
        stop: threading.Event | None = None,
        duration_s: float | None = None,
        after_frame: Callable[[], bool] | None = None,
    ) -> int:
        """Render until quit (window), `stop` is set, `duration_s` passes or `after_frame()` returns False;
        returns the frames rendered."""
        end = None if duration_s is None else time.monotonic() + duration_s
        while not self.quit_requested:
            if stop is not None and stop.is_set():
                break
            if end is not None and time.monotonic() >= end:
                break
            self.step()
            if after_frame is not None and not after_frame():
                break
            self.sink.wait()
        return self.stats.frames

    # -- one frame ------------------------------------------------------------------------------------
    def step(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        dt = 1.0 / self.settings.fps if self._last is None else now - self._last
        self._last = now
        self._handle_events()
        ctl = self.controls.snapshot()
        state = self.emotion()
        if state is not self._seen_state:
            self._seen_state = state
            window_end = state_time(state)
            # the first generator input that can reflect it is this frame's
            self._pending_latency = None if window_end is None else (window_end, self.generator.frames)
        start = time.perf_counter()
        mode = self._render(dt, ctl, state, now)
        overlay = self._draw_hud if ctl.hud else None
        if self._canvas is not None:
            self.sink.present(self._canvas, overlay)
            if self.taps:
                self.taps.offer(self._canvas, self.stats.frames)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.generator.report_post_ms(elapsed_ms - self.generator.last_ms)
        pending = self._pending_latency
        if pending is not None and self.generator.key_frame >= pending[1]:
            self.status.latency_ms = (time.monotonic() - pending[0]) * 1000.0
            self._pending_latency = None
        self.stats.tick(now)
        self._update_status(mode)

    def _render(self, dt: float, ctl: ControlState, state: EmotionState | None, now: float) -> RenderMode:
        sup = self.supervisor
        if sup.failed and not sup.due(now):
            return RenderMode.RECOVERING
        try:
            if sup.failed:  # inside the try: a restart that fails (a generator stuck in its call) is one more failure
                self._restart_stages(ctl)
            mode = self._render_stages(dt, ctl, state)
        except Exception as exc:  # supervised: any stage failure is contained, counted and restarted
            if not self.supervise:
                raise
            sup.fail(exc, now)
            self.status.restarts = sup.restarts
            return RenderMode.RECOVERING
        sup.healthy()
        return mode

    def _render_stages(self, dt: float, ctl: ControlState, state: EmotionState | None) -> RenderMode:
        if ctl.freeze and self._canvas is not None:
            return RenderMode.FROZEN
        shared, va = emotion_target(state)
        z, c = self.walk(dt, shared, self.features(), ctl, va)
        if ctl.blackout:
            self._canvas = self.painter(None, blackout=True)
            return RenderMode.BLACKOUT
        image = self.generator(z, c)
        self._canvas = self.painter(image, self.walk.valence, self.walk.arousal, self.walk.pulse)
        return RenderMode.LIVE

    def _restart_stages(self, ctl: ControlState) -> None:
        if self.reopen_generator is not None:
            self.generator.replace_runner(self.reopen_generator())
        else:
            self.generator.reset()
        self.walk.reset(ctl.seed, ctl.seed_generation)
        self.painter.reset()
        self.hud.reset()
        self.supervisor.restarted()
        self.status.restarts = self.supervisor.restarts

    def _handle_events(self) -> None:
        from engine.render.display import UiEvent

        for ev in self.sink.events():
            if ev is UiEvent.QUIT:
                self.quit_requested = True
            elif ev is UiEvent.TOGGLE_HUD:
                self.controls.apply("hud", int(not self.controls.snapshot().hud))
            elif ev is UiEvent.RESIZED:
                self.painter.resize(self.sink.size)

    def _draw_hud(self, target: Any) -> None:
        self.hud.draw(target, self._hud_lines)

    def _hud_lines(self) -> list[str]:
        state = self._seen_state
        s = self.status
        label = state.label if state is not None else None
        mode = s.mode.value
        ctl = self.controls.snapshot()
        if ctl.override is not None:
            o = ctl.override
            label = f"override {o.label}" if o.label else f"override v{o.valence:+.2f} a{o.arousal:+.2f}"
        elif state is None or is_silent(state):
            label = label or "silent"
        return hud_lines(
            label,
            self.probs(state),
            self.walk.valence,
            self.walk.arousal,
            s.fps,
            s.frame_p99_ms,
            s.latency_ms,
            s.backend,
            s.stride,
            mode,
        )

    def _update_status(self, mode: RenderMode) -> None:
        s = self.status
        s.frames = self.stats.frames
        s.mode = mode
        s.stride = self.generator.stride
        s.generator_ms = self.generator.gen_ms
        s.post_ms = self.generator.post_ms
        if s.frames % 15 == 0:  # fps and p99 over the ring, a few times a second
            s.fps = self.stats.fps
            s.frame_p99_ms = self.stats.p99_ms
        with self._lock:
            self._snapshot = s.as_dict()


def _probs(state: EmotionState | None) -> Mapping[str, float] | None:
    if state is None:
        return None
    return {c: float(p) for c, p in zip(state.classes, state.probs, strict=True)}


def choose_generator_mode(settings: RenderSettings, runner: Any, manifest: Any) -> GeneratorMode:
    """`auto`: its own thread when one generator call takes more than half a frame, else inline."""
    if settings.generator_mode is not GeneratorMode.AUTO:
        return settings.generator_mode
    from engine.inference.base import Component, example_inputs

    example = example_inputs(Component.GENERATOR, manifest)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        runner(*example)
        times.append((time.perf_counter() - start) * 1000.0)
    ms = sorted(times)[len(times) // 2]
    mode = GeneratorMode.THREAD if ms > 0.5 * 1000.0 / settings.fps else GeneratorMode.INLINE
    log.info("generator %.1f ms per frame at %.0f fps: %s", ms, settings.fps, mode.value)
    return mode


def build_render_loop(
    cfg: EngineConfig,
    bundle: Bundle,
    controls: Controls,
    sink: Sink,
    emotion: Callable[[], EmotionState | None] = lambda: None,
    features: Callable[[], FeatureLike | None] = lambda: None,
) -> RenderLoop:
    """Open the bundle's generator on the configured backend and assemble the stages."""
    from engine.errors import BundleError
    from engine.inference.base import Component
    from engine.inference.chain import frame_runner
    from engine.inference.select import open_runner

    gen = bundle.manifest.generator
    if gen is None:
        raise BundleError(
            f"{bundle.path}: the bundle has no generator (key 'generator'); rendering needs one: export it "
            "without --art-from none, or run --headless for OSC/ZeroMQ only"
        )
    r = cfg.render
    device = r.device.value
    threads = generator_cpu_threads(r)

    def reopen() -> Runner:
        selection = open_runner(bundle, Component.GENERATOR, r.backend, device, threads=threads)
        return frame_runner(bundle, selection.runner, r.backend)

    selection = open_runner(bundle, Component.GENERATOR, r.backend, device, threads=threads)
    log.info("render: %s", selection.message)
    runner = frame_runner(bundle, selection.runner, r.backend)  # + the learned up-sampler, if the bundle has one
    space = ConditionSpace.from_bundle(bundle)
    walk = LatentWalk(space, gen.z_dim, r.condition_tau_s, seed=r.seed)
    mode = choose_generator_mode(r, runner, bundle.manifest)
    args = (runner, runner.resolution, gen.z_dim, bundle.manifest.shared_dim, r.fps)
    step = GeneratorThread(*args) if mode is GeneratorMode.THREAD else GeneratorStep(*args)
    painter = FramePainter(runner.resolution, sink.size, bundle.classes, PostSettings(trails=r.trails, grade=r.grade))
    return RenderLoop(
        r,
        walk,
        step,
        painter,
        sink,
        controls,
        emotion=emotion,
        features=features,
        backend=runner.describe(),
        supervise=cfg.kiosk.enabled,
        restart_limit=cfg.kiosk.restart_limit,
        reopen_generator=reopen,
    )
