"""Procedural emotional audio: speech-like and music-like clips whose acoustics follow the emotion literature.

Used for the engine's `synth:<class>` demo source (through `SynthStream`) and, by the trainer, as a
procedural corpus for tests and augmentation. It is not real speech or music: it reproduces the
direction and rough size of the acoustic cues listeners use, nothing more.

The cue directions come from the reviews of vocal and musical expression, Juslin & Laukka (2003,
Psychological Bulletin 129:770) and Scherer (2003, Speech Communication 40:227), and for music
Gabrielsson & Lindström (2010, in Juslin & Sloboda, Handbook of Music and Emotion):

- arousal raises loudness, syllable rate / tempo, pitch level and pitch range, spectral brightness
  (flatter source slope, more high harmonics), and sharpens attacks (staccato rather than legato);
- valence selects major vs minor modal degrees, consonance vs dissonance and roughness, rising vs
  falling pitch contours, and smooth vs harsh (jittery, period-doubled, detuned) timbre. Harshness is
  scaled by "tension" = negative valence x arousal, so anger is harsh and sadness mostly is not.

Every cue is a smooth function of (valence, arousal) (`Expression.from_va`), so continuous VA moves
the acoustics continuously. The numbers are approximate, chosen within the ranges the reviews report;
docs/synthetic_audio.md lists them. Randomness comes from two seeds: `voice` (the synthetic speaker or
player: base pitch, vocal-tract length, tempo habit, key, instrument) and `seed` (the utterance:
syllables, vowels, melody, rhythm). All random draws are made before the emotion is applied, so the
same seed at a slightly different VA gives a slightly different version of the same utterance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.emotions import emotion_va

Kind = Literal["speech", "music"]
KINDS: tuple[Kind, ...] = ("speech", "music")

_REF_RMS_DB = -26.0  # active-signal RMS of a neutral clip; +8 dB at full arousal still leaves headroom
_NOISE_FLOOR_DB = -70.0  # constant pink room noise, so pauses are quiet but not digital silence
_LIMIT = 0.9  # soft limiter knee: peaks above it are compressed towards (never beyond) 1.0


def resolve_va(
    emotion: str | tuple[float, float] | None = None,
    valence: float | None = None,
    arousal: float | None = None,
) -> tuple[float, float]:
    """An emotion name or alias, a (valence, arousal) pair, or both keywords -> (valence, arousal).

    Raises ValueError for an unknown name, a missing or doubled specification, or values outside [-1, 1].
    """
    if emotion is not None and (valence is not None or arousal is not None):
        raise ValueError("give either an emotion or valence and arousal, not both")
    if isinstance(emotion, str):
        return emotion_va(emotion)
    if emotion is not None:
        valence, arousal = emotion
    if valence is None or arousal is None:
        raise ValueError("give an emotion, or both valence and arousal")
    v, a = float(valence), float(arousal)
    for key, value in (("valence", v), ("arousal", a)):
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise ValueError(f"{key} must be in [-1, 1], got {value}")
    return v, a


@dataclass(frozen=True)
class Expression:
    """The acoustic correlates for one (valence, arousal) point; every field varies smoothly with both."""

    valence: float
    arousal: float
    level_db: float  # gain re neutral (loudness)
    pitch_shift_st: float  # F0 level / register re the voice's own, in semitones
    pitch_range_st: float  # size of pitch accents; melodic spread scales with it
    rate: float  # multiplier on syllable rate and tempo
    tilt_db_oct: float  # spectral slope of the source; less negative = brighter
    attack_s: float  # onset time of syllables and notes
    contour_st: float  # pitch drift across a phrase: > 0 rising, < 0 falling
    tension: float  # negative valence x arousal in [0, 1]: jitter, roughness, dissonance
    breathiness: float  # aspiration noise relative to the voiced source
    jitter: float  # relative cycle-to-cycle F0 perturbation
    legato: float  # sounding share of each syllable / note slot (1 = legato, 0.5 = staccato)
    pause_s: float  # mean pause between phrases
    major: float  # weight of the major modal degrees (3rd, 6th, 7th) in [0, 1]
    minor: float  # weight of the minor modal degrees

    @classmethod
    def from_va(cls, valence: float, arousal: float) -> Expression:
        v = min(max(float(valence), -1.0), 1.0)
        a = min(max(float(arousal), -1.0), 1.0)
        up = (a + 1.0) / 2.0  # arousal on [0, 1]
        tension = max(0.0, -v) * up
        return cls(
            valence=v,
            arousal=a,
            # Intensity is the strongest arousal cue in both channels (J&L 2003, Tables 7 and 11).
            level_db=8.0 * a,
            # F0 up with arousal (anger, joy, fear) and down in sadness; a little up with valence.
            pitch_shift_st=4.0 * a + 0.8 * v,
            # F0 variability: largest for joy, smallest for sadness.
            pitch_range_st=3.0 * 2.0 ** (0.8 * a + 0.4 * v),
            # Speech rate / tempo: fast for anger and joy, slow for sadness (about x0.7 .. x1.4).
            rate=2.0 ** (0.5 * a),
            # High-frequency energy: more for aroused and for harsh (angry) voices (tense voice quality).
            tilt_db_oct=-8.0 + 3.5 * a + 4.0 * tension,
            # Attack: fast onsets for anger/joy, slow for sadness/tenderness (music: Gabrielsson & Lindström).
            attack_s=0.04 * 3.0 ** (-a),
            # Contour: rising with positive valence, falling (declination) with negative, slight arousal rise.
            contour_st=-2.0 + 3.0 * v + 1.0 * a,
            tension=tension,
            # Breathy / lax voice at low arousal (Gobl & Ní Chasaide 2003).
            breathiness=0.04 + 0.10 * (1.0 - up),
            # Micro-irregularity (jitter) is reported for negative, aroused states.
            jitter=0.004 + 0.02 * tension,
            legato=0.9 - 0.3 * up,
            pause_s=0.35 * 2.0 ** (-a),
            # Mode: the modal degrees fade in with |valence|; near neutral they are replaced by
            # modally ambiguous neighbours (sus4, fifth, octave), so mode moves continuously.
            major=min(max(0.0, v / 0.4), 1.0),
            minor=min(max(0.0, -v / 0.4), 1.0),
        )


@dataclass(frozen=True)
class _Voice:
    """Who is speaking / playing: everything that differs between synthetic speakers, not emotions."""

    f0_hz: float
    formant_scale: float
    tempo: float
    tilt_offset_db: float
    breath: float
    level_db: float
    tonic_midi: int
    even_weight: float
    detune_hz: float
    vibrato_st: float

    @classmethod
    def from_id(cls, voice: int) -> _Voice:
        rng = np.random.default_rng(np.random.SeedSequence([int(voice) & 0xFFFFFFFF, 0x70C1]))
        female = bool(rng.random() < 0.5)
        return cls(
            # Typical adult speaking F0 ranges; female vocal tracts are ~15-20 % shorter (Peterson & Barney).
            f0_hz=float(rng.uniform(175.0, 235.0) if female else rng.uniform(95.0, 135.0)),
            formant_scale=float(rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.05)),
            tempo=float(rng.uniform(0.88, 1.12)),
            tilt_offset_db=float(rng.uniform(-1.5, 1.5)),
            breath=float(rng.uniform(0.7, 1.3)),
            level_db=float(rng.uniform(-1.5, 1.5)),
            tonic_midi=int(rng.integers(55, 67)),
            even_weight=float(rng.uniform(0.4, 1.0)),
            detune_hz=float(rng.uniform(22.0, 36.0)),  # beat rates in the roughness region (Zwicker & Fastl)
            vibrato_st=float(rng.uniform(0.05, 0.2)),
        )


def synthesize(
    emotion: str | None = None,
    *,
    valence: float | None = None,
    arousal: float | None = None,
    kind: Kind = "speech",
    duration_s: float = 3.0,
    sample_rate: int = 22050,
    seed: int = 0,
    voice: int | None = None,
) -> np.ndarray:
    """One clip, float32 mono, peak <= 1, identical for identical arguments.

    Give `emotion` (a key of `engine.emotions.CIRCUMPLEX`) or both `valence` and `arousal` in [-1, 1]. `seed` picks the
    utterance; `voice` picks the synthetic speaker/player and defaults to `seed`.
    """
    v, a = resolve_va(emotion, valence, arousal)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000, got {sample_rate}")
    n = max(1, round(duration_s * sample_rate))
    expr = Expression.from_va(v, a)
    who = _Voice.from_id(seed if voice is None else voice)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED, KINDS.index(kind)]))
    if kind == "speech":
        x, active = _speech(expr, who, n, sample_rate, rng)
    else:
        x, active = _music(expr, who, n, sample_rate, rng)
    return _master(x, active, expr.level_db + who.level_db, rng)


def _master(x: np.ndarray, active: np.ndarray, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Set the level from the active samples, add the noise floor, soft-limit; -> float32."""
    # Level is set on the active part so loudness follows the emotion, not how many pauses a clip has.
    ref = x[active] if active.any() else x
    rms = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2))) if ref.size else 0.0
    if rms > 0:
        x = x * (10.0 ** ((_REF_RMS_DB + level_db) / 20.0) / rms)
    x = x + _pink_noise(x.size, rng) * 10.0 ** (_NOISE_FLOOR_DB / 20.0)
    # Soft limiter: identity below the knee, tanh above it, so the peak stays below 1 without clipping.
    mag = np.abs(x)
    over = mag > _LIMIT
    if over.any():
        x[over] = np.sign(x[over]) * (_LIMIT + (1.0 - _LIMIT) * np.tanh((mag[over] - _LIMIT) / (1.0 - _LIMIT)))
    return x.astype(np.float32)


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise falling 3 dB/octave, like room noise (white noise would brighten quiet clips)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    spec /= np.sqrt(np.maximum(f, 1.0))
    y = np.fft.irfft(spec, n=n)
    return y / max(float(np.sqrt(np.mean(y**2))), 1e-12)


