"""MIDI control in: the `[midi]` config, the mapping and clock logic on real mido messages, and real rtmidi
virtual ports on a private JACK server (tests/midiparts.py) through `MidiInput`, the OSC query, the
`synesthesia midi list|learn` commands and `synesthesia run --midi`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.config import build_config, load_config
from engine.controls import Controls
from engine.errors import ConfigError, MissingDependencyError
from engine.io.control import ControlSurface, Outcome
from engine.io.midi_map import MidiHandler, MidiMapping, MidiSettings, TempoClock, learn_block
from tests.conftest import skip_or_fail
from tests.midiparts import JackServer, jack_backend, missing_jack
from tests.netparts import free_tcp_port, free_udp_port

mido = pytest.importorskip("mido")

CLASSES = ["angry", "happy", "sad", "neutral"]
ROOT = Path(__file__).resolve().parents[1]


def settings(*maps: dict, **kw) -> MidiSettings:
    return build_config({"midi": {"enabled": True, "map": list(maps), **kw}}).midi


def handler(*maps: dict, **kw) -> MidiHandler:
    return MidiHandler(settings(*maps, **kw), ControlSurface(Controls(CLASSES)))


def cc(control: int, value: int, channel: int = 0):
    return mido.Message("control_change", control=control, value=value, channel=channel)


def note(n: int, velocity: int = 100, channel: int = 0):
    return mido.Message("note_on", note=n, velocity=velocity, channel=channel)


def note_off(n: int, channel: int = 0):
    return mido.Message("note_off", note=n, channel=channel)


def ctl(h: MidiHandler):
    return h.surface.controls.snapshot()


# -- mapping logic on real mido messages -------------------------------------------------------------------


def test_cc_scales_to_min_max_and_a_reversed_fader() -> None:
    h = handler(
        {"cc": 1, "control": "intensity", "min": 0, "max": 1},
        {"cc": 2, "control": "speed", "min": 3, "max": 0.5},
        {"cc": 3, "control": "seed", "min": 0, "max": 1000},
    )
    assert h.handle(cc(1, 127), 0.0) is Outcome.APPLIED and ctl(h).intensity == 1.0
    h.handle(cc(1, 0), 0.0)
    assert ctl(h).intensity == 0.0
    h.handle(cc(1, 64), 0.0)
    assert ctl(h).intensity == pytest.approx(64 / 127)
    h.handle(cc(2, 0), 0.0)
    assert ctl(h).speed == 3.0
    h.handle(cc(2, 127), 0.0)
    assert ctl(h).speed == 0.5
    h.handle(cc(3, 13), 0.0)
    assert ctl(h).seed == round(13 / 127 * 1000) and ctl(h).seed_generation == 1
    assert h.surface.counters.applied == 6 and h.counters.mapped == 6


def test_notes_toggle_momentary_and_trigger() -> None:
    h = handler(
        {"note": 36, "control": "freeze"},  # toggle by default
        {"note": 37, "control": "blackout", "mode": "momentary"},
        {"note": 60, "control": "override", "value": "happy"},  # trigger by default
        {"note": 61, "control": "override", "value": [-0.5, 0.25], "mode": "toggle"},
        {"note": 62, "control": "speed", "value": 2.5, "mode": "momentary"},
        {"note": 63, "control": "intensity", "min": 0.2, "max": 0.8},  # velocity -> min..max
    )
    h.handle(note(36), 0)
    assert ctl(h).freeze
    assert h.handle(note_off(36), 0) is None and ctl(h).freeze
    h.handle(note(36, velocity=0), 0)  # note_on velocity 0 is a release
    assert ctl(h).freeze
    h.handle(note(36), 0)
    assert not ctl(h).freeze

    h.handle(note(37), 0)
    assert ctl(h).blackout
    h.handle(note_off(37), 0)
    assert not ctl(h).blackout

    h.handle(note(60), 0)
    assert ctl(h).override.label == "happy"
    h.handle(note(61), 0)
    assert (ctl(h).override.valence, ctl(h).override.arousal) == (-0.5, 0.25)
    h.handle(note(61), 0)  # toggled off: back to what it was before
    assert ctl(h).override.label == "happy"

    h.surface.controls.apply("speed", 1.5)
    h.handle(note(62), 0)
    assert ctl(h).speed == 2.5
    h.handle(note_off(62), 0)
    assert ctl(h).speed == 1.5

    h.handle(note(63, velocity=127), 0)
    assert ctl(h).intensity == pytest.approx(0.8)


def test_a_cc_button_acts_on_edges_only() -> None:
    h = handler({"cc": 64, "control": "freeze"})  # a sustain pedal: momentary
    h.handle(cc(64, 127), 0)
    assert ctl(h).freeze
    assert h.handle(cc(64, 100), 0) is None  # still held: no new apply
    h.handle(cc(64, 0), 0)
    assert not ctl(h).freeze
    assert h.surface.counters.applied == 2


def test_channel_filter_and_per_mapping_channel() -> None:
    h = handler(
        {"cc": 1, "control": "intensity"},
        {"cc": 1, "control": "speed", "channel": 5, "min": 0, "max": 2},
        channel=2,
    )
    h.handle(cc(1, 0, channel=0), 0)  # channel 1: filtered
    assert ctl(h).intensity == 1.0 and h.counters.filtered == 1
    h.handle(cc(1, 0, channel=1), 0)  # channel 2
    assert ctl(h).intensity == 0.0
    h.handle(cc(1, 127, channel=4), 0)  # channel 5 has its own mapping
    assert ctl(h).speed == 2.0
    h.handle(cc(9, 5, channel=1), 0)
    assert h.counters.unmapped == 1


def test_a_value_the_controls_refuse_is_counted_like_osc() -> None:
    h = handler({"note": 40, "control": "override", "value": "excited"})  # not one of this bundle's classes
    assert h.handle(note(40), 0) is Outcome.REJECTED
    assert ctl(h).override is None and h.surface.counters.rejected == 1


def test_other_messages_are_ignored() -> None:
    h = handler({"cc": 1, "control": "intensity"})
    for msg in (mido.Message("pitchwheel", pitch=100), mido.Message("program_change", program=3)):
        assert h.handle(msg, 0) is None
    assert h.surface.counters.received == 0


def ticks(h: MidiHandler, bpm: float, n: int, start: float) -> float:
    dt = 60.0 / (bpm * 24)
    for i in range(n):
        h.handle(mido.Message("clock"), start + i * dt)
    return start + n * dt


def test_clock_drives_speed_relative_to_the_reference_and_stop_restores_it() -> None:
    h = handler(clock=True, reference_bpm=120)
    h.surface.controls.apply("speed", 1.2)
    t = ticks(h, 150, 60, 0.0)
    assert ctl(h).speed == pytest.approx(1.2 * 150 / 120, rel=1e-3)
    assert h.status()["bpm"] == pytest.approx(150, rel=1e-3) and h.status()["clock_driving_speed"]
    h.handle(mido.Message("stop"), t)
    assert ctl(h).speed == 1.2
    ticks(h, 60, 60, t + 0.01)  # stopped: the tempo is measured but drives nothing
    assert ctl(h).speed == 1.2
    h.handle(mido.Message("start"), t + 3)
    t = ticks(h, 60, 60, t + 3.01)
    assert ctl(h).speed == pytest.approx(0.6, rel=1e-3)
    assert h.idle(t + 0.5) is None  # still within the timeout
    assert h.idle(t + 2.0) is Outcome.APPLIED and ctl(h).speed == 1.2  # the clock went quiet


def test_clock_off_leaves_speed_alone() -> None:
    h = handler()
    ticks(h, 150, 60, 0.0)
    assert ctl(h).speed == 1.0 and h.counters.clock_ticks == 60


def test_tempo_clock_averages_jitter_and_restarts_after_a_gap() -> None:
    clock = TempoClock(window=48, gap_s=1.0)
    dt = 60.0 / (128 * 24)
    t = 0.0
    for i in range(96):
        t += dt + (0.002 if i % 2 else -0.002)
        clock.tick(t)
    assert clock.bpm == pytest.approx(128, rel=0.01)
    clock.tick(t + 5)
    assert clock.bpm is None


# -- config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"control": "intensity"}, "midi.map.0: give exactly one of cc or note"),
        ({"cc": 1, "note": 2, "control": "speed"}, "midi.map.0: give exactly one of cc or note"),
        ({"cc": 128, "control": "speed"}, "midi.map.0.cc: Input should be less than or equal to 127"),
        ({"cc": 1, "control": "volume"}, "midi.map.0.control: Input should be 'intensity'"),
        ({"cc": 1, "control": "query"}, "midi.map.0.control"),
        ({"cc": 1, "control": "intensity", "max": 2}, "midi.map.0: max must be 0..1 for intensity, got 2"),
        ({"cc": 1, "control": "freeze", "min": 0}, "midi.map.0: min/max scale numeric controls only"),
        ({"note": 1, "control": "override"}, "midi.map.0: override needs a value"),
        ({"note": 1, "control": "override", "value": [2, 0]}, "midi.map.0: override value [valence, arousal]"),
        ({"note": 1, "control": "freeze", "mode": "sometimes"}, "midi.map.0.mode: Input should be 'toggle'"),
        ({"note": 1, "control": "speed", "mode": "toggle"}, "midi.map.0: mode toggle needs a value"),
        ({"cc": 1, "control": "speed", "value": 2}, "midi.map.0: a cc on speed scales min..max"),
        ({"cc": 1, "control": "intensity", "bogus": 1}, "midi.map.0.bogus: unknown key"),
        ({"cc": "1", "control": "intensity"}, "midi.map.0.cc: must be an integer"),
    ],
)
def test_a_bad_mapping_is_an_error_naming_the_key_path(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"midi": {"map": [entry]}})
    assert message in str(err.value)


def test_a_bad_midi_section_in_a_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    f = tmp_path / "venue.toml"
    f.write_text('[midi]\nenabled = true\n[[midi.map]]\ncc = 1\ncontrol = "intensity"\n[[midi.map]]\ncc = 1\n'
                 'control = "speed"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"venue.toml: midi: map.1 \(cc 1 -> speed\) repeats map.0"):
        load_config(f)
    f.write_text("[midi]\nchannel = 17\n")
    with pytest.raises(ConfigError, match=r"midi.channel: Input should be less than or equal to 16"):
        load_config(f)


def test_learn_block_is_valid_toml_for_the_config() -> None:
    for msg, control in [(cc(7, 3, channel=2), "speed"), (note(36), None), (note(60), "override"), (cc(1, 9), None)]:
        block = learn_block(msg, control)
        data = tomllib.loads(block)
        mapping = MidiMapping.model_validate(data["midi"]["map"][0])
        assert mapping.channel == msg.channel + 1
    assert learn_block(mido.Message("clock")) is None and learn_block(note(3, velocity=0)) is None


def test_run_midi_flag_overrides() -> None:
    from engine.cli import build_parser, run_overrides

    parse = build_parser().parse_args
    assert run_overrides(parse(["run", "--midi"]))["midi"] == {"enabled": True}
    assert run_overrides(parse(["run", "--midi", "2"]))["midi"] == {"enabled": True, "port": 2}
    assert run_overrides(parse(["run", "--midi", "nano"]))["midi"] == {"enabled": True, "port": "nano"}
    assert "midi" not in run_overrides(parse(["run"]))


def test_a_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from engine.io.midi_in import MidiInput
    from engine.render.show import start_control_servers

    monkeypatch.setitem(sys.modules, "rtmidi", None)  # import rtmidi now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'synesthesia\[midi\]'"):
        MidiInput(settings(), ControlSurface(Controls(CLASSES))).start()
    cfg = build_config({"midi": {"enabled": True}, "osc": {"in_port": 0}, "zmq": {"ctl": None}})
    assert start_control_servers(cfg, ControlSurface(Controls(CLASSES))) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MIDI control" in err[0] and "pip install 'synesthesia[midi]'" in err[0]


# -- real ports on a private JACK server -----------------------------------------------------------------


@pytest.fixture(scope="session")
def jack_server() -> Iterator[JackServer]:
    reason = missing_jack()
    if reason:
        skip_or_fail(reason)
    server = JackServer()
    with pytest.MonkeyPatch.context() as mp:
        try:
            server.start()
            for key, value in server.env.items():
                mp.setenv(key, value)
            yield server
        finally:
            server.close()


@pytest.fixture
def controller(jack_server: JackServer, request: pytest.FixtureRequest) -> Iterator:
    """A virtual MIDI output playing a hardware controller, with a name unique to the test."""
    port = jack_backend().open_output(f"Ctl{request.node.name[-24:]}", virtual=True)
    yield port
    if not port.closed:
        port.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def osc(address: str, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def query(port: int) -> dict[str, list]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        client.sendto(osc("/syn/ctl/query"), ("127.0.0.1", port))
        data, _ = client.recvfrom(65536)
    return {m.message.address: list(m.message.params) for m in OscPacket(data).messages}


def test_a_cc_from_a_real_port_changes_the_control_seen_by_an_osc_query(controller) -> None:
    from engine.io.midi_in import MidiInput
    from engine.io.osc_control import OscControlServer

    surface = ControlSurface(Controls(CLASSES))
    cfg = settings({"cc": 1, "control": "intensity"}, {"note": 36, "control": "freeze"}, api="jack",
                   port=controller.name)  # fmt: skip
    midi = MidiInput(cfg, surface).start()
    server = OscControlServer(surface, "127.0.0.1", 0, "/syn").start()
    try:
        assert midi.state == "open" and controller.name in midi.port_name
        assert midi.describe().startswith(f"MIDI in (jack) on {midi.port_name}: 2 mappings")
        probes = connect(controller, midi)
        controller.send(cc(1, 32))
        controller.send(note(36))
        assert wait_for(lambda: surface.controls.snapshot().freeze)
        state = query(server.address[1])
        assert state["/syn/ctl/intensity"] == [pytest.approx(32 / 127, abs=1e-6)]
        assert state["/syn/ctl/freeze"] == [1]
        assert state["/syn/control/applied"] == [2]
        status = midi.status()
        assert status["received"] == 2 + probes and status["mapped"] == 2 and status["serving"]
    finally:
        server.stop()
        assert midi.stop()
    assert not midi.status()["serving"]


def test_a_virtual_input_port_takes_notes_from_other_software(jack_server: JackServer) -> None:
    from engine.io.midi_in import MidiInput

    surface = ControlSurface(Controls(CLASSES))
    name = f"SynVirtual{os.getpid()}"
    midi = MidiInput(settings({"note": 60, "control": "override", "value": "sad"}, api="jack", virtual=True,
                              virtual_name=name), surface).start()  # fmt: skip
    backend = jack_backend()
    try:
        assert midi.state == "open" and midi.port_name == name
        target = next(n for n in backend.get_output_names() if n.endswith(f":{name}"))
        with backend.open_output(target) as out:
            assert wait_for(lambda: _send_until(out, note(60), lambda: surface.controls.snapshot().override))
        assert surface.controls.snapshot().override.label == "sad"
    finally:
        assert midi.stop()


def connect(out, midi) -> int:
    """Wait until `midi` hears `out`: JACK makes a new connection live on a later cycle, so what is sent
    at once may be lost on a loaded machine. Sends an unmapped CC until one arrives."""
    before = midi.status()["received"]
    assert wait_for(lambda: _send_until(out, cc(119, 0), lambda: midi.status()["received"] > before)), midi.status()
    time.sleep(0.1)
    return midi.status()["received"] - before  # the probe may have arrived more than once


def _settled(read, quiet_s: float = 0.15) -> bool:
    """True once `read()` has stayed the same (and non-zero) for `quiet_s`."""
    first = read()
    time.sleep(quiet_s)
    return bool(first) and read() == first


def _send_until(out, msg, done) -> bool:
    """Send once; the connection JACK makes for `open_output` may take a moment to carry messages."""
    if not done():
        out.send(msg)
        time.sleep(0.05)
    return bool(done())


def test_a_vanished_port_is_said_once_retried_and_reopened(jack_server: JackServer, capsys) -> None:
    from engine.io.midi_in import MidiInput

    backend = jack_backend()
    name = f"SynVanish{os.getpid()}"
    out = backend.open_output(name, virtual=True)
    surface = ControlSurface(Controls(CLASSES))
    midi = MidiInput(settings({"cc": 7, "control": "speed", "min": 0, "max": 4}, api="jack", port=name,
                              retry_min_s=0.2, retry_max_s=0.4), surface, poll_s=0.05).start()  # fmt: skip
    try:
        assert midi.state == "open"
        assert wait_for(lambda: _send_until(out, cc(7, 127), lambda: surface.controls.snapshot().speed == 4.0))
        out.close()  # the controller is unplugged
        assert wait_for(lambda: midi.state == "lost")
        time.sleep(1.0)  # a few retries fail meanwhile: still one line
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if "MIDI" in ln]
        assert len(lines) == 2, lines  # vanished, then "no port matching" once (retries say nothing more)
        assert "vanished" in lines[0] and "the show goes on" in lines[0] and "no MIDI input port matching" in lines[1]
        out = backend.open_output(name, virtual=True)  # plugged back in
        assert wait_for(lambda: midi.state == "open")
        assert f"MIDI input {midi.port_name!r} open" in capsys.readouterr().err
        assert wait_for(lambda: _send_until(out, cc(7, 0), lambda: surface.controls.snapshot().speed == 0.0))
        assert midi.status()["outages"] == 1 and midi.status()["opens"] == 2
    finally:
        out.close()
        assert midi.stop()


def test_real_clock_ticks_drive_speed_and_stop_restores_it(controller) -> None:
    from engine.io.midi_in import MidiInput

    surface = ControlSurface(Controls(CLASSES))
    midi = MidiInput(settings(api="jack", port=controller.name, clock=True, reference_bpm=100), surface).start()
    try:
        connect(controller, midi)
        controller.send(mido.Message("start"))
        dt = 60.0 / (150 * 24)
        t0 = time.monotonic()
        for i in range(96):  # four beats at 150 BPM, each tick sent at its own deadline (no drift)
            time.sleep(max(0.0, t0 + i * dt - time.monotonic()))
            controller.send(mido.Message("clock"))
        # A JACK server without real-time scheduling on a loaded machine may drop an event now and then (a
        # late client misses its cycle), so the count is checked loosely; the handler is then brought to a
        # re-evaluation tick (every 6th) with a few more ticks, each waited for, so speed and tempo agree.
        assert wait_for(lambda: _settled(lambda: midi.status()["clock_ticks"])), midi.status()
        assert midi.status()["clock_ticks"] >= 84, midi.status()
        for _ in range(60):
            ticks = midi.status()["clock_ticks"]
            if ticks % 6 == 0:
                break
            controller.send(mido.Message("clock"))
            wait_for(lambda ticks=ticks: midi.status()["clock_ticks"] > ticks, timeout=dt * 4)
            time.sleep(max(0.0, dt - 0.001))
        status = midi.status()
        assert status["clock_ticks"] % 6 == 0, status
        # Behaviour, not timing: speed is the measured tempo over the reference (the last tick was a
        # re-evaluation; speed moves only past 0.5 %), and the tempo comes from the ticks (loose bounds: a loaded
        # machine delays deliveries, never by a factor of two over four beats).
        assert status["clock_driving_speed"] and 75 < status["bpm"] < 300, status
        assert surface.controls.snapshot().speed == pytest.approx(status["bpm"] / 100, rel=0.006), status
        controller.send(mido.Message("stop"))
        assert wait_for(lambda: surface.controls.snapshot().speed == 1.0)
    finally:
        assert midi.stop()


def test_no_jack_server_is_one_line_and_the_show_goes_on(jack_server: JackServer, monkeypatch, capsys) -> None:
    from engine.io.midi_in import MidiInput

    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"nobody_{os.getpid()}")
    midi = MidiInput(settings(api="jack", retry_min_s=5), ControlSurface(Controls(CLASSES))).start()
    try:
        assert midi.state == "connecting" and midi.status()["serving"]
        assert "waiting for the first MIDI input" in midi.describe()
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("synesthesia: MIDI")]
        assert len(lines) == 1 and "MIDI system jack unavailable" in lines[0] and "JACK server" in lines[0]
    finally:
        assert midi.stop()


# -- the command line ----------------------------------------------------------------------------------------


def cli(jack: JackServer, *args: str, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "engine", *args]
    return subprocess.run(cmd, cwd=ROOT, env=jack.client_env(), capture_output=True, text=True, **kw)


def test_midi_list_shows_the_ports(jack_server: JackServer, controller) -> None:
    proc = cli(jack_server, "midi", "list", "--api", "jack", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert any(line.split(None, 1)[1].endswith(controller.name) for line in proc.stdout.splitlines())


def test_midi_learn_prints_the_mapping_of_the_next_cc(jack_server: JackServer, controller) -> None:
    cmd = [sys.executable, "-m", "engine", "midi", "learn", "--api", "jack", "--port", controller.name]
    cmd += ["--control", "speed", "--timeout", "30"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=jack_server.client_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "learning from" in line and controller.name in line, line
        controller.send(mido.Message("clock"))  # not learnable: ignored
        # sent until learn exits: the first messages on a new JACK connection may be lost on a loaded machine
        assert wait_for(lambda: _send_until(controller, cc(7, 100, channel=3), lambda: proc.poll() is not None), 30)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    data = tomllib.loads(out)
    assert data == {"midi": {"map": [{"cc": 7, "channel": 4, "control": "speed", "min": 0, "max": 4}]}}
    build_config(data)  # pastes into a config as it is


def test_midi_learn_times_out_with_exit_1(jack_server: JackServer, controller) -> None:
    proc = cli(jack_server, "midi", "learn", "--api", "jack", "--port", controller.name, "--timeout", "0.5",
               timeout=60)  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no CC or note arrived within 0.5 s" in proc.stderr


def test_midi_learn_names_the_ports_when_none_matches(jack_server: JackServer, controller) -> None:
    proc = cli(jack_server, "midi", "learn", "--api", "jack", "--port", "nosuchthing", "--timeout", "1", timeout=60)
    assert proc.returncode == 1 and "no MIDI input port matching 'nosuchthing'" in proc.stderr
    assert controller.name in proc.stderr


def test_run_with_midi_applies_a_cc_in_a_headless_show(jack_server: JackServer, controller, tiny_bundle,
                                                       tmp_path: Path) -> None:  # fmt: skip
    osc_in = free_udp_port()
    venue = tmp_path / "venue.toml"
    venue.write_text('[midi]\napi = "jack"\n[[midi.map]]\ncc = 74\ncontrol = "intensity"\nmin = 0\nmax = 0.5\n')
    cmd = [
        sys.executable, "-m", "engine", "run", "--headless", "--source", "synth:happy", "--backend", "onnx",
        "--bundle", str(tiny_bundle), "--config", str(venue), "--midi", controller.name,
        "--osc", f"127.0.0.1:{free_udp_port()}", "--osc-in", str(osc_in), "--zmq-pub", "tcp://127.0.0.1:*",
        "--zmq-ctl", f"tcp://127.0.0.1:{free_tcp_port()}", "--duration", "60",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=jack_server.client_env(), stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any("MIDI in (jack) on" in ln for ln in lines), timeout=120), lines
        assert any(f"{controller.name}: 1 mappings" in ln for ln in lines), lines
        assert wait_for(lambda: _send_until(controller, cc(74, 127), lambda: _intensity(osc_in) == 0.5))
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)


def _intensity(port: int) -> float | None:
    try:
        return query(port)["/syn/ctl/intensity"][0]
    except (OSError, KeyError):
        return None


def test_importing_the_engine_loads_no_midi_library() -> None:
    code = "import sys, engine, engine.cli, engine.config; print([m for m in ('mido', 'rtmidi') if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_the_readme_midi_block_is_a_valid_config() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## MIDI control") :]
    block = section[section.index("```toml") + len("```toml") : section.index("```", section.index("```toml") + 7)]
    cfg = build_config(tomllib.loads(block))
    assert cfg.midi.enabled and cfg.midi.clock and len(cfg.midi.map) == 3


def test_check_reports_the_midi_port_and_override_classes_the_bundle_lacks(jack_server, controller) -> None:
    from engine.check import Verdict, check_midi

    ok = build_config({"midi": {"enabled": True, "api": "jack", "port": controller.name}})
    result = check_midi(ok, CLASSES)
    assert result.verdict is Verdict.OK and controller.name in result.detail and "(jack)" in result.detail
    missing = build_config({"midi": {"enabled": True, "api": "jack", "port": "nosuchport"}})
    assert check_midi(missing, CLASSES).verdict is Verdict.WARN
    bad = build_config({"midi": {"enabled": True, "map": [{"note": 1, "control": "override", "value": "excited"}]}})
    result = check_midi(bad, CLASSES)
    assert result.verdict is Verdict.FAIL and "midi.map.0 override 'excited'" in result.detail


def test_midi_help_describes_learn() -> None:
    proc = subprocess.run([sys.executable, "-m", "engine", "midi", "learn", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "--timeout" in proc.stdout and "--control" in proc.stdout
