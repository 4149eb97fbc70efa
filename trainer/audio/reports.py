"""Evaluation figures and plots: classification, valence/arousal, speed, and the PNGs of a run.

Every plot title carries the split rule, so a figure copied out of its folder still says whether its
validation speakers were seen in training.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.deps import require

VA_NAMES = ("valence", "arousal")


# -- figures ------------------------------------------------------------------------------------------


def classification_metrics(labels: np.ndarray, preds: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1/precision/recall/support and the confusion matrix (rows: truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    keep = labels >= 0
    y, p = labels[keep], preds[keep]
    ids = list(range(len(classes)))
    if y.size == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=ids, zero_division=0)
    return {
        "n": int(y.size),
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            c: {"f1": float(f1[i]), "precision": float(prec[i]), "recall": float(rec[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion": confusion_matrix(y, p, labels=ids).tolist(),
    }


def ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Lin's concordance correlation coefficient: agreement in correlation, mean and scale."""
    if y.size < 2:
        return float("nan")
    my, mp = y.mean(), p.mean()
    cov = ((y - my) * (p - mp)).mean()
    return float(2 * cov / (y.var() + p.var() + (my - mp) ** 2 + 1e-12))


def va_metrics(target: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """R² and CCC per dimension ([N, 2] arrays; rows without targets masked out)."""
    from sklearn.metrics import r2_score

    if mask is not None:
        target, pred = target[mask], pred[mask]
    out: dict[str, Any] = {}
    for i, name in enumerate(VA_NAMES):
        y, p = target[:, i].astype(np.float64), pred[:, i].astype(np.float64)
        ok = y.size >= 2 and y.var() > 0
        out[name] = {"r2": float(r2_score(y, p)) if ok else float("nan"), "ccc": ccc(y, p)}
    out["mean_r2"] = float(np.mean([out[n]["r2"] for n in VA_NAMES]))
    out["mean_ccc"] = float(np.mean([out[n]["ccc"] for n in VA_NAMES]))
    return out


AROUSAL_ORDER = ("calm", "neutral", "angry")  # issue 12: unseen speakers' arousal must rank in this order


def arousal_by_emotion(ids: list[str], arousal: np.ndarray) -> dict[str, Any]:
    """Mean predicted arousal per *source* emotion (RAVDESS calm is a neutral-class clip, told apart by
    its file name), and whether calm < neutral < angry holds on these clips (None where one is missing)."""
    from trainer.audio.corpora import identify_clip

    emotions = []
    for clip in ids:
        found = identify_clip(Path(clip).stem) if clip else None
        emotions.append(found[2] if found else None)
    per: dict[str, dict[str, float]] = {}
    for name in sorted({e for e in emotions if e}):
        sel = np.array([e == name for e in emotions])
        per[name] = {"n": int(sel.sum()), "mean": float(arousal[sel].mean())}
    order = [per[e]["mean"] for e in AROUSAL_ORDER if e in per]
    ranked = bool(all(a < b for a, b in itertools.pairwise(order))) if len(order) == len(AROUSAL_ORDER) else None
    return {"per_emotion": per, "order": list(AROUSAL_ORDER), "ranked": ranked}


def onnx_cpu_ms(
    module: torch.nn.Module, example: torch.Tensor, threads: int = 2, runs: int = 50
) -> tuple[float, float]:
    """(median, fastest) ms per call of `module` exported to ONNX, through ONNX Runtime on `threads` CPU
    threads. The median is what a busy machine gives; the fastest is the machine's capability."""
    ort = require("onnxruntime", "CPU timing")
    module = module.eval().cpu()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation chatter
            torch.onnx.export(module, (example,), str(path), input_names=["features"], opset_version=17, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {"features": example.numpy()}
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times)), float(np.min(times))


# -- plots --------------------------------------------------------------------------------------------


def _pyplot():
    matplotlib = require("matplotlib", "plots")
    matplotlib.use("Agg")  # files only; never open a window on an installation machine
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: Path) -> None:
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # recall per true class
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{rows[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: Sequence[dict[str, float]], title: str, path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [h["train_accuracy"] for h in history], label="train accuracy")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], label="validation accuracy")
    ax2.plot(epochs, [h["val_macro_f1"] for h in history], label="validation macro-F1")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_embedding(
    embedding: np.ndarray, labels: np.ndarray, classes: Sequence[str], groups: Sequence[str], title: str, path: Path
) -> None:
    """t-SNE map of validation embeddings: colour = true class, marker = corpus."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    n = len(embedding)
    if n < 4:
        return
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(embedding)
    markers = "os^Dv<>P*X"
    group_names = sorted(set(groups))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10")
    g = np.asarray(groups)
    for ci, cls in enumerate(classes):
        for gi, grp in enumerate(group_names):
            sel = (labels == ci) & (g == grp)
            if sel.any():
                ax.scatter(
                    xy[sel, 0],
                    xy[sel, 1],
                    s=14,
                    color=cmap(ci % 10),
                    marker=markers[gi % len(markers)],
                    label=f"{cls} ({grp})" if len(group_names) > 1 else cls,
                    alpha=0.8,
                )
    ax.legend(fontsize=7, markerscale=1.2, ncol=max(1, math.ceil(len(classes) * len(group_names) / 8)))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bars(rows: Sequence[dict[str, Any]], keys: Sequence[str], title: str, path: Path) -> None:
    """Grouped bars, one group per row (`name`), one bar per key (values in [0, 1])."""
    plt = _pyplot()
    names = [r["name"] for r in rows]
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 2), 4))
    for k, key in enumerate(keys):
        vals = [float(r.get(key, float("nan"))) for r in rows]
        ax.bar(np.arange(len(rows)) + k * width - 0.4 + width / 2, vals, width, label=key)
    ax.set_xticks(range(len(rows)), names, rotation=20)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """rows -> GitHub Markdown table; columns are (key, header). Floats get 3 decimals."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)
