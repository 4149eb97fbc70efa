"""`synesthesia check`: preflight for a venue — config, bundle, backends, audio input, display, ports, frame rate,
NDI/Spout/Syphon out.

Each check prints one line (OK / WARN / FAIL and what it found). Exit 0 when nothing would stop the show,
1 when a check failed, 2 when the config or the bundle is invalid (the CLI's exit code for those: the line
names the key or file). Nothing is left open: sockets are bound and closed, streams are not started.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from engine.config import EngineConfig, generator_cpu_threads, load_config, parse_hostport
from engine.errors import BundleError, ConfigError, SynesthesiaError
from engine.io.allow import SenderAllowList, exposure


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    detail: str


def check_audio(cfg: EngineConfig, classes: list[str]) -> CheckResult:
    kind, _, value = cfg.audio.source.partition(":")
    if kind == "file":
        from engine.audio.loading import load_audio

        audio = load_audio(value)
        return CheckResult("audio", Verdict.OK, f"file {value}: {len(audio) / 22050:.1f} s")
    if kind == "synth":
        emotion, _, sound = value.partition(":")
        ok = (emotion == "tour" or emotion in classes) and sound in ("", "speech", "music")
        why = "" if ok else f": expected one of {classes} or tour, then optionally :speech or :music"
        return CheckResult("audio", Verdict.OK if ok else Verdict.FAIL, f"synth:{value}{why}")
    from engine.audio.devices import NoInputDeviceError, find_input

    try:
        dev = find_input(value or None)
    except NoInputDeviceError as exc:
        return CheckResult("audio", Verdict.WARN, f"{exc}: the engine will play its demo source")
    return CheckResult("audio", Verdict.OK, f"input {dev.index}: {dev.name} ({dev.hostapi}, {dev.default_rate:.0f} Hz)")


def check_display(cfg: EngineConfig) -> CheckResult:
    if cfg.render.headless:
        return CheckResult("display", Verdict.OK, "headless (no window)")
    from engine.render.display import display_unavailable

    why = display_unavailable()
    if why:
        return CheckResult("display", Verdict.WARN, f"{why}: the engine will run headless")
    from engine.deps import require

    pygame = require("pygame", "the display")
    pygame.display.init()
    try:
        n = pygame.display.get_num_displays()
        sizes = pygame.display.get_desktop_sizes()
    finally:
        pygame.display.quit()
    if cfg.render.display >= n:
        return CheckResult("display", Verdict.FAIL, f"display {cfg.render.display} asked for, {n} present")
    w, h = sizes[cfg.render.display]
    return CheckResult("display", Verdict.OK, f"display {cfg.render.display} of {n}: {w}x{h}")


def _control_result(name: str, where: str, bound: str, allow: SenderAllowList) -> CheckResult:
    """A free control port, who may use it, and a warning when anyone on the network may."""
    detail = f"{where}; senders allowed: {allow}{exposure(bound)}"
    open_to_all = allow.everyone and exposure(bound)
    return CheckResult(name, Verdict.WARN if open_to_all else Verdict.OK, detail)


def check_ports(cfg: EngineConfig) -> list[CheckResult]:
    results = []
    for target in cfg.osc.targets if cfg.osc.enabled else []:
        host, port = parse_hostport(target)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            results.append(CheckResult("osc out", Verdict.OK, f"{host}:{port} resolves"))
        except OSError as exc:
            results.append(CheckResult("osc out", Verdict.FAIL, f"{host}:{port} does not resolve ({exc})"))
    if cfg.osc.enabled and cfg.osc.in_port:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((cfg.osc.in_host, cfg.osc.in_port))
                where = f"udp {cfg.osc.in_host}:{cfg.osc.in_port} free"
                results.append(_control_result("osc in", where, cfg.osc.in_host, SenderAllowList(cfg.osc.allow)))
            except OSError as exc:
                results.append(CheckResult("osc in", Verdict.FAIL, f"udp port {cfg.osc.in_port}: {exc}"))
    if cfg.zmq.enabled:
        import zmq

        ctx = zmq.Context()
        try:
            for name, addr, kind in (("zmq pub", cfg.zmq.pub, zmq.PUB), ("zmq ctl", cfg.zmq.ctl, zmq.REP)):
                if not addr:
                    continue
                sock = ctx.socket(kind)
                sock.linger = 0
                try:
                    sock.bind(addr)
                    if kind == zmq.REP:
                        results.append(_control_result(name, f"{addr} free", addr, SenderAllowList(cfg.zmq.ctl_allow)))
                    else:
                        results.append(CheckResult(name, Verdict.OK, f"{addr} free{exposure(addr)}"))
                except zmq.ZMQError as exc:
                    results.append(CheckResult(name, Verdict.FAIL, f"{addr}: {exc}"))
                finally:
                    sock.close()
        finally:
            ctx.term()
    return results


def check_models(cfg: EngineConfig, bundle_arg: str | None) -> tuple[list[CheckResult], list[str]]:
    from engine.inference.base import Component
    from engine.inference.select import open_runner
    from engine.models.bundle import load_bundle
    from engine.render.bench import time_generator

    bundle = load_bundle(bundle_arg or cfg.bundle)
    m = bundle.manifest
    results = [CheckResult("bundle", Verdict.OK, f"{bundle.path} '{m.name}' format {m.format}, hashes verified")]
    audio = open_runner(bundle, Component.AUDIO, cfg.analysis.backend, cfg.analysis.device.value)
    verdict = Verdict.WARN if audio.failures else Verdict.OK
    results.append(CheckResult("encoder", verdict, audio.message))
    if m.generator is None:
        results.append(CheckResult("generator", Verdict.FAIL, "the bundle has no generator: nothing to render"))
        return results, bundle.classes
    threads = generator_cpu_threads(cfg.render)
    gen = open_runner(bundle, Component.GENERATOR, cfg.render.backend, cfg.render.device.value, threads=threads)
    results.append(CheckResult("generator", Verdict.WARN if gen.failures else Verdict.OK, gen.message))
    ms = time_generator(gen.runner, m, seconds=2.0)["p50"]
    fps = 1000.0 / ms if ms > 0 else float("inf")
    # the render loop interpolates between generated frames, so a slower generator still shows cfg.render.fps
    verdict = Verdict.OK if fps >= cfg.render.fps else Verdict.WARN
    results.append(
        CheckResult(
            "frame rate",
            verdict,
            f"generator {ms:.1f} ms (p50) = {fps:.0f} generated frames/s at "
            f"{m.generator.resolution} px; target {cfg.render.fps:.0f} fps",
        )
    )
    return results, bundle.classes


def check_midi(cfg: EngineConfig, classes: list[str]) -> CheckResult:
    """[midi]: the extra, the MIDI system and the port (WARN only: the show runs on without MIDI), and
    override mappings whose class the bundle lacks (FAIL: those pads would do nothing)."""
    from engine.errors import MissingDependencyError
    from engine.io.midi_in import MidiUnavailableError, list_ports, select_port

    s = cfg.midi
    bad = [
        f"midi.map.{i} override {m.value!r}"
        for i, m in enumerate(s.map)
        if m.control.value == "override" and isinstance(m.value, str) and m.value.lower() not in [*classes, "none"]
    ]
    if bad and classes:
        return CheckResult("midi", Verdict.FAIL, f"{'; '.join(bad)}: not a class of this bundle {classes}")
    try:
        names, api = list_ports(s.api)
        where = f"virtual input {s.virtual_name!r}" if s.virtual else repr(names[select_port(names, s.port)])
    except (MissingDependencyError, MidiUnavailableError) as exc:
        return CheckResult("midi", Verdict.WARN, f"{exc}; the show runs without MIDI until it appears")
    return CheckResult("midi", Verdict.OK, f"{where} ({api}), {len(s.map)} mappings")


def check_frame_shares(cfg: EngineConfig) -> list[CheckResult]:
    """[ndi]/[spout]/[syphon] that are on: does the package (and for NDI the runtime) load here? WARN when
    not: the show runs without that output."""
    from engine.render.share import LABELS, FrameShareUnavailableError, enabled_kinds, probe

    results = []
    for kind in enabled_kinds(cfg):
        name = getattr(cfg, kind.value).name
        try:
            found = probe(kind)
        except FrameShareUnavailableError as exc:
            results.append(CheckResult(kind.value, Verdict.WARN, f"{exc}; the show runs without {LABELS[kind]} out"))
            continue
        results.append(CheckResult(kind.value, Verdict.OK, f"{found} loads; {LABELS[kind]} name {name!r}"))
    return results


def _guard(name: str, fn: Callable[[], list[CheckResult] | CheckResult]) -> list[CheckResult]:
    try:
        out = fn()
    except (SynesthesiaError, OSError, RuntimeError, ValueError) as exc:
        return [CheckResult(name, Verdict.FAIL, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)]
    return out if isinstance(out, list) else [out]


def check_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags `check` shares with `run` (source, display, backend, network), mapped the way `run` maps
    them, so `check --source mic:USB --zmq-ctl ADDR` checks what `run` with the same flags would open."""
    from engine.overrides import run_overrides

    o = run_overrides(args)
    o.pop("bundle", None)  # `check` takes the bundle directly (check_models)
    return o


