"""`run` flags -> config overrides (shared by `run` and `check`, so both open the same things)."""

from __future__ import annotations

import argparse
from typing import Any


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Map `run` flags onto the config tree (only flags that were given; `check` shares most of them)."""
    args = argparse.Namespace(**{**dict.fromkeys(RUN_FLAGS), **vars(args)})  # a flag `check` lacks: not given
    o: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        if value is None:
            return
        node = o
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    put("audio.source", args.source)
    put("render.headless", args.headless)
    put("render.fullscreen", args.fullscreen)
    put("render.display", args.display)
    put("render.hud", args.hud)
    put("render.frames_dir", args.frames_dir)
    put("bundle", args.bundle)
    put("analysis.backend", args.backend)
    put("render.backend", args.backend)
    put("analysis.device", args.device)
    put("render.device", args.device)
    put("osc.targets", args.osc)
    if args.osc_in is not None:
        from engine.config import osc_in_overrides

        o.setdefault("osc", {}).update(osc_in_overrides(args.osc_in))
    put("zmq.pub", args.zmq_pub)
    put("zmq.ctl", args.zmq_ctl)
    put("zmq.frames", args.zmq_frames)
    put("kiosk.enabled", args.kiosk)
    if args.web is not None:
        o.setdefault("web", {}).update(
            {"enabled": True, "port": args.web[1]} | ({"host": args.web[0]} if args.web[0] else {})
        )
    put("duration_s", args.duration)
    put("record.dir", args.record)
    for share in ("ndi", "spout", "syphon"):  # --ndi/--spout/--syphon [NAME]
        if getattr(args, share) is not None:
            put(f"{share}.enabled", True)
            if getattr(args, share):
                put(f"{share}.name", getattr(args, share))
    if args.midi is not None:
        put("midi.enabled", True)
        if args.midi:
            put("midi.port", int(args.midi) if args.midi.isdigit() else args.midi)
    if args.verbose:
        put("log_level", "DEBUG")
    return o


RUN_FLAGS = (
    "source", "headless", "fullscreen", "display", "hud", "frames_dir", "bundle", "backend", "device", "osc",
    "osc_in", "zmq_pub", "zmq_ctl", "zmq_frames", "kiosk", "duration", "verbose", "record", "midi", "ndi", "web",
    "spout", "syphon",
)  # fmt: skip
