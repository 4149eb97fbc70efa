"""Audio input devices through PortAudio (sounddevice, imported lazily): listing and lookup."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TextIO

from engine.deps import require
from engine.errors import MissingDependencyError, SynesthesiaError


class DeviceNotFoundError(SynesthesiaError):
    """No input device matches (or there is none at all)."""

    exit_code = 2


class NoInputDeviceError(DeviceNotFoundError):
    """The system has no audio input at all (or no PortAudio): the engine plays its demo source instead."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: float
    is_default: bool


def sounddevice() -> ModuleType:
    """The sounddevice module; MissingDependencyError (with the install hint) when PortAudio is absent."""
    return require("sounddevice", "microphone input")


def list_inputs(sd: ModuleType | None = None) -> list[InputDevice]:
    sd = sd or sounddevice()
    default_in = sd.default.device[0] if sd.default.device else -1
    apis = [a["name"] for a in sd.query_hostapis()]
    out = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            api = apis[d["hostapi"]] if d["hostapi"] < len(apis) else "?"
            out.append(
                InputDevice(
                    i, d["name"], api, int(d["max_input_channels"]), float(d["default_samplerate"]), i == default_in
                )
            )
    return out


def find_input(spec: str | int | None, sd: ModuleType | None = None) -> InputDevice:
    """The input device for `spec`: None = the system default, an index, or a case-insensitive name substring."""
    inputs = list_inputs(sd)
    if not inputs:
        raise NoInputDeviceError("no audio input device found")
    if spec is None or spec == "":
        for dev in inputs:
            if dev.is_default:
                return dev
        return inputs[0]
    if isinstance(spec, int) or str(spec).isdigit():
        for dev in inputs:
            if dev.index == int(spec):
                return dev
        raise DeviceNotFoundError(f"no input device with index {spec}; inputs: {_names(inputs)}")
    matches = [dev for dev in inputs if str(spec).lower() in dev.name.lower()]
    if not matches:
        raise DeviceNotFoundError(f"no input device matching {spec!r}; inputs: {_names(inputs)}")
    return matches[0]


def _names(inputs: list[InputDevice]) -> str:
    return ", ".join(f"{d.index}: {d.name}" for d in inputs) or "none"


def print_devices(out: TextIO = sys.stdout) -> int:
    """`synesthesia devices`: one line per input device, or one line saying why there is none. Exits 0."""
    try:
        inputs = list_inputs()
    except MissingDependencyError as exc:
        print(f"no audio input: PortAudio is not available ({exc})", file=out)
        return 0
    if not inputs:
        print("no audio input device found (the engine will play its demo source instead)", file=out)
        return 0
    print("audio input devices (use --source mic:INDEX or mic:NAME):", file=out)
    for d in inputs:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3d}  {d.name}  [{d.hostapi}, {d.channels} ch, {d.default_rate:.0f} Hz]", file=out)
    return 0
