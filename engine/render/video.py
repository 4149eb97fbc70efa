"""`synesthesia render FILE --out show.mp4`: a recording rendered offline to H.264 video with its audio as AAC.

The show's own stages at video time steps, so a video looks like the room would have:

    file -> windows on the live grid (3 s, every analysis.hop_s) -> WindowPredictor -> EmotionTracker
         -> for frame i at t = i / fps: the newest state whose window ended by t,
            AudioFeatures on a RingBuffer filled with the file up to t (RMS, onset, bands, beat, tempo)
         -> RenderLoop.step(now=t): LatentWalk -> GeneratorStep (every frame, no adaptive stride)
            -> FramePainter -> VideoSink -> PyAV: libx264 yuv420p + the file's audio as AAC

Deterministic: the walk's seed (`--seed`), dt = 1/fps, no clock-driven choice (the generator runs every
frame), the same backend -> the same frames. Written to a hidden temporary file beside `--out` and renamed
into place at the end, so a failed or interrupted render leaves nothing half-written behind.
PyAV (`av`, the `video` extra) is imported when a render starts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, ValidationError, field_validator

from engine.config import EngineConfig, _Section, build_config, load_config
from engine.console import say
from engine.deps import require
from engine.errors import BundleError, ConfigError, SynesthesiaError
from engine.threads import OwnedThread

if TYPE_CHECKING:
    from engine.analysis.state import EmotionState
    from engine.audio.features import AudioFrame
    from engine.models.bundle import Bundle

log = logging.getLogger("synesthesia.video")

CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
MUX_RATE = 48000  # the file's audio is resampled to this when AAC cannot carry its own rate
BATCH = 16
PROGRESS_EVERY_S = 5.0
ENCODE_QUEUE = 4  # frames between the render thread and the encoder thread


class VideoError(SynesthesiaError):
    """The output cannot be written (no such folder, not writable, an unknown container)."""

    exit_code = 2


class X264Preset(StrEnum):
    ULTRAFAST = "ultrafast"
    SUPERFAST = "superfast"
    VERYFAST = "veryfast"
    FASTER = "faster"
    FAST = "fast"
    MEDIUM = "medium"
    SLOW = "slow"


class VideoSettings(_Section):
    """What `synesthesia render` writes (validated like a config section; errors name the key)."""

    width: int = Field(1280, ge=64, le=7680)
    height: int = Field(720, ge=64, le=4320)
    fps: float = Field(30.0, ge=1.0, le=240.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    crf: int = Field(20, ge=0, le=51, description="H.264 constant rate factor (lower: better and larger)")
    preset: X264Preset = Field(X264Preset.ULTRAFAST, strict=False, description="x264 speed/size trade-off")
    audio_kbps: int = Field(160, ge=32, le=512)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even for yuv420p video, got {v}")
        return v


def video_settings(**values: Any) -> VideoSettings:
    try:
        return VideoSettings.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"render --{key}: {err['msg']}") from exc


def check_output(out: Path) -> str:
    """The container format for `out`; VideoError when it cannot be written there."""
    fmt = CONTAINERS.get(out.suffix.lower())
    if fmt is None:
        raise VideoError(f"{out}: unknown video container {out.suffix!r}; use one of {', '.join(CONTAINERS)}")
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise VideoError(f"{out}: is a folder")
    if not parent.is_dir():
        raise VideoError(f"{out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VideoError(f"{out}: the folder {parent} is not writable")
    return fmt


def mux_audio(path: Path) -> tuple[np.ndarray, int]:
    """The file's audio for the soundtrack: [channels (1 or 2), n] float32 at a rate AAC carries."""
    import soundfile as sf

    from engine.audio.loading import resample

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # readable: the analysis read it first
    audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    if audio.shape[1] > 2:
        audio = audio.mean(axis=1, keepdims=True)
    chans = np.ascontiguousarray(np.clip(audio.T, -1.0, 1.0), dtype=np.float32)
    if sr not in AAC_RATES:
        chans = np.stack([resample(c, sr, MUX_RATE) for c in chans])
        sr = MUX_RATE
    return chans, int(sr)


def analyse(bundle: Bundle, cfg: EngineConfig, audio: np.ndarray, controls: Any) -> tuple[np.ndarray, list]:
    """Emotion states as the live loop makes them: windows ending on its grid (window, window + hop, ...),
    the bundle's audio model, the live EmotionTracker. Returns (window ends in samples, states)."""
    from engine.analysis.nearest import ArtIndex
    from engine.analysis.predict import WindowPredictor
    from engine.analysis.state import EmotionTracker
    from engine.inference.base import Component
    from engine.inference.select import open_runner

    runner = open_runner(bundle, Component.AUDIO, cfg.analysis.backend, cfg.analysis.device.value).runner
    predictor = WindowPredictor(bundle, runner, device="cpu")
    window = predictor.frontend.config.n_samples
    hop = max(1, round(cfg.audio.hop_s * predictor.frontend.config.sample_rate))
    ends = np.arange(window, audio.size + 1, hop)
    art = ArtIndex.from_bundle(bundle)
    tracker = EmotionTracker(bundle.classes, cfg.analysis, controls, art.class_anchors() if art else None)
    sr = predictor.frontend.config.sample_rate
    states = []
    views = np.lib.stride_tricks.sliding_window_view(audio, window) if audio.size >= window else None
    for b in range(0, ends.size, BATCH):
        chunk = ends[b : b + BATCH]
        pred = predictor(views[chunk - window])
        for i, end in enumerate(chunk):
            states.append(tracker(pred.row(i), end / sr))
    return ends, states


