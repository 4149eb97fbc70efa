"""A trained audio run's figures: predictions on a `ClipBank`, the closed-form placeholder shared-space
head, the full validation metrics (with ONNX Runtime latency and PNG reports) and how the epoch was chosen.

Side effects: `evaluate_run` writes confusion/curves/embedding PNGs to the run folder when reports are on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.encoders import count_parameters
from engine.models.heads import AudioModel
from trainer.audio import reports
from trainer.audio.config import EpochChoice, TrainConfig
from trainer.audio.data import RunData
from trainer.audio.features import ClipBank, standardize
from trainer.audio.reports import classification_metrics


@torch.no_grad()
def predict(
    module: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    bank: ClipBank,
    mean: np.ndarray,
    std: np.ndarray,
    batch: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Clean evaluation windows through an encoder: logits, va and embedding for every clip.

    The last batch is zero-padded to `batch` so a compiled module sees one shape.
    """
    outs: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(bank), batch):
        x = standardize(bank.mels[start : start + batch], mean, std)
        n = len(x)
        if n < batch:
            x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
        out = module(x.to(device))
        outs.append(tuple(o[:n].float().cpu().numpy() for o in out[:3]))
    if not outs:
        return {"logits": np.zeros((0, 0)), "va": np.zeros((0, 2)), "embedding": np.zeros((0, 0))}
    logits, va, emb = (np.concatenate(parts) for parts in zip(*outs, strict=True))
    return {"logits": logits, "va": va, "embedding": emb}


