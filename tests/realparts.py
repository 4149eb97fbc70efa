"""Real parts for tests: a private PulseAudio server with a null sink, and an Xvfb display.

Audio path. ``PulseServer`` runs its own ``pulseaudio`` daemon (never the user's: every path lives in a fresh
temporary directory and clients reach it only through ``PULSE_SERVER``) with one null sink. The sink's monitor
is the default source, so anything played into the sink is what a "microphone" records. Debian's PortAudio
(19.6) has no PulseAudio host API; it reaches the server through ALSA's ``pulse`` plugin (libasound2-plugins),
which gives PortAudio two devices, ``pulse`` and ``default``, both recording from the default source.

PortAudio enumerates devices once, in ``Pa_Initialize`` (``import sounddevice``), and the ALSA hook that turns
``default`` into the pulse device checks for a running server at that moment. So a process sees the null-sink
monitor only if ``PULSE_SERVER`` was set and the daemon was up when PortAudio initialised:

- subprocesses: pass ``PulseServer.env`` in their environment;
- this process: the ``pulse_server`` fixture puts ``env`` into ``os.environ`` and, if sounddevice was already
  imported, re-initialises PortAudio (``reinit_portaudio``) so the device list is read again.

How a capture device disappears, and what PortAudio (ALSA pulse plugin, callback stream) does:

- ``suspend_sink()``: the stream stalls. Callbacks stop, no status flag, no error, ``stream.active`` stays
  True. ``resume_sink()`` makes the same stream deliver again (the gap is not back-filled). Only a watchdog
  on callback progress notices this.
- ``unload_sink()`` (the only source goes away): PortAudio's callback thread fails (it prints
  ``Expression '...' failed in pa_linux_alsa.c`` to stderr), the stream becomes inactive while not stopped
  (``active`` False, ``stopped`` False) and ``finished_callback`` runs; no Python exception is raised.
  Opening a stream meanwhile raises ``sounddevice.PortAudioError`` ("Unanticipated host error", ALSA -5).
  After ``load_sink()``, a new stream on ``default``/``pulse`` works without re-initialising PortAudio.
- ``stop_daemon()``: same as unloading for a running stream; opening meanwhile raises ``PortAudioError``
  ("Illegal combination of I/O devices"). After ``start_daemon()`` (same socket) a new stream works, again
  without re-initialising PortAudio - unless PortAudio was initialised while the daemon was down, in which
  case the pulse devices are missing from its list until it is re-initialised.

Blocking reads (``stream.read``) behave worse: they wait through a suspend, raise ``PortAudioError`` at once
when the sink is unloaded, and block for good when the daemon dies (even after it returns; aborting that
stream then hangs too). Capture code should use a callback stream and watch its progress.

A null sink renders in blocks of up to 2 s while no client asks for low latency, so a new recording stream
would get its first callback up to 2 s late. The server keeps a low-latency ``parec`` "keeper" on the monitor
to hold the sink at 20 ms blocks; whenever the sink or the daemon comes back, the keeper is restarted and the
call returns only once the monitor delivers data again.

Display path. ``XvfbServer`` runs ``Xvfb`` on a free display (``-displayfd``) with its framebuffer in a file
(``-fbdir``), so ``screenshot()`` reads what the X server really holds, with no extra tools.

Every process is started in its own session and asked to die with the process that started it
(``PR_SET_PDEATHSIG``), so a killed test run leaves no daemons behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PULSE_TOOLS = ("pulseaudio", "pactl", "paplay", "parec")
# Where Debian-like and other common layouts keep the ALSA pulse PCM plugin.
ALSA_PULSE_PLUGIN_GLOBS = (
    "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so",
    "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so",
    "/usr/lib64/alsa-lib/libasound_module_pcm_pulse.so",
)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
KEEPER_LATENCY_MS = 20
KEEPER_READY_TIMEOUT_S = 4.0
_PR_SET_PDEATHSIG = 1


def missing_pulse_parts() -> str | None:
    """Why the PulseAudio capture path cannot run here, or None if it can."""
    missing = [tool for tool in PULSE_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"PulseAudio tools not installed: {', '.join(missing)} (Debian: pulseaudio pulseaudio-utils)"
    if not any(glob.glob(pattern) for pattern in ALSA_PULSE_PLUGIN_GLOBS):
        return "ALSA pulse plugin not installed, PortAudio cannot reach PulseAudio (Debian: libasound2-plugins)"
    return None


def missing_xvfb() -> str | None:
    """Why Xvfb cannot run here, or None if it can."""
    if shutil.which("Xvfb") is None:
        return "Xvfb not installed (Debian: xvfb)"
    return None


def reinit_portaudio() -> bool:
    """Make an already imported sounddevice enumerate devices again; True if it did.

    Uses sounddevice's private ``_terminate``/``_initialize`` (there is no public way). Any open stream
    of this process is invalidated, so call it only when none is open.
    """
    sd = sys.modules.get("sounddevice")
    if sd is None:
        return False
    sd._terminate()
    sd._initialize()
    return True


@functools.cache
def _prctl():
    # Looked up in the parent: the child between fork and exec should not dlopen (another thread may hold
    # the loader's lock).
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def spawn(cmd: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """Start a helper process that does not get the terminal's signals and dies with its parent.

    The child gets SIGTERM when the *thread* that started it exits (PR_SET_PDEATHSIG), so start
    long-lived helpers from the main thread.
    """
    prctl = _prctl()

    def die_with_parent() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return subprocess.Popen(
        cmd,
        env=env,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        start_new_session=True,
        preexec_fn=die_with_parent,
        **kwargs,
    )


def stop_process(proc: subprocess.Popen | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate, then kill, a process and reap it; never hangs longer than about twice ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Playback:
    """A sound being played into the sink by ``paplay``."""

    def __init__(self, proc: subprocess.Popen, path: Path) -> None:
        self.proc = proc
        self.path = path

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = 30.0) -> int:
        """Wait until the sound has played; returns paplay's exit status (raises TimeoutExpired)."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> Playback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PulseServer:
    """A private PulseAudio daemon with one null sink whose monitor is the default source."""

    def __init__(self, sink: str = "syn_null", sample_rate: int = 44100, channels: int = 2) -> None:
        self.sink = sink
        self.source = f"{sink}.monitor"
        self.sample_rate = sample_rate
        self.channels = channels
        # mkdtemp under /tmp keeps the socket path well below the 108-byte limit of AF_UNIX.
        self.workdir = Path(tempfile.mkdtemp(prefix="syn-pulse-"))
        self.socket = self.workdir / "native"
        self.server = f"unix:{self.socket}"
        self.log_path = self.workdir / "pulseaudio.log"
        self._daemon: subprocess.Popen | None = None
        self._keeper: subprocess.Popen | None = None
        self._keeper_ready = threading.Event()
        self._sink_module: int | None = None
        self._suspended = False
        self._playbacks: list[Playback] = []
        self._sound_count = 0
        (self.workdir / "runtime").mkdir()
        (self.workdir / "state").mkdir()
        # Clients: never autospawn a daemon of their own if ours is down, and do not read the user's config.
        client_conf = self.workdir / "client.conf"
        client_conf.write_text(f"autospawn = no\ndefault-server = {self.server}\n")
        self.env: dict[str, str] = {
            "PULSE_SERVER": self.server,
            "PULSE_RUNTIME_PATH": str(self.workdir / "runtime"),
            "PULSE_STATE_PATH": str(self.workdir / "state"),
            "PULSE_CLIENTCONFIG": str(client_conf),
            "PULSE_SINK": sink,
            "PULSE_SOURCE": self.source,
        }

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> PulseServer:
        """Start the daemon with the sink loaded; returns once the monitor delivers data at low latency."""
        self.start_daemon()
        return self

    def close(self) -> None:
        """Stop everything this server started and remove its directory."""
        for playback in self._playbacks:
            playback.stop()
        self._playbacks.clear()
        self.stop_daemon()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PulseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def daemon_running(self) -> bool:
        return self._daemon is not None and self._daemon.poll() is None

    @property
    def sink_loaded(self) -> bool:
        return self._sink_module is not None

    def start_daemon(self) -> None:
        """(Re)start the daemon on the same socket with the sink loaded and the keeper running."""
        if self.daemon_running:
            return
        script = self.workdir / "default.pa"
        script.write_text(
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
            f"load-module {self._sink_args()}\n"
            f"set-default-sink {self.sink}\n"
            f"set-default-source {self.source}\n"
        )
        env = self._daemon_env()
        with open(self.log_path, "ab") as log:
            self._daemon = spawn(
                [
                    "pulseaudio",
                    "--daemonize=no",
                    "--system=false",
                    "--exit-idle-time=-1",
                    "--use-pid-file=no",
                    "--realtime=no",
                    "--high-priority=no",
                    "--log-target=stderr",
                    "-n",
                    f"--file={script}",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._daemon.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self._daemon.returncode}:\n{self._log_tail()}")
            if self.socket.exists() and self._pactl_ok("info"):
                break
            if time.monotonic() > deadline:
                stop_process(self._daemon)
                raise TimeoutError(f"pulseaudio did not come up in {START_TIMEOUT_S} s:\n{self._log_tail()}")
            time.sleep(0.05)
        self._sink_module = self._find_sink_module()
        self._suspended = False
        self._start_keeper()

    def stop_daemon(self) -> None:
        """Stop the daemon: every stream on it fails and no device is reachable until ``start_daemon``."""
        stop_process(self._keeper)
        self._keeper = None
        stop_process(self._daemon)
        self._daemon = None
        self._sink_module = None
        # The socket file outlives a killed daemon; remove it so start_daemon waits for the new one.
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def reset(self) -> None:
        """Bring the server back to its initial state (daemon up, sink loaded, not suspended, silent)."""
        for playback in self._playbacks:
            playback.stop()
        self._playbacks.clear()
        if not self.daemon_running:
            self.start_daemon()
            return
        if self._suspended:
            self.resume_sink()
        if not self.sink_loaded:
            self.load_sink()
        if self._keeper is None or self._keeper.poll() is not None:
            self._start_keeper()

    # -- the device comes and goes ---------------------------------------------------------------------

    def suspend_sink(self) -> None:
        """Suspend the sink (and so its monitor): capture streams stall without an error."""
        self.pactl("suspend-sink", self.sink, "1")
        self._suspended = True

    def resume_sink(self) -> None:
        """Resume a suspended sink: stalled capture streams deliver again."""
        self.pactl("suspend-sink", self.sink, "0")
        self._suspended = False

    def unload_sink(self) -> None:
        """Remove the null sink and its monitor: capture streams on it fail (see the module docstring)."""
        if self._sink_module is None:
            return
        stop_process(self._keeper)
        self._keeper = None
        self.pactl("unload-module", str(self._sink_module))
        self._sink_module = None
        self._suspended = False

    def load_sink(self) -> None:
        """Load the null sink again as the default sink and source; returns once its monitor delivers data."""
        if self._sink_module is not None:
            return
        self._sink_module = int(self.pactl("load-module", *self._sink_args().split()).strip())
        self.pactl("set-default-sink", self.sink)
        self.pactl("set-default-source", self.source)
        self._start_keeper()

    # -- playing sound ---------------------------------------------------------------------------------

    def play(self, sound: str | os.PathLike | np.ndarray, sample_rate: int | None = None) -> Playback:
        """Play a sound file, or a float array (frames or frames x channels) at ``sample_rate``, into the sink.

        Returns at once; the returned ``Playback`` can be waited for or stopped (``reset`` stops it too).
        """
        if isinstance(sound, np.ndarray):
            if sample_rate is None:
                raise TypeError("play(array) needs sample_rate")
            import soundfile  # only needed for arrays; keeps import of this module light

            self._sound_count += 1
            path = self.workdir / f"sound-{self._sound_count}.wav"
            soundfile.write(path, np.asarray(sound, dtype=np.float32), sample_rate, subtype="FLOAT")
        else:
            if sample_rate is not None:
                raise TypeError("a sound file carries its own sample rate; pass sample_rate only with an array")
            path = Path(sound)
            if not path.is_file():
                raise FileNotFoundError(path)
        with open(self.workdir / "paplay.log", "ab") as log:
            proc = spawn(
                ["paplay", f"--device={self.sink}", "--client-name=syn-test-play", str(path)],
                env=self.client_env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        playback = Playback(proc, path)
        self._playbacks = [p for p in self._playbacks if p.running]
        self._playbacks.append(playback)
        return playback

    # -- helpers ---------------------------------------------------------------------------------------

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a client process: ``base`` (default os.environ) with ``env`` applied."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        return merged

    def pactl(self, *args: str) -> str:
        """Run pactl against this server; returns stdout, raises CalledProcessError on failure."""
        result = subprocess.run(
            ["pactl", *args],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result.stdout

    def _pactl_ok(self, *args: str) -> bool:
        try:
            self.pactl(*args)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        return True

    def _sink_args(self) -> str:
        return f"module-null-sink sink_name={self.sink} rate={self.sample_rate} channels={self.channels}"

    def _find_sink_module(self) -> int:
        for line in self.pactl("list", "short", "modules").splitlines():
            fields = line.split("\t")
            if len(fields) >= 3 and fields[1] == "module-null-sink" and f"sink_name={self.sink}" in fields[2]:
                return int(fields[0])
        raise RuntimeError(f"module-null-sink for {self.sink} is not loaded:\n{self._log_tail()}")

    def _daemon_env(self) -> dict[str, str]:
        env = self.client_env()
        for key in ("PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE", "DISPLAY"):
            env.pop(key, None)
        # HOME and XDG dirs point into the work dir so the daemon writes no cookie or state elsewhere;
        # a dead D-Bus address stops it from trying to autolaunch a session bus.
        env.update(
            HOME=str(self.workdir),
            XDG_RUNTIME_DIR=str(self.workdir / "runtime"),
            XDG_CONFIG_HOME=str(self.workdir / "config"),
            DBUS_SESSION_BUS_ADDRESS=f"unix:path={self.workdir / 'no-dbus'}",
        )
        return env

    def _start_keeper(self) -> None:
        stop_process(self._keeper)
        self._keeper_ready.clear()
        self._keeper = spawn(
            [
                "parec",
                f"--device={self.source}",
                f"--latency-msec={KEEPER_LATENCY_MS}",
                "--client-name=syn-test-keeper",
                "--raw",
                "--format=s16le",
                f"--rate={self.sample_rate}",
                f"--channels={self.channels}",
            ],
            env=self.client_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=self._drain_keeper, args=(self._keeper,), daemon=True).start()
        deadline = time.monotonic() + KEEPER_READY_TIMEOUT_S
        while not self._keeper_ready.wait(0.2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no audio from {self.source} in {KEEPER_READY_TIMEOUT_S} s:\n{self._log_tail()}")
            # An idle null sink adopts a lower latency only at its next block, up to 2 s away; a
            # suspend/resume cycle starts a new block at once.
            self.pactl("suspend-sink", self.sink, "1")
            self.pactl("suspend-sink", self.sink, "0")

    def _drain_keeper(self, proc: subprocess.Popen) -> None:
        # The keeper's data is discarded; its first chunk proves the sink now renders at low latency.
        stream = proc.stdout
        if stream is None:
            return
        with stream:
            while stream.read1(65536):
                self._keeper_ready.set()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def dominant_frequency(signal_: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the strongest bin of a Hann-windowed spectrum of a mono signal."""
    x = np.asarray(signal_, dtype=np.float64).ravel()
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / sample_rate)[int(spectrum.argmax())])


class XvfbServer:
    """Xvfb on a free display number, with its framebuffer readable through ``screenshot``."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        self.width = width
        self.height = height
        self.workdir = Path(tempfile.mkdtemp(prefix="syn-xvfb-"))
        self.log_path = self.workdir / "Xvfb.log"
        self.display = ""
        self._proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display}

    def start(self) -> XvfbServer:
        """Start Xvfb; returns once it accepts connections."""
        (self.workdir / "fb").mkdir(exist_ok=True)
        read_fd, write_fd = os.pipe()
        try:
            with open(self.log_path, "ab") as log:
                self._proc = spawn(
                    [
                        "Xvfb",
                        "-displayfd",
                        str(write_fd),
                        "-screen",
                        "0",
                        f"{self.width}x{self.height}x24",
                        "-fbdir",
                        str(self.workdir / "fb"),
                        "-nolisten",
                        "tcp",
                        "-noreset",
                    ],
                    pass_fds=(write_fd,),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
        finally:
            # Only Xvfb may hold the write end, so its death reads as EOF.
            os.close(write_fd)
        try:
            self.display = f":{self._read_display_number(read_fd)}"
        except BaseException:
            self.close()
            raise
        finally:
            os.close(read_fd)
        return self

    def _read_display_number(self, read_fd: int) -> int:
        # Xvfb writes "N\n" once it accepts connections.
        data = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
                raise TimeoutError(f"Xvfb did not report a display within {START_TIMEOUT_S} s:\n{self._log_tail()}")
            chunk = os.read(read_fd, 64)
            if not chunk:
                raise RuntimeError(f"Xvfb exited before reporting a display:\n{self._log_tail()}")
            data += chunk
        return int(data)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Stop Xvfb and remove its directory."""
        stop_process(self._proc)
        self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> XvfbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def screenshot(self) -> np.ndarray:
        """The whole screen as a height x width x 3 uint8 RGB array, read from Xvfb's framebuffer file."""
        return read_xwd(self.workdir / "fb" / "Xvfb_screen0")


# XWD file header: 25 big-endian CARD32 fields, then the window name, then colormap entries of 12 bytes.
_XWD_FIELDS = [
    "header_size",
    "file_version",
    "pixmap_format",
    "pixmap_depth",
    "pixmap_width",
    "pixmap_height",
    "xoffset",
    "byte_order",
    "bitmap_unit",
    "bitmap_bit_order",
    "bitmap_pad",
    "bits_per_pixel",
    "bytes_per_line",
    "visual_class",
    "red_mask",
    "green_mask",
    "blue_mask",
    "bits_per_rgb",
    "colormap_entries",
    "ncolors",
    "window_width",
    "window_height",
    "window_x",
    "window_y",
    "window_bdrwidth",
]


def read_xwd(path: str | os.PathLike) -> np.ndarray:
    """Decode a 32-bit TrueColor XWD image (what Xvfb keeps in ``-fbdir``) into an RGB uint8 array."""
    data = Path(path).read_bytes()
    header = dict(zip(_XWD_FIELDS, struct.unpack(">25I", data[:100]), strict=True))
    if header["file_version"] != 7 or header["bits_per_pixel"] != 32:
        raise ValueError(f"unsupported XWD image: {header}")
    offset = header["header_size"] + 12 * header["ncolors"]
    height, width, stride = header["pixmap_height"], header["pixmap_width"], header["bytes_per_line"]
    dtype = "<u4" if header["byte_order"] == 0 else ">u4"
    rows = np.frombuffer(data, dtype=np.uint8, count=height * stride, offset=offset).reshape(height, stride)
    pixels = rows[:, : width * 4].copy().view(dtype).reshape(height, width)
    channels = [_channel(pixels, header[f"{c}_mask"]) for c in ("red", "green", "blue")]
    return np.stack(channels, axis=-1)


def _channel(pixels: np.ndarray, mask: int) -> np.ndarray:
    shift = (mask & -mask).bit_length() - 1
    return ((pixels & mask) >> shift).astype(np.uint8)


def count_color(image: np.ndarray, rgb: Iterable[int]) -> int:
    """How many pixels of an H x W x 3 image have exactly this colour."""
    return int(np.all(image == np.asarray(list(rgb), dtype=image.dtype), axis=-1).sum())
