"""Live changes from the web console, applied on the main thread between two frames.

`LiveSession` is the console's hand on the running show:

- **presets**: a venue TOML (installation/configs/*.toml and `web.preset_dirs`) is validated like the run's
  own config (the command-line flags still override it) and compared with what runs; the keys in
  `LIVE_KEYS` are applied between two frames, every other changed key is reported as needing a restart
  and left alone;
- **bundle swap**: a bundle directory is loaded (`load_bundle` checks format and sha256), its runners are
  opened and tried once on a `web-bundle` thread, then the analysis stages and the render stages are swapped
  between two frames; on any failure the running bundle stays and the reason is logged and said;
- the preview tap is added to the render loop once it exists.

The web server thread calls `apply_preset` / `request_bundle` and waits on the returned future; the main
thread runs `on_tick` (an `Engine` tick hook) and does the work.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import EngineConfig, load_config
from engine.console import say
from engine.errors import SynesthesiaError
from engine.io.control import ControlSurface, Outcome
from engine.threads import OwnedThread

if TYPE_CHECKING:
    from engine.app import Engine
    from engine.render.show import QueryState
    from engine.web.preview import PreviewTap

log = logging.getLogger("synesthesia.web")

REPO_PRESETS = Path(__file__).resolve().parents[2] / "installation" / "configs"  # in a checkout


class Landing(StrEnum):
    """Where a live key lands."""

    CONTROL = "control"  # through the ControlSurface, like an OSC or ZeroMQ control
    PAINTER = "painter"  # the render loop's post-processing
    WALK = "walk"  # the render loop's latent walk
    TRACKER = "tracker"  # the analysis thread's emotion tracker


LIVE_KEYS: dict[str, Landing] = {
    "render.intensity": Landing.CONTROL,
    "render.speed": Landing.CONTROL,
    "render.seed": Landing.CONTROL,
    "render.hud": Landing.CONTROL,
    "render.trails": Landing.PAINTER,
    "render.grade": Landing.PAINTER,
    "render.condition_tau_s": Landing.WALK,
    "analysis.attack_s": Landing.TRACKER,
    "analysis.release_s": Landing.TRACKER,
    "analysis.hysteresis_margin": Landing.TRACKER,
    "analysis.hysteresis_hops": Landing.TRACKER,
    "analysis.silence_hops": Landing.TRACKER,
}


def leaves(cfg: EngineConfig) -> dict[str, Any]:
    """Every config value by its dotted key (lists are one value)."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{path}{key}.")
            else:
                out[f"{path}{key}"] = value

    walk(cfg.model_dump(mode="json"), "")
    return out


