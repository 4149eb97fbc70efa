"""Typed engine configuration: TOML files (venue presets) validated into frozen pydantic models.

An unknown key, a wrong type or an out-of-range value is a ConfigError naming the key's path
(e.g. `osc.targets.0: expected HOST:PORT`). Command-line flags override the file (see cli.py).

Validation is strict: no coercion (`vsync = "yes"` and `fps = "60"` are errors; a TOML integer is
accepted where a float is expected), no NaN or infinity anywhere, every number bounded by what the
engine can really use, every port 1..65535 (a port past 65535 would otherwise wrap around in the
socket layer and bind something else).
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError
from engine.inference.base import BackendKind
from engine.io.allow import LOOPBACK, parse_network
from engine.io.midi_map import MidiSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, strict=True, allow_inf_nan=False)


# Enum fields are `strict=False`: TOML and flags give their value as a string (there is no enum type).
MAX_PORT = 65535
INT32_MAX = 2**31 - 1  # libzmq's int socket options (SNDHWM) and the generator seed


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def parse_hostport(value: str) -> tuple[str, int]:
    """(host, port) of "HOST:PORT"; ValueError unless the port is 1..65535."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not 0 < int(port) <= MAX_PORT:
        raise ValueError(f"port {port} out of range 1..{MAX_PORT} in {value!r}")
    return host, int(port)


def parse_osc_in(value: str) -> tuple[str | None, int]:
    """`--osc-in`: PORT or HOST:PORT -> (host or None, port); port 0 means no OSC control server."""
    host, sep, port = value.rpartition(":")
    if not port.isdigit() or (sep and not host):
        raise ValueError(f"expected PORT or HOST:PORT, got {value!r}")
    if int(port) > MAX_PORT:
        raise ValueError(f"port {port} out of range 0..{MAX_PORT} in {value!r}")
    return (host.strip("[]") if sep else None), int(port)


def osc_in_overrides(value: tuple[str | None, int] | None) -> dict[str, Any]:
    """`--osc-in` as config overrides of the `osc` section (`run` and `check` share it)."""
    if value is None:
        return {}
    host, port = value
    return {"in_port": port or None} | ({"in_host": host} if host else {})


def _hostport(value: str) -> str:
    parse_hostport(value)
    return value


def _network(value: str) -> str:
    parse_network(value)
    return value


def check_zmq_endpoint(value: str) -> str:
    """A ZeroMQ endpoint: tcp://HOST:PORT (host `*` = every interface, port `*` = any free one), ipc://PATH
    or inproc://NAME; ValueError otherwise. libzmq itself would wrap port 70000 around to 4464."""
    transport, sep, rest = value.partition("://")
    if not sep or not rest:
        raise ValueError(f"expected tcp://HOST:PORT, got {value!r}")
    if transport in ("ipc", "inproc"):
        return value
    if transport != "tcp":
        raise ValueError(f"transport {transport!r} not supported (tcp, ipc or inproc), got {value!r}")
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected tcp://HOST:PORT, got {value!r}")
    if port == "*":
        return value
    if not port.isdigit():
        raise ValueError(f"port {port!r} is not a number in {value!r}")
    if not 0 < int(port) <= MAX_PORT:
        raise ValueError(f"port {port} out of range 1..{MAX_PORT} in {value!r}")
    return value


class AudioSettings(_Section):
    source: str = Field("mic", description="mic | mic:NAME_OR_INDEX | file:PATH | synth:CLASS | synth:tour")
    loop: bool = Field(True, description="file sources: start again at the end")
    realtime: bool = Field(True, description="file sources: pace at real time (False: as fast as possible)")
    hop_s: float = Field(0.5, gt=0, le=3.0, description="time between analysis windows")
    early_s: float = Field(
        1.0, ge=0, le=3.0, description="first emotion after this much audio (a zero-padded window); 0: a full window"
    )
    block_ms: float = Field(20.0, gt=0, le=200, description="capture block length")
    ring_s: float = Field(10.0, ge=4.0, le=120, description="ring buffer length")
    reconnect_s: float = Field(2.0, gt=0, le=3600, description="wait between attempts to reopen a lost device")
    stall_s: float = Field(2.0, gt=0, le=3600, description="no audio from an open device for this long: it is lost")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        kind = v.split(":", 1)[0]
        if kind not in {"mic", "file", "synth", "replay"}:
            raise ValueError("source must be mic, mic:NAME, file:PATH, synth:CLASS or replay:DIR")
        if kind in {"file", "synth", "replay"} and ":" not in v:
            raise ValueError(f"source {kind} needs a value ({kind}:...)")
        return v


