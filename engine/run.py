"""`synesthesia run`: config and bundle -> Engine, control servers, then the render loop
(engine/render/show.py) or the headless loop (engine/app.py) on the main thread until the end."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from engine.app import Engine, run_headless
from engine.config import EngineConfig, load_config
from engine.console import say
from engine.controls import Controls
from engine.io.control import ControlSurface
from engine.kiosk import setup_kiosk_logging
from engine.models.bundle import DEFAULT_BUNDLE, load_bundle
from engine.render.loop import control_state_from_config
from engine.render.show import QueryState, network_lines, run_show, start_control_servers, wants_renderer

if TYPE_CHECKING:
    from engine.io.osc_control import OscControlServer
    from engine.io.zmq_control import ZmqControlServer


def _configure_logging(cfg: EngineConfig) -> None:
    """Let the engine's own INFO lines (backend chosen, device state) through unless -v asked for more."""
    logger = logging.getLogger("synesthesia")
    if logger.getEffectiveLevel() > getattr(logging, cfg.log_level):
        logger.setLevel(cfg.log_level)


def run_from_args(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """`synesthesia run`: config + bundle -> Engine; runs until --duration or SIGINT/SIGTERM; exit 0."""
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
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    servers: list[OscControlServer | ZmqControlServer] = []
    try:
        engine.start()
        say(f"listening ({engine.source.name}); {engine.backend_message}")
        query = QueryState(engine)
        servers = start_control_servers(cfg, ControlSurface(engine.controls, status=query))
        for line in network_lines(cfg, engine, servers):
            say(line)
        engine.add_status("control_servers", lambda: [server.status() for server in servers])
        if wants_renderer(cfg):
            run_show(engine, cfg, stop, query)
        else:
            run_headless(engine, cfg.duration_s, stop)
    finally:
        for server in servers:
            server.stop()
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
