"""A render-only engine for tests: the real render loop, sinks and control servers, no audio.

    python -m tests.render_driver --bundle DIR [--headless] [--osc-in PORT] [--zmq-ctl ADDR]
        [--zmq-frames ADDR] [--duration S] [--width W] [--height H] [--fullscreen] [--hud] [--kiosk]

The emotion provider is empty (the walk idles) unless an override arrives over OSC or ZeroMQ. Prints one
JSON line with the render status when it ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from engine.config import build_config
from engine.controls import Controls
from engine.io.control import ControlSurface
from engine.io.osc_control import OscControlServer
from engine.io.zmq_control import ZmqControlServer
from engine.models.bundle import load_bundle
from engine.render.display import choose_sink
from engine.render.loop import build_render_loop, control_state_from_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bundle", required=True)
    p.add_argument("--headless", action="store_true")
    p.add_argument("--fullscreen", action="store_true")
    p.add_argument("--kiosk", action="store_true")
    p.add_argument("--hud", action="store_true")
    p.add_argument("--osc-in", type=int, default=0)
    p.add_argument("--zmq-ctl", default=None)
    p.add_argument("--zmq-frames", default=None, help="PUB address for the frame topic")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cfg = build_config(
        {
            "bundle": args.bundle,
            "render": {
                "headless": args.headless,
                "fullscreen": args.fullscreen,
                "width": args.width,
                "height": args.height,
                "fps": args.fps,
                "hud": args.hud,
                "backend": "onnx",
                "device": "cpu",
            },
            "kiosk": {"enabled": args.kiosk},
        }
    )
    bundle = load_bundle(cfg.bundle)
    controls = Controls(bundle.classes, control_state_from_config(cfg))
    loop_ref: list[Any] = []
    surface = ControlSurface(controls, status=lambda: {"status": loop_ref[0].snapshot()} if loop_ref else {})
    pub = None
    frame_out = None
    if args.zmq_frames:
        import zmq

        pub = zmq.Context.instance().socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 10)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(args.zmq_frames)
        seq = [0]

        def frame_out(header: dict[str, Any], data: bytes) -> None:
            seq[0] += 1
            head = {"v": 1, "t": time.time(), "seq": seq[0], **header}
            pub.send_multipart([b"frame", json.dumps(head).encode(), data], zmq.NOBLOCK)

    sink, reason = choose_sink(cfg.render, cfg.kiosk.enabled, frame_out)
    if reason:
        print(f"synesthesia: {reason}; running headless", file=sys.stderr)
    loop = build_render_loop(cfg, bundle, controls, sink)
    loop_ref.append(loop)
    servers: list[Any] = []
    if args.osc_in:
        servers.append(OscControlServer(surface, "127.0.0.1", args.osc_in).start())
    if args.zmq_ctl:
        servers.append(ZmqControlServer(surface, args.zmq_ctl).start())
    loop.open()
    print("READY", flush=True)
    try:
        loop.run(duration_s=args.duration)
    finally:
        for s in servers:
            s.stop()
        loop.close()
        if pub is not None:
            pub.close(linger=0)
    print(json.dumps(loop.snapshot()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
