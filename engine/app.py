"""The Engine object (source -> ring -> analysis -> sender) and the headless main loop of `synesthesia run`
(engine/run.py reads the command line and picks this loop or the renderer's).

Threads: the source's capture thread(s), the analysis thread, the sender thread. The main thread owns the
Engine and calls `tick()` (headless loop here; the render loop in engine/render/show.py), which publishes
the per-frame audio features, heartbeat and status when they are due. A render loop plugs in like this::

    engine = Engine(config, bundle)
    engine.start()
    features = AudioFeatures(engine.ring.sample_rate)      # its own, per-frame
    while running:
        state = engine.latest()                            # newest EmotionState (or None before the first)
        frame = features(engine.ring)                      # RMS / onset / centroid for this frame
        ... draw ...
        engine.tick(frame_done=True)                       # counts the frame for fps; sends what is due
    engine.stop()

`engine.controls` is what the control servers write; `engine.sender.publish(Topic.FRAME, ...)` publishes
frames; `engine.add_status(name, fn)` adds a section (e.g. the renderer's) to the status message.

A source that is lost or stalled shows everywhere at once: `/syn/state` (and the ZeroMQ emotion/status
`state`) says `lost` on change and every hop while it lasts (no windows arrive to carry it), the audio
features go to zero (a frozen ring would otherwise repeat its last RMS at 30 Hz), `/syn/status/source`
carries the source state on change and with every status, and the operator gets one line on loss and on
recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from engine.analysis.state import EmotionState, StateKind
from engine.audio.features import AudioFeatures, AudioFrame
from engine.audio.ringbuffer import RingBuffer
from engine.audio.source import Source, SourceState
from engine.audio.sources import mic_available, open_source
from engine.audio.windows import SlidingWindows
from engine.config import EngineConfig
from engine.console import say
from engine.controls import Controls, ControlState
from engine.deps import require
from engine.errors import MissingDependencyError
from engine.io.schema import (
    OscAddresses,
    Topic,
    audio_json,
    audio_osc,
    bare_state_json,
    bare_state_osc,
    emotion_json,
    state_osc,
    status_osc,
)
from engine.io.sender import Sender
from engine.kiosk import StageSupervisor
from engine.models.bundle import Bundle
from engine.replay import Recorder, ReplaySource, frame_from_json, state_from_json
from engine.timing import StageTimer

if TYPE_CHECKING:  # these load torch: imported where the engine starts
    from engine.analysis.live import AnalysisLoop
    from engine.inference.base import Runner

log = logging.getLogger("synesthesia.app")

DEMO_SOURCE = "synth:tour:music"  # every emotion in turn, 15 s each (music: the default model hears each)
STATUS_PERIOD_S = 1.0
SUPERVISE_PERIOD_S = 1.0
SOURCE_DOWN = frozenset({SourceState.LOST, SourceState.STALLED})  # no audio now; the source keeps reopening
SILENT_FRAME = AudioFrame(0.0, 0.0, 0.0)  # what /syn/audio/* says while the source is down
# states the Engine sets over the tracker's: leaving one is sent at once, not at the next window
ENGINE_KINDS = frozenset({StateKind.FROZEN, StateKind.OVERRIDE, StateKind.LOST})


class StopReason(Enum):
    """Why `synesthesia run` ended: the last line it says (engine/run.py)."""

    DURATION = "duration reached"
    SIGINT = "signal SIGINT"
    SIGTERM = "signal SIGTERM"
    SOURCE_ENDED = "source ended"
    QUIT = "window closed or quit key"
    ERROR = "error"


class Engine:
    """Everything a show runs except the display. `start()`, then `tick()` from the main thread, `stop()`."""

    def __init__(
        self, config: EngineConfig, bundle: Bundle, controls: Controls | None = None, source: Source | None = None
    ) -> None:
        self.config = config
        self.bundle = bundle
        self.controls = controls or Controls(bundle.classes)
        self.addresses = OscAddresses(config.osc.prefix)
        self.timer = StageTimer()
        fe = bundle.frontend_config()
        self.sample_rate = fe.sample_rate
        self.ring = RingBuffer(round(config.audio.ring_s * fe.sample_rate), fe.sample_rate)
        self.hop = max(1, round(config.audio.hop_s * fe.sample_rate))
        self.windows = SlidingWindows(
            self.ring, fe.n_samples, self.hop, early=round(config.audio.early_s * fe.sample_rate)
        )
        self.source = source
        self.sender: Sender | None = None
        self.analysis: AnalysisLoop | None = None
        # kiosk: a failed analysis thread is restarted in-process; otherwise (limit 0) its error ends the run
        self.supervisor = StageSupervisor("analysis", config.kiosk.restart_limit if config.kiosk.enabled else 0)
        self._next_check = 0.0
        self.notices: list[str] = []
        self.backend_message = ""
        self._features = AudioFeatures(fe.sample_rate)
        self._audio_cache: tuple[int, AudioFrame] | None = None  # (ring.written, its frame): current_audio
        self._status_sections: dict[str, Callable[[], Any]] = {}
        self._tick_hooks: list[Callable[[], None]] = []
        self.last_status: dict[str, Any] | None = None  # the newest 1 Hz status (read by the web console)
        self._started_at: float | None = None
        self._heartbeat = 0
        self._frames: deque[float] = deque(maxlen=1024)
        self._next_audio = 0.0
        self._next_status = 0.0
        self._last_state_sent: StateKind | None = None
        self._next_state = 0.0
        self._source_state: SourceState | None = None
        self._down_since: float | None = None
        self.recorder: Recorder | None = None  # --record DIR
        self._controls_seen: ControlState | None = None  # the last recorded (frozen) controls
        self._replay_state: EmotionState | None = None  # --source replay:DIR: the last replayed state
        self._replay_audio = SILENT_FRAME

    # -- lifecycle --------------------------------------------------------------------------------------

    def notice(self, message: str, level: int = logging.WARNING) -> None:
        """Something the operator should know (a fallback): logged and kept for `status`."""
        log.log(level, message)
        self.notices.append(message)

    def _open_outputs(self) -> Sender:
        from engine.io.osc_out import OscOut

        cfg = self.config
        osc = OscOut(cfg.osc.targets) if cfg.osc.enabled and cfg.osc.targets else None
        zmq = None
        if cfg.zmq.enabled and cfg.zmq.pub:
            from engine.io.zmq_pub import ZmqPublisher

            try:
                zmq = ZmqPublisher(cfg.zmq.pub, cfg.zmq.hwm)
            except (require("zmq", "ZeroMQ output").ZMQError, MissingDependencyError) as exc:
                # port in use, bad address, no pyzmq: the show goes on without it
                self.notice(f"ZeroMQ PUB {cfg.zmq.pub} unavailable ({exc}); publishing OSC only")
        sender = Sender(osc, zmq, cfg.osc.queue_size, self.timer)
        if cfg.record.dir is not None:
            from engine import __version__

            header = {"engine": __version__, "bundle": self.bundle.manifest.name, "digest": self.bundle.digest}
            header |= {"prefix": cfg.osc.prefix, "hop_s": cfg.audio.hop_s, "source": cfg.audio.source}
            self.recorder = Recorder(cfg.record.dir, header)
            if self.recorder.active:
                sender.tap = self.recorder.message
                say(f"recording the show to {self.recorder.path}")
        return sender

    def _open_source(self) -> Source:
        a = self.config.audio
        spec = a.source
        if spec.split(":", 1)[0] == "mic" and (why := mic_available()) is not None:
            say(f"no microphone ({why}); playing the demo source {DEMO_SOURCE} instead")
            self.notices.append(f"no microphone ({why}); demo source {DEMO_SOURCE}")
            spec = DEMO_SOURCE
        return open_source(
            spec,
            self.ring,
            block_ms=a.block_ms,
            hop=self.hop,
            realtime=a.realtime,
            loop=a.loop,
            reconnect_s=a.reconnect_s,
            stall_s=a.stall_s,
        )

    def _fallback_runner(self, failed: Runner) -> Runner | None:
        from engine.inference.base import BackendKind, Component
        from engine.inference.select import open_runner

        for kind in (BackendKind.TORCH, BackendKind.ONNX):
            if kind is failed.kind:
                continue
            try:
                return open_runner(self.bundle, Component.AUDIO, kind, "cpu").runner
            except Exception as exc:  # whatever the replacement raises, the current one stays
                self.notice(f"fallback backend {kind.value} failed too: {exc}")
        return None

    def open_source(self) -> Source:
        """Open the configured source (not started), once: a bad spec fails here, before any model warms up."""
        if self.source is None:
            self.source = self._open_source()
        return self.source

    def start(self) -> None:
        """Open the model backend, the outputs and the source; start the threads. Returns once listening."""
        from engine.analysis.live import ANALYSIS_TORCH_THREADS, AnalysisLoop, with_torch_threads
        from engine.analysis.nearest import ArtIndex
        from engine.analysis.predict import WindowPredictor
        from engine.analysis.state import EmotionTracker
        from engine.inference.base import Component
        from engine.inference.select import open_runner

        cfg = self.config
        self.open_source()  # first: a bad source spec should fail before the slow model warm-up
        if self.replaying:  # the recording carries the states: no model, no analysis thread
            self.backend_message = f"replaying {self.source.name} (no inference)"
            self.sender = self._open_outputs()
            self.sender.start()
            self.source.on_line = self._replayed
            self.source.start()
            self._started_at = time.monotonic()
            self._next_audio = self._next_status = self._started_at
            self._next_check = self._started_at + SUPERVISE_PERIOD_S
            return
        selection = with_torch_threads(
            ANALYSIS_TORCH_THREADS,
            lambda: open_runner(self.bundle, Component.AUDIO, cfg.analysis.backend, cfg.analysis.device.value),
        )
        self.backend_message = selection.message
        for name, why in selection.failures.items():
            self.notices.append(f"backend {name} unavailable: {why}")
        log.info(selection.message)
        predictor = WindowPredictor(self.bundle, selection.runner, device="cpu")
        art = ArtIndex.from_bundle(self.bundle)
        tracker = EmotionTracker(self.bundle.classes, cfg.analysis, self.controls, art.class_anchors() if art else None)
        self.sender = self._open_outputs()
        self.sender.start()
        self.analysis = AnalysisLoop(
            self.windows,
            predictor,
            tracker,
            self.sender,
            self.addresses,
            art,
            self.timer,
            fallback=self._fallback_runner,
            torch_threads=ANALYSIS_TORCH_THREADS,
        )
        self.source.start()
        self.analysis.start()
        self._started_at = time.monotonic()
        self._next_audio = self._next_status = self._started_at
        self._next_check = self._started_at + SUPERVISE_PERIOD_S

    def stop(self) -> None:
        """Stop capture, analysis and sending (each joined with a timeout); release the device and sockets."""
        if self.source is not None:
            self.source.stop()
        if self.analysis is not None:
            self.analysis.stop()
        if self.sender is not None:
            self._publish_status()  # a last status, so a watcher sees the clean end
            self.sender.stop()
        if self.recorder is not None:
            self.recorder.close()

    # -- main-thread work -------------------------------------------------------------------------------

    def latest(self) -> EmotionState | None:
        """The newest EmotionState, or None before the first window."""
        if self.replaying:
            return self._replay_state
        return self.analysis.latest.get() if self.analysis is not None else None

    @property
    def source_ended(self) -> bool:
        return self.source is not None and self.source.state is SourceState.ENDED

    def add_status(self, name: str, fn: Callable[[], Any]) -> None:
        """Add a section to the status message (called once a second from the main thread)."""
        self._status_sections[name] = fn

    def add_tick_hook(self, fn: Callable[[], None]) -> None:
        """Call `fn()` at the end of every `tick()`, on the main thread: between two frames when rendering
        (the web console applies presets and bundle swaps there)."""
        self._tick_hooks.append(fn)

    def fps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return float(sum(1 for t in self._frames if now - t <= 1.0))

    @property
    def source_down(self) -> bool:
        """The source is lost or stalled: no audio arrives (it keeps trying to reopen)."""
        return self.source is not None and self.source.state in SOURCE_DOWN

    def current_audio(self) -> AudioFrame:
        """The audio features at the ring's newest sample, computed once per captured block for all the main
        thread's callers (the render loop's pulse every frame, the OSC audio topic at its rate): two feature
        stages on the same audio did the same work twice per frame."""
        written = self.ring.written
        cached = self._audio_cache
        if cached is not None and cached[0] == written and not self.replaying and not self.source_down:
            return cached[1]
        frame = self.audio_frame(self._features)
        self._audio_cache = (written, frame)
        return frame

    def audio_frame(self, features: AudioFeatures) -> AudioFrame:
        """`features(ring)`, or zeros while the source is down (the ring would repeat its last samples)."""
        if self.replaying:
            return self._replay_audio
        if self.source_down:
            features.reset()  # the spectrum from before the outage must not make an onset after it
            return SILENT_FRAME
        return features(self.ring)

    def _effective_kind(self) -> StateKind | None:
        """The operator's freeze/override first (the values come from them, heard or not), then a lost source,
        then the tracker's state."""
        ctl = self.controls.snapshot()
        if ctl.freeze:
            return StateKind.FROZEN
        if ctl.override is not None:
            return StateKind.OVERRIDE
        if self.source_down:
            return StateKind.LOST
        state = self.latest()
        return None if state is None else state.state

    def _watch_source(self, now: float) -> bool:
        """Say when the source goes down and comes back; True when its state changed."""
        src = self.source.state if self.source is not None else None
        if src is self._source_state:
            return False
        prev, self._source_state = self._source_state, src
        if self.recorder is not None and src is not None:
            self.recorder.event("source", state=src.value)
        if src in SOURCE_DOWN and prev not in SOURCE_DOWN:
            self._down_since = now
            say(f"audio source lost: {self.source.last_error or src.value}")  # the source has logged it
        elif src is SourceState.RUNNING and self._down_since is not None:
            down_s, self._down_since = now - self._down_since, None
            say(f"audio source back after {down_s:.1f} s")
            log.info("audio source %s back after %.1f s", self.source.name, down_s)
        return True

    def _publish_state(self, now: float) -> None:
        """Send the effective state when it changes (and every hop while lost: no windows carry it then)."""
        kind = self._effective_kind()
        if kind is None:
            return
        state = self.latest()
        tracked = state.state if state is not None else None
        changed = kind is not self._last_state_sent
        if not changed and not (kind is StateKind.LOST and now >= self._next_state):
            return
        # the analysis sends the tracker's state every hop; the engine sends what it set, or leaving it
        if kind is not tracked or self._last_state_sent in ENGINE_KINDS:
            if state is None:
                msg = bare_state_json(kind.value), bare_state_osc(self.addresses, kind.value)
            else:
                shown = replace(state, state=kind)
                msg = emotion_json(shown, None), state_osc(self.addresses, shown)
            self.sender.publish(Topic.EMOTION, *msg)
        self._last_state_sent = kind
        self._next_state = now + self.config.audio.hop_s

    def tick(self, now: float | None = None, frame_done: bool = False) -> float:
        """Publish what is due (audio features, state changes, heartbeat + status); returns seconds to the next."""
        now = time.monotonic() if now is None else now
        if frame_done:
            self._frames.append(now)
        sender = self.sender
        if sender is None:
            return STATUS_PERIOD_S
        if self._watch_source(now):
            self._next_status = now  # /syn/status/source on change
        if self.recorder is not None:
            self._record_controls()
        if self.replaying:  # the recording's own audio and state messages are re-sent as they were
            self._next_audio = now + 1.0
        elif now >= self._next_audio:
            frame = self.current_audio()
            sender.publish(Topic.AUDIO, audio_json(frame), audio_osc(self.addresses, frame))
            period = 1.0 / self.config.osc.audio_rate_hz
            self._next_audio = max(self._next_audio + period, now - period)  # no burst after a stall
        if not self.replaying:
            self._publish_state(now)
        if now >= self._next_check:
            self._next_check = now + SUPERVISE_PERIOD_S
            self.supervise_analysis(now)
        if now >= self._next_status:
            self._publish_status(now)
            self._next_status = max(self._next_status + STATUS_PERIOD_S, now)
        for hook in self._tick_hooks:
            hook()
        return max(0.0, min(self._next_audio, self._next_status) - time.monotonic())

    @property
    def replaying(self) -> bool:
        """The source is a recording (`replay:DIR`): states and features come from it, not from a model."""
        return isinstance(self.source, ReplaySource)

    def _replayed(self, line: dict[str, Any]) -> None:
        """One recording line, at its time (the replay source's thread)."""
        if line["k"] == "msg" and self.sender is not None:
            topic = Topic(line["topic"])
            data = line.get("data") or {}
            self.sender.publish(topic, data, [(a, tuple(v)) for a, v in line.get("osc", [])])
            if topic is Topic.EMOTION:
                state = state_from_json(data, time.monotonic())
                if state is not None:
                    self._replay_state = state
            elif topic is Topic.AUDIO:
                self._replay_audio = frame_from_json(data)
        elif line["k"] == "controls":
            self._apply_recorded_controls(line.get("controls") or {})

    def _apply_recorded_controls(self, recorded: dict[str, Any]) -> None:
        now = self.controls.as_dict()
        for name in ("intensity", "speed", "smoothing", "freeze", "blackout", "seed", "hud", "override"):
            value = recorded.get(name)
            if name not in recorded or value == now.get(name) or (name == "smoothing" and value is None):
                continue
            args = ("none",) if value is None else tuple(value) if isinstance(value, list) else (value,)
            try:
                self.controls.apply(name, *args)
            except ValueError as exc:  # a recording from another bundle (unknown label): skip, say why
                log.warning("replay: control %s %r not applied: %s", name, value, exc)

    def _record_controls(self) -> None:
        # ControlState is frozen and replaced on every change: identity says "changed" without a dict per frame
        state = self.controls.snapshot()
        if state is self._controls_seen:
            return
        self._controls_seen = state
        recorded = {k: v for k, v in self.controls.as_dict().items() if k not in ("applied", "rejected")}
        self.recorder.event("controls", controls=recorded)

    def supervise_analysis(self, now: float) -> None:
        """Restart an analysis thread that died (after the supervisor's backoff); past the supervisor's
        limit (0 outside kiosk mode) its error is raised here, in the main thread, and ends the run."""
        a = self.analysis
        if a is None:
            return
        if a.alive:
            self.supervisor.healthy()
            return
        if not self.supervisor.failed:
            self.supervisor.fail(a.failure or RuntimeError("the analysis thread stopped"), now)
        elif self.supervisor.due(now) and a.stop():
            a.reset()
            a.start()
            self.supervisor.restarted()

    def _latency_ms(self) -> float:
        lat = self.timer.summary().get("latency")
        return lat["p50"] if lat else 0.0

    def _publish_status(self, now: float | None = None) -> None:
        if self.sender is None:
            return
        now = time.monotonic() if now is None else now
        self._heartbeat += 1
        status = self.status(now)
        self.last_status = status
        source = self.source.state.value if self.source is not None else None
        osc = status_osc(self.addresses, self._heartbeat, status["fps"], status["latency_ms"], source)
        self.sender.publish(Topic.STATUS, status, osc)

    def status(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        state = self.latest()
        kind = self._effective_kind()
        out: dict[str, Any] = {
            "heartbeat": self._heartbeat,
            "uptime_s": round(now - self._started_at, 3) if self._started_at else 0.0,
            "fps": self.fps(now),
            "latency_ms": self._latency_ms(),
            "state": kind.value if kind else None,
            "label": state.label if state is not None else None,
            "backend": self.backend_message,
            "notices": list(self.notices[-10:]) + (self.analysis.notices[-5:] if self.analysis else []),
            "source": self.source.status() if self.source else None,
            "analysis": {**self.analysis.stats(), "restarts": self.supervisor.restarts} if self.analysis else None,
            "timings_ms": self.timer.summary(),
            "sender": self.sender.stats() if self.sender else None,
            "controls": self.controls.as_dict(),
        }
        if self.recorder is not None:
            out["record"] = self.recorder.status()
        for name, fn in self._status_sections.items():
            try:
                out[name] = fn()
            except Exception as exc:  # a broken section must not take the status message with it
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out


# -- command line --------------------------------------------------------------------------------------


def run_headless(engine: Engine, duration_s: float | None, stop: threading.Event) -> StopReason | None:
    """Tick until `duration_s`, `stop`, or the end of a file that does not loop; the reason, or None when
    `stop` ended it (the caller knows who set it)."""
    end = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set():
        wait = engine.tick()
        now = time.monotonic()
        if end is not None and now >= end:
            return StopReason.DURATION
        if engine.source_ended:
            say("the source has ended")
            return StopReason.SOURCE_ENDED
        stop.wait(min(wait, end - now) if end is not None else wait)
    return None