class VideoSink:
    """A render-loop sink that encodes every presented canvas as the next video frame, with the soundtrack
    up to that frame's end; `finish()` flushes both encoders.

    The render thread only copies the canvas out (RGB bytes); conversion to yuv420p, H.264/AAC encoding and
    muxing run on the sink's own encoder thread behind a small bounded queue, so painting frame i + 1
    overlaps encoding frame i. An encoder failure is raised in the render thread at its next frame.
    """

    kind = "video"

    def __init__(self, container: Any, settings: VideoSettings, soundtrack: np.ndarray, rate: int) -> None:
        av = require("av", "video rendering")
        self.av = av
        self.container = container
        self.settings = settings
        self.rate_q = Fraction(settings.fps).limit_denominator(1001)
        v = container.add_stream("libx264", rate=self.rate_q)
        v.width, v.height, v.pix_fmt = settings.width, settings.height, "yuv420p"
        v.options = {"crf": str(settings.crf), "preset": settings.preset.value}
        self.video = v
        self.soundtrack = soundtrack
        self.rate = rate
        layout = "stereo" if soundtrack.shape[0] == 2 else "mono"
        self.audio = container.add_stream("aac", rate=rate, layout=layout)
        self.audio.bit_rate = settings.audio_kbps * 1000
        self.layout = layout
        self.frames = 0  # frames handed to the encoder
        self.encoded = 0
        self._sent = 0  # soundtrack samples encoded
        self._pg: Any = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=ENCODE_QUEUE)
        self._flushed = threading.Event()
        self._thread = OwnedThread(self._work, "video-encoder")

    @property
    def size(self) -> tuple[int, int]:
        return (self.settings.width, self.settings.height)

    def open(self) -> None:
        from engine.render.frames import pygame_module

        self._pg = pygame_module()
        self._thread.start()

    def events(self) -> list:
        return []

    def _put(self, item: bytes | None) -> None:
        while True:
            self._raise_failure()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        if self._thread.error is not None:
            raise VideoError(f"the video encoder failed: {self._thread.error}") from self._thread.error
        if not self._thread.alive and not self._flushed.is_set():
            raise VideoError("the video encoder stopped")

    def present(self, canvas: Any, overlay: Callable[[Any], None] | None = None) -> None:
        self._put(self._pg.image.tobytes(canvas, "RGB"))
        self.frames += 1

    def _work(self, stop: threading.Event) -> None:
        w, h = self.size
        while not stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                self._audio_until(self.soundtrack.shape[1])  # all of the soundtrack, even past the last frame
                self.container.mux(self.video.encode(None))
                self.container.mux(self.audio.encode(None))
                self._flushed.set()
                return
            rgb = np.frombuffer(item, dtype=np.uint8).reshape(h, w, 3)
            frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = self.encoded
            self.container.mux(self.video.encode(frame))
            self.encoded += 1
            self._audio_until(round(self.encoded / self.rate_q * self.rate))

    def _audio_until(self, end: int) -> None:
        end = min(end, self.soundtrack.shape[1])
        if end <= self._sent:
            return
        chunk = np.ascontiguousarray(self.soundtrack[:, self._sent : end])
        frame = self.av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self._sent
        self.container.mux(self.audio.encode(frame))
        self._sent = end

    def finish(self) -> None:
        """Encode what is queued, flush the encoders; raises VideoError when the encoder failed."""
        self._put(None)
        while not self._flushed.wait(0.1):
            self._raise_failure()
        self._thread.stop()

    def wait(self) -> float:
        return 0.0

    def close(self) -> None:
        """Stop the encoder thread (after `finish`, it has already ended); the container is its opener's."""
        if not self._thread.stop(timeout=10.0):
            log.warning("the video encoder thread did not stop")


