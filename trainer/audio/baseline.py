"""`synesthesia-train baseline`: a handcrafted-feature SVM under the same fold protocol as the encoders.

The reference every encoder row is read against (issue 12: "no better than a handcrafted-feature SVM").
Features are functionals of the cached clean log-mel each encoder sees (`ClipBank.mels`, no new audio
pass): 20 MFCCs (DCT-II of the log-mel) and their frame-to-frame deltas, each as mean and standard
deviation over frames; per-band log-mel mean and standard deviation; frame log-energy mean, sd and
10/50/90th percentiles; spectral centroid and flux (mean, sd) on the mel axis. The classifier is
scikit-learn's RBF `SVC` on standardised features with its defaults (C = 1, gamma = "scale") and valence
/ arousal come from a ridge regression (alpha 1): nothing is tuned, so the fold means are not chosen on
the folds. `--balance speaker` (the recipe's) weights each training clip 1 / clips of its speaker.

Same pool, same folds (`trainer.audio.folds.make_folds`, same seed), same scoring (`fold_scores`,
`mean_sd`) as `synesthesia-train audio --folds`. Side effects: OUT/metrics.json and OUT/baseline.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainer.audio.config import Balance, json_safe
from trainer.audio.data import prepare_pool, sampling_weights
from trainer.audio.features import ClipBank
from trainer.audio.folds import flat_scores, fold_scores, make_folds, mean_sd

log = logging.getLogger("synesthesia.train.baseline")

N_MFCC = 20
SVC_PARAMS: dict[str, Any] = {"kernel": "rbf", "C": 1.0, "gamma": "scale"}
RIDGE_ALPHA = 1.0


def handcrafted_features(mels: np.ndarray, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Unscaled log-mel [N, M, T] -> functionals [N, 4 n_mfcc + 2 M + 9] (float32)."""
    from scipy.fft import dct

    x = np.asarray(mels, dtype=np.float32)
    mfcc = dct(x, type=2, axis=1, norm="ortho")[:, :n_mfcc]  # [N, n_mfcc, T]
    d_mfcc = np.diff(mfcc, axis=2)  # [N, n_mfcc, T-1]
    power = np.exp(x - x.max(axis=(1, 2), keepdims=True))  # [N, M, T], relative: the clip's level drops out
    energy = np.log(power.sum(axis=1) + 1e-8)  # [N, T]
    bins = np.arange(x.shape[1], dtype=np.float32)[None, :, None]
    centroid = (power * bins).sum(axis=1) / (power.sum(axis=1) + 1e-8)  # [N, T], in mel bins
    flux = np.sqrt((np.diff(x, axis=2).clip(min=0) ** 2).mean(axis=1))  # [N, T-1]
    parts = [
        mfcc.mean(2), mfcc.std(2), d_mfcc.mean(2), d_mfcc.std(2),
        x.mean(2), x.std(2),
        energy.mean(1, keepdims=True), energy.std(1, keepdims=True),
        np.percentile(energy, [10, 50, 90], axis=1).T,
        centroid.mean(1, keepdims=True), centroid.std(1, keepdims=True),
        flux.mean(1, keepdims=True), flux.std(1, keepdims=True),
    ]  # fmt: skip
    return np.concatenate(parts, axis=1).astype(np.float32)