def with_leaves(cfg: EngineConfig, values: dict[str, Any]) -> EngineConfig:
    """`cfg` with some dotted keys replaced (values already validated)."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in values.items():
        section, _, leaf = key.partition(".")
        if leaf:
            sections.setdefault(section, {})[leaf] = value
        else:
            top[key] = value
    update = {name: getattr(cfg, name).model_copy(update=vals) for name, vals in sections.items()}
    return cfg.model_copy(update=update | top)


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path


def find_presets(dirs: list[str], current: str | None = None) -> list[Preset]:
    """The presets on offer: the run's own config first, then *.toml of the checkout's installation/configs
    and of `dirs` (a name seen before is skipped)."""
    found: list[Preset] = []
    seen: set[str] = set()
    paths: list[Path] = [Path(current)] if current else []
    for d in [REPO_PRESETS, *map(Path, dirs)]:
        if d.is_dir():
            paths += sorted(d.glob("*.toml"))
    for p in paths:
        if p.stem not in seen and p.is_file():
            seen.add(p.stem)
            found.append(Preset(p.stem, p))
    return found


@dataclass
class PresetResult:
    preset: str
    applied: dict[str, Any] = field(default_factory=dict)
    restart: dict[str, Any] = field(default_factory=dict)  # key -> the preset's value, left alone
    rejected: dict[str, str] = field(default_factory=dict)  # key -> why the control surface refused it

    def as_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "applied": self.applied, "restart": self.restart, "rejected": self.rejected}


class SwapState(StrEnum):
    IDLE = "idle"
    LOADING = "loading"  # the web-bundle thread loads and tries the runners
    READY = "ready"  # waiting for the next frame boundary
    SWAPPED = "swapped"
    FAILED = "failed"  # the running bundle kept going


class SwapRefusedError(SynesthesiaError):
    """A bundle that cannot replace the running one live (it would need a restart)."""


@dataclass
class Prepared:
    """Everything a new bundle needs, opened and tried off the main thread."""

    bundle: Any
    backend_message: str
    predictor: Any
    tracker: Any
    art: Any
    render: dict[str, Any] | None = None  # runner, walk, step, reopen (when a render loop runs)


class LiveSession:
    """The web console's changes to the running show (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        query: QueryState,
        surface: ControlSurface,
        overrides: dict[str, Any] | None = None,
        config_path: str | None = None,
        preview: PreviewTap | None = None,
    ) -> None:
        self.engine = engine
        self.query = query
        self.surface = surface
        self.overrides = dict(overrides or {})
        self.config_path = config_path
        self.preview = preview
        self.config = engine.config  # what runs now: the start config with the live keys applied since
        self.preset: str | None = Path(config_path).stem if config_path else None
        self.bundle_path = str(engine.bundle.path)
        self.swap_state = SwapState.IDLE
        self.swap_message = ""
        self.notices: deque[str] = deque(maxlen=10)
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Callable[[], Any], concurrent.futures.Future]] = deque()
        self._prepared: Prepared | None = None
        self._loader: OwnedThread | None = None
        self._preview_attached = False

    # -- any thread ------------------------------------------------------------------------------------
    def presets(self) -> list[Preset]:
        return find_presets(self.config.web.preset_dirs, self.config_path)

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `fn()` on the main thread at the next tick (between two frames); its result or error."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._jobs.append((fn, fut))
        return fut

    def plan_preset(self, name: str) -> tuple[EngineConfig, PresetResult]:
        """Validate preset `name` (flags still override it) and sort its changes: live or restart.
        ConfigError (exit-2 kind) when it is not valid; KeyError when there is no such preset."""
        preset = next((p for p in self.presets() if p.name == name), None)
        if preset is None:
            raise KeyError(name)
        target = load_config(preset.path, self.overrides)
        now, new = leaves(self.config), leaves(target)
        result = PresetResult(name)
        for key, value in new.items():
            if now.get(key) == value:
                continue
            if key in LIVE_KEYS:
                result.applied[key] = value
            else:
                result.restart[key] = value
        return target, result

    def apply_preset(self, name: str) -> concurrent.futures.Future:
        """Plan on this thread (errors raise here), apply on the main thread; the future's PresetResult."""
        _, result = self.plan_preset(name)
        return self.submit(lambda: self._apply(result))

    def swap_status(self) -> dict[str, Any]:
        return {"state": self.swap_state.value, "message": self.swap_message, "path": self.bundle_path}

    def request_bundle(self, path: str) -> dict[str, Any]:
        """Start loading bundle `path` on the web-bundle thread; refused while another load is under way."""
        with self._lock:
            if self.swap_state in (SwapState.LOADING, SwapState.READY):
                raise SwapRefusedError(f"bundle {self.swap_message or 'load'} is still under way; wait for it")
            if self._loader is not None and self._loader.alive:
                raise SwapRefusedError("the previous bundle load has not finished")
            self.swap_state, self.swap_message = SwapState.LOADING, f"loading {path}"
            self._loader = OwnedThread(lambda stop: self._load(path, stop), "web-bundle")
        say(f"web console: loading bundle {path}")
        self._loader.start()
        return self.swap_status()

    def stop(self) -> bool:
        return self._loader.stop(10.0) if self._loader is not None else True

    # -- main thread -----------------------------------------------------------------------------------
    def on_tick(self) -> None:
        """Engine tick hook: attach the preview, run the queued changes, swap a ready bundle."""
        render = self.query.render
        if self.preview is not None and not self._preview_attached and render is not None:
            render.taps.add(self.preview).start()
            self._preview_attached = True
        while True:
            with self._lock:
                if not self._jobs:
                    break
                fn, fut = self._jobs.popleft()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except Exception as exc:  # handed to the waiting web request, which reports it
                    fut.set_exception(exc)
        if self.swap_state is SwapState.READY and self._prepared is not None:
            prepared, self._prepared = self._prepared, None
            try:
                self._commit(prepared)
            except Exception as exc:  # the old stages are still in place (see _commit)
                self._failed(f"{type(exc).__name__}: {exc}")

    def _apply(self, result: PresetResult) -> PresetResult:
        engine, render = self.engine, self.query.render
        applied: dict[str, Any] = {}
        for key, value in result.applied.items():
            landing, leaf = LIVE_KEYS[key], key.split(".", 1)[1]
            if landing is Landing.CONTROL:
                arg = int(value) if isinstance(value, bool) else value
                outcome, err = self.surface.apply(leaf, [arg], source=f"web preset {result.preset}")
                if outcome is not Outcome.APPLIED:
                    result.rejected[key] = err or outcome.value
                    continue
            elif landing is Landing.PAINTER and render is not None:
                from engine.render.frames import PostSettings

                s = render.painter.settings
                trails, grade = (value, s.grade) if leaf == "trails" else (s.trails, value)
                render.painter.settings = PostSettings(trails=trails, grade=grade)
                render.painter.grade.strength = float(grade)
            elif landing is Landing.WALK and render is not None:
                render.walk.condition_tau_s = float(value)
            applied[key] = value
        self.config = with_leaves(self.config, applied)
        if any(LIVE_KEYS[k] is Landing.TRACKER for k in applied) and engine.analysis is not None:
            engine.analysis.tracker.settings = self.config.analysis  # one reference: read whole per hop
        self.preset = result.preset
        restart = f"; needs a restart (left alone): {', '.join(result.restart)}" if result.restart else ""
        msg = f"web console: preset {result.preset}: applied {', '.join(applied) or 'nothing'}{restart}"
        log.info(msg)
        self.notices.append(msg)
        return result

    # -- bundle swap -------------------------------------------------------------------------------------
    def _failed(self, why: str) -> None:
        self.swap_state, self.swap_message = SwapState.FAILED, why
        msg = f"web console: bundle swap failed, {self.engine.bundle.path} keeps running: {why}"
        log.warning(msg)
        self.notices.append(msg)
        say(msg)

    def _load(self, path: str, stop: threading.Event) -> None:
        try:
            prepared = self._prepare(path)
        except Exception as exc:  # any failure leaves the running bundle in place; said and shown
            self._failed(str(exc) if isinstance(exc, SynesthesiaError) else f"{type(exc).__name__}: {exc}")
            return
        if stop.is_set():
            self._failed("the console stopped before the swap")
            return
        self._prepared = prepared
        self.swap_state, self.swap_message = SwapState.READY, f"{path} ready; swapping at the next frame"

    def _prepare(self, path: str) -> Prepared:
        import numpy as np

        from engine.analysis.nearest import ArtIndex
        from engine.analysis.predict import WindowPredictor
        from engine.analysis.state import EmotionTracker
        from engine.inference.base import Component, example_inputs
        from engine.inference.select import open_runner
        from engine.models.bundle import load_bundle

        engine, cfg = self.engine, self.config
        bundle = load_bundle(path)
        old = engine.bundle
        if list(bundle.classes) != list(old.classes):
            raise SwapRefusedError(
                f"{path}: its classes {list(bundle.classes)} differ from the running {list(old.classes)}; "
                "a new taxonomy needs a restart"
            )
        fe, fe_old = bundle.frontend_config(), old.frontend_config()
        if (fe.sample_rate, fe.n_samples) != (fe_old.sample_rate, fe_old.n_samples):
            raise SwapRefusedError(
                f"{path}: its audio ({fe.sample_rate} Hz, {fe.n_samples} samples a window) differs from the running "
                f"({fe_old.sample_rate} Hz, {fe_old.n_samples}); that needs a restart"
            )
        render = self.query.render
        if render is not None and bundle.manifest.generator is None:
            raise SwapRefusedError(f"{path}: the bundle has no generator and the show is rendering")
        selection = open_runner(bundle, Component.AUDIO, cfg.analysis.backend, cfg.analysis.device.value)
        predictor = WindowPredictor(bundle, selection.runner, device="cpu")
        predictor(np.zeros(fe.n_samples, dtype=np.float32))  # one window through the new model, here
        art = ArtIndex.from_bundle(bundle)
        tracker = EmotionTracker(bundle.classes, cfg.analysis, engine.controls, art.class_anchors() if art else None)
        prepared = Prepared(bundle, selection.message, predictor, tracker, art)
        if render is not None:
            prepared.render = self._prepare_render(bundle)
            runner = prepared.render["runner"]
            runner(*example_inputs(Component.GENERATOR, bundle.manifest))  # one frame through the new generator
        return prepared

    def _prepare_render(self, bundle: Any) -> dict[str, Any]:
        from engine.config import GeneratorMode, generator_cpu_threads
        from engine.inference.base import Component
        from engine.inference.chain import frame_runner
        from engine.inference.select import open_runner
        from engine.render.frames import GeneratorStep, GeneratorThread
        from engine.render.latent import ConditionSpace, LatentWalk
        from engine.render.loop import choose_generator_mode

        r = self.config.render
        device = r.device.value

        def reopen() -> Any:
            selection = open_runner(bundle, Component.GENERATOR, r.backend, device, threads=generator_cpu_threads(r))
            return frame_runner(bundle, selection.runner, r.backend)

        runner = reopen()
        gen = bundle.manifest.generator
        ctl = self.engine.controls.snapshot()
        walk = LatentWalk(ConditionSpace.from_bundle(bundle), gen.z_dim, r.condition_tau_s)
        walk.reset(ctl.seed, ctl.seed_generation)
        mode = choose_generator_mode(r, runner, bundle.manifest)
        args = (runner, runner.resolution, gen.z_dim, bundle.manifest.shared_dim, r.fps)
        step = GeneratorThread(*args) if mode is GeneratorMode.THREAD else GeneratorStep(*args)
        return {"runner": runner, "walk": walk, "step": step, "reopen": reopen}

    def _commit(self, p: Prepared) -> None:
        """Between two frames: render stages first (the only step that can fail, before anything changed),
        then the analysis stages (taken by the analysis thread before its next window)."""
        engine, loop = self.engine, self.query.render
        if loop is not None and p.render is not None:
            from engine.render.frames import FramePainter, PostSettings

            r = p.render
            s = loop.painter.settings
            screen = getattr(loop.sink, "screen", None)
            painter = FramePainter(
                r["runner"].resolution, loop.sink.size, p.bundle.classes, PostSettings(s.trails, s.grade), like=screen
            )
            step = r["step"]
            step.start()
            old = loop.generator
            loop.generator, loop.walk, loop.painter = step, r["walk"], painter
            loop.reopen_generator = r["reopen"]
            loop.status.backend = r["runner"].describe()
            old.stop()
        if engine.analysis is not None:
            engine.analysis.swap(p.predictor, p.tracker, p.art)
        engine.bundle = p.bundle
        engine.backend_message = p.backend_message
        self.bundle_path = str(p.bundle.path)
        self.swap_state, self.swap_message = SwapState.SWAPPED, f"running {p.bundle.path}"
        msg = f"web console: swapped to bundle {p.bundle.path} ({p.backend_message})"
        log.info(msg)
        self.notices.append(msg)
        say(msg)
