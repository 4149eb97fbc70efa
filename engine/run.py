"""`synesthesia run`: config and bundle -> Engine, control servers, then the render loop
(engine/render/show.py) or the headless loop (engine/app.py) on the main thread until the end, then one
last line: `stopped after N s (reason)` (`StopReason`), on stderr and in the log."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from engine.app import Engine, StopReason, run_headless
from engine.config import EngineConfig, load_config
from engine.console import say
from engine.controls import Controls
from engine.io.control import ControlSurface
from engine.kiosk import setup_kiosk_logging
from engine.models.bundle import DEFAULT_BUNDLE, load_bundle
from engine.render.loop import control_state_from_config
from engine.render.show import QueryState, network_lines, run_show, start_control_servers, wants_renderer
from engine.threads import OwnedThread, one_blas_thread

if TYPE_CHECKING:
    from engine.io.midi_in import MidiInput
    from engine.io.osc_control import OscControlServer
    from engine.io.zmq_control import ZmqControlServer

log = logging.getLogger("synesthesia.run")
SIGNAL_REASONS = {signal.SIGINT: StopReason.SIGINT, signal.SIGTERM: StopReason.SIGTERM}


def _configure_logging(cfg: EngineConfig) -> None:
    """Let the engine's own INFO lines (backend chosen, device state) through unless -v asked for more."""
    logger = logging.getLogger("synesthesia")
    if logger.getEffectiveLevel() > getattr(logging, cfg.log_level):
        logger.setLevel(cfg.log_level)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _start_web(
    cfg: EngineConfig,
    engine: Engine,
    query: QueryState,
    surface: ControlSurface,
    overrides: dict[str, Any],
    config_path: str | None,
    logs: Any,
) -> Any:
    """The web console (engine/web), or None when it cannot start (said; the show goes on)."""
    from engine.errors import MissingDependencyError
    from engine.web.live import LiveSession
    from engine.web.preview import PreviewTap
    from engine.web.server import WebConsole

    w = cfg.web
    preview = PreviewTap(w.preview_fps, w.preview_width, w.preview_quality) if w.preview_fps > 0 else None
    live = LiveSession(engine, query, surface, overrides, config_path, preview)
    engine.add_tick_hook(live.on_tick)
    try:
        return WebConsole(w, engine, query, surface, live, logs).start()
    except (OSError, MissingDependencyError) as exc:
        say(f"web console {w.host}:{w.port} unavailable ({exc}); no web console")
        return None


def run_from_args(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """`synesthesia run`: config + bundle -> Engine; runs until --duration or SIGINT/SIGTERM; exit 0."""
    with one_blas_thread():
        code = _run(args, overrides)
    # The show is over and its Engine unreachable: collect its cycles now (a soxr stream left to the
    # shutdown is reported as a leak), then keep the cyclic GC off torch's object graph while the
    # interpreter shuts down (about 1 s of a 2 s SIGTERM budget on a busy machine). atexit still runs.
    gc.collect()
    gc.freeze()
    return code


def _run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    cfg = load_config(args.config, overrides)
    _configure_logging(cfg)
    if cfg.bundle is None and not (DEFAULT_BUNDLE / "manifest.json").is_file():
        say(f"no model bundle at {DEFAULT_BUNDLE}; pass --bundle DIR (build one with `synesthesia-train default`)")
        return 2
    if cfg.kiosk.enabled:
        setup_kiosk_logging(cfg.kiosk, cfg.log_level)
    bundle = load_bundle(cfg.bundle)
    engine = Engine(cfg, bundle, Controls(bundle.classes, control_state_from_config(cfg)))
    stop = threading.Event()
    signalled: list[StopReason] = []

    def on_signal(signum: int, _frame: object) -> None:
        signalled.append(SIGNAL_REASONS[signal.Signals(signum)])
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNAL_REASONS}
    servers: list[OscControlServer | ZmqControlServer | MidiInput] = []
    started = time.monotonic()  # moved to the moment it listens: `--duration` counts from there
    reason: StopReason | None = None
    detail = ""  # the error's name and message for StopReason.ERROR
    query = QueryState(engine)
    starting: OwnedThread | None = None
    logs = None
    if cfg.web.enabled:  # the console shows the last log lines: collect them from the start
        from engine.web.logring import LogRing

        logs = LogRing()
        logging.getLogger("synesthesia").addHandler(logs)

    def listening() -> None:
        """The engine has started: say so, open the control servers (main thread)."""
        nonlocal started
        started = time.monotonic()
        say(f"listening ({engine.source.name}); {engine.backend_message}")
        surface = ControlSurface(engine.controls, status=query)
        if engine.recorder is not None and engine.recorder.active:
            surface.on_event = engine.recorder.control  # every control message, with its outcome and sender
        servers.extend(start_control_servers(cfg, surface))
        if cfg.web.enabled:
            console = _start_web(cfg, engine, query, surface, overrides, args.config, logs)
            if console is not None:
                servers.append(console)
        for line in network_lines(cfg, engine, servers):
            say(line)
        engine.add_status("control_servers", lambda: [server.status() for server in servers])

    try:
        engine.open_source()  # a bad source spec fails here, at once
        if wants_renderer(cfg):
            # the models warm up on a thread while the window opens and draws: the first frame within ~2 s
            starting = OwnedThread(lambda _stop: engine.start(), "engine-start")
            starting.start()
            reason = run_show(engine, cfg, stop, query, starting=starting, on_started=listening)
        else:
            engine.start()
            listening()
            reason = run_headless(engine, cfg.duration_s, stop)
    finally:
        elapsed = time.monotonic() - started
        if (failure := sys.exception()) is not None:  # propagating unchanged; the last line names it
            reason, detail = StopReason.ERROR, _describe(failure)
        if starting is not None:
            starting.stop(timeout=60.0)  # a stop during warm-up: let the start finish before tearing down
        for server in servers:
            server.stop()
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if reason is None:  # `stop` was set: by a signal handler (nothing else sets it here)
            reason = signalled[0] if signalled else StopReason.SIGINT
        line = f"stopped after {elapsed:.1f} s ({reason.value}{': ' + detail if detail else ''})"
        log.info(line)
        say(line)
    return 0