# -- speech ---------------------------------------------------------------------------------------

# Vowel formants F1-F3 (Hz), adult male averages after Peterson & Barney (1952), rounded; F4, F5 generic.
_VOWELS = np.array(
    [
        [270.0, 2290.0, 3010.0, 3400.0, 3900.0],  # i
        [530.0, 1840.0, 2480.0, 3400.0, 3900.0],  # ɛ
        [730.0, 1090.0, 2440.0, 3300.0, 3850.0],  # a
        [570.0, 840.0, 2410.0, 3300.0, 3850.0],  # ɔ
        [300.0, 870.0, 2240.0, 3300.0, 3850.0],  # u
    ]
)
_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 220.0])
_FORMANT_GAINS = np.array([1.0, 0.7, 0.45, 0.3, 0.25])
_HOP = 128  # formant-filter hop, also the control-rate step
_FRAME = 512  # analysis frame (23 ms at 22050 Hz)
_NFFT = 1024
_RESPONSE_EVERY = 2  # frames per vocal-tract response update


def _speech(expr: Expression, who: _Voice, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    duration = n / sr
    syl_rate = 4.5 * who.tempo * expr.rate  # syllables/s; ~4-5 /s is typical read speech
    # All random draws first, with sizes independent of the emotion (see module docstring).
    m = int(duration * 10) + 16
    syl_mult = rng.uniform(0.7, 1.3, m)
    phrase_len = rng.integers(3, 8, m)
    pause_mult = rng.uniform(0.6, 1.4, m)
    vowel = rng.integers(0, len(_VOWELS), m)
    accent_u = rng.random(m)
    cons_u = rng.random(m)
    lead = float(rng.uniform(0.02, 0.2))
    n_ctl = n // _HOP + 2
    micro = rng.standard_normal(int(duration * 4) + 3)
    jitter_noise = rng.standard_normal(n_ctl)
    shimmer_noise = rng.standard_normal(n_ctl)
    white = rng.standard_normal((2, n))

    # Timeline: phrases of 3-7 syllables separated by pauses.
    starts, durs, phrases = [], [], []  # phrases: (t_start, t_end)
    t, i, p = lead, 0, 0
    while t < duration and i < m:
        p_start = t
        for _ in range(int(phrase_len[p])):
            if t >= duration or i >= m:
                break
            d = float(syl_mult[i]) / syl_rate
            starts.append(t)
            durs.append(d)
            t += d
            i += 1
        phrases.append((p_start, t))
        t += expr.pause_s * float(pause_mult[p])
        p += 1
    n_syl = len(starts)

    t_ctl = np.arange(n_ctl) * (_HOP / sr)
    # F0 in semitones re the voice: register shift, phrase contour, pitch accents, slow micro-intonation.
    st = np.full(n_ctl, expr.pitch_shift_st)
    for k, (p0, p1) in enumerate(phrases):
        p_end = phrases[k + 1][0] if k + 1 < len(phrases) else duration + 1.0
        sel = (t_ctl >= p0) & (t_ctl < p_end)
        st[sel] += expr.contour_st * (np.clip((t_ctl[sel] - p0) / max(p1 - p0, 1e-3), 0.0, 1.0) - 0.5)
    for j in range(n_syl):
        height = expr.pitch_range_st * max(0.0, (float(accent_u[j]) - 0.5) / 0.5)
        if height > 0:
            centre = starts[j] + 0.5 * durs[j]
            st += height * np.exp(-0.5 * ((t_ctl - centre) / (0.35 * durs[j])) ** 2)
    st += 0.3 * np.interp(t_ctl, np.linspace(0.0, duration, micro.size), micro)
    f0_ctl = who.f0_hz * 2.0 ** (st / 12.0) * (1.0 + expr.jitter * jitter_noise)
    t_smp = np.arange(n) / sr
    f0 = np.interp(t_smp, t_ctl, f0_ctl)
    phase = 2.0 * np.pi * np.cumsum(f0) / sr

    # Voiced source: band-limited pulse train (closed-form sum of equal cosines up to ~0.45 sr); the
    # spectral slope is applied in the filter below. Harsh voices add period doubling (subharmonics).
    k_max = np.floor(0.45 * sr / f0)
    theta = np.mod(phase, 2.0 * np.pi)
    s_half = np.sin(theta / 2.0)
    small = np.abs(s_half) < 1e-6
    pulses = np.where(small, k_max, (np.sin((k_max + 0.5) * theta) - s_half) / (2.0 * np.where(small, 1.0, s_half)))
    pulses /= np.sqrt(k_max)
    doubling = 0.6 * expr.tension
    shimmer = 1.0 + (0.03 + 0.1 * expr.tension) * np.interp(t_smp, t_ctl, shimmer_noise)
    voiced = pulses * shimmer * (1.0 - doubling / 2.0 + (doubling / 2.0) * np.cos(phase / 2.0))
    # Aspiration noise, pulsed with the glottal cycle as in breathy phonation.
    aspiration = white[0] * (0.6 + 0.4 * np.cos(theta)) * (expr.breathiness * who.breath * 1.5)
    source = voiced + aspiration

    # Time-varying formants: vowel targets at syllable centres, linear coarticulation in between.
    centres = np.array([s + 0.5 * d for s, d in zip(starts, durs, strict=True)]) if n_syl else np.array([0.0])
    targets = _VOWELS[vowel[: max(n_syl, 1)]] * who.formant_scale
    # F1 rises with vocal effort (wider jaw opening); smiling raises F2/F3 (Tartter 1980).
    targets = targets * np.array([1.0 + 0.1 * expr.arousal, *(2 * [1.0 + 0.04 * max(expr.valence, 0.0)]), 1.0, 1.0])
    filtered = _formant_filter(source, centres, targets, expr.tilt_db_oct + who.tilt_offset_db, sr)

    # Syllable envelopes: consonant (frication) onset, then the voiced nucleus with the expression's attack.
    nucleus = np.zeros(n)
    frication = np.zeros(n)
    for j in range(n_syl):
        cons = 0.25 * durs[j] * float(cons_u[j])
        v0 = round((starts[j] + cons) * sr)
        v1 = min(n, round((starts[j] + durs[j] * expr.legato) * sr))
        if v1 - v0 > 4:
            gain = 10.0 ** ((2.0 + 2.0 * (expr.arousal + 1.0)) * max(0.0, float(accent_u[j]) - 0.5) / 20.0)
            nucleus[v0:v1] = gain * _envelope(v1 - v0, expr.attack_s * sr, 0.3 * (v1 - v0))
        c0, c1 = round(starts[j] * sr), min(n, v0)
        if cons_u[j] > 0.35 and c1 - c0 > 4:  # roughly two thirds of syllables start with a fricative
            frication[c0:c1] = _envelope(c1 - c0, 0.005 * sr, 0.5 * (c1 - c0))
    # Fricative noise: white noise with +6 dB/oct (first difference) emphasis, about 16 dB below the
    # vowels (stronger with vocal effort); both parts are at unit RMS before mixing.
    hiss = np.diff(white[1], prepend=0.0) / math.sqrt(2.0) * (0.16 * (1.0 + 0.5 * expr.arousal))
    filtered /= max(float(np.sqrt(np.mean(filtered**2))), 1e-12)
    x = filtered * nucleus + hiss * frication
    return x, (nucleus > 0.1) | (frication > 0.1)


def _envelope(length: int, attack: float, release: float) -> np.ndarray:
    """Raised-cosine attack and release around a slowly decaying sustain; `length` samples."""
    t = np.arange(length, dtype=np.float64)
    att = max(1.0, min(attack, 0.45 * length))
    rel = max(1.0, min(release, 0.5 * length))
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / att, 0.0, 1.0))
    fall = 0.5 - 0.5 * np.cos(np.pi * np.clip((length - t) / rel, 0.0, 1.0))
    return rise * fall * (1.0 - 0.25 * t / length)