def run_check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    results: list[CheckResult] = []
    invalid = False  # config or bundle invalid: exit 2, as every other command does
    try:
        cfg = load_config(args.config, check_overrides(args))
        results.append(CheckResult("config", Verdict.OK, str(Path(args.config)) if args.config else "defaults"))
    except SynesthesiaError as exc:
        results.append(CheckResult("config", Verdict.FAIL, str(exc)))
        invalid = isinstance(exc, ConfigError)
        cfg = None
    classes: list[str] = []
    if cfg is not None:
        try:
            model_results, classes = check_models(cfg, args.bundle)
            results += model_results
        except (SynesthesiaError, OSError, RuntimeError, ValueError) as exc:
            results.append(CheckResult("bundle", Verdict.FAIL, str(exc)))
            invalid = isinstance(exc, BundleError)
        results += _guard("audio", lambda: check_audio(cfg, classes))
        results += _guard("display", lambda: check_display(cfg))
        results += _guard("ports", lambda: check_ports(cfg))
        if cfg.midi.enabled:
            results += _guard("midi", lambda: check_midi(cfg, classes))
        results += _guard("frames out", lambda: check_frame_shares(cfg))
    for r in results:
        out.write(f"{r.verdict.value:<5} {r.name:<11} {r.detail}\n")
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    out.write(
        f"{'not ready' if failed else 'ready'}: {len(failed)} failed, "
        f"{sum(r.verdict is Verdict.WARN for r in results)} warnings\n"
    )
    return 2 if invalid else 1 if failed else 0
