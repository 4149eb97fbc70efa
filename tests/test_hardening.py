"""Issue 14 (hardening): hostile control input, log floods, frame encoding memory, ports, config, analyze
and bundle damage, each through real sockets, real files and the real command line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.config import load_config
from engine.errors import ConfigError
from engine.io.control import Outcome
from engine.io.osc_control import packet_problem
from engine.io.zmq_control import MAX_REQUEST_BYTES
from engine.models.bundle import DEFAULT_BUNDLE
from tests import test_control_servers as control_tests
from tests.test_control_servers import osc, recv_state, wait_for

zmq = pytest.importorskip("zmq")

# the control-server tests' fixtures (real sockets), under names of this module's own
osc_control = control_tests.osc_server
zmq_control = control_tests.zmq_server

CLASSES = ["angry", "happy", "sad", "neutral"]
ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


# -- 1. one ZMQ request must not kill ZMQ control ----------------------------------------------------------


def _req(cmd: str, *args: object) -> bytes:
    return json.dumps({"v": 1, "cmd": cmd, "args": list(args)}).encode()


HOSTILE_REQUESTS = {
    "seed NaN": b'{"v":1,"cmd":"seed","args":[NaN]}',
    "speed Infinity": b'{"v":1,"cmd":"speed","args":[Infinity]}',
    "speed 1e999": b'{"v":1,"cmd":"speed","args":[1e999]}',
    "intensity -inf": b'{"v":1,"cmd":"intensity","args":[-Infinity]}',
    "seed 400 digits": b'{"v":1,"cmd":"seed","args":[' + b"9" * 400 + b"]}",
    "speed 400 digits": b'{"v":1,"cmd":"speed","args":[' + b"9" * 400 + b"]}",
    "override 400 digits": b'{"v":1,"cmd":"override","args":[' + b"9" * 400 + b", 0]}",
    "5000 digits": b'{"v":1,"cmd":"seed","args":[' + b"9" * 5000 + b"]}",
    "nested 3000 deep": b'{"v":1,"cmd":"seed","args":' + b"[" * 3000 + b"]" * 3000 + b"}",
    "nested 100000 deep": b"[" * 60_000,
    "60 KB string": _req("override", "x" * 60_000),
    "100 KB payload": _req("override", "x" * 100_000),
    "random bytes": bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
}


@pytest.mark.parametrize("name", list(HOSTILE_REQUESTS))
def test_every_hostile_zmq_request_gets_one_error_reply_and_control_lives_on(zmq_control, name) -> None:
    server, s, req = zmq_control
    before = s.controls.snapshot()
    req.send(HOSTILE_REQUESTS[name])
    rep = json.loads(req.recv())
    assert rep["ok"] is False and rep["error"]
    assert len(rep["error"]) < 400  # the payload is not echoed back
    assert s.controls.snapshot() == before  # nothing applied
    req.send(_req("speed", 2.5))
    ok = json.loads(req.recv())
    assert ok["ok"] is True and ok["state"]["ctl"]["speed"] == 2.5
    assert server.serving


def test_an_unforeseen_error_is_counted_answered_and_survived(zmq_control, monkeypatch) -> None:
    server, s, req = zmq_control

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(s, "apply", broken)
    req.send(_req("speed", 2.0))
    rep = json.loads(req.recv())
    assert rep["ok"] is False and "internal error" in rep["error"]
    monkeypatch.undo()
    req.send(_req("speed", 3.0))
    assert json.loads(req.recv())["ok"] is True
    assert server.internal_errors == 1 and s.counters.errors == 1 and server.serving


def test_oversize_limit_is_64_kb(zmq_control) -> None:
    _, _, req = zmq_control
    req.send(_req("override", "x" * (MAX_REQUEST_BYTES + 1)))
    assert "larger than" in json.loads(req.recv())["error"]


# -- 2. OSC type tags that promise data the datagram does not hold ------------------------------------------


def _tags_only(address: str, tags: str) -> bytes:
    """A raw OSC message with type tags and no argument data."""

    def pad(b: bytes) -> bytes:
        return b + b"\x00" * (4 - len(b) % 4)

    return pad(address.encode()) + pad(tags.encode())


@pytest.mark.parametrize(
    ("dgram", "name"),
    [
        (_tags_only("/syn/ctl/speed", ",f"), "speed"),
        (_tags_only("/syn/ctl/intensity", ",f"), "intensity"),
        (_tags_only("/syn/ctl/intensity", ",d"), "intensity"),
        (_tags_only("/syn/ctl/override", ",ff"), "override"),
        (_tags_only("/syn/ctl/override", ",ff") + struct.pack(">f", 0.5), "override"),  # one float of two
        (_tags_only("/syn/ctl/override", ",s"), "override"),
        (_tags_only("/syn/ctl/seed", ",i"), "seed"),
        (_tags_only("/syn/ctl/speed", ",b"), "speed"),
        (_tags_only("/syn/ctl/speed", ",b") + struct.pack(">i", 64), "speed"),  # blob longer than the packet
        (_tags_only("/syn/ctl/speed", ",x") + struct.pack(">f", 0.5), "speed"),  # a tag python-osc skips
    ],
)
def test_osc_type_tags_without_their_data_are_malformed(osc_control, dgram: bytes, name: str) -> None:
    server, s, client = osc_control
    assert packet_problem(dgram)
    client.sendto(osc("/syn/ctl/speed", 3.0), server.address)  # a known, non-default starting point
    client.sendto(osc("/syn/ctl/intensity", 0.75), server.address)
    assert wait_for(lambda: s.counters.applied == 2)
    client.sendto(dgram, server.address)
    assert wait_for(lambda: s.counters.malformed == 1)
    snap = s.controls.snapshot()
    assert (snap.speed, snap.intensity, snap.override, snap.seed) == (3.0, 0.75, None, 0)
    client.sendto(osc("/syn/ctl/query"), server.address)
    assert recv_state(client)["/syn/ctl/speed"] == [pytest.approx(3.0)]


def test_osc_bundle_element_with_missing_data_is_malformed() -> None:
    elem = _tags_only("/syn/ctl/speed", ",f")
    bundle = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(elem)) + elem
    assert packet_problem(bundle)
    whole = osc("/syn/ctl/speed", 1.5)
    assert packet_problem(b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(whole)) + whole) is None


# -- 3. log floods from many source ports -----------------------------------------------------------------


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_malformed_flood_from_many_ports_logs_a_bounded_number_of_lines(osc_control) -> None:
    server, s, client = osc_control
    counter = _Count()
    root = logging.getLogger()
    root.addHandler(counter)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    bad = [
        _tags_only("/syn/ctl/speed", ",x"),  # unknown type tag: python-osc would log each through root
        _tags_only("/syn/ctl/speed", ",f"),
        b"\x00\x01\x02garbage",
        osc("/syn/ctl/intensity", "loud"),
        osc("/syn/ctl/teleport", 1),
    ]
    sent = 0
    try:
        for i in range(4000):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one_shot:  # a new source port each
                one_shot.sendto(bad[i % len(bad)], server.address)
            sent += 1
            if i % 100 == 0:
                time.sleep(0.005)  # stay within the loopback socket buffer
        # UDP may drop some under load: wait until the server has taken what reached it
        seen = -1
        deadline = time.monotonic() + 20
        while s.counters.received != seen and time.monotonic() < deadline:
            seen = s.counters.received
            time.sleep(0.5)
        assert s.counters.received >= 1000, f"only {s.counters.received} of {sent} datagrams arrived"
        client.sendto(osc("/syn/ctl/speed", 4.0), server.address)
        client.sendto(osc("/syn/ctl/query"), server.address)
        assert recv_state(client)["/syn/ctl/speed"] == [pytest.approx(4.0)]
    finally:
        root.removeHandler(counter)
        root.setLevel(old_level)
    assert len(counter.lines) <= 12, counter.lines
    assert not any("Unhandled parameter type" in line for line in counter.lines)


def test_suppressed_problems_are_summed_up(osc_control) -> None:
    _, s, _ = osc_control
    counter = _Count()
    s.log.logger.addHandler(counter)
    s.log.interval_s = 0.2
    try:
        for port in range(50):
            s.count(Outcome.MALFORMED, f"127.0.0.1:{port + 1}", "garbage")
        time.sleep(0.25)
        s.log.flush()
    finally:
        s.log.logger.removeHandler(counter)
    assert len(counter.lines) == 2
    assert "49 more control malformed suppressed" in counter.lines[1]


# -- 4. frame encoding does not leak ---------------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_headless_frame_encoding_memory_stays_flat(monkeypatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from PIL import Image

    from engine.config import RenderSettings
    from engine.render.display import HeadlessSink
    from engine.render.frames import pygame_module

    pg = pygame_module()
    got: deque[tuple[dict, bytes]] = deque(maxlen=1)  # the newest frame only: the test holds no history
    sink = HeadlessSink(RenderSettings(headless=True, width=320, height=180), lambda h, b: got.append((h, b)))
    sink.open()
    surface = pg.Surface((320, 180), 0, 32)
    rng = np.random.default_rng(0)
    pg.surfarray.blit_array(surface, rng.integers(0, 255, (320, 180, 3), dtype=np.uint8))
    surface.fill((250, 10, 10), pg.Rect(0, 0, 40, 30))
    for _ in range(100):  # warm up allocators
        sink.present(surface)
    start = _rss_mb()
    for _ in range(2000):
        sink.present(surface)
    grown = _rss_mb() - start
    assert sink.published == 2100
    assert grown < 8.0, f"RSS grew {grown:.1f} MB over 2000 frames"
    header, data = got[-1]
    assert header["format"] == "jpeg" and (header["width"], header["height"]) == (320, 180)
    img = Image.open(BytesIO(data))
    assert img.format == "JPEG" and img.size == (320, 180)
    red = np.asarray(img.convert("RGB"))[5:25, 5:35].mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # not transposed, not channel-swapped


def test_png_frames_are_lossless(monkeypatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from PIL import Image

    from engine.render.display import encode_surface
    from engine.render.frames import pygame_module

    pg = pygame_module()
    pixels = np.random.default_rng(2).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    surface = pg.Surface((64, 48), 0, 24)
    pg.surfarray.blit_array(surface, pixels)
    back = np.asarray(Image.open(BytesIO(encode_surface(surface, "png"))).convert("RGB"))
    assert np.array_equal(back, pixels.transpose(1, 0, 2))


# -- 5. ports out of range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--zmq-ctl", "tcp://127.0.0.1:70000"], "zmq.ctl"),
        (["--zmq-pub", "tcp://*:70000"], "zmq.pub"),
        (["--zmq-pub", "tcp://127.0.0.1:0"], "zmq.pub"),
        (["--osc", "127.0.0.1:70000"], "osc.targets.0"),
        (["--osc-in", "70000"], "argument --osc-in: port 70000 out of range"),
    ],
)
def test_out_of_range_ports_are_config_errors_in_check(flags, fragment) -> None:
    proc = cli("check", *flags)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert fragment in proc.stdout + proc.stderr and "70000 free" not in proc.stdout


def test_out_of_range_port_stops_run_with_exit_2(tiny_bundle: Path) -> None:
    proc = cli(
        "run", "--headless", "--source", "synth:happy", "--bundle", str(tiny_bundle), "--osc-in", "0",
        "--zmq-ctl", "tcp://127.0.0.1:70000", "--duration", "1", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "zmq.ctl" in proc.stderr and "70000" in proc.stderr and "Traceback" not in proc.stderr


# -- 6. strict config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "key", "says"),
    [
        ('[render]\nvsync = "yes"\n', "render.vsync", "must be a boolean"),
        ("[render]\nvsync = 1\n", "render.vsync", "must be a boolean"),
        ('[render]\nfps = "60"\n', "render.fps", "must be a number"),
        ("[render]\nfps = nan\n", "render.fps", "must be a finite number"),
        ("[audio]\nreconnect_s = inf\n", "audio.reconnect_s", "must be a finite number"),
        ("[audio]\nhop_s = nan\n", "audio.hop_s", "must be a finite number"),
        ("[audio]\nstall_s = -inf\n", "audio.stall_s", "must be a finite number"),
        ("[zmq]\nhwm = 100000000000\n", "zmq.hwm", "less than or equal"),
        ("[zmq]\nhwm = 1e11\n", "zmq.hwm", "must be an integer"),
        ('[zmq]\nctl = "tcp://127.0.0.1:70000"\n', "zmq.ctl", "out of range"),
        ('[zmq]\npub = "tcp://*:99999"\n', "zmq.pub", "out of range"),
        ('[zmq]\npub = "udp://*:5556"\n', "zmq.pub", "not supported"),
        ('[osc]\ntargets = ["127.0.0.1:65536"]\n', "osc.targets.0", "out of range"),
        ("[osc]\nin_port = 70000\n", "osc.in_port", "65535"),
        ("[osc]\naudio_rate_hz = inf\n", "osc.audio_rate_hz", "must be a finite number"),
        ("[render]\nseed = 4294967296\n", "render.seed", "less than or equal"),
        ('[render]\nheadless = "false"\n', "render.headless", "must be a boolean"),
        ("[kiosk]\nlog_max_mb = nan\n", "kiosk.log_max_mb", "must be a finite number"),
        ("duration_s = inf\n", "duration_s", "must be a finite number"),
        ("[analysis]\nattack_s = nan\n", "analysis.attack_s", "must be a finite number"),
        ('[analysis]\nhysteresis_hops = "2"\n', "analysis.hysteresis_hops", "must be an integer"),
        ('[analysis]\nbackend = "gpu"\n', "analysis.backend", "'onnx'"),
    ],
)
def test_bad_config_values_name_their_key(tmp_path: Path, snippet: str, key: str, says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(snippet)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"{key}: " in msg and says in msg, msg
    assert "less than or equal" not in msg or "finite" not in says  # NaN is not reported as a range problem


def test_toml_integers_are_accepted_for_float_keys_and_presets_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text('[render]\nfps = 30\nspeed = 1\n[audio]\nhop_s = 1\n[analysis]\nbackend = "onnx"\n')
    cfg = load_config(path)
    assert cfg.render.fps == 30.0 and isinstance(cfg.render.fps, float) and cfg.audio.hop_s == 1.0
    for preset in sorted((ROOT / "installation" / "configs").glob("*.toml")):
        load_config(preset)


# -- 7. analyze: --hop and non-finite samples -------------------------------------------------------------


@pytest.mark.parametrize("hop", ["nan", "inf", "0", "-1", "0.001", "soon"])
def test_analyze_refuses_a_bad_hop(tmp_path: Path, hop: str) -> None:
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(SR, np.float32), SR)
    proc = cli("analyze", "--hop", hop, str(wav), timeout=60)
    assert proc.returncode == 2
    assert "--hop" in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("rate", [SR, 44100])
def test_analyze_reports_nonfinite_samples(tiny_bundle: Path, tmp_path: Path, rate: int) -> None:
    t = np.arange(5 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    audio[rate // 4 : rate // 4 + 500] = np.nan  # in window 0 (t = 0 s) only: window 1 starts at 0.5 s
    audio[4 * rate] = np.inf  # in the windows starting at 1.5 and 2.0 s
    wav = tmp_path / "nan.wav"
    sf.write(wav, audio, rate, subtype="FLOAT")
    assert np.isnan(sf.read(wav, dtype="float32")[0]).sum() == 500  # the file really holds them
    proc = cli("analyze", "--json", "--bundle", str(tiny_bundle), str(wav), timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    windows, summary = records[:-1], records[-1]
    assert summary["nonfinite_samples"] == 501
    assert [w["nonfinite_samples"] for w in windows] == [500, 0, 0, 1, 1]
    assert summary["nonfinite_windows"] == 3
    assert "501 non-finite samples" in proc.stderr and str(wav) in proc.stderr
    for rec in records:
        assert np.isfinite(list(rec["probs"].values())).all()
        assert np.isfinite([rec["valence"], rec["arousal"]]).all()
    clean = tmp_path / "clean.wav"
    sf.write(clean, np.nan_to_num(audio, nan=0.0, posinf=0.0), rate, subtype="FLOAT")
    ref = json.loads(cli("analyze", "--json", "--bundle", str(tiny_bundle), str(clean)).stdout.splitlines()[-1])
    assert ref["nonfinite_samples"] == 0
    assert ref["probs"] == pytest.approx(summary["probs"], abs=1e-4)  # NaN analysed exactly as 0


# -- 10. every bundle file hashed at load ------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_damaged_file_of_the_default_bundle_stops_analyze_and_check(tmp_path: Path) -> None:
    copy = tmp_path / "default"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    _flip_byte(copy / "generator.pt")
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(SR, np.float32), SR)
    proc = cli("analyze", "--backend", "onnx", "--bundle", str(copy), str(wav), timeout=120)
    assert proc.returncode == 2 and "generator.pt" in proc.stderr and "sha256" in proc.stderr
    proc = cli("check", "--bundle", str(copy), timeout=120)
    assert proc.returncode == 2
    assert any(line.startswith("FAIL  bundle") and "generator.pt" in line for line in proc.stdout.splitlines())


def test_damaging_any_listed_file_is_named(full_bundle: Path, tmp_path: Path) -> None:
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(SR, np.float32), SR)
    names = sorted(json.loads((full_bundle / "manifest.json").read_text())["files"])
    assert {"generator.pt", "generator.onnx", "audio_model.pt", "audio_model.onnx"} <= set(names)
    for name in names:
        copy = tmp_path / f"b-{name.replace('/', '_')}"
        shutil.copytree(full_bundle, copy)
        _flip_byte(copy / name)
        proc = cli("analyze", "--backend", "onnx", "--bundle", str(copy), str(wav), timeout=120)
        assert proc.returncode == 2 and name in proc.stderr, (name, proc.stderr)
        assert proc.stderr.count("\n") == 1


def test_verification_is_cached_per_file_state(tiny_bundle: Path, tmp_path: Path) -> None:
    from engine.models import bundle as bundle_mod

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    bundle_mod.load_bundle(copy)
    start = time.perf_counter()
    bundle_mod.load_bundle(copy)
    assert time.perf_counter() - start < 0.5
    target = copy / "audio_model.onnx"
    _flip_byte(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # even a same-size write is seen
    with pytest.raises(bundle_mod.BundleError, match=r"audio_model\.onnx.*sha256"):
        bundle_mod.load_bundle(copy)
