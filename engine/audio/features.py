"""Per-frame audio features from the newest ~50 ms of the ring: RMS, onset strength, spectral centroid.

Sent as `/syn/audio/*` at `osc.audio_rate_hz` and reused by the render loop once per frame, so it is one
rfft of 1024 samples (46 ms at 22050 Hz) with everything else preallocated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.audio.ringbuffer import RingBuffer

FRAME = 1024
_QUIET_RMS = 1e-4  # below about -80 dBFS nothing is onsetting and the centroid is noise


@dataclass(frozen=True)
class AudioFrame:
    rms: float  # linear RMS, 0..1
    onset: float  # positive spectral flux relative to the frame's magnitude, 0..1
    centroid: float  # spectral centroid in Hz (0 when quiet)


class AudioFeatures:
    """Stage: `__call__(ring)` -> AudioFrame for the newest FRAME samples; `reset()` forgets the last spectrum.

    Onset strength needs the previous spectrum, so one instance belongs to one caller (the headless tick or
    the render loop); the ring itself is only read.
    """

    def __init__(self, sample_rate: int = 22050, frame: int = FRAME) -> None:
        self.frame = frame
        self._buf = np.zeros(frame, dtype=np.float32)
        self._window = np.hanning(frame).astype(np.float32)
        self._freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate).astype(np.float32)
        self._prev = np.zeros(frame // 2 + 1, dtype=np.float32)
        self._has_prev = False

    def reset(self) -> None:
        self._prev[:] = 0.0
        self._has_prev = False

    def from_samples(self, samples: np.ndarray) -> AudioFrame:
        x = np.nan_to_num(samples[-self.frame :].astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        mag = np.abs(np.fft.rfft(x * self._window[-x.shape[0] :], n=self.frame)).astype(np.float32)
        total = float(mag.sum())
        if rms < _QUIET_RMS or total <= 0.0:
            onset, centroid = 0.0, 0.0
        else:
            rise = np.maximum(mag - self._prev, 0.0).sum() if self._has_prev else 0.0
            onset = min(1.0, float(rise) / total)
            centroid = float((mag * self._freqs).sum() / total)
        self._prev[:] = mag
        self._has_prev = True
        return AudioFrame(min(rms, 1.0), onset, centroid)

    def __call__(self, ring: RingBuffer) -> AudioFrame:
        ring.read_last(self._buf)
        return self.from_samples(self._buf)
