"""Frames to other software on the same machine or network: NDI (engine/render/ndi.py), Spout (Windows) and
Syphon (macOS), each a FrameTap selected by `--ndi/--spout/--syphon [NAME]` or `[ndi]/[spout]/[syphon]`.

`build_share_taps(cfg)` makes the configured taps for the show: one that cannot load (wrong platform,
package or runtime missing) is one operator line naming what to install, and the show goes on without it.
`probe(kind)` says what would load, for `synesthesia check`.

Spout and Syphon share GPU textures. Their taps upload the frame from the tap's thread: RGB -> RGBA with
numpy into a preallocated buffer, then SpoutGL's `sendImage` (its own OpenGL context on that thread) or a
Metal texture published by syphon-python's `SyphonMetalServer`. These two code paths are written against the
packages' documented APIs and have not been run on Windows or macOS hardware by this project (see
docs/design.md §8).
"""

from __future__ import annotations

import platform
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.deps import require
from engine.errors import MissingDependencyError
from engine.render.taps import FrameTap, opaque_buffer, rgb_into_rgba

if TYPE_CHECKING:
    from engine.config import EngineConfig

GL_RGBA = 0x1908  # the OpenGL enum SpoutGL's sendImage takes for 4-byte RGBA pixels (no PyOpenGL needed)


class ShareKind(StrEnum):
    NDI = "ndi"
    SPOUT = "spout"
    SYPHON = "syphon"


LABELS = {ShareKind.NDI: "NDI", ShareKind.SPOUT: "Spout", ShareKind.SYPHON: "Syphon"}
_PLATFORM = {ShareKind.SPOUT: ("win32", "Windows", "SpoutGL"), ShareKind.SYPHON: ("darwin", "macOS", "syphon-python")}


class FrameShareUnavailableError(MissingDependencyError):
    """This output cannot work here (wrong platform, package or runtime missing); the message says why."""


def _module(kind: ShareKind) -> Any:
    """The package behind `kind`, or FrameShareUnavailableError with one line naming what it needs."""
    if kind is ShareKind.NDI:
        try:
            return require("cyndilib", "NDI output")
        except MissingDependencyError as exc:
            raise FrameShareUnavailableError(str(exc)) from exc
    want, system, package = _PLATFORM[kind]
    label = LABELS[kind]
    if sys.platform != want:
        raise FrameShareUnavailableError(
            f"{label} needs {system} and `pip install {package}` (extra {kind.value}); this machine runs "
            f"{platform.system() or sys.platform}"
        )
    try:
        return require("SpoutGL" if kind is ShareKind.SPOUT else "syphon", f"{label} output")
    except MissingDependencyError as exc:
        raise FrameShareUnavailableError(str(exc)) from exc


def probe(kind: ShareKind) -> str:
    """What loads for `kind` (package and runtime version), or FrameShareUnavailableError saying what is missing."""
    from importlib.metadata import PackageNotFoundError, version

    mod = _module(kind)
    dist = {ShareKind.NDI: "cyndilib", ShareKind.SPOUT: "SpoutGL", ShareKind.SYPHON: "syphon-python"}[kind]
    try:
        found = f"{dist} {version(dist)}"
    except PackageNotFoundError:
        found = dist
    if kind is ShareKind.NDI:
        try:
            runtime = str(mod.get_ndi_version())  # calls into the NDI runtime library: it really loaded
        except (AttributeError, OSError, RuntimeError) as exc:
            raise FrameShareUnavailableError(f"cyndilib imports but the NDI runtime does not answer ({exc})") from exc
        return f"{found}, runtime {runtime.split()[-1] if runtime.split() else runtime}"
    return found


class SpoutTap(FrameTap):
    """Frames to a Spout sender named `sender_name` (Windows, SpoutGL). The sender and its OpenGL context
    are created on the tap's thread (`open`) and used only there."""

    def __init__(self, sender_name: str, max_fps: float | None = None) -> None:
        super().__init__("spout", max_fps)
        self.sender_name = sender_name
        self._spout = _module(ShareKind.SPOUT)  # fails here, at start-up, with the one line
        self._sender: Any = None
        self._rgba: np.ndarray | None = None

    def open(self) -> None:
        self._sender = self._spout.SpoutSender()
        self._sender.setSenderName(self.sender_name)

    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        height, width = rgb.shape[:2]
        if self._rgba is None or self._rgba.shape[:2] != (height, width):
            self._rgba = opaque_buffer(height, width)
        rgba = rgb_into_rgba(rgb, self._rgba)
        if not self._sender.sendImage(rgba, width, height, GL_RGBA, False, 0):
            raise RuntimeError(f"Spout did not take the {width}x{height} frame")
        self._sender.setFrameSync(self.sender_name)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.releaseSender()
            self._sender = None

    def describe(self) -> str:
        return f"frames as the Spout sender {self.sender_name!r}"

    def status(self) -> dict[str, Any]:
        return {**super().status(), "sender": self.sender_name}


class SyphonTap(FrameTap):
    """Frames to a Syphon server named `server_name` (macOS, syphon-python's Metal server)."""

    def __init__(self, server_name: str, max_fps: float | None = None) -> None:
        super().__init__("syphon", max_fps)
        self.server_name = server_name
        self._syphon = _module(ShareKind.SYPHON)
        self._server: Any = None
        self._texture: Any = None
        self._rgba: np.ndarray | None = None

    def open(self) -> None:
        self._server = self._syphon.SyphonMetalServer(self.server_name)

    def deliver(self, rgb: np.ndarray, seq: int, t: float) -> None:
        from syphon.utils.raw import copy_bytes_to_mtl_texture, create_mtl_texture

        height, width = rgb.shape[:2]
        if self._rgba is None or self._rgba.shape[:2] != (height, width):
            self._rgba = opaque_buffer(height, width)
            self._texture = create_mtl_texture(self._server.device, width, height)  # RGBA8
        copy_bytes_to_mtl_texture(memoryview(rgb_into_rgba(rgb, self._rgba)).cast("B"), self._texture)
        self._server.publish_frame_texture(self._texture)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._texture = None

    def describe(self) -> str:
        return f"frames as the Syphon server {self.server_name!r}"

    def status(self) -> dict[str, Any]:
        return {**super().status(), "server": self.server_name}


def enabled_kinds(cfg: EngineConfig) -> list[ShareKind]:
    return [kind for kind in ShareKind if getattr(cfg, kind.value).enabled]


def make_tap(kind: ShareKind, cfg: EngineConfig) -> FrameTap:
    """The tap for `kind` per its config section; FrameShareUnavailableError when it cannot load here."""
    section = getattr(cfg, kind.value)
    if kind is ShareKind.NDI:
        from engine.render.ndi import NdiTap

        try:
            return NdiTap(section.name, cfg.render.fps, section.max_fps)
        except MissingDependencyError as exc:
            raise FrameShareUnavailableError(str(exc)) from exc
    if kind is ShareKind.SPOUT:
        return SpoutTap(section.name, section.max_fps)
    return SyphonTap(section.name, section.max_fps)


def build_share_taps(cfg: EngineConfig) -> tuple[list[FrameTap], list[str]]:
    """(the configured taps that load, one operator line for each that does not)."""
    taps: list[FrameTap] = []
    problems: list[str] = []
    for kind in enabled_kinds(cfg):
        try:
            taps.append(make_tap(kind, cfg))
        except FrameShareUnavailableError as exc:
            problems.append(f"no {LABELS[kind]} output: {exc}")
    return taps, problems
