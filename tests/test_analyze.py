"""`synesthesia analyze` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.test_frontend import speech_like

SR = 22050


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "analyze", *args], capture_output=True, text=True, timeout=120
    )


def test_json_lines_windows_and_summary(tiny_bundle: Path, tmp_path: Path) -> None:
    audio = np.concatenate([speech_like(0), speech_like(1)])  # 6 s -> windows at 0, 0.5, ... 3.0
    wav = tmp_path / "speech.wav"
    sf.write(wav, audio, SR)
    proc = analyze(str(wav), "--json", "--bundle", str(tiny_bundle))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    windows, summary = records[:-1], records[-1]
    assert [w["t"] for w in windows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert summary["summary"] is True and summary["windows"] == 7
    for rec in records:
        assert set(rec) >= {"file", "label", "probs", "valence", "arousal", "silent"}
        assert abs(sum(rec["probs"].values()) - 1.0) < 1e-4
        assert -1.0 <= rec["valence"] <= 1.0 and -1.0 <= rec["arousal"] <= 1.0
        assert rec["label"] in rec["probs"]
        assert rec["file"] == str(wav)
    mean = {k: np.mean([w["probs"][k] for w in windows]) for k in summary["probs"]}
    assert max(mean, key=mean.get) == summary["label"]


def test_hop_and_short_file(tiny_bundle: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, speech_like(2)[:SR], SR)
    proc = analyze(str(short), "--json", "--hop", "0.25", "--bundle", str(tiny_bundle))
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2 and records[0]["t"] == 0.0 and records[1]["summary"]


def test_silent_file_is_marked_silent(tiny_bundle: Path, tmp_path: Path) -> None:
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(4 * SR, np.float32), SR)
    proc = analyze(str(wav), "--json", "--bundle", str(tiny_bundle))
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["silent"] and r["label"] is None for r in records)


def test_bad_file_is_reported_and_the_rest_still_run(tiny_bundle: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, speech_like(3), SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    proc = analyze(str(bad), str(good), "--json", "--bundle", str(tiny_bundle))
    assert proc.returncode == 2
    assert "bad.wav" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["file"] == str(good)


def test_nan_samples_in_a_float_file(tiny_bundle: Path, tmp_path: Path) -> None:
    audio = speech_like(4)
    audio[1000:2000] = np.nan
    wav = tmp_path / "nan.wav"
    sf.write(wav, audio, SR, subtype="FLOAT")
    proc = analyze(str(wav), "--json", "--bundle", str(tiny_bundle))
    assert proc.returncode == 0
    rec = json.loads(proc.stdout.splitlines()[0])
    assert np.isfinite(list(rec["probs"].values())).all()
