"""`synesthesia` command line (docs/design.md §8). Heavy modules are imported by the command that needs them."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import SynesthesiaError
from engine.overrides import RUN_FLAGS, run_overrides  # noqa: F401 - re-exported for callers of engine.cli


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the show: listen, analyse, render, send OSC/ZeroMQ",
        description="Run the engine. Flags override the config file; with no microphone the bundled demo audio "
        "plays, with no display it runs headless (both said on stderr).",
    )
    p.add_argument("--config", metavar="F", help="venue config (TOML), e.g. installation/configs/gallery.toml")
    p.add_argument("--source", help="mic | mic:NAME | file:PATH | synth:CLASS | synth:tour | replay:DIR (default: mic)")
    p.add_argument("--headless", action="store_true", default=None, help="no window")
    p.add_argument("--fullscreen", action="store_true", default=None, help="fullscreen window")
    p.add_argument("--display", type=int, metavar="N", help="display index for the window")
    p.add_argument("--bundle", metavar="DIR", help="model bundle (default: the bundled default)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "tensorrt"], help="inference backend")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="inference device")
    p.add_argument("--osc", action="append", metavar="HOST:PORT", help="OSC target (repeatable)")
    p.add_argument(
        "--osc-in",
        type=_osc_in,
        metavar="[HOST:]PORT",
        help="OSC control port on HOST (127.0.0.1); 0: none",
    )
    p.add_argument("--zmq-pub", metavar="ADDR", help="ZeroMQ PUB address, e.g. tcp://*:5556")
    p.add_argument("--zmq-ctl", metavar="ADDR", help="ZeroMQ control (REP) address, e.g. tcp://*:5557")
    p.add_argument("--kiosk", action="store_true", default=None, help="unattended: fullscreen, no HUD, log file")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--frames-dir", metavar="DIR", help="headless: write frames here as PNG")
    p.add_argument("--zmq-frames", action="store_true", default=None, help="publish frames on the ZMQ frame topic")
    p.add_argument("--hud", action="store_true", default=None, help="start with the on-screen readout")
    p.add_argument(
        "--ndi", nargs="?", const="", metavar="NAME", help="frames out as an NDI source (default name: Synesthesia)"
    )
    p.add_argument("--spout", nargs="?", const="", metavar="NAME", help="frames out as a Spout sender (Windows)")
    p.add_argument("--syphon", nargs="?", const="", metavar="NAME", help="frames out as a Syphon server (macOS)")
    p.add_argument("--record", metavar="DIR", help="record the show to DIR (states, features, controls; never audio)")
    p.add_argument(
        "--midi",
        nargs="?",
        const="",
        metavar="PORT",
        help="MIDI control in: port name substring or index (default: [midi] port, or the first input)",
    )
    p.add_argument(
        "--web", type=_web, metavar="[HOST:]PORT", help="web console on HOST (127.0.0.1; off it web.token is needed)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _osc_in(text: str) -> tuple[str | None, int]:
    from engine.config import parse_osc_in

    try:
        return parse_osc_in(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _web(text: str) -> tuple[str | None, int]:
    from engine.config import parse_osc_in

    try:
        host, port = parse_osc_in(text)  # the same [HOST:]PORT form as --osc-in
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if port == 0:
        raise argparse.ArgumentTypeError("the web console needs a port 1..65535")
    return host, port


def _hop_seconds(text: str) -> float:
    """`analyze --hop`: a finite number of seconds, 0.05..3600 (argparse names the flag, exit 2)."""
    from engine.analysis.offline import MAX_HOP_S, MIN_HOP_S

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {text!r}")
    if not MIN_HOP_S <= value <= MAX_HOP_S:
        raise argparse.ArgumentTypeError(f"must be {MIN_HOP_S}..{MAX_HOP_S:g} s, got {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    """`render --size WxH`: two positive integers (the render settings bound them)."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}")
    return int(w), int(h)


