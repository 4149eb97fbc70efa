"""Fold figures from a fold run's out-of-fold predictions (`OUT/oof.npz` of `synesthesia-train audio --folds`).

    python -m trainer.audio.oof_report runs/default/cv/oof.npz [--json]

`audio --folds` writes `oof.npz` (every clip's prediction at the chosen epoch, by its held-out fold) before
its refit, and `metrics.json` after it. This recomputes the same per-fold scores (`folds.fold_scores`) and
their mean ± sd (`folds.mean_sd`) from the file alone: for a run whose refit is still going or was stopped,
or for analyses without retraining. Corpus and source emotion come from each clip's file name.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.audio import reports
from trainer.audio.corpora import identify_clip
from trainer.audio.folds import flat_scores, fold_scores, mean_sd


@dataclass
class HeldOut:
    """What `fold_scores` reads of a clip bank: labels, VA targets, ids and corpora of one fold's clips."""

    labels: np.ndarray
    va: np.ndarray
    has_va: np.ndarray
    ids: list[str]
    corpora: list[str]


def oof_report(path: Path) -> dict[str, Any]:
    data = np.load(path)
    classes = [str(c) for c in data["classes"]]
    ids = [str(i) for i in data["ids"]]
    corpora = []
    for clip in ids:
        found = identify_clip(Path(clip).stem) if clip else None
        corpora.append(found[0] if found else "other")
    corpora_arr = np.array(corpora)
    va_target = data["va_target"]
    folds = []
    rows = []
    for k in sorted(set(data["fold"].tolist())):
        sel = data["fold"] == k
        bank = HeldOut(
            labels=data["label"][sel],
            va=np.nan_to_num(va_target[sel]),
            has_va=np.isfinite(va_target[sel]).all(axis=1),
            ids=[i for i, s in zip(ids, sel, strict=True) if s],
            corpora=corpora_arr[sel].tolist(),
        )
        scores = fold_scores(bank, {"logits": data["logits"][sel], "va": data["va"][sel]}, classes)
        folds.append({"fold": int(k), "n": int(sel.sum()), "corpora": sorted(set(bank.corpora)), "scores": scores})
        row = flat_scores(scores)
        for corpus, m in scores["per_corpus"].items():
            row[f"{corpus}/accuracy"] = m["accuracy"]
            row[f"{corpus}/macro_f1"] = m["macro_f1"]
        rows.append(row)
    pooled = reports.classification_metrics(data["label"], data["logits"].argmax(1), classes)
    pooled["arousal_by_emotion"] = reports.arousal_by_emotion(ids, data["va"][:, 1])
    return {
        "source": str(path), "classes": classes, "k": len(folds), "mean_sd": mean_sd(rows), "folds": folds,
        "pooled": pooled,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.audio.oof_report", description=__doc__.splitlines()[0])
    parser.add_argument("oof", type=Path, help="a fold run's oof.npz")
    parser.add_argument("--json", action="store_true", help="the whole report as JSON")
    args = parser.parse_args(argv)
    report = oof_report(args.oof)
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return 0
    for key, v in report["mean_sd"].items():
        print(f"{key:28s} {v['mean']:.3f} ± {v['sd']:.3f}  (n {v['n']})")
    print(f"pooled confusion (rows: truth {', '.join(report['classes'])}):", report["pooled"]["confusion"])
    print("arousal by source emotion:", json.dumps(report["pooled"]["arousal_by_emotion"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
