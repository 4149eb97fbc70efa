"""`synesthesia render`: a recording to H.264 + AAC through PyAV, reopened and checked with PyAV."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.cli import main
from tests.test_audio_features import click_track

av = pytest.importorskip("av", reason="the video extra (PyAV) is part of dev")

SR = 22050
FPS = 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s: clicks at 120 BPM, a tone swelling in after 2 s; stereo at 44.1 kHz (the soundtrack keeps it)."""
    audio, _ = click_track(120.0, 4.0)
    t = np.arange(audio.size) / SR
    audio = audio + 0.3 * np.sin(2 * np.pi * 220 * t) * np.clip(t - 2.0, 0, 1)
    import librosa

    hi = librosa.resample(audio.astype(np.float32), orig_sr=SR, target_sr=44100)
    path = tmp_path_factory.mktemp("video") / "clicks.wav"
    sf.write(path, np.stack([hi, 0.5 * hi], axis=1), 44100)
    return path


@pytest.fixture(scope="module")
def rendered(full_bundle: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "show.mp4"
    rc = main(["render", str(clip), "--out", str(out), "--size", "160x96", "--fps", str(FPS), "--bundle",
               str(full_bundle), "--seed", "3"])  # fmt: skip
    assert rc == 0
    return out


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_render_writes_h264_with_the_files_audio_as_aac(rendered: Path, clip: Path) -> None:
    duration = sf.info(str(clip)).duration
    with av.open(str(rendered)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert (v.codec_context.width, v.codec_context.height) == (160, 96)
        assert a.codec_context.name == "aac" and a.codec_context.channels == 2 and a.rate == 44100
        video_s = float(v.duration * v.time_base)
        audio_s = float(a.duration * a.time_base)
    frames = decoded_frames(rendered)
    assert abs(len(frames) - duration * FPS) <= 1
    assert abs(video_s - duration) <= 1.0 / FPS
    assert abs(audio_s - duration) <= 0.05
    assert not [p for p in rendered.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_rendered_frames_move_and_follow_the_seed(
    rendered: Path, full_bundle: Path, clip: Path, tmp_path: Path
) -> None:
    frames = decoded_frames(rendered)
    diffs = [float(np.abs(a.astype(np.int16) - b).mean()) for a, b in itertools.pairwise(frames)]
    assert max(diffs) > 0.5 and sum(d > 0.05 for d in diffs) > len(diffs) // 2  # not a still picture
    again = tmp_path / "again.mp4"
    other = tmp_path / "other.mp4"
    base = ["render", str(clip), "--size", "160x96", "--fps", str(FPS), "--bundle", str(full_bundle)]
    assert main([*base, "--out", str(again), "--seed", "3"]) == 0
    assert main([*base, "--out", str(other), "--seed", "4"]) == 0
    same, diff = decoded_frames(again), decoded_frames(other)
    assert all(np.array_equal(x, y) for x, y in zip(frames, same, strict=True))  # deterministic
    assert not np.array_equal(frames[len(frames) // 2], diff[len(diff) // 2])


def test_corrupt_input_is_a_clear_error_and_writes_nothing(full_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
    out = tmp_path / "out" / "show.mp4"
    out.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "render", str(bad), "--out", str(out), "--bundle", str(full_bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "broken.wav" in proc.stderr and "cannot decode audio" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("missing/show.mp4", "does not exist"),
        ("show.avi", "unknown video container"),
    ],
)
def test_unwritable_output_is_refused_before_rendering(
    full_bundle: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, message: str
) -> None:
    rc = main(["render", str(clip), "--out", str(tmp_path / out), "--bundle", str(full_bundle)])
    assert rc == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_size_and_fps_name_the_flag(full_bundle: Path, clip: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "x.mp4")
    assert main(["render", str(clip), "--out", out, "--size", "161x96", "--bundle", str(full_bundle)]) == 2
    assert "--width" in capsys.readouterr().err
    assert main(["render", str(clip), "--out", out, "--fps", "0", "--bundle", str(full_bundle)]) == 2
    assert "--fps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["render", str(clip), "--out", out, "--size", "big"])
    assert exc.value.code == 2


def test_an_interrupted_render_leaves_nothing_behind(
    full_bundle: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.render import loop as loop_module

    calls = {"n": 0}
    real_step = loop_module.RenderLoop.step

    def step_then_fail(self, now=None):  # a real render that breaks half-way (e.g. Ctrl-C)
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return real_step(self, now)

    monkeypatch.setattr(loop_module.RenderLoop, "step", step_then_fail)
    out = tmp_path / "show.mp4"
    assert main(["render", str(clip), "--out", str(out), "--size", "160x96", "--bundle", str(full_bundle)]) == 130
    assert list(tmp_path.iterdir()) == []


def test_a_bundle_without_a_generator_and_a_missing_extra_are_named(
    tiny_bundle: Path, full_bundle: Path, clip: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "x.mp4")
    assert main(["render", str(clip), "--out", out, "--bundle", str(tiny_bundle)]) == 2
    assert "no generator" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    assert main(["render", str(clip), "--out", out, "--bundle", str(full_bundle)]) == 3
    assert "synesthesia[video]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