class AnalysisSettings(_Section):
    backend: BackendKind = Field(BackendKind.AUTO, strict=False)
    device: Device = Field(Device.AUTO, strict=False)
    attack_s: float = Field(0.6, ge=0, le=600, description="smoothing time constant when a value rises")
    release_s: float = Field(1.5, ge=0, le=600, description="smoothing time constant when a value falls")
    hysteresis_margin: float = Field(0.1, ge=0, le=1, description="a challenger's probability lead to switch label")
    hysteresis_hops: int = Field(2, ge=1, le=1000, description="hops a challenger must lead before the label switches")
    silence_hops: int = Field(2, ge=1, le=1000, description="consecutive silent windows before the state is silent")


class OscSettings(_Section):
    enabled: bool = True
    targets: list[Annotated[str, AfterValidator(_hostport)]] = Field(default_factory=lambda: ["127.0.0.1:9000"])
    prefix: str = Field("/syn", pattern=r"^(/[A-Za-z0-9_.-]+)+$")
    in_port: int | None = Field(9001, ge=0, le=MAX_PORT, description="control port (None or 0: no control server)")
    in_host: str = Field("127.0.0.1", description="address the control port binds (0.0.0.0: every interface)")
    allow: list[Annotated[str, AfterValidator(_network)]] = Field(
        default_factory=lambda: list(LOOPBACK), description="sender networks whose control messages are applied"
    )
    query_port: int | None = Field(
        None, ge=1, le=MAX_PORT, description="query replies go to this port of the sender's host only"
    )
    audio_rate_hz: float = Field(30.0, gt=0, le=200)
    queue_size: int = Field(1024, ge=8, le=1_000_000)


class ZmqSettings(_Section):
    enabled: bool = True
    pub: str = "tcp://127.0.0.1:5556"
    ctl: str | None = "tcp://127.0.0.1:5557"
    ctl_allow: list[Annotated[str, AfterValidator(_network)]] = Field(
        default_factory=lambda: list(LOOPBACK), description="sender networks whose control requests are applied"
    )
    hwm: int = Field(100, ge=1, le=1_000_000, description="ZMQ send high-water mark (messages) per subscriber")
    frames: bool = Field(False, description="publish encoded frames on the `frame` topic")
    frame_format: str = Field("jpeg", pattern="^(jpeg|png)$")
    frame_every: int = Field(1, ge=1, le=10_000, description="publish every Nth frame")

    @field_validator("pub", "ctl")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else check_zmq_endpoint(v)


class GeneratorMode(StrEnum):
    AUTO = "auto"  # thread when one generator call takes more than half a frame, else inline
    INLINE = "inline"  # in the render thread, every k-th frame (adaptive), blended in between
    THREAD = "thread"  # on its own thread at its own pace, crossfaded


class Framebuffer(StrEnum):
    """How a window's pixels reach the screen (SDL_FRAMEBUFFER_ACCELERATION). `auto`: software on X11,
    where SDL's accelerated window surface goes through OpenGL, which on a machine without a GPU driver
    (Mesa llvmpipe, Xvfb, many kiosk boxes) costs two rasteriser threads and ~10 ms a frame at 1280x720,
    while the software path is one shared-memory image put; SDL's choice elsewhere."""

    AUTO = "auto"
    SOFTWARE = "software"
    ACCELERATED = "accelerated"


class RenderSettings(_Section):
    headless: bool = False
    fullscreen: bool = False
    display: int = Field(0, ge=0, le=64)
    width: int = Field(1280, ge=64, le=7680)
    height: int = Field(720, ge=64, le=4320)
    fps: float = Field(60.0, gt=0, le=480)
    vsync: bool = True
    hud: bool = False
    trails: float = Field(0.0, ge=0, lt=1, description="feedback: share of the last frame kept")
    grade: float = Field(0.6, ge=0, le=1, description="colour grade strength from valence/arousal (0: none)")
    generator_mode: GeneratorMode = Field(GeneratorMode.AUTO, strict=False)
    generator_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="ONNX Runtime threads for the generator on the CPU; 0: half the cores (1 on two), so a "
        "generator on its own thread leaves the render thread a core",
    )
    framebuffer: Framebuffer = Field(Framebuffer.AUTO, strict=False, description="window surface: see Framebuffer")
    intensity: float = Field(1.0, ge=0, le=1)
    speed: float = Field(1.0, ge=0, le=10)
    condition_tau_s: float = Field(1.0, gt=0, le=600, description="time constant of the condition easing")
    seed: int = Field(0, ge=0, le=INT32_MAX)
    frames_dir: str | None = Field(None, description="headless: write frames here as PNG")
    backend: BackendKind = Field(BackendKind.AUTO, strict=False)
    device: Device = Field(Device.AUTO, strict=False)


class NdiSettings(_Section):
    enabled: bool = False
    name: str = Field("Synesthesia", min_length=1, max_length=200, description="the NDI source name")
    max_fps: float | None = Field(None, gt=0, le=240, description="None: every displayed frame")


class SpoutSettings(_Section):
    """Spout (Windows): the displayed frames as a named Spout sender (engine/render/share.py)."""

    enabled: bool = False
    name: str = Field("Synesthesia", min_length=1, max_length=255, description="the Spout sender name")
    max_fps: float | None = Field(None, gt=0, le=240, description="None: every displayed frame")


