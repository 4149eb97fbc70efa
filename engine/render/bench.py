"""Frame-rate rows for `synesthesia bench`: the bundle's generator per backend and the whole render path.

Per backend (torch, onnx, tensorrt where available):

- `generator_ms` (mean, p50, p99): one G(z, c) call at batch 1, after warm-up;
- `unpaced`: the real render loop (walk, generator every frame, trails, colour grade, smoothscale to
  width x height, headless sink without output) as fast as it goes: fps and p99 frame time;
- `paced_inline` / `paced_thread`: the same at the target fps as a show runs it, with the generator
  inline (adaptive stride) or on its own thread (crossfaded): fps, p99 frame time, frames per generated
  frame, and `state_to_frame_ms`: a new emotion state -> the first presented frame whose generator input
  reflects it (median, p99);
- `paced_inline_ndi` / `paced_inline_zmq` / `paced_inline_ndi_zmq` (`--ndi`, `--zmq-frames`; onnx only): the
  paced inline row with an NDI source and/or the ZeroMQ frame tap (JPEG through a real Sender to a PUB on
  loopback) taking every frame, each tap's counters beside the figures;
- `window_to_frame` (one row, the fastest-to-set-up backend): the real engine on a real-time synth source
  with the render loop: analysis window end (last sample captured) -> first presented frame made from it.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import numpy as np

from engine.analysis.state import EmotionState
from engine.config import RenderSettings, generator_cpu_threads
from engine.controls import Controls
from engine.inference.base import Component, example_inputs
from engine.render.display import HeadlessSink, WindowSink, display_unavailable
from engine.render.frames import FramePainter, GeneratorStep, GeneratorThread, PostSettings
from engine.render.latent import ConditionSpace, LatentWalk
from engine.render.loop import RenderLoop

log = logging.getLogger("synesthesia.bench")


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def time_generator(runner: Any, manifest: Any, seconds: float) -> dict[str, float]:
    example = example_inputs(Component.GENERATOR, manifest)
    runner.warmup(*example)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        runner(*example)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"mean": round(float(np.mean(times)), 3), "p50": _pct(times, 50), "p99": _pct(times, 99), "n": len(times)}


def _loop(
    bundle: Any,
    runner: Any,
    width: int,
    height: int,
    fps: float,
    mode: str,
    emotion: Any = lambda: None,
    taps: tuple[Any, ...] = (),
) -> RenderLoop:
    """mode: "every" (generator every frame), "inline" (adaptive stride) or "thread"."""
    gen = bundle.manifest.generator
    settings = RenderSettings(headless=True, width=width, height=height, fps=fps, trails=0.1)
    space = ConditionSpace.from_bundle(bundle)
    res = getattr(runner, "resolution", gen.resolution)  # a FrameRunner's frames may be up-sampled
    args = (runner, res, gen.z_dim, bundle.manifest.shared_dim, fps)
    step = GeneratorThread(*args) if mode == "thread" else GeneratorStep(*args, adapt=mode == "inline")
    painter = FramePainter(res, (width, height), bundle.classes, PostSettings(trails=0.1))
    loop = RenderLoop(
        settings,
        LatentWalk(space, gen.z_dim),
        step,
        painter,
        HeadlessSink(settings),
        Controls(bundle.classes),
        emotion=emotion,
        backend=runner.describe(),
    )
    for tap in taps:
        loop.taps.add(tap)
    loop.open()
    return loop


def _frame_times(loop: RenderLoop, seconds: float, paced: bool, on_frame: Any = None) -> list[float]:
    times: list[float] = []
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        loop.step()
        if on_frame is not None:
            on_frame()
        if paced:
            loop.sink.wait()
        now = time.perf_counter()
        times.append((now - last) * 1000.0)
        last = now
    return times


def bench_render(
    bundle: Any,
    runner: Any,
    seconds: float = 5.0,
    width: int = 1280,
    height: int = 720,
    fps: float = 60.0,
    ndi: bool = False,
    zmq_frames: bool = False,
) -> dict[str, Any]:
    """All render rows for one runner (see the module docstring)."""
    out: dict[str, Any] = {"backend": runner.describe(), "size": f"{width}x{height}", "target_fps": fps}
    out["generator_ms"] = time_generator(runner, bundle.manifest, min(seconds, 3.0))

    unpaced = _loop(bundle, runner, width, height, fps, "every")
    try:
        _frame_times(unpaced, min(0.5, seconds / 4), paced=False)  # warm-up
        times = _frame_times(unpaced, seconds, paced=False)
    finally:
        unpaced.close()
    out["unpaced"] = {
        "fps": round(1000.0 * len(times) / sum(times), 2),
        "frame_ms_p50": _pct(times, 50),
        "frame_ms_p99": _pct(times, 99),
        "post_ms": round(unpaced.generator.post_ms, 3),
    }
    for mode in ("inline", "thread"):
        out[f"paced_{mode}"] = _paced(bundle, runner, width, height, fps, mode, seconds)
    if ndi or zmq_frames:  # the paced row again with the frame taps of a show sending every frame
        label = "paced_inline" + "_ndi" * ndi + "_zmq" * zmq_frames
        out[label] = _paced_with_taps(bundle, runner, width, height, fps, seconds, ndi, zmq_frames)
    return out


def _paced_with_taps(
    bundle: Any, runner: Any, width: int, height: int, fps: float, seconds: float, ndi: bool, zmq_frames: bool
) -> dict[str, Any]:
    """The paced inline row with an NDI source and/or JPEG frames through a real Sender to a ZeroMQ PUB on
    loopback (the show's ZmqFrameTap), each tap's counters beside the figures."""
    from engine.errors import MissingDependencyError

    taps: list[Any] = []
    sender = None
    try:
        if ndi:
            from engine.render.ndi import NdiTap

            taps.append(NdiTap("Synesthesia bench", fps))
        if zmq_frames:
            from engine.io.schema import Topic
            from engine.io.sender import Sender
            from engine.io.zmq_pub import ZmqPublisher
            from engine.render.taps import ZmqFrameTap

            sender = Sender(zmq=ZmqPublisher("tcp://127.0.0.1:*"))
            sender.start()
            publish = sender.publish
            taps.append(ZmqFrameTap(lambda h, d: publish(Topic.FRAME, h, blob=d), "jpeg", None))
    except MissingDependencyError as exc:
        if sender is not None:
            sender.stop()
        return {"skipped": str(exc)}
    try:
        row = _paced(bundle, runner, width, height, fps, "inline", seconds, taps=tuple(taps))
    finally:
        if sender is not None:
            sender.stop()
    for tap in taps:
        row[tap.name] = tap.status()
    if sender is not None:
        row["zmq_sender"] = {k: sender.stats()[k] for k in ("published", "sent", "errors")}
    return row


def _paced(
    bundle: Any, runner: Any, width: int, height: int, fps: float, mode: str, seconds: float, taps: tuple = ()
) -> dict:
    """The render loop at the target rate, with a new emotion state every 0.5 s."""
    rng = np.random.default_rng(0)
    current: list[EmotionState | None] = [None]
    latencies: list[float] = []
    next_state = [0.0]
    loop = _loop(bundle, runner, width, height, fps, mode, emotion=lambda: current[0], taps=taps)

    def on_frame() -> None:
        lat = loop.status.latency_ms
        if lat is not None:
            latencies.append(lat)
            loop.status.latency_ms = None
        now = time.monotonic()
        if now >= next_state[0]:  # stamped as if its analysis window ended just now
            vec = rng.standard_normal(bundle.manifest.shared_dim)
            current[0] = EmotionState.placed(bundle.classes, vec / np.linalg.norm(vec), 0.3, 0.2, captured_at=now)
            next_state[0] = now + 0.5

    try:
        times = _frame_times(loop, seconds, paced=True, on_frame=on_frame)
    finally:
        loop.close()
    return {
        "fps": round(1000.0 * len(times) / sum(times), 2),
        "frame_ms_p50": _pct(times, 50),
        "frame_ms_p99": _pct(times, 99),
        "generated_per_s": round(1000.0 * loop.generator.generated / sum(times), 2),
        "stride": loop.generator.stride,
        "state_to_frame_ms": {"p50": _pct(latencies, 50), "p99": _pct(latencies, 99), "n": len(latencies)},
    }


def bench_window_to_frame(
    bundle: Any,
    backend: str,
    device: str,
    seconds: float,
    width: int,
    height: int,
    fps: float = 60.0,
    window: bool = False,
) -> dict[str, Any]:
    """The real engine (synth source in real time, analysis every 0.25 s) with the render loop at width x
    height, headless or (`window`) in a real pygame window: analysis window end (its last sample captured)
    -> first presented frame made from it."""
    from engine.app import Engine
    from engine.audio.features import AudioFeatures
    from engine.config import build_config
    from engine.render.loop import build_render_loop

    cfg = build_config(
        overrides={
            "audio": {"source": "synth:happy", "hop_s": 0.25},
            "analysis": {"backend": backend, "device": device},
            "render": {"headless": not window, "width": width, "height": height, "fps": fps, "backend": backend},
            "osc": {"enabled": False, "in_port": None},
            "zmq": {"enabled": False, "ctl": None},
        }
    )
    engine = Engine(cfg, bundle)
    latencies: list[float] = []
    times: list[float] = []
    loop = None
    try:
        engine.start()
        feats = AudioFeatures(engine.sample_rate)
        sink = WindowSink(cfg.render) if window else HeadlessSink(cfg.render)
        loop = build_render_loop(cfg, bundle, engine.controls, sink, engine.latest, lambda: feats(engine.ring))
        loop.open()
        end = time.monotonic() + 3.0 + seconds  # the first window needs 3 s of audio
        last = time.perf_counter()
        while time.monotonic() < end:
            loop.step()
            engine.tick(frame_done=True)
            if loop.status.latency_ms is not None:
                latencies.append(loop.status.latency_ms)
                loop.status.latency_ms = None
            loop.sink.wait()
            now = time.perf_counter()
            times.append((now - last) * 1000.0)
            last = now
        mode = type(loop.generator).__name__
    finally:
        if loop is not None:
            loop.close()
        engine.stop()
    return {
        "backend": backend,
        "generator": mode,
        "sink": "window" if window else "headless",
        "size": f"{width}x{height}",
        "fps": round(1000.0 * len(times) / sum(times), 2) if times else 0.0,
        "frame_ms_p99": _pct(times, 99),
        "window_to_frame_ms": {"p50": _pct(latencies, 50), "p99": _pct(latencies, 99), "n": len(latencies)},
    }


def render_rows(
    bundle: Any,
    backends: list[str] | None = None,
    device: str = "auto",
    seconds: float = 5.0,
    width: int = 1280,
    height: int = 720,
    fps: float = 60.0,
    window: bool = False,
    ndi: bool = False,
    zmq_frames: bool = False,
) -> dict[str, Any]:
    """The render rows for each backend that opens here (key `<backend>/<device>`); failures say why.
    With `window`, the end-to-end row also runs in a real window (row `window_to_frame_window`)."""
    from engine.inference.base import BackendKind
    from engine.inference.select import cuda_available, open_runner

    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    kinds = backends or [k.value for k in BackendKind if k is not BackendKind.AUTO]
    rows: dict[str, Any] = {}
    for kind in kinds:
        label = f"{kind}/{device}"
        try:
            threads = generator_cpu_threads(RenderSettings())  # as `run` opens it
            selection = open_runner(bundle, Component.GENERATOR, kind, device, threads=threads)
        except Exception as exc:  # report and go on with the next backend
            rows[label] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        runner = selection.runner
        if runner.kind.value != kind or runner.device != device:  # open_runner fell back: not this backend
            rows[label] = {"error": f"unavailable ({'; '.join(selection.failures.values())})"}
            continue
        from engine.inference.chain import frame_runner

        runner = frame_runner(bundle, runner, kind)  # with the bundle's up-sampler, as the engine renders
        log.info("bench render %s", label)
        taps = kind == "onnx"  # the frame-tap row once, on the backend a CPU show uses
        rows[label] = bench_render(
            bundle, runner, seconds, width, height, fps, ndi=ndi and taps, zmq_frames=zmq_frames and taps
        )
        # free the backend (and its thread pool) before timing the next: pools that spin while idle would
        # otherwise compete with the next backend for the cores
        del runner, selection
        gc.collect()
    working = [label.split("/")[0] for label, row in rows.items() if "error" not in row]
    if working:
        backend = "onnx" if "onnx" in working else working[0]
        try:
            rows["window_to_frame"] = bench_window_to_frame(bundle, backend, device, seconds, width, height, fps)
        except Exception as exc:  # the per-backend rows are still worth printing
            log.exception("end-to-end render bench failed")
            rows["window_to_frame"] = {"error": f"{type(exc).__name__}: {exc}"}
        if window:
            reason = display_unavailable()
            try:
                if reason is not None:
                    raise RuntimeError(reason)
                rows["window_to_frame_window"] = bench_window_to_frame(
                    bundle, backend, device, seconds, width, height, fps, window=True
                )
            except Exception as exc:  # no display here, or it failed: say why and keep the other rows
                rows["window_to_frame_window"] = {"error": f"{type(exc).__name__}: {exc}"}
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.render.bench`: the render rows alone, as JSON on stdout."""
    import argparse
    import json
    import platform

    from engine.models.bundle import load_bundle

    p = argparse.ArgumentParser(prog="python -m engine.render.bench", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", metavar="DIR")
    p.add_argument("--backends", default="", help="comma list of torch,onnx,tensorrt (default: all)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--window", action="store_true", help="also run the end-to-end row in a real window")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    bundle = load_bundle(args.bundle)
    backends = [b for b in args.backends.split(",") if b] or None
    rows = render_rows(
        bundle, backends, args.device, args.seconds, args.width, args.height, args.fps, window=args.window
    )
    out = {"bundle": bundle.manifest.name, "machine": platform.platform(), "render": rows}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
