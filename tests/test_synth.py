"""Procedural emotional audio (engine.audio.synth) and the synthetic corpus (trainer.audio.synthetic).

The acoustic assertions measure the clips with librosa, averaged over several seeds (voices), and check
the direction and rough size of each cue the generator claims to follow.
"""

from __future__ import annotations

import csv
import functools

import librosa
import numpy as np
import pytest
from scipy.signal import find_peaks

from engine.audio.loading import load_audio
from engine.audio.synth import Expression, SynthStream, synthesize
from engine.emotions import CIRCUMPLEX
from trainer.audio.synthetic import CSV_COLUMNS, SyntheticCorpus, write_corpus

SR = 22050
SEEDS = range(5)
FOUR = ("angry", "happy", "sad", "neutral")

# Krumhansl & Kessler (1982) probe-tone key profiles, C major / C minor.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))))


def centroid_hz(x: np.ndarray) -> float:
    """Median spectral centroid over frames within 20 dB of the loudest (pauses excluded)."""
    cen = librosa.feature.spectral_centroid(y=x, sr=SR).ravel()
    level = librosa.feature.rms(y=x).ravel()
    return float(np.median(cen[level > 0.1 * level.max()]))


def median_f0_hz(x: np.ndarray) -> float:
    f0 = librosa.yin(x, fmin=60, fmax=600, sr=SR, frame_length=2048, hop_length=512)
    level = librosa.feature.rms(y=x, frame_length=2048, hop_length=512).ravel()[: f0.size]
    return float(np.median(f0[level > 0.3 * level.max()]))


def syllable_rate(x: np.ndarray) -> float:
    """Prominent peaks per second of the smoothed 10-ms RMS envelope."""
    env = librosa.feature.rms(y=x, frame_length=512, hop_length=220).ravel()
    env = np.convolve(env, np.hanning(7) / 3.0, mode="same")
    peaks, _ = find_peaks(env, prominence=0.25 * env.max(), distance=8)
    return len(peaks) / (x.size / SR)


def onset_rate(x: np.ndarray) -> float:
    return len(librosa.onset.onset_detect(y=x, sr=SR, units="time")) / (x.size / SR)


def mode_score(x: np.ndarray) -> float:
    """Best major-key minus best minor-key correlation of the mean chroma (key-finding, Krumhansl)."""
    chroma = librosa.feature.chroma_stft(y=x, sr=SR, n_fft=4096, hop_length=1024).mean(axis=1)

    def best(profile: np.ndarray) -> float:
        return max(float(np.corrcoef(chroma, np.roll(profile, k))[0, 1]) for k in range(12))

    return best(KK_MAJOR) - best(KK_MINOR)


# -- synthesize -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["speech", "music"])
def test_clip_is_deterministic_float32_and_bounded(kind: str) -> None:
    a = synthesize("happy", kind=kind, duration_s=1.5, seed=3)
    b = synthesize("happy", kind=kind, duration_s=1.5, seed=3)
    assert a.dtype == np.float32 and a.shape == (round(1.5 * SR),)
    assert np.array_equal(a, b)
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0
    assert rms_db(a) > -40.0  # not silent


@pytest.mark.parametrize("kind", ["speech", "music"])
def test_seeds_and_voices_differ(kind: str) -> None:
    base = synthesize("neutral", kind=kind, duration_s=1.0, seed=1)
    other_seed = synthesize("neutral", kind=kind, duration_s=1.0, seed=2)
    other_voice = synthesize("neutral", kind=kind, duration_s=1.0, seed=1, voice=99)
    for other in (other_seed, other_voice):
        assert abs(np.corrcoef(base, other)[0, 1]) < 0.5