def _render_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "render",
        help="offline: render a recording to a video file (H.264 + AAC), as the show would paint it",
        description="Analyse FILE as the live engine would (windows, tracker, audio features at each frame's "
        "time) and render the same walk, generator and post-processing to an H.264/AAC video, deterministic "
        "for a seed and backend. Written to a temporary file and renamed at the end. Needs the video extra: "
        "pip install 'synesthesia[video]'.",
    )
    r.add_argument("file", metavar="FILE", help="wav/flac/ogg/mp3 recording")
    r.add_argument("--out", required=True, metavar="VIDEO", help="output .mp4, .mov or .mkv")
    r.add_argument("--size", type=_size, metavar="WxH", help="frame size (default 1280x720; even numbers)")
    r.add_argument("--fps", type=float, help="frames per second (default 30)")
    r.add_argument("--seed", type=int, help="latent walk seed (default 0)")
    r.add_argument("--bundle", metavar="DIR", help="model bundle (default: the bundled default)")
    r.add_argument("--config", metavar="F", help="venue config: its [render] and [analysis] settings apply")
    r.add_argument("--backend", default="onnx", choices=["auto", "torch", "onnx", "tensorrt"])
    r.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    r.add_argument("--crf", type=int, help="H.264 quality, 0..51 (default 20; lower is better and larger)")
    r.add_argument("--preset", help="x264 preset, ultrafast..slow (default ultrafast: the fastest, larger files)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synesthesia",
        description="Synesthesia: turns the emotion in live sound into generated images, OSC and ZeroMQ.",
    )
    parser.add_argument("--version", action="version", version=f"synesthesia {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _run_parser(sub)
    sub.add_parser("devices", help="list audio input devices", description="List audio input devices.")

    a = sub.add_parser(
        "analyze",
        help="offline: one JSON line per window, then a summary line per file",
        description="Analyse audio files in 3 s windows. With --json, each window prints "
        '{"file", "t", "label", "probs", "valence", "arousal", "silent", "nonfinite_samples"} and each file ends '
        'with a line holding "summary": true. NaN/inf samples are analysed as 0 and counted (stderr and '
        '"nonfinite_samples"). Unreadable files are reported on stderr; the rest still run (exit 2).',
    )
    a.add_argument("files", nargs="+", metavar="FILE", help="wav/flac/ogg/mp3 files")
    a.add_argument("--json", action="store_true", help="JSON lines instead of a readable table")
    a.add_argument("--hop", type=_hop_seconds, default=0.5, metavar="S", help="seconds between windows (default 0.5)")
    a.add_argument("--bundle", metavar="DIR", help="model bundle (default: the bundled default)")
    a.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "tensorrt"])
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    _render_parser(sub)

    b = sub.add_parser(
        "bench",
        help="per-stage timings, end-to-end latency and frame rate per backend, as JSON",
        description="Measure the front end (against librosa), the encoder and generator per backend, "
        "window-end -> OSC-sent latency and frame rate. Prints a table on stderr and JSON on stdout.",
    )
    b.add_argument("--bundle", metavar="DIR")
    b.add_argument("--backends", default="all", help="comma list of torch,onnx,tensorrt (default: all available)")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("--seconds", type=float, default=5.0, help="duration of each timed loop")
    b.add_argument("--width", type=int, default=1280)
    b.add_argument("--height", type=int, default=720)
    b.add_argument("--quick", action="store_true", help="short loops (for smoke tests)")
    b.add_argument(
        "--window", action="store_true", help="also time the end-to-end render row in a real window (needs a display)"
    )
    b.add_argument("--ndi", action="store_true", help="also time the paced render row with NDI out on (extra ndi)")
    b.add_argument(
        "--zmq-frames",
        action="store_true",
        help="also time the paced render row with ZeroMQ frames out (with --ndi: both)",
    )
    b.add_argument(
        "--show",
        action="store_true",
        help="also time the real show (`synesthesia run` in a subprocess) with the web console open (a connected "
        "page's WebSocket and preview) and, with --ndi, NDI out: its render fps and p99 (extra web)",
    )
    b.add_argument("--show-seconds", type=float, default=30.0, metavar="S", help="how long --show measures (30)")
    b.add_argument("--out", metavar="FILE", help="also write the JSON here")

    c = sub.add_parser(
        "check",
        help="preflight for a venue: devices, display, ports, bundle, measured frame rate",
        description="Check a venue setup before the show; exits non-zero when something would stop it.",
    )
    c.add_argument("--config", metavar="F")
    c.add_argument("--bundle", metavar="DIR")
    c.add_argument("--source", help="mic | mic:NAME | file:PATH | synth:CLASS | synth:tour, as for run")
    c.add_argument("--headless", action="store_true", default=None, help="no window, as for run")
    c.add_argument("--fullscreen", action="store_true", default=None, help="fullscreen window, as for run")
    c.add_argument("--display", type=int, metavar="N", help="display index for the window, as for run")
    c.add_argument("--backend", choices=["auto", "torch", "onnx", "tensorrt"], help="inference backend, as for run")
    c.add_argument("--device", choices=["auto", "cpu", "cuda"], help="inference device, as for run")
    c.add_argument("--osc", action="append", metavar="HOST:PORT", help="OSC target (repeatable), as for run")
    c.add_argument("--osc-in", type=_osc_in, metavar="[HOST:]PORT", help="OSC control port (0: none), as for run")
    c.add_argument("--zmq-pub", metavar="ADDR", help="ZeroMQ PUB address, as for run")
    c.add_argument("--zmq-ctl", metavar="ADDR", help="ZeroMQ control (REP) address, as for run")
    for share, what in (("ndi", "NDI source"), ("spout", "Spout sender"), ("syphon", "Syphon server")):
        c.add_argument(f"--{share}", nargs="?", const="", metavar="NAME", help=f"frames out as a {what}, as for run")
    _midi_parser(sub)
    return parser


