"""LatentWalk: continuity, reproducibility, easing, overrides, intensity, idle (pure numpy, no bundle)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from engine.controls import Controls, ControlState, Override
from engine.render.latent import AudioFeatures, ConditionSpace, LatentWalk, slerp

CLASSES = ["angry", "happy", "sad", "neutral"]
DIM = 32
Z = 16
FRAME = 1.0 / 60.0


def make_space(seed: int = 0) -> ConditionSpace:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((40, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([CLASSES[i % 4] for i in range(40)])
    # give each class a clear direction, as a trained index has
    for i, c in enumerate(CLASSES):
        vectors[labels == c, i] += 3.0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ConditionSpace(CLASSES, DIM, vectors, labels)


def angle(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    return math.acos(float(np.clip(a @ b, -1.0, 1.0)))


def unit(rng: np.random.Generator, n: int = DIM) -> np.ndarray:
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


def test_slerp_stays_on_the_sphere_and_reaches_both_ends() -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng), unit(rng)
    for t in np.linspace(0, 1, 11):
        assert abs(np.linalg.norm(slerp(a, b, t)) - 1.0) < 1e-9
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-9)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-9)
    assert angle(slerp(a, b, 0.5), a) == pytest.approx(angle(a, b) / 2, abs=1e-6)
    # antipodal: still unit norm and half-way at t = 0.5
    mid = slerp(a, -a, 0.5)
    assert abs(np.linalg.norm(mid) - 1.0) < 1e-9
    assert angle(mid, a) == pytest.approx(math.pi / 2, abs=1e-6)


def test_class_centroids_are_label_means_and_neutral_is_the_neutral_class() -> None:
    space = make_space()
    for i, c in enumerate(CLASSES):
        assert int(np.argmax(space.centroid(c)[:4])) == i
        assert abs(np.linalg.norm(space.centroid(c)) - 1.0) < 1e-9
    np.testing.assert_allclose(space.neutral, space.centroid("neutral"))


def test_va_override_interpolates_class_centroids_continuously() -> None:
    space = make_space()
    # at a class's anchor the condition is nearest that class's centroid
    for c in CLASSES:
        cond = space.from_va(*space.va[c])
        assert max(CLASSES, key=lambda k: float(cond @ space.centroid(k))) == c
    # moving the VA point a little moves the condition a little
    prev = space.from_va(-1.0, -1.0)
    for t in np.linspace(0.0, 1.0, 201)[1:]:
        cur = space.from_va(-1.0 + 2 * t, -1.0 + 2 * t)
        assert angle(prev, cur) < 0.1
        prev = cur


def test_without_an_art_index_every_class_still_has_a_fixed_condition() -> None:
    a = ConditionSpace(CLASSES, DIM)
    b = ConditionSpace(CLASSES, DIM)
    for c in CLASSES:
        np.testing.assert_allclose(a.centroid(c), b.centroid(c))
    assert angle(a.centroid("happy"), a.centroid("sad")) > 0.5


def run_walk(walk: LatentWalk, controls: ControlState, frames: int, target=None, features=None, va=None):
    zs, cs = [], []
    for _ in range(frames):
        z, c = walk(FRAME, target, features, controls, va)
        zs.append(z.copy())
        cs.append(c.copy())
    return np.array(zs), np.array(cs)


def test_same_seed_same_walk_and_another_seed_another_region() -> None:
    space = make_space()
    rng = np.random.default_rng(5)
    target = unit(rng)
    feats = [AudioFeatures(rms=float(r), onset=float(o), centroid=2000.0) for r, o in rng.random((120, 2))]
    runs = []
    for seed in (7, 7, 8):
        walk = LatentWalk(space, Z, seed=seed)
        zs = []
        for f in feats:
            z, _ = walk(FRAME, target, f, ControlState(), (0.5, 0.5))
            zs.append(z.copy())
        runs.append(np.array(zs))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).max() > 0.5


def test_reset_replays_the_walk() -> None:
    walk = LatentWalk(make_space(), Z, seed=3)
    first, _ = run_walk(walk, ControlState(), 30)
    walk.reset(3)
    again, _ = run_walk(walk, ControlState(), 30)
    np.testing.assert_array_equal(first, again)


def test_seed_control_jumps_and_is_reproducible() -> None:
    controls = Controls(CLASSES)
    a = LatentWalk(make_space(), Z, seed=0)
    b = LatentWalk(make_space(), Z, seed=123)
    run_walk(a, controls.snapshot(), 10)
    before = a(FRAME, None, None, controls.snapshot())[0].copy()
    controls.apply("seed", 42)
    after_a = a(FRAME, None, None, controls.snapshot())[0].copy()
    after_b = b(FRAME, None, None, controls.snapshot())[0].copy()
    assert angle(before, after_a) > 0.3  # a jump
    # both walks now follow seed 42's path from its start
    np.testing.assert_allclose(after_a, after_b, atol=1e-5)


@pytest.mark.parametrize("onsets", [False, True])
@pytest.mark.parametrize("speed", [0.0, 1.0, 4.0])
def test_continuity_bounded_step_per_frame(speed: float, onsets: bool) -> None:
    """With loud audio, a changing spectrum and a target that flips every second, z and c never jump."""
    space = make_space()
    walk = LatentWalk(space, Z, condition_tau_s=0.5, seed=1)
    ctl = ControlState(speed=speed)
    rng = np.random.default_rng(2)
    targets = [unit(rng) for _ in range(6)]
    prev_z, prev_c = None, None
    max_dz = max_dc = 0.0
    for i in range(360):
        onset = 1.0 if onsets and i % 20 == 0 else 0.0
        f = AudioFeatures(rms=0.3, onset=onset, centroid=4000.0 if i % 90 < 45 else 300.0)
        z, c = walk(FRAME, targets[i // 60], f, ctl, (0.5, -0.5))
        assert abs(np.linalg.norm(z) - math.sqrt(Z)) < 1e-3
        assert abs(np.linalg.norm(c) - 1.0) < 1e-5
        if prev_z is not None:
            max_dz = max(max_dz, angle(prev_z, z))
            max_dc = max(max_dc, angle(prev_c, c))
        prev_z, prev_c = z.copy(), c.copy()
    # c: at most alpha * pi per frame with alpha = 1 - exp(-dt / tau)
    assert max_dc <= (1 - math.exp(-FRAME / 0.5)) * math.pi + 1e-6
    # z: the path moves ~1 rad/s at speed 1 with loud audio; an onset adds at most one attack step of the kick
    t = walk.tuning
    kick = t.kick_amp * (1 - math.exp(-FRAME / t.kick_attack_s)) if onsets else 0.0
    assert max_dz < 0.06 * max(1.0, speed) + kick
    assert max_dz > 0.0


def test_a_long_stall_does_not_jump() -> None:
    walk = LatentWalk(make_space(), Z, condition_tau_s=0.2, seed=1)
    rng = np.random.default_rng(3)
    z0, c0 = (a.copy() for a in walk(FRAME, unit(rng), None, ControlState()))
    z1, c1 = walk(30.0, unit(rng), None, ControlState())  # 30 s between frames (a restart)
    assert angle(c0, c1) < math.pi * (1 - math.exp(-0.1 / 0.2)) + 1e-6
    assert angle(z0, z1) < 0.3


def test_easing_reaches_the_target_with_the_time_constant() -> None:
    space = make_space()
    walk = LatentWalk(space, Z, condition_tau_s=0.5, seed=0)
    target = unit(np.random.default_rng(9))
    start = angle(walk.condition, target)
    run_walk(walk, ControlState(), 30, target=target)  # 0.5 s = one time constant
    assert angle(walk.condition, target) == pytest.approx(start * math.exp(-1), rel=0.1)
    run_walk(walk, ControlState(), 270, target=target)  # 5 s = ten time constants
    assert angle(walk.condition, target) < 0.01


def test_smoothing_control_sets_the_time_constant() -> None:
    space = make_space()
    target = unit(np.random.default_rng(9))
    fast = LatentWalk(space, Z, condition_tau_s=5.0)
    slow = LatentWalk(space, Z, condition_tau_s=5.0)
    run_walk(fast, ControlState(smoothing=0.1), 30, target=target)
    run_walk(slow, ControlState(), 30, target=target)
    assert angle(fast.condition, target) < 0.01
    assert angle(slow.condition, target) > 0.5 * angle(space.neutral, target)


def test_label_override_goes_to_the_class_centroid_and_va_follows() -> None:
    space = make_space()
    walk = LatentWalk(space, Z, condition_tau_s=0.2)
    ctl = ControlState(override=Override(label="happy"))
    room = unit(np.random.default_rng(4))
    run_walk(walk, ctl, 120, target=room, va=(-0.9, -0.9))
    assert angle(walk.condition, space.centroid("happy")) < 0.01
    assert (walk.valence, walk.arousal) == pytest.approx(space.va["happy"], abs=0.01)


def test_va_override_goes_to_the_interpolated_condition() -> None:
    space = make_space()
    walk = LatentWalk(space, Z, condition_tau_s=0.2)
    ctl = ControlState(override=Override(valence=-0.65, arousal=-0.6))
    run_walk(walk, ctl, 120)
    assert angle(walk.condition, space.from_va(-0.65, -0.6)) < 0.01
    assert max(CLASSES, key=lambda k: float(walk.condition @ space.centroid(k))) == "sad"


def test_intensity_blends_toward_neutral() -> None:
    space = make_space()
    target = space.centroid("angry")
    conds = {}
    for k in (0.0, 0.5, 1.0):
        walk = LatentWalk(space, Z, condition_tau_s=0.1)
        run_walk(walk, ControlState(intensity=k), 90, target=target, va=(-0.7, 0.75))
        conds[k] = (walk.condition.copy(), walk.valence)
    full = angle(space.neutral, target)
    assert angle(conds[0.0][0], space.neutral) < 0.01
    assert angle(conds[1.0][0], target) < 0.01
    assert angle(conds[0.5][0], space.neutral) == pytest.approx(full / 2, abs=0.02)
    assert conds[0.0][1] == pytest.approx(space.neutral_va[0], abs=0.01)
    assert conds[0.5][1] < conds[0.0][1]


def test_silence_eases_into_a_slower_idle_motion_at_neutral() -> None:
    space = make_space()
    loud = LatentWalk(space, Z, seed=1)
    quiet = LatentWalk(space, Z, seed=1)
    target = space.centroid("angry")
    feats = AudioFeatures(rms=0.3, onset=0.0, centroid=1000.0)
    zl, _ = run_walk(loud, ControlState(), 300, target=target, features=feats)
    zq, _ = run_walk(quiet, ControlState(), 300, target=None, features=AudioFeatures())
    assert loud.idle < 0.05 and quiet.idle > 0.95
    assert angle(quiet.condition, space.neutral) < 0.01
    path_loud = sum(angle(a, b) for a, b in itertools.pairwise(zl[150:]))
    path_quiet = sum(angle(a, b) for a, b in itertools.pairwise(zq[150:]))
    assert path_quiet < 0.5 * path_loud
    assert path_quiet > 0.0  # idle still moves (attract mode)


def test_onsets_pulse_and_decay() -> None:
    walk = LatentWalk(make_space(), Z)
    target = unit(np.random.default_rng(1))
    run_walk(walk, ControlState(), 60, target=target, features=AudioFeatures(rms=0.2))
    run_walk(walk, ControlState(), 3, target=target, features=AudioFeatures(rms=0.2, onset=1.0))
    peak = walk.pulse
    run_walk(walk, ControlState(), 60, target=target, features=AudioFeatures(rms=0.2))
    assert peak > 0.5
    assert walk.pulse < 0.1 * peak


def test_garbage_features_do_not_break_the_walk() -> None:
    walk = LatentWalk(make_space(), Z)
    for f in (AudioFeatures(rms=float("nan")), AudioFeatures(rms=-1.0, onset=float("inf")), AudioFeatures()):
        z, c = walk(FRAME, None, f, ControlState())
        assert np.all(np.isfinite(z)) and np.all(np.isfinite(c))