class SyphonSettings(_Section):
    """Syphon (macOS): the displayed frames as a named Syphon server (engine/render/share.py)."""

    enabled: bool = False
    name: str = Field("Synesthesia", min_length=1, max_length=255, description="the Syphon server name")
    max_fps: float | None = Field(None, gt=0, le=240, description="None: every displayed frame")


class RecordSettings(_Section):
    dir: str | None = Field(None, description="record the show here (states, features, controls; never audio)")


class KioskSettings(_Section):
    enabled: bool = False
    log_file: str = "synesthesia.log"
    log_max_mb: float = Field(10.0, gt=0, le=100_000)
    log_backups: int = Field(5, ge=0, le=1000)
    restart_limit: int = Field(100, ge=0, le=1_000_000, description="in-process stage restarts before giving up")


def is_loopback_host(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebSettings(_Section):
    """The web console (engine/web): status, preview, controls, presets, bundle swap over HTTP."""

    enabled: bool = False
    host: str = Field("127.0.0.1", min_length=1, description="address it binds; off loopback a token is required")
    port: int = Field(8080, ge=1, le=MAX_PORT)
    token: str | None = Field(None, min_length=8, max_length=256, pattern=r"^[A-Za-z0-9._~+/=-]+$")
    status_hz: float = Field(5.0, ge=1, le=20, description="live status pushes per second to each page")
    preview_fps: float = Field(5.0, ge=0, le=15, description="preview JPEGs per second (0: no preview)")
    preview_width: int = Field(480, ge=64, le=1280, description="preview width in pixels")
    preview_quality: int = Field(70, ge=10, le=95, description="preview JPEG quality")
    preset_dirs: list[str] = Field(default_factory=list, description="more folders of *.toml presets")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        if self.enabled and self.token is None and not is_loopback_host(self.host):
            raise ValueError(
                f"the web console on {self.host} is reachable from the network: set web.token (or bind it to 127.0.0.1)"
            )
        return self


class EngineConfig(_Section):
    bundle: str | None = Field(None, description="bundle directory (None: the default bundle)")
    duration_s: float | None = Field(None, gt=0, le=10 * 365 * 86400, description="stop after this many seconds")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    audio: AudioSettings = Field(default_factory=AudioSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    osc: OscSettings = Field(default_factory=OscSettings)
    zmq: ZmqSettings = Field(default_factory=ZmqSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    kiosk: KioskSettings = Field(default_factory=KioskSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
    ndi: NdiSettings = Field(default_factory=NdiSettings)
    spout: SpoutSettings = Field(default_factory=SpoutSettings)
    syphon: SyphonSettings = Field(default_factory=SyphonSettings)
    midi: MidiSettings = Field(default_factory=MidiSettings)
    web: WebSettings = Field(default_factory=WebSettings)


# pydantic error type -> what the operator reads (the input is appended)
_TYPE_MESSAGES = {
    "finite_number": "must be a finite number (not nan or inf)",
    "bool_type": "must be a boolean (true or false)",
    "float_type": "must be a number",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a table",
    "dict_type": "must be a table",
}


def _describe(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "value_error":  # our validators' messages already quote the value
        return str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
    what = _TYPE_MESSAGES.get(err["type"], err["msg"])
    if err["type"] == "missing" or isinstance(err.get("input"), dict):
        return what
    shown = repr(err.get("input"))
    return f"{what}, got {shown if len(shown) <= 60 else shown[:60] + '...'}"


def _format_error(exc: ValidationError, origin: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{key}: {_describe(err)}")
    more = f" (+{len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
    return ConfigError(f"{origin}: {lines[0]}{more}")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_config(
    data: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, origin: str = "config"
) -> EngineConfig:
    """Validate a nested dict (from TOML) with command-line overrides merged on top."""
    merged = _merge(data or {}, overrides or {})
    try:
        return EngineConfig.model_validate(merged)
    except ValidationError as exc:
        raise _format_error(exc, origin) from exc


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> EngineConfig:
    """Read a TOML file (optional) and apply overrides; ConfigError names the file and key on any problem."""
    data: dict[str, Any] = {}
    origin = "command line"
    if path is not None:
        p = Path(path)
        origin = str(p)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: config file not found") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from exc
    return build_config(data, overrides, origin)


def generator_cpu_threads(settings: RenderSettings) -> int:
    """`render.generator_threads`, with 0 resolved to half the cores (at least 1).

    On a 2-core machine a generator on two intra-op threads took the render thread's core in bursts: the
    256 px cascade's window bench gave 58.6 fps, p99 30 ms, against 59.9 fps, p99 22 ms on one thread
    (docs/benchmarks.md)."""
    if settings.generator_threads:
        return settings.generator_threads
    return max(1, (os.cpu_count() or 2) // 2)
