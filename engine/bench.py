"""`synesthesia bench`: per-stage timings, end-to-end latency and frame rate, as JSON (stdout) and a table (stderr).

Sections:
- `frontend`: the torch front end (whole pipeline: sanitise, levels, log-mel, z-score) against librosa's
  melspectrogram + power_to_db on the same 3 s window: ms p50/p95 and the speed ratio;
- `encoder`: the audio model per available backend at batch 1: ms p50/p95;
- `latency`: window end (its last sample in the ring) -> emotion message handed to the UDP socket
  (`sent`, from the sender's own clock) and -> received by a python-osc server on loopback (`received`),
  with the real engine running on a real-time synth source;
- `render`: generator and frame-rate rows, from `engine.render.bench.render_rows` when that module is in
  this build and the bundle has a generator (the hook is `_render_section`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.render.bench import render_rows
from engine.threads import one_blas_thread

log = logging.getLogger("synesthesia.bench")


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"min": float("nan"), "p50": float("nan"), "p95": float("nan"), "n": 0}
    p50, p95 = np.percentile(a, [50, 95])
    # min: the cost on an idle machine (p50/p95 include whatever else the machine was doing)
    return {"min": round(float(a.min()), 3), "p50": round(float(p50), 3), "p95": round(float(p95), 3), "n": int(a.size)}


def time_call(fn: Callable[[], Any], seconds: float, min_runs: int = 20) -> list[float]:
    """Milliseconds per call over about `seconds` (after a short warm-up)."""
    for _ in range(5):
        fn()
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < min_runs:
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def bench_frontend(bundle: Any, seconds: float) -> dict[str, Any]:
    import librosa
    import torch

    from engine.audio.frontend import FrontEnd

    cfg = bundle.frontend_config()
    fe = FrontEnd(cfg, bundle.manifest.audio.mel_mean, bundle.manifest.audio.mel_std)
    x = (0.1 * np.random.default_rng(0).standard_normal(cfg.n_samples)).astype(np.float32)

    def reference() -> np.ndarray:
        mel = librosa.feature.melspectrogram(
            y=x, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, power=2.0
        )
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db)

    threads = torch.get_num_threads()
    blas_one = one_blas_thread  # as a show runs numpy's BLAS (engine.threads)
    # Each pair is interleaved, so both see the same machine load (others' jobs come and go). Single-threaded
    # (how the analysis thread runs) first, then with the libraries' default pools, apart: idle OpenMP
    # workers spin for a while after a parallel region and would slow whatever runs next.
    pairs: list[dict[str, tuple[Callable[[], Any], int, Any]]] = [
        {"ours_1": (lambda: fe(x), 1, contextlib.nullcontext), "librosa_1": (reference, 1, blas_one)},
        {
            "ours": (lambda: fe(x), threads, contextlib.nullcontext),
            "librosa": (reference, threads, contextlib.nullcontext),
        },
    ]
    runs: dict[str, list[float]] = {}
    try:
        for pair in pairs:
            runs.update(_interleaved(pair, seconds / 2))
    finally:
        torch.set_num_threads(threads)
    st = {k: _stats(v) for k, v in runs.items()}
    return {
        "window_s": cfg.window_s,
        "threads": threads,
        "ms": st,
        "speedup_p50_one_thread": round(st["librosa_1"]["p50"] / st["ours_1"]["p50"], 2),
        "speedup_p50_default_threads": round(st["librosa"]["p50"] / st["ours"]["p50"], 2),
        "speedup_min_one_thread": round(st["librosa_1"]["min"] / st["ours_1"]["min"], 2),
        "blas_single_thread": True,
    }


def _interleaved(
    variants: dict[str, tuple[Callable[[], Any], int, Any]], seconds: float, block: int = 10, min_rounds: int = 3
) -> dict[str, list[float]]:
    """ms per call of each (fn, torch threads, context factory): `block` calls of one, then of the next, round
    after round. Blocks keep each variant's caches warm (as a benchmark of one window usually means); the
    rounds make every variant see the same load. The first call of each block is left out (cold)."""
    import torch

    times: dict[str, list[float]] = {k: [] for k in variants}
    end = time.perf_counter() + seconds
    rounds = 0
    while time.perf_counter() < end or rounds < min_rounds:
        for key, (fn, n, ctx) in variants.items():
            torch.set_num_threads(n)
            with ctx():
                fn()
                for _ in range(block):
                    start = time.perf_counter()
                    fn()
                    times[key].append((time.perf_counter() - start) * 1000.0)
        rounds += 1
    return times


def _available_kinds(names: str) -> list[str]:
    if names in ("", "all"):
        return ["torch", "onnx", "tensorrt"]
    return [n.strip() for n in names.split(",") if n.strip()]


def _one_torch_thread(fn: Callable[[], Any]) -> Any:
    """As the analysis thread runs (see AnalysisLoop): one torch intra-op thread."""
    from engine.analysis.live import ANALYSIS_TORCH_THREADS, with_torch_threads

    return with_torch_threads(ANALYSIS_TORCH_THREADS, fn)


def bench_encoder(bundle: Any, kinds: list[str], device: str, seconds: float) -> dict[str, Any]:
    from engine.inference.base import Component, example_inputs
    from engine.inference.select import cuda_available, open_runner

    device = ("cuda" if cuda_available() else "cpu") if device == "auto" else device
    example = example_inputs(Component.AUDIO, bundle.manifest)
    rows: dict[str, Any] = {}
    for kind in kinds:
        label = f"{kind}/{device}"
        try:
            selection = open_runner(bundle, Component.AUDIO, kind, device)
        except Exception as exc:  # report and go on with the next backend
            rows[label] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        runner = selection.runner
        if runner.kind.value != kind or runner.device != device:  # open_runner fell back: not this backend
            rows[label] = {"error": "unavailable: " + "; ".join(selection.failures.values())}
            continue
        ms = _one_torch_thread(lambda r=runner: time_call(lambda: r(*example), seconds))
        rows[label] = {"ms": _stats(ms), "runner": runner.describe(), "torch_threads": 1}
    return rows


def bench_latency(bundle: Any, backend: str, device: str, seconds: float) -> dict[str, Any]:
    """The real engine on a real-time synth source, sending OSC to a python-osc server on loopback."""
    from pythonosc import dispatcher, osc_server

    from engine.app import Engine
    from engine.config import build_config

    received: list[float] = []
    d = dispatcher.Dispatcher()
    d.map("/syn/emotion/label", lambda *_: received.append(time.monotonic()))
    server = osc_server.ThreadingOSCUDPServer(("127.0.0.1", 0), d)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = build_config(
        overrides={
            "audio": {"source": "synth:happy", "hop_s": 0.25},
            "analysis": {"backend": backend, "device": device},
            "osc": {"targets": [f"127.0.0.1:{server.server_address[1]}"], "in_port": None},
            "zmq": {"enabled": False, "ctl": None},
        }
    )
    engine = Engine(cfg, bundle)
    states: list[tuple[float, float]] = []  # (window captured_at, published_at)
    try:
        engine.start()
        version = 0
        end = time.monotonic() + 3.0 + seconds  # the first window needs 3 s of audio
        while time.monotonic() < end:
            state, new = engine.analysis.latest.wait_newer(version, timeout=0.5)
            if new > version and state is not None:
                states.append((state.captured_at, time.monotonic()))
                version = new
            engine.tick()
        time.sleep(0.2)  # the last messages in flight
        timings = engine.timer.summary()
        sent = timings.pop("latency", None)
        backend_used = engine.backend_message
    finally:
        engine.stop()
        server.shutdown()
        server.server_close()
    # each state's label message is the first one received after it was published (hops are 250 ms apart)
    lat, j = [], 0
    for captured, published in states:
        while j < len(received) and received[j] < published - 0.05:
            j += 1
        if j < len(received):
            lat.append((received[j] - captured) * 1000.0)
            j += 1
    return {
        "backend": backend_used,
        "hop_s": 0.25,
        "sent_ms": {k: sent[k] for k in ("p50", "p95", "n")} if sent else None,
        "received_ms": _stats(lat),
        "stages_ms": timings,
    }


def _render_section(args: argparse.Namespace, bundle: Any, kinds: list[str], seconds: float) -> dict[str, Any]:
    """Generator and frame-rate rows (owned by engine/render/bench.py)."""
    if bundle.manifest.generator is None:
        return {"skipped": "the bundle has no generator"}
    window = bool(getattr(args, "window", False))
    ndi = bool(getattr(args, "ndi", False))
    zmq_frames = bool(getattr(args, "zmq_frames", False))
    return render_rows(
        bundle, kinds, args.device, seconds, args.width, args.height, window=window, ndi=ndi, zmq_frames=zmq_frames
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "platform": platform.platform()}


def _table(result: dict[str, Any]) -> str:
    lines = [f"synesthesia bench - {result['machine']['cpu']} ({result['machine']['cores']} cores)"]
    fe = result["frontend"]
    ms = fe["ms"]
    lines.append(
        f"front end   1 thread: ours {ms['ours_1']['p50']:.3f} ms (p95 {ms['ours_1']['p95']:.3f}), librosa "
        f"{ms['librosa_1']['p50']:.3f} ms (p95 {ms['librosa_1']['p95']:.3f}): x{fe['speedup_p50_one_thread']} "
        f"(min {ms['ours_1']['min']:.3f} vs {ms['librosa_1']['min']:.3f}: x{fe['speedup_min_one_thread']})"
    )
    lines.append(
        f"            {fe['threads']} threads: ours {ms['ours']['p50']:.3f} ms (p95 {ms['ours']['p95']:.3f}), librosa "
        f"{ms['librosa']['p50']:.3f} ms (p95 {ms['librosa']['p95']:.3f}): x{fe['speedup_p50_default_threads']}"
    )
    for label, row in result["encoder"].items():
        if "error" in row:
            lines.append(f"encoder     {label:<14} {row['error'][:90]}")
        else:
            lines.append(f"encoder     {label:<14} p50 {row['ms']['p50']:.3f} ms   p95 {row['ms']['p95']:.3f} ms")
    lat = result.get("latency") or {}
    if "error" in lat:
        lines.append(f"latency     {lat['error'][:100]}")
    elif lat:
        sent, rec = lat.get("sent_ms") or {}, lat["received_ms"]
        lines.append(
            f"latency     window end -> OSC sent p50 {sent.get('p50', float('nan')):.2f} ms "
            f"p95 {sent.get('p95', float('nan')):.2f} ms; -> received p50 {rec['p50']:.2f} ms p95 {rec['p95']:.2f} ms"
        )
    render = result.get("render") or {}
    for label, row in render.items():
        lines.append(f"render      {label:<14} {_render_line(row)}")
    show = result.get("show")
    if show:
        if "error" in show:
            lines.append(f"show        {show['error'][:100]}")
        else:
            extras = " + web console" + (" + NDI" if show["ndi"] else "")
            lines.append(
                f"show        {show['size']} {show['sink']}{extras}: {show['fps']} fps, p99 {show['frame_ms_p99']} ms "
                f"(worst window {show['frame_ms_p99_worst']} ms), {show['console']['previews']} previews, "
                f"{show['console']['pushes']} status pushes"
            )
    return "\n".join(lines)


def _render_line(row: dict[str, Any] | str) -> str:
    """One table line of a render row: the figures the goals are stated in."""
    if isinstance(row, str):  # the whole section was skipped: {"skipped": reason}
        return row[:100]
    if "error" in row or "skipped" in row:
        return str(row.get("error") or row.get("skipped"))[:100]
    if "window_to_frame_ms" in row:
        w = row["window_to_frame_ms"]
        return (
            f"{row.get('sink', 'headless')} {row['size']}: {row['fps']} fps, frame p99 {row['frame_ms_p99']} ms, "
            f"window end -> frame p50 {w['p50']} ms p99 {w['p99']} ms (n {w['n']})"
        )
    parts = [f"generator p50 {row['generator_ms']['p50']} ms"]
    modes = ["unpaced", "paced_inline", "paced_thread"] + [k for k in row if k.startswith("paced_inline_")]
    for mode in modes:
        if mode in row and "skipped" in row[mode]:
            parts.append(f"{mode} skipped: {row[mode]['skipped'][:60]}")
        elif mode in row:
            parts.append(f"{mode} {row[mode]['fps']} fps p99 {row[mode]['frame_ms_p99']} ms")
    return ", ".join(parts)


def run_bench(args: argparse.Namespace) -> int:
    from engine.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    seconds = 0.5 if args.quick else args.seconds
    kinds = _available_kinds(args.backends)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "bundle": bundle.manifest.name,
        "frontend": bench_frontend(bundle, seconds),
        "encoder": bench_encoder(bundle, kinds, args.device, seconds),
    }
    working = [label.split("/")[0] for label, row in result["encoder"].items() if "error" not in row]
    try:
        backend = "onnx" if "onnx" in working else (working[0] if working else "auto")
        result["latency"] = bench_latency(bundle, backend, args.device, 2.0 if args.quick else seconds)
    except Exception as exc:  # the other sections are still worth printing
        log.exception("latency bench failed")
        result["latency"] = {"error": f"{type(exc).__name__}: {exc}"}
    result["render"] = _render_section(args, bundle, kinds, seconds)
    if getattr(args, "show", False):
        from engine.render.bench_show import bench_show

        result["show"] = bench_show(
            args.bundle, 5.0 if args.quick else args.show_seconds, args.width, args.height, ndi=bool(args.ndi)
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(_table(result), file=sys.stderr)
    return 0
