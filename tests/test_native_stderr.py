"""`NativeStderr`: what C prints on fd 2 during one call is rate-limited; everything else is passed on."""

from __future__ import annotations

import logging
import os

import pytest

from engine.audio.native_stderr import NativeStderr

ALSA = b"ALSA lib pcm_pulse.c:758:(pulse_prepare) PulseAudio: Unable to create stream: No such entity\n\n"
PA = b"Expression 'r' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 2097\n"


def native_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "PortAudio/ALSA while" in r.getMessage()]


def test_native_lines_are_rate_limited_and_our_own_lines_pass_through(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "synesthesia.audio")
    native = NativeStderr(interval_s=60.0)
    for _ in range(10):  # ten reopen attempts, five lines each, as PortAudio prints them against a lost source
        with native.capture("opening the microphone"):
            os.write(2, ALSA + PA * 3)
            os.write(2, b"2026-12-02 17:00:00,000 WARNING synesthesia.app: our own line\n")
    os.write(2, b"after the capture\n")
    err = capfd.readouterr().err
    assert "ALSA lib" not in err and "Expression" not in err
    assert err.count("our own line") == 10 and err.endswith("after the capture\n")
    logged = native_records(caplog)
    assert len(logged) == 1 and "Unable to create stream" in logged[0]
    assert native.stats()["native_lines"] == 40 and native.stats()["held_back"] == 39
    assert native.stats()["captures"] == 10


def test_the_next_line_after_the_interval_counts_what_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "synesthesia.audio")
    native = NativeStderr(interval_s=0.0)  # every line is due: each one is written, none held back
    with native.capture("opening the microphone"):
        os.write(2, PA * 3)
    assert len(native_records(caplog)) == 3 and native.stats()["held_back"] == 0


def test_fd_2_is_restored_when_the_call_raises(capfd: pytest.CaptureFixture[str]) -> None:
    native = NativeStderr()
    with pytest.raises(OSError, match="device gone"), native.capture("opening the microphone"):
        os.write(2, PA)
        raise OSError("device gone")
    os.write(2, b"still ours\n")
    assert capfd.readouterr().err == "still ours\n"
