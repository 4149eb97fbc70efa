"""Live microphone: PortAudio capture at the device's own rate, resampled to the engine rate, self-healing.

Threads: PortAudio's callback thread only copies the first channel into a native-rate RingBuffer and
counts overflows. The source's pump thread (every ~block/2) moves new samples through a streaming soxr
resampler into the engine ring and is the watchdog: a finished/errored stream means the device is gone
(`lost`); no callback data for `stall_s` means it stalled (PulseAudio suspends, hung USB devices).
Either way the stream is closed and reopened every `reconnect_s` until audio flows again. When the device
cannot even be found, PortAudio is re-initialised before the next attempt (it lists devices only then).
What PortAudio and ALSA print from C during those attempts is captured and rate-limited (`NativeStderr`);
`last_error` is the current problem only: it is cleared when audio flows again (`outages` counts them).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from engine.audio.devices import DeviceNotFoundError, find_input, sounddevice
from engine.audio.native_stderr import NativeStderr
from engine.audio.ringbuffer import RingBuffer
from engine.audio.source import Source, SourceState
from engine.errors import MissingDependencyError

log = logging.getLogger("synesthesia.audio")

NATIVE_RING_S = 2.0  # the pump runs every few ms; two seconds survive a long scheduling stall


class MicSource(Source):
    kind = "mic"

    def __init__(
        self,
        ring: RingBuffer,
        device: str | int | None = None,
        block_ms: float = 20.0,
        reconnect_s: float = 2.0,
        stall_s: float = 2.0,
    ) -> None:
        super().__init__(ring, f"mic:{device}" if device not in (None, "") else "mic")
        self.device_spec = device
        self.block_ms = block_ms
        self.reconnect_s = reconnect_s
        self.stall_s = stall_s
        self._stream: Any = None
        self._native: RingBuffer | None = None
        self._resampler: Any = None
        self._scratch = np.zeros(0, dtype=np.float32)
        self._pumped = 0
        self._finished = False
        self.device_name: str | None = None
        self.device_rate: int | None = None
        self.native = NativeStderr()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.overflows = 0
        self.callbacks = 0
        self.outages = 0  # times the device was lost or stalled
        self.open_attempts = 0
        self.dropped_samples = 0  # native samples the pump could not keep (it was starved for > 2 s)

    # -- PortAudio callback thread: copy and count only -------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        self.callbacks += 1
        self._native.write(indata[:, 0])  # a strided view: one copy into the preallocated ring

    def _on_finished(self) -> None:
        self._finished = True

    # -- pump thread ------------------------------------------------------------------------------------

    def _open(self) -> None:
        import soxr

        sd = sounddevice()
        self.open_attempts += 1
        dev = find_input(self.device_spec, sd)
        rate = round(dev.default_rate)
        if self._native is None or self._native.sample_rate != rate:
            self._native = RingBuffer(round(NATIVE_RING_S * rate), rate)
            self._scratch = np.zeros(self._native.capacity, dtype=np.float32)
        self._pumped = self._native.written
        self._finished = False
        blocksize = max(16, round(rate * self.block_ms / 1000.0))
        kwargs = dict(
            device=dev.index,
            samplerate=rate,
            dtype="float32",
            blocksize=blocksize,
            callback=self._callback,
            finished_callback=self._on_finished,
        )
        try:
            stream = sd.InputStream(channels=1, **kwargs)
        except sd.PortAudioError:
            stream = sd.InputStream(channels=dev.channels, **kwargs)  # some hardware refuses mono; use channel 0
        try:
            stream.start()
        except sd.PortAudioError:
            stream.close(ignore_errors=True)
            raise
        self._stream = stream
        self._resampler = (
            None
            if rate == self.ring.sample_rate
            else soxr.ResampleStream(rate, self.ring.sample_rate, 1, dtype="float32", quality="HQ")
        )
        self.device_name, self.device_rate = dev.name, rate
        log.info("microphone open: %s at %d Hz (resampled to %d Hz)", dev.name, rate, self.ring.sample_rate)

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)

    def _pump(self) -> int:
        native = self._native
        end = native.written
        new = end - self._pumped
        if new <= 0:
            return 0
        if new > native.capacity:
            self.dropped_samples += new - native.capacity
            new = native.capacity
        chunk = self._scratch[:new]
        native.read_ending_at(end, chunk)
        self._pumped = end
        out = chunk if self._resampler is None else self._resampler.resample_chunk(chunk)
        if out.shape[0]:
            self.ring.write(out, t=native.time_of(end))
        return new

    def _reinit_portaudio(self) -> None:
        sd = sounddevice()
        try:
            sd._terminate()
            sd._initialize()
        except sd.PortAudioError as exc:
            log.warning("could not re-initialise PortAudio: %s", exc)

    def _run(self, stop: threading.Event) -> None:
        poll = max(0.002, self.block_ms / 2000.0)
        next_try = 0.0
        last_data = time.monotonic()
        try:
            pa_error: type[BaseException] = sounddevice().PortAudioError
        except MissingDependencyError:
            pa_error = OSError
        while not stop.is_set():
            now = time.monotonic()
            if self._stream is None:
                if now >= next_try:
                    try:
                        with self.native.capture("opening the microphone"):
                            self._open()
                        last_data = time.monotonic()
                    except (pa_error, OSError, ValueError, DeviceNotFoundError, MissingDependencyError) as exc:
                        self._lost(f"{type(exc).__name__}: {exc}")
                        next_try = now + self.reconnect_s
                        if isinstance(exc, DeviceNotFoundError):
                            with self.native.capture("re-initialising PortAudio"):
                                self._reinit_portaudio()
                stop.wait(max(poll, min(0.05, next_try - now)))
                continue
            if self._finished or not self._stream.active:
                with self.native.capture("closing the lost stream"):
                    self._close()
                self._lost("the input stream ended (device unplugged or its server went away)")
                next_try = now + self.reconnect_s
                continue
            if self._pump():
                last_data = now
                self._set_state(SourceState.RUNNING)
            elif now - last_data > self.stall_s:
                if self._state is not SourceState.STALLED:
                    if self._state is SourceState.RUNNING:
                        self.outages += 1
                    self.last_error = f"no audio for {now - last_data:.1f} s"
                    log.warning("microphone %s: %s", self.device_name, self.last_error)
                    self._set_state(SourceState.STALLED)
                if now - last_data > self.stall_s + self.reconnect_s:
                    # reopen; meanwhile a stalled stream may also simply resume (a suspended PulseAudio sink)
                    with self.native.capture("closing the stalled stream"):
                        self._close()
                    last_data = now
                    next_try = now
            stop.wait(poll)
        self._close()

    def _lost(self, why: str) -> None:
        if self._state is SourceState.RUNNING:
            self.outages += 1
        if why != self.last_error:
            log.warning(
                "microphone %s: %s; retrying every %.1f s", self.device_spec or "default", why, self.reconnect_s
            )
        self.last_error = why
        self.errors += 1
        self._set_state(SourceState.LOST)

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "device": self.device_name,
            "device_rate": self.device_rate,
            "overflows": self.overflows,
            "callbacks": self.callbacks,
            "outages": self.outages,
            "open_attempts": self.open_attempts,
            "dropped_samples": self.dropped_samples,
            "native_stderr": self.native.stats(),
        }
