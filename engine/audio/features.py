"""Per-frame audio features from the ring: RMS, onset, centroid, band energies, spectral flux, beat and tempo.

Sent as `/syn/audio/*` at `osc.audio_rate_hz` by `Engine.tick` and computed once per frame by the render
loop, from two different instances. Everything here is therefore a function of the *audio*, not of how
often an instance is called:

- RMS, onset, centroid and the band energies come from the newest FRAME (1024) samples (46 ms at 22050 Hz):
  one rfft. (`onset` is the older per-call measure kept for compatibility: the rise of the spectrum since
  this instance's previous call.)
- The onset envelope (`flux`, beats, tempo) is computed on a fixed grid of the ring's absolute sample
  counter: envelope frame k covers the FRAME samples ending at sample k * HOP (HOP = 256, 11.6 ms). Each
  instance keeps a cursor and computes each grid frame exactly once, in one batched rfft per call, however
  often it is called; two instances on one ring find the same beats at the same sample indices.

Envelope: log-mel spectral flux as librosa's `onset.onset_strength` defines it (64 mel bands of the
power spectrum in dB, floored at FLOOR_DB, the positive rise from one frame to the next averaged over the
bands), computed incrementally because `onset_strength` works on whole buffers and would recompute the
rolling buffer on every call. Tempo: librosa's method (autocorrelation of the onset envelope,
`librosa.autocorrelate`, weighted by a log-normal prior around 120 BPM) over the last TEMPO_WINDOW_S of
envelope, re-estimated every TEMPO_EVERY_S of audio (2 Hz), with a parabolic refinement of the peak lag
(librosa's own `feature.tempo` reports whole lags: 117.5 or 123 BPM for 120 at this hop). aubio would do
the same job but has no wheels on PyPI (a C build on every install), while librosa is already a
dependency.

Beats: a peak of the envelope (the largest within +-LOOKAHEAD frames, i.e. known LOOKAHEAD * HOP = 23 ms
after it) above an adaptive threshold (the mean of the previous 0.5 s plus a margin) and above an absolute
floor, at least max(MIN_BEAT_GAP_S, 0.6 x the tempo period) after the previous beat. `beat` is 1.0 when a
beat is detected and falls linearly to 0 over BEAT_DECAY_S of audio time.

Band energies: low < 250 Hz, mid 250-2000 Hz, high > 2000 Hz. Each is the band's power (Hann window,
scaled so the bands sum to the frame's mean square) in dB, mapped linearly from BAND_FLOOR_DB (0) to
0 dB (1) and clipped: a full-scale sine reads 0.95 in its band, -60 dBFS and below read 0.

Silence gives zeros: a quiet frame has no band energy, no flux and no beat; `tempo` holds its last
estimate while beats keep coming and is 0 when no beat was found in the last TEMPO_HOLD_S (so a real
silence, a lost source or a reset reads 0, while a rest of a bar or two keeps the tempo). NaN/inf samples
are read as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.audio.ringbuffer import RingBuffer

FRAME = 1024
HOP = 256  # onset-envelope grid (samples)
N_MELS = 64
FLOOR_DB = -80.0  # mel band levels below this are floored (noise under it makes no flux)
FLUX_FULL_DB = 10.0  # an envelope value of 10 dB (mean rise per band) reads flux 1
FLUX_SPAN_S = 0.05  # `flux` is the envelope's maximum over the newest 50 ms
BAND_EDGES_HZ = (250.0, 2000.0)
BAND_FLOOR_DB = -60.0
LOOKAHEAD = 2  # envelope frames after a peak before it is a peak
THRESHOLD_SPAN_S = 0.5  # the adaptive threshold is the mean over this much envelope before the peak
THRESHOLD_RATIO = 1.5
THRESHOLD_DB = 1.0  # and the peak must exceed that mean by this many dB
BEAT_FLOOR_DB = 2.0  # an envelope peak below this is no beat, whatever the threshold
MIN_BEAT_GAP_S = 0.25  # 240 BPM at most
BEAT_DECAY_S = 0.2
TEMPO_EVERY_S = 0.5
TEMPO_WINDOW_S = 6.0
TEMPO_MIN_S = 3.0  # no estimate from less envelope than this
TEMPO_HOLD_S = 2.5
MIN_BPM, MAX_BPM = 40.0, 240.0
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0  # librosa's default prior: log-normal, 1 octave wide
MIN_PERIODICITY = 0.1  # normalised autocorrelation below this: no tempo
HISTORY_S = 8.0
MAX_CATCHUP_S = 2.0  # a first call (or one after a long gap) computes at most this much envelope
_QUIET_RMS = 1e-4  # below about -80 dBFS nothing is onsetting and the centroid is noise


@dataclass(frozen=True)
class AudioFrame:
    rms: float  # linear RMS, 0..1
    onset: float  # positive spectral change since this instance's last call, relative to the magnitude, 0..1
    centroid: float  # spectral centroid in Hz (0 when quiet)
    low: float = 0.0  # band energy < 250 Hz, 0..1 (see the module docstring)
    mid: float = 0.0  # 250-2000 Hz, 0..1
    high: float = 0.0  # > 2000 Hz, 0..1
    flux: float = 0.0  # log-mel spectral flux (onset envelope) over the newest 50 ms, 0..1
    beat: float = 0.0  # 1 at a detected beat, falling linearly to 0 over BEAT_DECAY_S
    tempo: float = 0.0  # BPM; 0 when none (silence, fewer than 3 s heard, no beat for 2.5 s)
    beats: int = 0  # beats detected by this instance so far (not sent)
    beat_t: float = -1.0  # audio time (s since the stream started) of the latest beat's onset, -1: none (not sent)


def autocorrelate(x: np.ndarray) -> np.ndarray:
    """Full autocorrelation at lags 0..len(x)-1 through numpy's FFT (what librosa.autocorrelate computes,
    without importing librosa and scipy on the start-up path)."""
    n = x.shape[0]
    spectrum = np.fft.rfft(x, 2 * n)  # zero-padded: linear, not circular, correlation
    return np.fft.irfft(spectrum.real**2 + spectrum.imag**2, 2 * n)[:n]


class AudioFeatures:
    """Stage: `__call__(ring)` -> AudioFrame at the ring's newest sample; `reset()` forgets everything.

    One instance belongs to one caller (the headless tick or the render loop); the ring itself is only read.
    """

    def __init__(self, sample_rate: int = 22050, frame: int = FRAME) -> None:
        self.sample_rate = int(sample_rate)
        self.frame = frame
        sr = self.sample_rate
        self._buf = np.zeros(frame, dtype=np.float32)
        self._window = np.hanning(frame).astype(np.float32)
        self._freqs = np.fft.rfftfreq(frame, 1.0 / sr).astype(np.float32)
        self._prev = np.zeros(frame // 2 + 1, dtype=np.float32)
        self._has_prev = False
        # power per rfft bin such that the bins sum to the windowed frame's mean square (Parseval)
        scale = np.full(frame // 2 + 1, 2.0, dtype=np.float32)
        scale[0] = scale[-1] = 1.0
        self._power_scale = scale / float(frame * np.square(self._window, dtype=np.float64).sum())
        lo, hi = BAND_EDGES_HZ
        self._bands = np.stack([self._freqs < lo, (self._freqs >= lo) & (self._freqs < hi), self._freqs >= hi])
        self._bands = self._bands.astype(np.float32).T  # [bins, 3]
        # librosa's mel bank, cached on disk (importing librosa costs ~2 s of start-up, before the window)
        from engine.audio.frontend_config import FrontEndConfig, mel_filterbank

        bank = mel_filterbank(FrontEndConfig(sample_rate=sr, n_fft=frame, n_mels=N_MELS))
        self._mel = np.ascontiguousarray(bank.T)  # [bins, mels]
        self._fps = sr / HOP  # envelope frames per second
        self._catchup = max(1, round(MAX_CATCHUP_S * self._fps))
        self._span = np.zeros((self._catchup - 1) * HOP + frame, dtype=np.float32)
        self._frames = np.zeros((self._catchup, frame), dtype=np.float32)
        self._hist_len = round(HISTORY_S * self._fps)
        self._env = np.zeros(2 * self._hist_len, dtype=np.float32)  # contiguous history, shifted when full
        self._tempo_every = max(1, round(TEMPO_EVERY_S * self._fps))
        self._tempo_window = round(TEMPO_WINDOW_S * self._fps)
        self._thr_span = max(1, round(THRESHOLD_SPAN_S * self._fps))
        lags = np.arange(self._tempo_window, dtype=np.float64)
        with np.errstate(divide="ignore"):
            bpm = 60.0 * self._fps / lags
        self._lag_lo = max(2, math.ceil(60.0 * self._fps / MAX_BPM))
        self._lag_hi = min(self._tempo_window - 2, math.floor(60.0 * self._fps / MIN_BPM))
        self._prior = np.zeros_like(lags)
        sel = slice(self._lag_lo, self._lag_hi + 1)
        self._prior[sel] = np.exp(-0.5 * (np.log2(bpm[sel] / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
        self.reset()

    def reset(self) -> None:
        self._prev[:] = 0.0
        self._has_prev = False
        self._next = -1  # next envelope frame index to compute (-1: start at the next call's newest)
        self._first = 0  # first envelope frame of the current run (tempo needs TEMPO_MIN_S of it)
        self._env_end = 0  # absolute index one past the newest envelope frame in `_env`
        self._env_pos = self._hist_len  # where that frame lands in `_env`
        self._last_mel = np.full(N_MELS, FLOOR_DB, dtype=np.float32)
        self._last_beat = -(10**9)  # envelope frame of the latest beat's peak
        self._last_detect = -(10**9)  # absolute sample at which it was detected
        self._beats = 0
        self._tempo = 0.0
        self._checked = 0  # envelope frames before this have been looked at for peaks

    # -- the newest frame -----------------------------------------------------------------------------------

    def from_samples(self, samples: np.ndarray) -> AudioFrame:
        """RMS, onset, centroid and the band energies of the newest FRAME samples (no envelope, beat or tempo)."""
        return self._instant(samples)

    def _instant(self, samples: np.ndarray, **envelope: float) -> AudioFrame:
        x = np.nan_to_num(samples[-self.frame :].astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        spec = np.fft.rfft(x * self._window[-x.shape[0] :], n=self.frame)
        mag = np.abs(spec).astype(np.float32)
        total = float(mag.sum())
        if rms < _QUIET_RMS or total <= 0.0:
            onset, centroid, bands = 0.0, 0.0, (0.0, 0.0, 0.0)
        else:
            rise = np.maximum(mag - self._prev, 0.0).sum() if self._has_prev else 0.0
            onset = min(1.0, float(rise) / total)
            centroid = float((mag * self._freqs).sum() / total)
            power = np.square(mag) * self._power_scale
            db = 10.0 * np.log10(power @ self._bands + 1e-12)
            bands = tuple(float(v) for v in np.clip((db - BAND_FLOOR_DB) / -BAND_FLOOR_DB, 0.0, 1.0))
        self._prev[:] = mag
        self._has_prev = True
        return AudioFrame(min(rms, 1.0), onset, centroid, *bands, **envelope)

    # -- the envelope grid ----------------------------------------------------------------------------------

    def _history(self, end: int, n: int) -> np.ndarray:
        """The envelope frames [end - n, end) (absolute indices; n <= the history), a view."""
        stop = self._env_pos - (self._env_end - end)
        return self._env[stop - n : stop]

    def _append(self, values: np.ndarray) -> None:
        n = values.shape[0]
        if self._env_pos + n > self._env.shape[0]:  # keep the newest history at the front
            keep = self._hist_len
            self._env[:keep] = self._env[self._env_pos - keep : self._env_pos]
            self._env_pos = keep
        self._env[self._env_pos : self._env_pos + n] = values
        self._env_pos += n
        self._env_end += n

    def _envelope(self, ring: RingBuffer, k0: int, k1: int) -> None:
        """Compute envelope frames k0..k1-1 (consecutive to the history) in one batched rfft."""
        m = k1 - k0
        span = self._span[: (m - 1) * HOP + self.frame]
        ring.read_ending_at((k1 - 1) * HOP, span)
        np.nan_to_num(span, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        frames = np.lib.stride_tricks.sliding_window_view(span, self.frame)[::HOP]
        windowed = np.multiply(frames, self._window, out=self._frames[:m])
        power = np.square(np.abs(np.fft.rfft(windowed, axis=1))) * self._power_scale
        mel = 10.0 * np.log10(np.maximum(power @ self._mel, 1e-12))
        np.maximum(mel, FLOOR_DB, out=mel)
        prev = np.vstack([self._last_mel[None, :], mel[:-1]])
        env = np.maximum(mel - prev, 0.0).mean(axis=1)
        if k0 == self._first:  # no frame before the run: its first frame rises from nothing
            env[0] = 0.0
        self._last_mel[:] = mel[-1]
        self._append(env.astype(np.float32))

    def _peaks(self, upto: int) -> None:
        """Beats among the envelope frames [checked, upto - LOOKAHEAD), in frame order."""
        lo = max(self._checked, self._first)
        hi = upto - LOOKAHEAD
        self._checked = max(self._checked, hi)
        if hi <= lo:
            return
        seg = self._history(hi + LOOKAHEAD, hi + LOOKAHEAD - (lo - self._thr_span))  # frames lo-thr .. hi+L
        off = self._thr_span
        cand = seg[off : off + hi - lo]
        around = np.lib.stride_tricks.sliding_window_view(seg[off - LOOKAHEAD :], 2 * LOOKAHEAD + 1)[: hi - lo]
        before = np.lib.stride_tricks.sliding_window_view(seg[: off + hi - lo - 1], self._thr_span)[: hi - lo]
        mean = before.mean(axis=1)
        ok = (cand >= around.max(axis=1)) & (cand > seg[off - 1 : off - 1 + hi - lo])
        ok &= (cand > BEAT_FLOOR_DB) & (cand > THRESHOLD_RATIO * mean + THRESHOLD_DB)
        for i in np.flatnonzero(ok):  # a handful per second at most
            j = lo + int(i)
            gap = MIN_BEAT_GAP_S if self._tempo <= 0.0 else max(MIN_BEAT_GAP_S, 0.6 * 60.0 / self._tempo)
            if (j - self._last_beat) / self._fps >= gap:
                self._last_beat = j
                self._last_detect = (j + LOOKAHEAD) * HOP
                self._beats += 1

    def _estimate_tempo(self, end: int) -> None:
        """Tempo from the envelope frames ending at `end` (an absolute frame on the TEMPO_EVERY grid)."""
        n = min(self._tempo_window, end - self._first, self._hist_len)
        if n < TEMPO_MIN_S * self._fps:
            self._tempo = 0.0
            return
        x = self._history(end, n).astype(np.float64)
        x = x - x.mean()
        ac = autocorrelate(x)
        if ac[0] <= 1e-9:
            self._tempo = 0.0
            return
        ac = ac / ac[0]
        hi = min(self._lag_hi, n - 2)
        if hi <= self._lag_lo:
            self._tempo = 0.0
            return
        weighted = ac[self._lag_lo : hi + 1] * self._prior[self._lag_lo : hi + 1]
        lag = self._lag_lo + int(np.argmax(weighted))
        if ac[lag] < MIN_PERIODICITY:
            self._tempo = 0.0
            return
        a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
        denom = a - 2.0 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        self._tempo = 60.0 * self._fps / (lag + max(-0.5, min(0.5, shift)))

    def _advance(self, ring: RingBuffer, end: int) -> None:
        """Bring the envelope, beats and tempo up to the newest complete grid frame at or before `end`."""
        last = end // HOP + 1  # frames 0..last-1 end at or before `end`
        if self._next < 0 or self._next > last or last - self._next > self._catchup:
            start = max(0, last - self._catchup)  # (re)start: at most MAX_CATCHUP_S of history
            self._last_mel[:] = FLOOR_DB
            self._env[:] = 0.0  # what lies before the run reads as silence
            self._env_pos = self._hist_len
            self._next = self._first = self._checked = self._env_end = start
        while self._next < last:  # chunks split at the tempo grid, so every result is a function of the audio
            grid = (self._next // self._tempo_every + 1) * self._tempo_every
            stop = min(last, grid)
            self._envelope(ring, self._next, stop)
            self._next = stop
            self._peaks(stop)
            if stop == grid:
                self._estimate_tempo(stop)

    def __call__(self, ring: RingBuffer) -> AudioFrame:
        end = ring.written
        ring.read_ending_at(end, self._buf)
        self._advance(ring, end)
        now = self._next  # envelope frames known
        flux_frames = max(1, round(FLUX_SPAN_S * self._fps))
        recent = self._history(now, min(flux_frames, now - self._first, self._hist_len))
        flux = min(1.0, float(recent.max()) / FLUX_FULL_DB) if recent.size else 0.0
        age = (end - self._last_detect) / self.sample_rate
        beat = max(0.0, 1.0 - age / BEAT_DECAY_S) if age >= 0 else 0.0
        heard = (now - self._last_beat) / self._fps <= TEMPO_HOLD_S
        tempo = self._tempo if heard else 0.0
        # the peak is the first frame whose window holds the onset: it lies in that window's last hop
        beat_t = max(0.0, (self._last_beat - 0.5) * HOP / self.sample_rate) if self._beats else -1.0
        return self._instant(self._buf, flux=flux, beat=beat, tempo=float(tempo), beats=self._beats, beat_t=beat_t)


def bench(seconds: float = 20.0, rate_hz: float = 60.0, sample_rate: int = 22050) -> dict[str, float]:
    """Cost per call at `rate_hz` on a 120 BPM click track written into a ring block by block (the ring writes
    are not timed): `python -m engine.audio.features`. The mean includes the 2 Hz tempo estimates."""
    import time

    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32)
    audio[:: sample_rate // 2] += 0.8  # a click every 0.5 s
    ring = RingBuffer(10 * sample_rate, sample_rate)
    feats = AudioFeatures(sample_rate)
    block = round(sample_rate / rate_hz)
    ring.write(audio[: 3 * sample_rate])
    feats(ring)  # warm-up: the first call computes MAX_CATCHUP_S of envelope
    times = []
    for pos in range(3 * sample_rate, audio.size - block, block):
        ring.write(audio[pos : pos + block])
        start = time.perf_counter()
        feats(ring)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000.0
    return {
        "calls": len(ms),
        "rate_hz": rate_hz,
        "mean_ms": round(float(ms.mean()), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "max_ms": round(float(ms.max()), 4),
    }


if __name__ == "__main__":
    import json

    print(json.dumps({"60 Hz": bench(rate_hz=60.0), "30 Hz": bench(rate_hz=30.0)}))
