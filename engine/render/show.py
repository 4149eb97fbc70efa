"""The show on the main thread: the Engine (capture, analysis, sender), the render loop, control servers.

    Engine.start()                      capture, analysis and sender threads
    start_control_servers()             OSC control thread, ZeroMQ control thread -> Controls
    run_show():  per frame
        render loop step                LatentWalk <- engine.latest() + per-frame audio features
        engine.tick(frame_done=True)    audio features, state changes, heartbeat and status out
        sink.wait()                     vsync or clock

Display: a window unless `render.headless`; with no display to open it on (no DISPLAY, WAYLAND_DISPLAY or
SDL_VIDEODRIVER, or the window cannot be created) it says so and renders headless. Frames go to other
software through frame taps (engine/render/taps.py) in both cases: the ZeroMQ `frame` topic
(`zmq.frames`), NDI, Spout, Syphon, the web preview; headless rendering also writes `render.frames_dir`.
Headless with none of these, there is nothing to draw for and the engine runs without the renderer.

Kiosk (`--kiosk`): fullscreen, no HUD, a rotating log file (set up by the caller), the render stage restarted
in-process by the render loop's supervisor, and the analysis thread by `Engine.tick` if it ever dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.app import Engine, StopReason
from engine.audio.features import AudioFrame
from engine.config import EngineConfig
from engine.console import say
from engine.deps import require
from engine.errors import MissingDependencyError
from engine.io.allow import SenderAllowList, exposure
from engine.io.control import ControlSurface
from engine.io.schema import Topic
from engine.render.display import FrameOut, HeadlessSink, choose_sink
from engine.render.loop import RenderLoop, build_render_loop
from engine.render.share import build_share_taps, enabled_kinds
from engine.render.taps import ZmqFrameTap

if TYPE_CHECKING:
    from engine.io.midi_in import MidiInput
    from engine.io.osc_control import OscControlServer
    from engine.io.zmq_control import ZmqControlServer
    from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.show")


WARMUP_YIELD_S = 0.02  # per frame while the models warm up


class QueryState:
    """What `/syn/ctl/query` and the ZeroMQ control replies carry besides the controls (thread-safe reads)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.render: RenderLoop | None = None

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        state = self.engine.latest()
        status: dict[str, Any] = {}
        if self.render is not None:
            status.update(self.render.snapshot())
        out["status"] = status
        if state is not None:
            out["emotion"] = {"label": state.label or "none", "confidence": round(float(state.confidence), 4)}
            out["emotion"].update({c: round(float(p), 4) for c, p in zip(state.classes, state.probs, strict=False)})
            out["valence"] = round(float(state.valence), 4)
            out["arousal"] = round(float(state.arousal), 4)
            out["state"] = state.state.value
        return out


def start_control_servers(
    cfg: EngineConfig, surface: ControlSurface
) -> list[OscControlServer | ZmqControlServer | MidiInput]:
    """OSC and ZeroMQ control servers per the config; one that cannot bind is reported and skipped."""
    servers: list[OscControlServer | ZmqControlServer | MidiInput] = []
    if cfg.osc.enabled and cfg.osc.in_port:
        from engine.io.osc_control import OscControlServer

        try:
            osc = OscControlServer(
                surface,
                cfg.osc.in_host,
                cfg.osc.in_port,
                cfg.osc.prefix,
                allow=SenderAllowList(cfg.osc.allow),
                query_port=cfg.osc.query_port,
            )
            servers.append(osc.start())
        except OSError as exc:
            say(f"OSC control port {cfg.osc.in_host}:{cfg.osc.in_port} unavailable ({exc}); no OSC control")
    if cfg.zmq.enabled and cfg.zmq.ctl:
        from engine.io.zmq_control import ZmqControlServer

        try:
            servers.append(ZmqControlServer(surface, cfg.zmq.ctl, allow=SenderAllowList(cfg.zmq.ctl_allow)).start())
        except (require("zmq", "ZeroMQ control").ZMQError, MissingDependencyError) as exc:
            # address in use or invalid, no pyzmq: the show goes on without it
            say(f"ZeroMQ control {cfg.zmq.ctl} unavailable ({exc}); no ZeroMQ control")
    if cfg.midi.enabled:
        from engine.io.midi_in import MidiInput

        try:  # a missing or vanished port is retried by MidiInput itself; only a missing extra ends up here
            servers.append(MidiInput(cfg.midi, surface).start())
        except MissingDependencyError as exc:
            say(f"no MIDI control: {exc}")
    return servers


def network_lines(
    cfg: EngineConfig, engine: Engine, servers: list[OscControlServer | ZmqControlServer | MidiInput]
) -> list[str]:
    """What listens where and who may steer it, one line each (said at startup)."""
    lines = []
    sender = engine.sender
    if sender is not None and sender.osc is not None:
        lines.append("OSC out to " + ", ".join(cfg.osc.targets))
    if sender is not None and sender.zmq is not None:
        lines.append(f"ZeroMQ PUB on {sender.zmq.endpoint}" + exposure(sender.zmq.endpoint))
    lines += [server.describe() for server in servers]
    return lines


