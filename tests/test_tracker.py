"""EmotionTracker: smoothing, hysteresis, silence, operator controls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.analysis.predict import WindowPrediction
from engine.analysis.state import EmotionTracker, StateKind, smoothing_alpha
from engine.config import AnalysisSettings
from engine.controls import Controls

CLASSES = ["angry", "happy", "sad", "neutral"]


def pred(probs: list[float], va: tuple[float, float] = (0.0, 0.0), silent: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    return WindowPrediction(
        probs=np.asarray(probs, np.float32),
        valence=va[0],
        arousal=va[1],
        embedding=rng.standard_normal(8).astype(np.float32),
        shared=rng.standard_normal(16).astype(np.float32),
        silent=silent,
        rms_db=-80.0 if silent else -20.0,
        nonfinite=0,
        clipped=0.0,
    )


HAPPY = [0.1, 0.7, 0.1, 0.1]
SAD = [0.1, 0.1, 0.7, 0.1]


def settings(**kw) -> AnalysisSettings:
    base = dict(attack_s=0.0, release_s=0.0, hysteresis_margin=0.1, hysteresis_hops=2, silence_hops=2)
    return AnalysisSettings(**{**base, **kw})


def test_alpha_is_frame_rate_independent() -> None:
    # two half steps cover exactly what one whole step covers
    a_whole = smoothing_alpha(1.0, 2.0)
    a_half = smoothing_alpha(0.5, 2.0)
    assert 1 - (1 - a_half) ** 2 == pytest.approx(a_whole)
    assert smoothing_alpha(0.5, 0.0) == 1.0


def test_smoothing_uses_attack_when_rising_and_release_when_falling() -> None:
    tr = EmotionTracker(CLASSES, settings(attack_s=0.5, release_s=5.0))
    tr(pred(SAD, va=(0.0, 0.0)), t=0.0)
    s = tr(pred(SAD, va=(0.0, 1.0)), t=0.5)  # arousal rises: attack
    assert s.arousal == pytest.approx(1 - math.exp(-1), rel=1e-4)
    tr2 = EmotionTracker(CLASSES, settings(attack_s=0.5, release_s=5.0))
    tr2(pred(SAD, va=(0.0, 1.0)), t=0.0)
    s2 = tr2(pred(SAD, va=(0.0, 0.0)), t=0.5)  # falls: release
    assert s2.arousal == pytest.approx(math.exp(-0.1), rel=1e-4)


def test_same_result_at_any_hop() -> None:
    def run(hop: float) -> float:
        tr = EmotionTracker(CLASSES, settings(attack_s=1.0, release_s=1.0))
        tr(pred(SAD, va=(0.0, 0.0)), 0.0)
        s = None
        for k in range(1, round(2.0 / hop) + 1):
            s = tr(pred(SAD, va=(0.8, 0.0)), k * hop)
        return s.valence

    assert run(0.25) == pytest.approx(run(0.5), rel=1e-6) == pytest.approx(0.8 * (1 - math.exp(-2)), rel=1e-6)


def test_label_switches_only_after_the_challenger_leads_long_enough() -> None:
    tr = EmotionTracker(CLASSES, settings(hysteresis_hops=3))
    assert tr(pred(HAPPY), 0.0).label == "happy"
    labels = [tr(pred(SAD), 0.5 * k).label for k in range(1, 5)]
    assert labels == ["happy", "happy", "sad", "sad"]


def test_an_interrupted_lead_restarts_the_count_and_a_small_lead_never_switches() -> None:
    tr = EmotionTracker(CLASSES, settings(hysteresis_hops=2, hysteresis_margin=0.2))
    tr(pred(HAPPY), 0.0)
    assert tr(pred(SAD), 0.5).label == "happy"
    assert tr(pred(HAPPY), 1.0).label == "happy"  # interrupted
    assert tr(pred(SAD), 1.5).label == "happy"
    close = [0.1, 0.4, 0.45, 0.05]  # sad leads by 0.05 < margin
    assert all(tr(pred(close), 2.0 + k).label == "happy" for k in range(5))


def test_silence_holds_label_and_values_then_reports_silent() -> None:
    tr = EmotionTracker(CLASSES, settings(silence_hops=3))
    before = tr(pred(HAPPY, va=(0.5, 0.2)), 0.0)
    states = [tr(pred(SAD, va=(-0.9, -0.9), silent=True), 0.5 * k) for k in range(1, 30)]
    assert [s.state for s in states[:3]] == [StateKind.LISTENING, StateKind.LISTENING, StateKind.SILENT]
    assert all(s.label == "happy" and s.valence == before.valence for s in states)
    assert states[-1].silent and states[-1].raw_label is None
    back = tr(pred(HAPPY), 20.0)
    assert back.state is StateKind.LISTENING and back.label == "happy"


def test_silence_from_the_start_has_no_label() -> None:
    tr = EmotionTracker(CLASSES, settings(silence_hops=1))
    s = tr(pred(HAPPY, silent=True), 0.0)
    assert s.state is StateKind.SILENT and s.label is None and not np.any(s.shared)


def test_smoothing_control_overrides_both_time_constants() -> None:
    controls = Controls(CLASSES)
    tr = EmotionTracker(CLASSES, settings(attack_s=0.0, release_s=0.0), controls)
    tr(pred(SAD, va=(0.0, 0.0)), 0.0)
    controls.apply("smoothing", 2.0)
    s = tr(pred(SAD, va=(1.0, 0.0)), 1.0)
    assert s.valence == pytest.approx(1 - math.exp(-0.5), rel=1e-4)


def test_override_by_label_and_by_valence_arousal_then_release() -> None:
    controls = Controls(CLASSES)
    anchors = {"angry": np.eye(16)[3]}
    tr = EmotionTracker(CLASSES, settings(), controls, anchors)
    tr(pred(HAPPY), 0.0)
    controls.apply("override", "angry")
    s = tr(pred(HAPPY), 0.5)
    assert s.state is StateKind.OVERRIDE and s.label == "angry" and s.confidence == 1.0
    assert s.prob("angry") == 1.0 and s.valence < 0 < s.arousal
    assert np.allclose(s.shared, np.eye(16)[3])
    controls.apply("override", -0.6, -0.6)
    s = tr(pred(HAPPY), 1.0)
    assert s.label == "sad" and (s.valence, s.arousal) == (-0.6, -0.6)
    controls.apply("override", "none")
    s = tr(pred(HAPPY), 1.5)
    assert s.state is StateKind.LISTENING and s.label == "happy"  # tracking went on underneath


def test_freeze_holds_every_value() -> None:
    controls = Controls(CLASSES)
    tr = EmotionTracker(CLASSES, settings(), controls)
    held = tr(pred(HAPPY, va=(0.7, 0.1)), 0.0)
    controls.apply("freeze", 1)
    for k in range(1, 6):
        s = tr(pred(SAD, va=(-0.7, -0.1)), 0.5 * k)
        assert s.state is StateKind.FROZEN
        assert s.label == "happy" and s.valence == held.valence and np.array_equal(s.probs, held.probs)
    controls.apply("freeze", 0)
    assert tr(pred(SAD, va=(-0.7, -0.1)), 3.0).state is StateKind.LISTENING


def test_outputs_are_normalised_read_only_and_reset_forgets() -> None:
    tr = EmotionTracker(CLASSES, settings(attack_s=0.3, release_s=0.3))
    tr(pred(HAPPY, seed=1), 0.0)
    s = tr(pred(SAD, seed=2), 0.5)
    assert s.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(s.shared) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError):
        s.probs[0] = 1.0
    tr.reset()
    assert tr(pred(SAD), 10.0).label == "sad"
