"""The newcomer's demo: with no microphone, `synesthesia run` plays `synth:tour:music` (each emotion for 15 s)
and the shipped default bundle hears each leg as that emotion, over a real 60 s run and real OSC."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest

from engine.audio.synth import TOUR
from tests.netparts import OscReceiver
from tests.test_engine import no_audio_env

LEG_S = 15.0
SETTLE_S = 6.0  # a 3 s window, the voice changing at its next 2 s segment, the tracker's 2-hop hysteresis
EARLY_S = 1.0  # the first label comes from the first second of audio (audio.early_s)


@pytest.mark.slow
def test_the_demo_tour_reads_as_each_of_its_emotions_over_60_s() -> None:
    rx = OscReceiver()
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--source", "mic", "--duration", "61"]
    cmd += ["--osc", f"127.0.0.1:{rx.port}", "--osc-in", "0", "--zmq-pub", "tcp://127.0.0.1:*"]
    cmd += ["--zmq-ctl", "tcp://127.0.0.1:*"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=no_audio_env())
        labels = rx.received("/syn/emotion/label")
    finally:
        rx.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "demo source synth:tour:music" in proc.stderr
    assert labels, "no /syn/emotion/label arrived"
    t0 = labels[0][0] - EARLY_S  # the tour's start, on the receiver's clock
    per_leg: dict[int, list[str]] = collections.defaultdict(list)
    for t, (label, *_rest) in labels:
        leg, into = divmod(t - t0, LEG_S)
        if into >= SETTLE_S and leg < len(TOUR):
            per_leg[int(leg)].append(label)
    assert sorted(per_leg) == list(range(len(TOUR))), per_leg
    for leg, heard in per_leg.items():
        want = TOUR[leg]
        share = heard.count(want) / len(heard)
        assert share >= 0.7, f"leg {leg} ({want}): {collections.Counter(heard)}"