def _formant_filter(
    source: np.ndarray, centres: np.ndarray, targets: np.ndarray, tilt_db_oct: float, sr: int
) -> np.ndarray:
    """Time-varying vocal-tract filter by overlap-add: spectral slope x parallel formant resonances per frame.

    Each frame's magnitude response is made minimum phase (folded real cepstrum), as an all-pole vocal
    tract is, so every glottal pulse rings out as decaying formants instead of staying a symmetric spike
    (a zero-phase filter would leave speech with an unnaturally high crest factor).
    """
    n = source.size
    win = np.hanning(_FRAME + 1)[:-1]  # periodic Hann; at hop = frame/4 the windows sum to 2
    pad = np.concatenate([np.zeros(_FRAME), source, np.zeros(_FRAME)])
    frames = np.lib.stride_tricks.sliding_window_view(pad, _FRAME)[::_HOP] * win
    spec = np.fft.rfft(frames, n=_NFFT, axis=1)  # zero-padded: room for the filter's ringing
    f = np.fft.rfftfreq(_NFFT, 1.0 / sr)
    # The response is computed for every other frame (11.6 ms apart) and held: formants move far more
    # slowly, the 75 % frame overlap smooths the steps, and it halves the dominant cost.
    t_frames = (np.arange(0, spec.shape[0], _RESPONSE_EVERY) * _HOP + _FRAME / 2 - _FRAME) / sr
    formants = np.stack([np.interp(t_frames, centres, targets[:, i]) for i in range(targets.shape[1])], axis=1)
    # Parallel resonances (Lorentzian magnitude), a low "glottal formant" so F0 keeps its energy, a floor.
    env = np.broadcast_to(0.3 / (1.0 + (f / 200.0) ** 2) + 0.02, (t_frames.size, f.size)).copy()
    for i in range(formants.shape[1]):  # in place, one formant at a time: the [frames, bins] work dominates
        term = (f[None, :] - formants[:, i : i + 1]) * (2.0 / _BANDWIDTHS[i])
        term *= term
        term += 1.0
        np.divide(_FORMANT_GAINS[i], term, out=term)
        env += term
    # The source slope starts above the glottal-formant region (~300 Hz).
    env *= (np.maximum(f, 300.0) / 300.0) ** (tilt_db_oct / 6.0206)
    cep = np.fft.irfft(np.log(env), n=_NFFT, axis=1)
    fold = np.zeros(_NFFT)
    fold[0], fold[1 : _NFFT // 2], fold[_NFFT // 2] = 1.0, 2.0, 1.0
    response = np.repeat(np.exp(np.fft.rfft(cep * fold, n=_NFFT, axis=1)), _RESPONSE_EVERY, axis=0)[: spec.shape[0]]
    out_frames = np.fft.irfft(spec * response, n=_NFFT, axis=1)
    # Overlap-add in hop-sized blocks (the frame length is a multiple of the hop).
    n_frames, per = out_frames.shape[0], _NFFT // _HOP
    blocks = out_frames.reshape(n_frames, per, _HOP)
    out = np.zeros((n_frames + per, _HOP))
    for j in range(per):
        out[j : j + n_frames] += blocks[:, j]
    return out.ravel()[_FRAME : _FRAME + n] / 2.0


# -- music ----------------------------------------------------------------------------------------

# Semitones of scale degrees 0-6. Degrees 2, 5, 6 (3rd, 6th, 7th) are modal: (major, minor, ambiguous).
_FIXED_DEGREES = {0: 0.0, 1: 2.0, 3: 5.0, 4: 7.0}
_MODAL_DEGREES = {2: (4.0, 3.0, 5.0), 5: (9.0, 8.0, 7.0), 6: (11.0, 10.0, 12.0)}
# Chord roots per bar (scale degrees): the primary triads I, IV, V only, starting on the tonic, so even a
# clip of one or two bars establishes its key (a vi chord would make it ambiguous with the relative key).
_PROGRESSIONS = ((0, 3, 4, 0), (0, 4, 3, 0), (0, 3, 0, 4), (0, 4, 0, 3))


def _degree_pitches(degree: int, expr: Expression) -> list[tuple[float, float]]:
    """Scale degree (any octave) -> [(semitones re tonic, weight)] with the modal weighting."""
    octave, d = divmod(degree, 7)
    base = 12.0 * octave
    if d in _FIXED_DEGREES:
        return [(base + _FIXED_DEGREES[d], 1.0)]
    maj, mnr, amb = _MODAL_DEGREES[d]
    weights = (expr.major, expr.minor, 1.0 - expr.major - expr.minor)
    return [(base + s, w) for s, w in zip((maj, mnr, amb), weights, strict=True) if w > 1e-3]


def _nearest_chord_tone(pos: float, root: int) -> int:
    """The scale degree nearest `pos` that belongs to the triad on `root` (root, third or fifth)."""
    lo = math.floor(pos) - 3
    candidates = [d for d in range(lo, lo + 8) if (d - root) % 7 in (0, 2, 4)]
    return min(candidates, key=lambda d: abs(d - pos))


def _music(expr: Expression, who: _Voice, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    duration = n / sr
    beat = 60.0 / (100.0 * who.tempo * expr.rate)
    bar = 4.0 * beat
    max_bars = int(duration / (4.0 * 60.0 / 160.0)) + 2
    m = 8 * max_bars
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    steps = rng.standard_normal(m)
    subdivide_u = rng.random(m)
    rest_u = rng.random(m)
    velocity = rng.uniform(0.8, 1.0, m)
    phrase_start = rng.normal(4.0, 1.0, max_bars)

    tonic = who.tonic_midi + expr.pitch_shift_st
    up = (expr.arousal + 1.0) / 2.0
    # Brightness: harmonic amplitudes k^(slope/6 dB), the same slope parameter as the voice's source.
    slope = expr.tilt_db_oct + who.tilt_offset_db
    rough = 0.8 * expr.tension
    x = np.zeros(n)

    def play(midi: float, t0: float, dur: float, amp: float, n_harm: int) -> None:
        i0 = round(t0 * sr)
        if i0 >= n or amp <= 0:
            return
        release = (0.05 + 0.15 * (1.0 - up)) * sr
        length = min(n - i0, round(dur * sr + release))
        if length < 8:
            return
        x[i0 : i0 + length] += amp * _tone(
            440.0 * 2.0 ** ((midi - 69.0) / 12.0), length, sr, slope, n_harm, who, rough, expr.attack_s * sr, release
        )

    n_bars = min(max_bars, int(duration / bar) + 1)
    slot, pos = 0, float(phrase_start[0])
    for b in range(n_bars):
        t_bar = b * bar
        root = progression[b % len(progression)]
        # Chord: root, third, fifth around the tonic; bass an octave below; held for the bar.
        chord_len = bar * max(expr.legato, 0.75)
        for deg, amp, octave in ((root, 0.5, -12.0), (root, 0.3, 0.0), (root + 2, 0.3, 0.0), (root + 4, 0.3, 0.0)):
            for semis, w in _degree_pitches(deg, expr):
                play(tonic + octave + semis, t_bar, chord_len, amp * w, 6)
        # Dissonance: minor second and tritone against the chord root, growing with tension.
        root_semis = _degree_pitches(root, expr)[0][0]
        for interval in (1.0, 6.0):
            play(tonic + root_semis + interval, t_bar, chord_len, 0.3 * expr.tension, 6)
        # Melody: a walk over scale degrees one octave up, restarting each two-bar phrase and drifting up
        # for positive valence, down for negative; steps widen with pitch range; eighths with arousal.
        if b % 2 == 0:
            pos = float(phrase_start[b])
        spread = expr.pitch_range_st / 3.0
        for q in range(4):
            halves = 2 if subdivide_u[slot] < 0.15 + 0.6 * up else 1
            for h in range(halves):
                i = slot % m
                slot += 1
                pos = float(np.clip(pos + 0.3 * expr.valence + spread * 0.8 * steps[i], -3.0, 11.0))
                if rest_u[i] < 0.08 + 0.1 * (1.0 - up):
                    continue
                dur = beat / halves
                degree = round(pos)
                if h == 0 and q % 2 == 0:
                    degree = _nearest_chord_tone(pos, root)  # strong beats land on the harmony
                accent = 10.0 ** ((1.0 + 2.0 * up) * (q == 0 and h == 0) / 20.0)
                amp = 0.6 * accent * velocity[i]
                for semis, w in _degree_pitches(degree, expr):
                    play(tonic + 12.0 + semis, t_bar + q * beat + h * dur, dur * expr.legato, amp * w, 12)
    return x, np.ones(n, dtype=bool)


def _tone(
    freq: float,
    length: int,
    sr: int,
    slope_db_oct: float,
    n_harm: int,
    who: _Voice,
    rough: float,
    attack: float,
    release: float,
) -> np.ndarray:
    """One note: harmonic partials with the given slope, vibrato, optional detuned twin (roughness), ADSR."""
    t = np.arange(length) / sr
    k_count = max(1, min(n_harm, int(0.45 * sr / freq)))
    k = np.arange(1, k_count + 1, dtype=np.float64)
    amps = k ** (slope_db_oct / 6.0206) * np.where(k % 2 == 0, who.even_weight, 1.0)
    inst = freq * 2.0 ** (who.vibrato_st * np.sin(2.0 * np.pi * 5.5 * t) / 12.0)
    phase = 2.0 * np.pi * np.cumsum(inst) / sr
    # sin(k*phase) and cos(k*phase) by the Chebyshev recurrence: no per-harmonic transcendental calls.
    s_prev, s_cur = np.zeros(length), np.sin(phase)
    c_prev, c_cur = np.ones(length), np.cos(phase)
    two_cos = 2.0 * c_cur
    sin_sum, cos_sum = np.zeros(length), np.zeros(length)
    for amp in amps:
        sin_sum += amp * s_cur
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
        if rough > 0:  # the cosine series is only needed for the detuned twin
            cos_sum += amp * c_cur
            c_prev, c_cur = c_cur, two_cos * c_cur - c_prev
    y = sin_sum
    if rough > 0:
        # Twin partials offset by a constant few tens of Hz beat against each partial: sensory roughness.
        psi = 2.0 * np.pi * who.detune_hz * t
        y = y + rough * (np.cos(psi) * sin_sum + np.sin(psi) * cos_sum)
    sustain_end = max(1, length - round(release))
    env = 0.5 - 0.5 * np.cos(np.pi * np.clip(np.arange(length) / max(attack, 1.0), 0.0, 1.0))
    env *= 0.65 + 0.35 * np.exp(-t / 0.3)  # decay towards a sustain level
    tail = np.arange(length) - sustain_end
    env *= np.where(tail > 0, 0.5 + 0.5 * np.cos(np.pi * np.clip(tail / max(release, 1.0), 0.0, 1.0)), 1.0)
    return y * env / math.sqrt(float(np.sum(amps**2)))


# -- streaming ------------------------------------------------------------------------------------


class SynthStream:
    """Endless procedural audio for the live demo source: `read(n)` returns the next n samples.

    Consecutive segments (new utterances by the same voice) are overlapped with an equal-power
    crossfade, so there is no click at any boundary; the output does not depend on how reads are sized.
    `set_target` glides valence/arousal towards a new emotion over about `glide_s`, segment by segment.
    Single-threaded: call from one thread (synthesis of a segment takes a few tens of milliseconds).
    """

    def __init__(
        self,
        emotion_or_va: str | tuple[float, float] = "neutral",
        kind: Kind = "speech",
        sample_rate: int = 22050,
        seed: int = 0,
        *,
        segment_s: float = 2.0,
        crossfade_s: float = 0.25,
        glide_s: float = 2.0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 0 < crossfade_s < segment_s:
            raise ValueError("need 0 < crossfade_s < segment_s")
        self.kind: Kind = kind
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        self.segment_s = float(segment_s)
        self.glide_s = max(0.0, float(glide_s))
        self._initial = resolve_va(emotion_or_va)
        self._seg = round(segment_s * self.sample_rate)
        self._xf = round(crossfade_s * self.sample_rate)
        ramp = (np.arange(self._xf) + 0.5) / self._xf
        self._fade_in = np.sin(0.5 * np.pi * ramp)
        self._fade_out = np.cos(0.5 * np.pi * ramp)
        self.reset()

    @property
    def target(self) -> tuple[float, float]:
        """The (valence, arousal) the stream is gliding towards."""
        return self._target

    @property
    def current(self) -> tuple[float, float]:
        """The (valence, arousal) of the most recently synthesised segment."""
        return self._current

    def reset(self) -> None:
        """Back to the start: same emotion, same first segment as after construction."""
        self._target = self._current = self._initial
        self._index = 0
        self._tail = np.zeros(self._xf)  # fade in from silence on the first segment
        self._buf = np.zeros(0, dtype=np.float32)
        self._pos = 0

    def set_target(self, emotion_or_va: str | tuple[float, float]) -> None:
        """Glide towards a new emotion name or (valence, arousal); takes effect from the next segment."""
        self._target = resolve_va(emotion_or_va)

    def read(self, n: int) -> np.ndarray:
        """The next `n` samples, float32, continuous with the previous read."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        parts = []
        need = n
        while need > 0:
            if self._pos >= self._buf.size:
                self._buf, self._pos = self._next_segment(), 0
            take = min(need, self._buf.size - self._pos)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def _next_segment(self) -> np.ndarray:
        if self._index > 0:
            # Exponential approach to the target, evaluated once per segment.
            keep = math.exp(-self.segment_s / self.glide_s) if self.glide_s > 0 else 0.0
            (cv, ca), (tv, ta) = self._current, self._target
            self._current = (tv + (cv - tv) * keep, ta + (ca - ta) * keep)
        v, a = self._current
        seg_seed = int(np.random.SeedSequence([self.seed & 0xFFFFFFFF, self._index]).generate_state(1)[0])
        clip = synthesize(
            valence=v,
            arousal=a,
            kind=self.kind,
            duration_s=(self._seg + self._xf) / self.sample_rate,
            sample_rate=self.sample_rate,
            seed=seg_seed,
            voice=self.seed,
        ).astype(np.float64)
        clip = clip[: self._seg + self._xf]
        out = clip[: self._seg].copy()
        out[: self._xf] = self._tail * self._fade_out + clip[: self._xf] * self._fade_in
        self._tail = clip[self._seg :]
        self._index += 1
        return out.astype(np.float32)


TOUR: tuple[str, ...] = ("angry", "happy", "sad", "neutral")


class SynthTour:
    """The demo: each emotion of `emotions` in turn for `leg_s` seconds, looping (`synth:tour`).

    What a newcomer without a microphone sees: the show moving through every emotion once a minute, so
    each can be seen as itself. `read(n)` splits reads at leg boundaries and retargets the stream there
    (the voice changes at its next segment, within `SynthStream.segment_s`); `emotion_at(sample)` says
    which emotion a sample belongs to.
    """

    def __init__(
        self,
        emotions: tuple[str, ...] = TOUR,
        leg_s: float = 15.0,
        kind: Kind = "speech",
        sample_rate: int = 22050,
        seed: int = 0,
    ) -> None:
        if not emotions:
            raise ValueError("a tour needs at least one emotion")
        if not leg_s > 0:
            raise ValueError(f"leg_s must be > 0, got {leg_s}")
        for name in emotions:
            resolve_va(name)  # an unknown name fails here, not at its leg
        self.emotions = tuple(emotions)
        self.sample_rate = int(sample_rate)
        self._leg = max(1, round(leg_s * self.sample_rate))
        self.stream = SynthStream(self.emotions[0], kind=kind, sample_rate=sample_rate, seed=seed, glide_s=0.5)
        self._pos = 0

    @property
    def leg_samples(self) -> int:
        return self._leg

    def emotion_at(self, sample: int) -> str:
        return self.emotions[(int(sample) // self._leg) % len(self.emotions)]

    @property
    def emotion(self) -> str:
        """The emotion of the next sample to be read."""
        return self.emotion_at(self._pos)

    def reset(self) -> None:
        self.stream.reset()
        self._pos = 0

    def read(self, n: int) -> np.ndarray:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        parts = []
        while n > 0:
            into_leg = self._pos % self._leg
            if into_leg == 0 and self._pos > 0:
                self.stream.set_target(self.emotion_at(self._pos))
            take = min(n, self._leg - into_leg)
            parts.append(self.stream.read(take))
            self._pos += take
            n -= take
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