class Progress:
    """tqdm on a terminal when it is installed, else a line on stderr every few seconds."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.done = 0
        self._bar = None
        self._start = self._last = time.monotonic()
        if sys.stderr.isatty():
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="frame", desc=label, file=sys.stderr, leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            fps = self.done / max(now - self._start, 1e-9)
            print(f"{self.label}: {self.done}/{self.total} frames ({fps:.1f} fps)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def _temporary(out: Path) -> Iterator[Path]:
    """A hidden file beside `out` that becomes `out` when the block ends well, and is removed otherwise."""
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.part{out.suffix}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def render_video(
    path: str | Path, out: str | Path, settings: VideoSettings, cfg: EngineConfig, bundle: Bundle
) -> dict[str, Any]:
    """Render `path` to `out`; returns what was written (frames, durations, seconds taken)."""
    from engine.audio.features import AudioFeatures
    from engine.audio.loading import load_audio_sanitised
    from engine.audio.ringbuffer import RingBuffer
    from engine.controls import Controls
    from engine.inference.base import Component
    from engine.inference.chain import frame_runner
    from engine.inference.select import open_runner
    from engine.render.frames import FramePainter, GeneratorStep, PostSettings
    from engine.render.latent import ConditionSpace, LatentWalk
    from engine.render.loop import RenderLoop, control_state_from_config

    path, out = Path(path), Path(out)
    fmt = check_output(out)
    av = require("av", "video rendering")
    gen = bundle.manifest.generator
    if gen is None:
        raise BundleError(f"{bundle.path}: the bundle has no generator (key 'generator'); rendering needs one")
    fe = bundle.frontend_config()
    sr = fe.sample_rate
    audio, bad = load_audio_sanitised(path, sr)  # AudioLoadError (exit 2) before anything is written
    if bad.size:
        say(f"{path}: {bad.size} non-finite samples (NaN/inf) analysed as 0")
    soundtrack, mux_rate = mux_audio(path)
    duration = audio.size / sr
    n_frames = max(1, round(duration * settings.fps))
    r = cfg.render.model_copy(update={"fps": settings.fps, "width": settings.width, "height": settings.height})
    controls = Controls(bundle.classes, replace(control_state_from_config(cfg), hud=False, seed=settings.seed))
    started = time.monotonic()
    ends, states = analyse(bundle, cfg, audio, controls)
    if not states:
        say(f"{path}: shorter than one {fe.n_samples / sr:.0f} s analysis window; rendered without emotion")
    analysed_s = time.monotonic() - started

    runner = frame_runner(bundle, open_runner(bundle, Component.GENERATOR, r.backend, r.device.value).runner, r.backend)
    walk = LatentWalk(ConditionSpace.from_bundle(bundle), gen.z_dim, r.condition_tau_s, seed=settings.seed)
    step = GeneratorStep(runner, runner.resolution, gen.z_dim, bundle.manifest.shared_dim, settings.fps, adapt=False)
    painter = FramePainter(
        runner.resolution, (settings.width, settings.height), bundle.classes, PostSettings(r.trails, r.grade)
    )
    ring = RingBuffer(max(round(cfg.audio.ring_s * sr), 4 * sr), sr)
    features = AudioFeatures(sr)
    current: dict[str, Any] = {"state": None, "features": None}

    def state_now() -> EmotionState | None:
        return current["state"]

    def features_now() -> AudioFrame | None:
        return current["features"]

    with _temporary(out) as tmp:
        container = av.open(str(tmp), "w", format=fmt)
        try:
            sink = VideoSink(container, settings, soundtrack, mux_rate)
            loop = RenderLoop(r, walk, step, painter, sink, controls, emotion=state_now, features=features_now,
                              backend=runner.describe())  # fmt: skip
            loop.open()
            progress = Progress(n_frames, f"render {path.name}")
            written = 0
            try:
                for i in range(n_frames):
                    t = i / float(sink.rate_q)
                    upto = min(audio.size, round(t * sr))
                    if upto > written:
                        ring.write(audio[written:upto])
                        written = upto
                    k = int(np.searchsorted(ends, upto, side="right"))  # windows that have ended by t
                    current["state"] = states[k - 1] if k else None
                    current["features"] = features(ring)
                    loop.step(now=t)
                    progress.update()
                sink.finish()
            finally:
                progress.close()
                loop.close()
        finally:
            container.close()
    took = time.monotonic() - started
    result = {
        "file": str(path),
        "out": str(out),
        "frames": sink.encoded,
        "fps": settings.fps,
        "size": [settings.width, settings.height],
        "duration_s": round(duration, 3),
        "video_s": round(sink.encoded / float(sink.rate_q), 3),
        "seconds": round(took, 2),
        "analysis_s": round(analysed_s, 2),
        "realtime_x": round(duration / took, 2) if took > 0 else math.inf,
        "backend": runner.describe(),
    }
    say(
        f"rendered {path} to {out}: {sink.encoded} frames at {settings.fps:g} fps, {settings.width}x{settings.height}, "
        f"{took:.1f} s ({result['realtime_x']:.2f}x real time)"
    )
    return result


def run_render(args: Any) -> int:
    """`synesthesia render` from parsed flags."""
    from engine.models.bundle import load_bundle
    from engine.threads import one_blas_thread

    width, height = args.size if args.size else (None, None)
    settings = video_settings(width=width, height=height, fps=args.fps, seed=args.seed, crf=args.crf,
                              preset=args.preset)  # fmt: skip
    overrides: dict[str, Any] = {"render": {"backend": args.backend, "device": args.device}}
    overrides["analysis"] = {"backend": args.backend, "device": args.device}
    if args.bundle:
        overrides["bundle"] = args.bundle
    cfg = load_config(args.config, overrides) if args.config else build_config(overrides=overrides)
    check_output(Path(args.out))  # before the slow part: a bad --out fails at once
    bundle = load_bundle(cfg.bundle)
    with one_blas_thread():
        render_video(args.file, args.out, settings, cfg, bundle)
    return 0
