"""`bench --show`: the real show in a subprocess, measured through its own web console (real HTTP and
WebSocket on loopback), as an operator's phone would see it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_engine import no_audio_env

pytest.importorskip("aiohttp", reason="aiohttp (the `web` extra) is not installed")


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**no_audio_env(), "SDL_VIDEODRIVER": "dummy"}.items():
        monkeypatch.setenv(key, value)


def test_the_show_row_reads_the_render_loops_figures_through_the_console(full_bundle: Path, quiet_env) -> None:
    from engine.render.bench_show import bench_show

    row = bench_show(str(full_bundle), seconds=5, width=160, height=96, fps=30)
    assert "error" not in row, row
    assert row["windows"] >= 1 and 5 < row["fps"] < 40 and row["frame_ms_p99"] > 0, row
    assert row["frame_ms_p99_worst"] >= row["frame_ms_p99"]
    assert row["console"]["pushes"] > 0 and row["console"]["previews"] > 0, row
    assert row["size"] == "160x96" and row["sink"] and row["backend"]


def test_a_show_that_cannot_start_is_an_error_row_with_its_last_lines(tmp_path: Path, quiet_env) -> None:
    from engine.render.bench_show import bench_show

    row = bench_show(str(tmp_path / "no-bundle"), seconds=2, width=160, height=96)
    assert "exited" in row["error"] and row["show_log"], row
    assert any("no-bundle" in line for line in row["show_log"]), row["show_log"]