def wants_renderer(cfg: EngineConfig) -> bool:
    """A window, or headless frames that go somewhere."""
    frames_out = (cfg.zmq.enabled and cfg.zmq.frames) or cfg.render.frames_dir is not None or enabled_kinds(cfg)
    return not cfg.render.headless or bool(frames_out)


def _frame_out(engine: Engine, cfg: EngineConfig) -> FrameOut | None:
    if not (cfg.zmq.enabled and cfg.zmq.frames):
        return None

    def publish(header: dict[str, Any], data: bytes) -> None:
        sender = engine.sender  # None while the engine is still starting (the window opens first)
        if sender is not None:
            sender.publish(Topic.FRAME, header, blob=data)  # non-blocking: the sender's latest-only frame slot

    return publish


def _open_loop(engine: Engine, cfg: EngineConfig, features: Callable[[], AudioFrame | None]) -> RenderLoop:
    frame_out = _frame_out(engine, cfg)
    # the sink only shows (window) or writes `frames_dir` (headless); ZeroMQ frames always go out through the
    # tap, encoded off the render thread, beside a window and headless alike
    sink, reason = choose_sink(cfg.render, cfg.kiosk.enabled, None, cfg.zmq.frame_format, cfg.zmq.frame_every)
    if reason:
        say(f"{reason}; running headless")
    loop = build_render_loop(cfg, engine.bundle, engine.controls, sink, emotion=engine.latest, features=features)
    zmq_tap = None
    if frame_out is not None:
        zmq_tap = loop.taps.add(ZmqFrameTap(frame_out, cfg.zmq.frame_format, cfg.render.fps / cfg.zmq.frame_every))
    share_taps, problems = build_share_taps(cfg)  # NDI, Spout, Syphon
    for tap in share_taps:
        say(loop.taps.add(tap).describe())
    for line in problems:
        say(line)  # the show goes on without it
    try:
        loop.open()
        if zmq_tap is not None:
            say(zmq_tap.describe())
    except Exception as exc:  # pygame.error: the X server refused the window, no usable video driver, ...
        if isinstance(sink, HeadlessSink):
            raise
        say(f"cannot open a window ({exc}); running headless")
        loop.close()
        loop.sink = HeadlessSink(cfg.render, None, cfg.zmq.frame_format, cfg.zmq.frame_every)
        loop.status.sink = loop.sink.kind
        loop.open()
        if zmq_tap is not None:
            say(zmq_tap.describe())
    return loop


def run_show(
    engine: Engine,
    cfg: EngineConfig,
    stop: threading.Event,
    query: QueryState | None = None,
    starting: OwnedThread | None = None,
    on_started: Callable[[], None] | None = None,
) -> StopReason | None:
    """Render on this (main) thread until quit, `stop`, `duration_s` or the end of a non-looping file; the
    reason, or None when `stop` ended it.

    `starting`: the thread running `engine.start()`. Frames are drawn (the calm neutral walk) while it
    runs; when it has finished, `on_started()` is called here and `duration_s` counts from then. An error
    that ended the start is raised here.
    """
    loop = _open_loop(engine, cfg, engine.current_audio)
    if query is not None:
        query.render = loop
    engine.add_status("render", loop.snapshot)
    if loop.taps:
        engine.add_status("taps", loop.taps.status)
    say(f"rendering to {loop.sink.kind} {loop.sink.size[0]}x{loop.sink.size[1]} ({loop.status.backend})")
    end: float | None = None
    pending = starting

    def started() -> None:
        nonlocal end
        if cfg.duration_s is not None:
            end = time.monotonic() + cfg.duration_s
        if on_started is not None:
            on_started()

    if pending is None:
        started()

    def after_frame() -> bool:
        nonlocal pending
        if pending is not None:
            if pending.alive:
                # still warming up: keep drawing the calm walk, at about half the rate, so the start thread
                # (importing torch, loading and warming the models) gets the interpreter more often
                time.sleep(WARMUP_YIELD_S)
                return True
            pending.stop()
            error, pending = pending.error, None
            if error is not None:
                raise error
            started()
        engine.tick(frame_done=True)  # also restarts a failed analysis thread (kiosk)
        if engine.source_ended:
            say("the source has ended")
            return False
        return end is None or time.monotonic() < end

    try:
        frames = loop.run(stop, after_frame=after_frame)
    finally:
        loop.close()
    log.info("rendered %d frames", frames)
    if loop.quit_requested:
        return StopReason.QUIT
    if engine.source_ended:
        return StopReason.SOURCE_ENDED
    if stop.is_set():
        return None
    return StopReason.DURATION