def fit_predict(
    train: ClipBank, x_train: np.ndarray, x_test: np.ndarray, n_classes: int, balance: Balance
) -> dict[str, np.ndarray]:
    """Fit the SVM (classes) and ridge (VA) on `train` (features `x_train`), predict the clips of `x_test`:
    {"logits" one-hot [N, C], "va" [N, 2]}."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    weights = sampling_weights(train, balance)
    labelled = train.labels >= 0
    svm = make_pipeline(StandardScaler(), SVC(**SVC_PARAMS))
    fit_kw = {} if weights is None else {"svc__sample_weight": weights[labelled] * labelled.sum()}
    svm.fit(x_train[labelled], train.labels[labelled], **fit_kw)
    logits = np.zeros((len(x_test), n_classes), dtype=np.float32)
    logits[np.arange(len(x_test)), svm.predict(x_test)] = 1.0
    va = np.zeros((len(x_test), 2), dtype=np.float32)
    if train.has_va.any():
        ridge = make_pipeline(StandardScaler(), Ridge(alpha=RIDGE_ALPHA))
        ridge_kw = {} if weights is None else {"ridge__sample_weight": weights[train.has_va] * train.has_va.sum()}
        ridge.fit(x_train[train.has_va], train.va[train.has_va], **ridge_kw)
        va = ridge.predict(x_test).astype(np.float32)
    return {"logits": logits, "va": va}


def cross_validate_baseline(cfg, command: str | None = None) -> dict[str, Any]:
    """The SVM under the folds of `cfg.folds` (a TrainConfig); returns and writes the summary."""
    started = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data, extra = prepare_pool(cfg)
    folds, protocol = make_folds(data.train, cfg)
    x_pool, x_extra = handcrafted_features(data.train.mels), handcrafted_features(extra.mels)  # once, not per fold
    rows, folds_out = [], []
    for k, val_idx in enumerate(folds):
        held = np.zeros(len(data.train), dtype=bool)
        held[val_idx] = True
        train = ClipBank.concat([data.train.subset(np.flatnonzero(~held)), extra])
        val = data.train.subset(val_idx)
        x_train = np.concatenate([x_pool[~held], x_extra])
        pred = fit_predict(train, x_train, x_pool[val_idx], len(data.classes), cfg.balance)
        scores = fold_scores(val, pred, data.classes)
        rows.append(flat_scores(scores))
        folds_out.append({"fold": k + 1, "val_speakers": sorted(set(val.speakers)), "scores": scores})
        log.info(
            "fold %d/%d: %d train / %d val clips, accuracy %.3f, macro-F1 %.3f",
            k + 1, len(folds), len(train), len(val), scores["accuracy"], scores["macro_f1"],
        )  # fmt: skip
    metrics = {
        "model": "handcrafted log-mel functionals + RBF SVM (VA: ridge)",
        "features": f"{N_MFCC} MFCC and deltas (mean, sd), log-mel bands (mean, sd), energy, centroid, flux",
        "svc": SVC_PARAMS,
        "ridge_alpha": RIDGE_ALPHA,
        "balance": cfg.balance.value,
        "protocol": protocol,
        "classes": data.classes,
        "taxonomy": cfg.taxonomy,
        "data": list(cfg.data),
        "mean_sd": mean_sd(rows),
        "folds": folds_out,
        "seconds": round(time.time() - started, 1),
        "command": command,
    }
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
    (out / "baseline.md").write_text(baseline_markdown(metrics))
    return metrics


def baseline_markdown(metrics: dict[str, Any]) -> str:
    """mean ± sd per figure with each fold's value, then each fold's confusion matrix."""
    summary, folds = metrics["mean_sd"], metrics["folds"]
    flat = [flat_scores(f["scores"]) for f in folds]
    lines = [
        f"# Baseline: {metrics['model']}, {metrics['protocol']}",
        "",
        "| figure | mean ± sd | " + " | ".join(f"fold {f['fold']}" for f in folds) + " |",
        "|---|---|" + "---|" * len(folds),
    ]
    for key, cell in summary.items():
        values = " | ".join("" if key not in f else f"{f[key]:.3f}" for f in flat)
        lines.append(f"| {key} | {cell['mean']:.3f} ± {cell['sd']:.3f} | {values} |")
    classes = metrics["classes"]
    for f in folds:
        lines += ["", f"Fold {f['fold']} ({', '.join(f['val_speakers'])}), confusion (rows: truth)", ""]
        lines += ["| | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        cm = f["scores"]["confusion"]
        lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(classes, cm, strict=True)]
    if metrics.get("command"):
        lines += ["", f"Reproduce: `{metrics['command']}`"]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainer.audio.train import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="fold shuffling seed (the encoders' --seed)")
    parser.add_argument("--out", type=Path, default=Path("runs/baseline"))


def run(args: argparse.Namespace) -> int:
    from trainer.audio.train import command_line, config_from_args

    cfg = config_from_args(args, folds=args.folds or 5)
    metrics = cross_validate_baseline(cfg, command=command_line(args))
    figures = {k: metrics["mean_sd"][k] for k in ("accuracy", "macro_f1") if k in metrics["mean_sd"]}
    print(json.dumps({"out": str(cfg.out), "protocol": metrics["protocol"], **figures}, indent=2))
    return 0
