"""`synesthesia analyze`: sliding windows over files, one JSON line per window and a summary per file.

Non-finite samples (NaN/inf, possible in float files) are replaced by 0 as the live front end does, and
reported: per window and per file (`nonfinite_samples`), and one line per file on stderr.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from engine.analysis.predict import Prediction, WindowPredictor
from engine.audio.frontend import window_starts
from engine.audio.loading import load_audio_sanitised
from engine.errors import AudioLoadError

BATCH = 16
MIN_HOP_S = 0.05  # below this a file takes minutes for nothing: windows 50 ms apart already overlap by 98 %
MAX_HOP_S = 3600.0


def _record(file: str, t: float, classes: Sequence[str], pred: Prediction, i: int, nonfinite: int) -> dict[str, Any]:
    silent = bool(pred.silent[i])
    probs = pred.probs[i]
    return {
        "file": file,
        "t": round(t, 3),
        "label": None if silent else classes[int(np.argmax(probs))],
        "probs": {c: round(float(p), 6) for c, p in zip(classes, probs, strict=True)},
        "valence": round(float(pred.va[i, 0]), 6),
        "arousal": round(float(pred.va[i, 1]), 6),
        "silent": silent,
        "nonfinite_samples": nonfinite,
    }


def analyze_file(predictor: WindowPredictor, path: str | Path, hop_s: float = 0.5) -> Iterator[dict[str, Any]]:
    """Yield one record per window, then the file's summary (`"summary": true`).

    The summary averages probabilities and valence/arousal over the non-silent windows; a file that is
    silent throughout gets `silent: true`, `label: null` and the average over all windows. NaN/inf
    samples are analysed as 0; each record counts those in its window (`nonfinite_samples`), the summary
    those in the file and the windows that held any (`nonfinite_windows`).
    """
    if not (math.isfinite(hop_s) and MIN_HOP_S <= hop_s <= MAX_HOP_S):
        raise ValueError(f"hop must be {MIN_HOP_S}..{MAX_HOP_S} s, got {hop_s}")
    cfg = predictor.frontend.config
    audio, bad_at = load_audio_sanitised(path, cfg.sample_rate)
    window, hop = cfg.n_samples, round(hop_s * cfg.sample_rate)
    starts = window_starts(len(audio), window, hop)
    ends = np.asarray(starts) + window
    per_window = np.searchsorted(bad_at, ends) - np.searchsorted(bad_at, starts)
    name = str(path)
    probs, va, silent = [], [], []
    for b in range(0, len(starts), BATCH):
        chunk = starts[b : b + BATCH]
        if len(audio) < window:
            batch = audio[None, :]  # the front end pads
        else:
            batch = np.lib.stride_tricks.sliding_window_view(audio, window)[chunk]  # [b, window] (a view)
        pred = predictor(batch)
        for i, start in enumerate(chunk):
            yield _record(name, start / cfg.sample_rate, predictor.classes, pred, i, int(per_window[b + i]))
        probs.append(pred.probs)
        va.append(pred.va)
        silent.append(pred.silent)
    p, v, s = np.concatenate(probs), np.concatenate(va), np.concatenate(silent)
    keep = ~s if (~s).any() else np.ones_like(s)
    mean_p = p[keep].mean(axis=0)
    mean_p /= mean_p.sum()
    all_silent = bool(s.all())
    yield {
        "file": name,
        "summary": True,
        "windows": len(starts),
        "duration_s": round(len(audio) / cfg.sample_rate, 3),
        "label": None if all_silent else predictor.classes[int(np.argmax(mean_p))],
        "probs": {c: round(float(x), 6) for c, x in zip(predictor.classes, mean_p, strict=True)},
        "valence": round(float(v[keep, 0].mean()), 6),
        "arousal": round(float(v[keep, 1].mean()), 6),
        "silent": all_silent,
        "nonfinite_samples": len(bad_at),
        "nonfinite_windows": int((per_window > 0).sum()),
    }


def _human(rec: dict[str, Any]) -> str:
    label = rec["label"] or "(silent)"
    head = f"{rec['file']}  SUMMARY" if rec.get("summary") else f"{rec['file']}  t={rec['t']:7.2f}s"
    probs = " ".join(f"{k}={v:.2f}" for k, v in rec["probs"].items())
    return f"{head}  {label:<9} {probs}  valence={rec['valence']:+.2f} arousal={rec['arousal']:+.2f}"


def run_analyze(
    predictor: WindowPredictor, files: Sequence[str], hop_s: float, as_json: bool, out: TextIO = sys.stdout
) -> int:
    """Analyse every file; an unreadable file is reported on stderr and the rest still run. Exit 2 if any failed."""
    failed = 0
    for path in files:
        try:
            for rec in analyze_file(predictor, path, hop_s):
                out.write((json.dumps(rec) if as_json else _human(rec)) + "\n")
                if rec.get("summary") and rec["nonfinite_samples"]:
                    print(
                        f"synesthesia analyze: {path}: {rec['nonfinite_samples']} non-finite samples (NaN/inf) "
                        f"analysed as 0, in {rec['nonfinite_windows']} of {rec['windows']} windows",
                        file=sys.stderr,
                    )
        except AudioLoadError as exc:
            failed += 1
            print(f"synesthesia analyze: {exc}", file=sys.stderr)
        out.flush()
    return 2 if failed else 0