def _midi_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "midi",
        help="MIDI input: list ports, learn a mapping",
        description="MIDI control input (the `midi` extra: pip install 'synesthesia[midi]').",
    )
    msub = m.add_subparsers(dest="midi_command", metavar="ACTION", required=True)
    for name, what in (
        ("list", "list MIDI input ports"),
        ("learn", "print the [[midi.map]] block of the next CC/note"),
    ):
        q = msub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        q.add_argument("--config", metavar="F", help="venue config whose [midi] section (api, port) is used")
        q.add_argument("--api", choices=["auto", "alsa", "jack"], help="MIDI system (default: [midi] api)")
    learn = msub.choices["learn"]
    learn.add_argument("--port", metavar="PORT", help="port name substring or index (default: [midi] port)")
    learn.add_argument("--virtual", action="store_true", help="listen on a virtual input port instead")
    learn.add_argument(
        "--control",
        choices=["intensity", "speed", "smoothing", "seed", "freeze", "blackout", "hud", "override"],
        help="the control to fill in",
    )
    learn.add_argument("--timeout", type=float, default=60.0, metavar="S", help="give up after S s (exit 1)")


def _analyze(args: argparse.Namespace) -> int:
    from engine.analysis.offline import run_analyze
    from engine.analysis.predict import WindowPredictor
    from engine.inference.base import Component
    from engine.inference.select import open_runner
    from engine.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    selection = open_runner(bundle, Component.AUDIO, args.backend, args.device)
    predictor = WindowPredictor(bundle, selection.runner, device=selection.runner.device)
    return run_analyze(predictor, args.files, args.hop, args.json)


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "analyze":
            return _analyze(args)
        case "run":
            from engine.run import run_from_args

            return run_from_args(args, run_overrides(args))
        case "render":
            from engine.render.video import run_render

            return run_render(args)
        case "devices":
            from engine.audio.devices import print_devices

            return print_devices()
        case "bench":
            from engine.bench import run_bench

            return run_bench(args)
        case "check":
            from engine.check import run_check

            return run_check(args)
        case "midi":
            from engine.io.midi_in import run_midi

            return run_midi(args)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except SynesthesiaError as exc:
        print(f"synesthesia: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