def quick_scores(pred: dict[str, np.ndarray], bank: ClipBank, n_classes: int) -> dict[str, float]:
    labels = bank.labels
    keep = labels >= 0
    loss = float("nan")
    if keep.any():
        logits = torch.as_tensor(pred["logits"][keep])
        loss = float(F.cross_entropy(logits, torch.as_tensor(labels[keep])))
    m = classification_metrics(labels, pred["logits"].argmax(1), [str(i) for i in range(n_classes)])
    return {"loss": loss, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def reported_data(held_out: RunData, fitted: RunData, refitted: bool = False) -> RunData:
    """The outer validation clips with the statistics the model was fitted with (they travel with it).

    With an inner selection split, `split.selection` records it; `split.val_speakers` stays the outer one, so
    the alignment and `evaluate` keep those speakers held out. A refitted model used all outer training
    speakers and their statistics."""
    if fitted is held_out:
        return held_out
    split = {**held_out.split, "selection": {**fitted.split, "refit": refitted}}
    if refitted:
        return replace(held_out, split=split)
    return replace(held_out, split=split, mel_mean=fitted.mel_mean, mel_std=fitted.mel_std)


def fit_projection(model: AudioModel, prep: RunData, cfg: TrainConfig, device: torch.device) -> None:
    """Placeholder shared-space head until audio–art alignment replaces it.

    Keeps the head's random first layer and solves its output layer in closed form (ridge regression)
    so every training embedding lands near a fixed random direction of its class: class centroids
    separate in the shared space, at no training cost.
    """
    train = predict(model.encoder, prep.train, prep.mel_mean, prep.mel_std, 64, device)
    keep = prep.train.labels >= 0
    if not keep.any():
        return
    first, last = model.projection.net[0], model.projection.net[-1]
    with torch.no_grad():
        emb = torch.as_tensor(train["embedding"][keep], device=device)
        hidden = F.relu(first(emb)).double()  # [N, H]
        gen = torch.Generator().manual_seed(cfg.seed)
        anchors = F.normalize(torch.randn(len(prep.classes), last.out_features, generator=gen), dim=1)
        target = anchors[torch.as_tensor(prep.train.labels[keep])].double().to(device)  # [N, S]
        ones = torch.ones(len(hidden), 1, dtype=hidden.dtype, device=device)
        design = torch.cat([hidden, ones], dim=1)  # [N, H+1]: the bias is the last column
        ridge = 1e-2 * torch.eye(design.shape[1], dtype=design.dtype, device=device)
        solution = torch.linalg.solve(design.T @ design + ridge, design.T @ target)  # [H+1, S]
        last.weight.copy_(solution[:-1].T.float())
        last.bias.copy_(solution[-1].float())


def evaluate_run(model: AudioModel, prep: RunData, cfg: TrainConfig, history, best, device, command, seconds):
    """Full figures on the validation clips, speed through ONNX Runtime, and the PNGs."""

    pred = predict(model.encoder, prep.val, prep.mel_mean, prep.mel_std, 64, device)
    cls = reports.classification_metrics(prep.val.labels, pred["logits"].argmax(1), prep.classes)
    cls["va"] = reports.va_metrics(prep.val.va, pred["va"], prep.val.has_va)
    per_corpus = {}
    for corpus in sorted(set(prep.val.corpora)):
        sel = np.array([c == corpus for c in prep.val.corpora])
        if len(set(prep.val.corpora)) > 1 and sel.any():
            m = reports.classification_metrics(prep.val.labels[sel], pred["logits"][sel].argmax(1), prep.classes)
            per_corpus[corpus] = {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    if per_corpus:
        cls["per_corpus"] = per_corpus
    frames = prep.frontend.n_frames
    example = torch.zeros(1, 1, prep.frontend.n_mels, frames)
    ms, ms_min = (
        reports.onnx_cpu_ms(model.cpu(), example, cfg.latency_threads, cfg.latency_runs)
        if cfg.latency_runs
        else (None, None)
    )
    model.to(device)
    metrics = {
        "split_rule": prep.rule,
        "split": prep.split,
        "taxonomy": prep.taxonomy["name"],
        "classes": prep.classes,
        "arch": cfg.arch.value,
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "val": cls,
        "parameters": {"encoder": count_parameters(model.encoder), "audio_model": count_parameters(model)},
        "selection": selection_summary(cfg, prep, history, best),
        "cpu_ms_per_window": {"onnxruntime": ms, "fastest": ms_min, "threads": cfg.latency_threads, "batch": 1},
        "data": {"specs": cfg.data, "load": prep.load_report},
        "command": command,
        "duration_s": round(seconds, 1),
        "config": cfg.model_dump(mode="json"),
        "history": history,
    }
    if cfg.reports:
        out = Path(cfg.out)
        tag = f"{cfg.arch.value}, {prep.taxonomy['name']} | validation: {prep.rule}"
        reports.plot_confusion(
            cls["confusion"],
            prep.classes,
            f"{tag}\nacc {cls['accuracy']:.3f}  macro-F1 {cls['macro_f1']:.3f}",
            out / "confusion.png",
        )
        reports.plot_curves(history, tag, out / "curves.png")
        reports.plot_embedding(
            pred["embedding"],
            prep.val.labels,
            prep.classes,
            prep.val.corpora,
            f"t-SNE of validation embeddings\n{tag}",
            out / "embedding.png",
        )
    return metrics


def selection_summary(cfg: TrainConfig, prep: RunData, history: list[dict[str, float]], best) -> dict[str, Any]:
    """How the kept epoch was chosen, with the choosing clips' figures (best and last epoch)."""
    last = {k: history[-1][f"val_{k}"] for k in ("accuracy", "macro_f1")} if history else {}
    chosen = {"accuracy": best["accuracy"], "macro_f1": best["macro_f1"], "epoch": best["epoch"]}
    if cfg.select is EpochChoice.INNER:
        inner = prep.split.get("selection", {})
        return {
            "on": cfg.select.value,
            "rule": inner.get("rule"),
            "speakers": inner.get("val_speakers"),
            "clips": inner.get("val", {}).get("clips"),
            "best": chosen,
            "last_epoch": last,
            "refit": bool(inner.get("refit")),
            "note": "epoch chosen on held-back training speakers"
            + ("; then trained again on all training speakers up to it" if inner.get("refit") else "")
            + "; 'val' is measured once, on clips no choice saw",
        }
    return {
        "on": cfg.select.value,
        "rule": prep.rule,
        "best": chosen,
        "last_epoch": last,
        "note": f"epoch chosen on the reported clips (seed protocol): 'val' is the best of {len(history)} epochs "
        "on them, so it is optimistic; 'last_epoch' is the unselected figure",
    }
