"""Kiosk: rotating log file, and in-process restarts of a failing render stage without dropping the sink."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from engine.config import KioskSettings, RenderSettings
from engine.controls import Controls
from engine.inference.base import BackendKind, Component, Runner
from engine.kiosk import StageSupervisor, setup_kiosk_logging
from engine.render.frames import FramePainter, GeneratorStep
from engine.render.latent import ConditionSpace, LatentWalk
from engine.render.loop import RenderLoop, RenderMode

pytest.importorskip("pygame")

CLASSES = ["angry", "happy", "sad", "neutral"]
R = 16


def test_kiosk_log_rotates(tmp_path) -> None:
    settings = KioskSettings(enabled=True, log_file=str(tmp_path / "logs" / "syn.log"), log_max_mb=0.002, log_backups=2)
    handler = setup_kiosk_logging(settings)
    try:
        logger = logging.getLogger("synesthesia.test")
        for i in range(200):
            logger.warning("line %d %s", i, "x" * 40)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["syn.log", "syn.log.1", "syn.log.2"]
    assert all((tmp_path / "logs" / f).stat().st_size <= 2100 for f in files)
    assert "line 199" in (tmp_path / "logs" / "syn.log").read_text()


def test_supervisor_backs_off_and_gives_up_past_the_limit() -> None:
    sup = StageSupervisor("render", limit=2, backoff_s=0.5)
    sup.fail(RuntimeError("a"), now=0.0)
    assert sup.failed and not sup.due(0.4) and sup.due(0.5)
    sup.restarted()
    sup.fail(RuntimeError("b"), now=1.0)
    assert not sup.due(1.9) and sup.due(2.0)  # doubled
    sup.restarted()
    with pytest.raises(RuntimeError, match="c"):
        sup.fail(RuntimeError("c"), now=3.0)
    assert sup.restarts == 2 and sup.failures == 3


class FlakyRunner(Runner):
    kind = BackendKind.ONNX
    device = "cpu"
    component = Component.GENERATOR

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.calls = 0

    def __call__(self, z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"device lost (call {self.calls})")
        return (np.full((1, 3, R, R), 0.5 * np.tanh(z[0, 0]), dtype=np.float32),)


class RecordingSink:
    kind = "test"
    size = (32, 18)

    def __init__(self) -> None:
        self.presented: list[Any] = []
        self.closed = False

    def open(self) -> None: ...
    def events(self) -> list:
        return []

    def present(self, canvas: Any, overlay=None) -> None:
        self.presented.append(canvas)

    def wait(self) -> float:
        return 0.0

    def close(self) -> None:
        self.closed = True


def make_loop(runner: Runner, supervise: bool, reopened: list) -> tuple[RenderLoop, RecordingSink]:
    space = ConditionSpace(CLASSES, 8)
    sink = RecordingSink()

    def reopen() -> Runner:
        reopened.append(1)
        return runner

    loop = RenderLoop(
        RenderSettings(fps=60),
        LatentWalk(space, 4),
        GeneratorStep(runner, R, 4, 8, fps=60, adapt=False),
        FramePainter(R, sink.size, CLASSES),
        sink,
        Controls(CLASSES),
        supervise=supervise,
        restart_limit=3,
        reopen_generator=reopen,
    )
    loop.open()
    return loop, sink


def test_kiosk_restarts_a_failing_render_stage_without_dropping_the_display() -> None:
    runner = FlakyRunner(fail_on={5, 6})
    reopened: list = []
    loop, sink = make_loop(runner, supervise=True, reopened=reopened)
    modes = []
    t = 0.0
    for _ in range(120):
        loop.step(now=t)
        modes.append(loop.status.mode)
        t += 1 / 60
    assert loop.status.restarts == 2 and len(reopened) == 2
    assert RenderMode.RECOVERING in modes and modes[-1] is RenderMode.LIVE
    assert len(sink.presented) == 120, "a frame was presented every step, the last image while recovering"
    assert not sink.closed
    assert loop.snapshot()["restarts"] == 2


def test_past_the_restart_limit_the_error_propagates() -> None:
    runner = FlakyRunner(fail_on=set(range(3, 1000)))
    loop, _ = make_loop(runner, supervise=True, reopened=[])
    t = 0.0
    with pytest.raises(RuntimeError, match="device lost"):
        for _ in range(10_000):
            loop.step(now=t)
            t += 0.1
    assert loop.supervisor.restarts == 3


def test_without_kiosk_a_render_failure_is_not_hidden() -> None:
    loop, _ = make_loop(FlakyRunner(fail_on={2}), supervise=False, reopened=[])
    loop.step(now=0.0)
    with pytest.raises(RuntimeError):
        loop.step(now=0.1)