def test_emotion_name_equals_its_va_anchor() -> None:
    assert {"angry", "happy", "sad", "neutral", "fearful", "calm", "surprised", "disgust", "bored"} <= set(CIRCUMPLEX)
    assert all(-1 <= v <= 1 and -1 <= a <= 1 for v, a in CIRCUMPLEX.values())
    v, a = CIRCUMPLEX["sad"]
    assert np.array_equal(synthesize("sad", duration_s=0.5), synthesize(valence=v, arousal=a, duration_s=0.5))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("furious",), {}),
        (("happy",), {"valence": 0.1}),
        ((), {"valence": 0.1}),
        ((), {"valence": 1.5, "arousal": 0.0}),
        ((), {"valence": float("nan"), "arousal": 0.0}),
        (("happy",), {"kind": "noise"}),
        (("happy",), {"duration_s": 0.0}),
    ],
)
def test_invalid_arguments_raise(args: tuple, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        synthesize(*args, **kwargs)


@pytest.fixture(scope="module")
def arousal_pairs() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(low, high) arousal clips at neutral valence, same seed and voice, for both kinds."""
    return {
        kind: [
            tuple(synthesize(valence=0.0, arousal=a, kind=kind, duration_s=3.0, seed=s) for a in (-0.8, 0.8))
            for s in SEEDS
        ]
        for kind in ("speech", "music")
    }


@pytest.mark.parametrize("kind", ["speech", "music"])
def test_arousal_raises_loudness_and_brightness(arousal_pairs: dict, kind: str) -> None:
    pairs = arousal_pairs[kind]
    gain_db = np.mean([rms_db(hi) - rms_db(lo) for lo, hi in pairs])
    brightening = np.mean([centroid_hz(hi) / centroid_hz(lo) for lo, hi in pairs])
    assert gain_db > 8.0  # the generator applies 8 dB per unit of arousal
    assert brightening > 1.4
    assert all(centroid_hz(hi) > centroid_hz(lo) for lo, hi in pairs)


def test_arousal_raises_pitch_and_speech_rate(arousal_pairs: dict) -> None:
    pairs = arousal_pairs["speech"]
    semitones = [12 * np.log2(median_f0_hz(hi) / median_f0_hz(lo)) for lo, hi in pairs]
    assert np.mean(semitones) > 3.0 and min(semitones) > 0.0
    assert np.mean([syllable_rate(hi) for _, hi in pairs]) > 1.3 * np.mean([syllable_rate(lo) for lo, _ in pairs])


def test_arousal_raises_musical_tempo(arousal_pairs: dict) -> None:
    pairs = arousal_pairs["music"]
    assert np.mean([onset_rate(hi) for _, hi in pairs]) > 1.5 * np.mean([onset_rate(lo) for lo, _ in pairs])


def test_valence_selects_major_or_minor_mode() -> None:
    happy = [mode_score(synthesize("happy", kind="music", seed=s)) for s in SEEDS]
    sad = [mode_score(synthesize("sad", kind="music", seed=s)) for s in SEEDS]
    assert np.mean(happy) > 0.1 and np.mean(sad) < -0.05
    assert all(h - s > 0.1 for h, s in zip(happy, sad, strict=True))


def _mel_similarity(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = (librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=SR, n_mels=64)).ravel() for x in (a, b))
    return float(np.corrcoef(ma, mb)[0, 1])


def test_continuous_va_moves_the_acoustics_continuously() -> None:
    grid = np.linspace(-1.0, 1.0, 5)
    level = [
        np.mean([rms_db(synthesize(valence=0.2, arousal=a, duration_s=1.5, seed=s)) for s in range(3)]) for a in grid
    ]
    assert np.all(np.diff(level) > 2.0)  # monotone, ~4 dB per 0.5 step
    # A small step in VA is a small change of the same utterance (spectrogram nearly unchanged), far
    # smaller than the change to another utterance.
    for kind in ("speech", "music"):
        a, b, other = (
            synthesize(valence=v, arousal=ar, kind=kind, duration_s=1.5, seed=s)
            for v, ar, s in ((0.2, 0.3, 4), (0.21, 0.31, 4), (0.2, 0.3, 5))
        )
        assert abs(rms_db(a) - rms_db(b)) < 0.5
        assert _mel_similarity(a, b) > 0.95 > _mel_similarity(a, other) + 0.1
    e0, e1 = Expression.from_va(0.2, 0.3), Expression.from_va(0.21, 0.31)
    assert abs(e1.tilt_db_oct - e0.tilt_db_oct) < 0.1 and abs(e1.rate / e0.rate - 1) < 0.01


# -- SynthStream ----------------------------------------------------------------------------------


def test_stream_output_does_not_depend_on_block_sizes() -> None:
    stream = SynthStream("happy", kind="speech", sample_rate=SR, seed=5)
    whole = stream.read(3 * SR)
    stream.reset()
    rng = np.random.default_rng(0)
    parts, total = [], 0
    while total < 3 * SR:
        n = min(int(rng.integers(1, 5000)), 3 * SR - total)
        parts.append(stream.read(n))
        total += n
    assert np.array_equal(np.concatenate(parts), whole)
    assert stream.read(0).size == 0
    assert whole.dtype == np.float32 and np.abs(whole).max() <= 1.0


@pytest.mark.parametrize(("kind", "emotion"), [("speech", "sad"), ("music", "sad"), ("music", "angry")])
def test_stream_has_no_clicks_at_segment_joins(kind: str, emotion: str) -> None:
    seg, xf = round(0.5 * SR), round(0.05 * SR)
    stream = SynthStream(emotion, kind=kind, sample_rate=SR, seed=2, segment_s=0.5, crossfade_s=0.05)
    x = stream.read(4 * SR).astype(np.float64)
    step = np.abs(np.diff(x))  # step[i] = |x[i + 1] - x[i]|
    for k in range(1, x.size // seg):
        for edge in (k * seg, k * seg + xf):  # first sample of a crossfade, first sample after it
            i = edge - 1
            around = np.concatenate([step[i - 256 : i - 1], step[i + 2 : i + 256]])
            # A click is a step larger than any ordinary sample-to-sample step nearby.
            assert step[i] <= around.max(), (k, edge)
    assert abs(x[0]) < 1e-3  # fades in from silence


def test_stream_set_target_glides_to_the_new_emotion() -> None:
    stream = SynthStream("sad", kind="speech", sample_rate=SR, seed=1, segment_s=1.0, crossfade_s=0.1, glide_s=1.0)
    before = stream.read(3 * SR)
    stream.set_target("angry")
    assert stream.target == CIRCUMPLEX["angry"]
    stream.read(SR + 1)  # the first segment after the change
    _, mid_a = stream.current
    assert CIRCUMPLEX["sad"][1] < mid_a < CIRCUMPLEX["angry"][1]  # on the way, not a jump
    stream.read(3 * SR)
    after = stream.read(3 * SR)
    assert np.allclose(stream.current, CIRCUMPLEX["angry"], atol=0.05)
    assert rms_db(after) - rms_db(before) > 6.0
    stream.set_target((0.0, 0.0))
    with pytest.raises(ValueError):
        stream.set_target("elated-ish")
    stream.reset()
    assert stream.current == stream.target == CIRCUMPLEX["sad"]
    assert np.array_equal(stream.read(3 * SR), before)


# -- corpus ---------------------------------------------------------------------------------------


def test_corpus_is_lazy_deterministic_and_speaker_balanced() -> None:
    corpus = SyntheticCorpus(FOUR, n_per_class=8, kinds=("speech", "music"), duration_s=0.5, seed=3, n_voices=2)
    assert len(corpus) == 32
    specs = corpus.specs  # metadata without synthesis
    assert [s.label for s in specs] == [c for c in FOUR for _ in range(8)]
    by_speaker: dict[str, set[str]] = {}
    for s in specs:
        by_speaker.setdefault(s.speaker, set()).add(s.label)
        anchor = CIRCUMPLEX[s.label]
        assert abs(s.valence - anchor[0]) < 0.5 and abs(s.arousal - anchor[1]) < 0.5
    assert len(by_speaker) == 4  # 2 voices x 2 kinds
    assert all(labels == set(FOUR) for labels in by_speaker.values())  # every voice utters every class
    item = corpus[-1]
    again = SyntheticCorpus(FOUR, n_per_class=8, kinds=("speech", "music"), duration_s=0.5, seed=3, n_voices=2)[31]
    assert np.array_equal(item.audio, again.audio) and item.label == "neutral" and item.kind == "music"
    assert (item.valence, item.arousal, item.speaker) == (specs[31].valence, specs[31].arousal, specs[31].speaker)
    assert not np.array_equal(corpus[0].audio, SyntheticCorpus(FOUR, 8, duration_s=0.5, seed=4)[0].audio)
    with pytest.raises(IndexError):
        corpus[32]
    with pytest.raises(ValueError):
        SyntheticCorpus(["angry", "furious"], 2)


def test_write_corpus_csv_round_trip(tmp_path) -> None:
    csv_path = write_corpus(tmp_path / "synth", ("happy", "sad"), 3, kinds=("speech", "music"), duration_s=0.5, seed=1)
    corpus = SyntheticCorpus(("happy", "sad"), 3, kinds=("speech", "music"), duration_s=0.5, seed=1)
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == len(corpus)
    for row, item in zip(rows, corpus, strict=True):
        audio = load_audio(csv_path.parent / row["path"])
        assert audio.shape == item.audio.shape
        assert np.abs(audio - item.audio).max() < 2.0 / 32768  # 16-bit quantisation only
        assert row["label"] == item.label and row["speaker"] == item.speaker
        assert (float(row["valence"]), float(row["arousal"])) == (item.valence, item.arousal)


@functools.cache
def _mel_bank() -> np.ndarray:
    return librosa.filters.mel(sr=SR, n_fft=1024, n_mels=64)


def _log_mel_stats(x: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over time of the log-mel spectrogram of the loudness-normalised clip."""
    x = x / np.sqrt(np.mean(x.astype(np.float64) ** 2)) * 0.05  # loudness removed, as the front end does
    power = np.abs(librosa.stft(x.astype(np.float32), n_fft=1024, hop_length=512)) ** 2
    mel = librosa.power_to_db(_mel_bank() @ power)
    return np.concatenate([mel.mean(axis=1), mel.std(axis=1)])


def test_nearest_centroid_separates_the_four_classes_on_unseen_voices() -> None:
    """What the corpus is for: a trivial classifier trained on some voices generalises to new ones."""
    train = SyntheticCorpus(FOUR, n_per_class=10, duration_s=2.0, seed=0)  # 5 voices per kind
    test = SyntheticCorpus(FOUR, n_per_class=8, duration_s=2.0, seed=1)  # 4 other voices per kind
    assert not {s.speaker for s in train.specs} & {s.speaker for s in test.specs}
    feats = {
        name: [(_log_mel_stats(it.audio), it.label, it.kind) for it in c] for name, c in (("tr", train), ("te", test))
    }
    accuracy = {}
    for kind in ("speech", "music"):
        # One nearest-centroid classifier per kind: speech and music of a class are different sounds.
        x_tr = np.array([f for f, _, k in feats["tr"] if k == kind])
        y_tr = np.array([label for _, label, k in feats["tr"] if k == kind])
        mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
        centroids = np.array([((x_tr[y_tr == c] - mu) / sd).mean(axis=0) for c in FOUR])
        hits = [
            FOUR[int(np.argmin((((f - mu) / sd - centroids) ** 2).sum(axis=1)))] == label
            for f, label, k in feats["te"]
            if k == kind
        ]
        accuracy[kind] = float(np.mean(hits))
    print(f"nearest-centroid accuracy on unseen voices (chance 0.25): {accuracy}")
    assert min(accuracy.values()) >= 0.55 and np.mean(list(accuracy.values())) >= 0.65


def test_tour_visits_every_emotion_in_turn_whatever_the_read_sizes() -> None:
    from engine.audio.synth import TOUR, SynthTour

    sr = 8000
    a = SynthTour(leg_s=2.0, sample_rate=sr, seed=3)
    b = SynthTour(leg_s=2.0, sample_rate=sr, seed=3)
    seen = []
    for _ in range(8 * 2 * sr // 1000):  # two rounds of four 2 s legs, in 1000-sample reads
        seen.append(a.emotion)
        a.read(1000)
    legs = list(dict.fromkeys(seen))
    assert tuple(legs) == TOUR and seen[0] == "angry" and seen[-1] == "neutral"
    assert a.emotion == "angry"  # looped
    # the same audio for other read sizes, and the voice really changes between legs
    a.reset()
    first = a.read(4 * 2 * sr)
    parts = [b.read(n) for n in (1, 777, 16000, 3333, 4 * 2 * sr - 1 - 777 - 16000 - 3333)]
    assert np.array_equal(first, np.concatenate(parts))
    angry, sad = first[sr : 2 * sr], first[5 * sr : 6 * sr]
    assert np.sqrt(np.mean(angry**2)) > 1.5 * np.sqrt(np.mean(sad**2))  # angry is louder than sad
    with pytest.raises(ValueError):
        SynthTour(emotions=("angry", "bored-ish"))
