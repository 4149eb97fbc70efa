"""The audio training loop: model, loss, DDP setup, epochs with atomic checkpoints (ckpt.pt every epoch,
best.pt on improvement, through engine.models.checkpoint.save_checkpoint), resume, refit, and the final
metrics.json. `train(cfg)` runs the stages top to bottom; only rank 0 writes."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.config import Device
from engine.errors import ConfigError
from engine.models.checkpoint import load_checkpoint, save_audio_model
from engine.models.encoders import build_encoder
from engine.models.heads import AudioModel, ProjectionHead
from trainer.audio.config import BEST_CKPT, LAST_CKPT, TRAINING_EXTRAS, EpochChoice, TrainConfig, VALoss, json_safe
from trainer.audio.data import RunData, TrainingBatches, epoch_batches, inner_split, prepare
from trainer.audio.results import evaluate_run, fit_projection, predict, quick_scores, reported_data

log = logging.getLogger("synesthesia.train.audio")


def build_model(cfg: TrainConfig, prep: RunData) -> AudioModel:
    enc = build_encoder(cfg.encoder_config(len(prep.classes), prep.frontend))
    return AudioModel(enc, ProjectionHead(enc.config.embedding_dim, cfg.shared_dim))


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - concordance correlation, averaged over valence and arousal ([B, 2] each)."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return (1 - 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)).mean()


def loss_fn(
    cfg: TrainConfig,
    out: tuple[torch.Tensor, ...],
    y: torch.Tensor,
    va: torch.Tensor,
    has_va: torch.Tensor,
    weight: torch.Tensor | None,
) -> torch.Tensor:
    logits, va_pred = out[0], out[1]
    labelled = y >= 0
    ce = (
        F.cross_entropy(logits[labelled], y[labelled], weight=weight, label_smoothing=cfg.label_smoothing)
        if bool(labelled.any())
        else logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
    )
    if cfg.va_weight == 0 or not bool(has_va.any()):
        return ce + va_pred.sum() * 0.0
    p, t = va_pred[has_va], va[has_va]
    va_term = ccc_loss(p, t) if cfg.va_loss is VALoss.CCC and len(p) > 1 else F.mse_loss(p, t)
    return ce + cfg.va_weight * va_term


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(
            int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
        )


def setup(cfg: TrainConfig) -> tuple[Dist, torch.device]:
    """Threads, device, and the process group under torchrun (gloo on CPU, nccl on CUDA)."""
    dist = Dist.from_env()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.device is Device.CUDA and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible")
    cuda = torch.cuda.is_available() and cfg.device is not Device.CPU
    device = torch.device(f"cuda:{dist.local_rank}" if cuda else "cpu")
    if dist.world > 1 and not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return dist, device


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    model: AudioModel
    history: list[dict[str, float]]


def checkpoint_extra(cfg: TrainConfig, prep: RunData, **state: Any) -> dict[str, Any]:
    """What a checkpoint carries besides the model: enough to resume, export and report."""
    return {
        "train_config": cfg.model_dump(mode="json"),
        "classes": prep.classes,
        "taxonomy": prep.taxonomy,
        "frontend": prep.frontend.model_dump(mode="json"),
        "mel_mean": [float(v) for v in prep.mel_mean],
        "mel_std": [float(v) for v in prep.mel_std],
        "split": prep.split,
        **state,
    }


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The trainer's extras stored beside the model in a training checkpoint (classes, statistics, ...)."""
    ckpt = load_checkpoint(path, required=TRAINING_EXTRAS)
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler")}


def _rebuild(module: torch.nn.Module, cfg: TrainConfig, dist: Dist, device: torch.device) -> torch.nn.Module:
    """The callable the loop trains: DDP-wrapped when distributed, compiled when asked."""
    wrapped = module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a compiler failure falls back to eager, with a warning
        wrapped = torch.compile(wrapped)
    return wrapped


def train(
    cfg: TrainConfig,
    prep: RunData | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    command: str | None = None,
    on_model: Callable[[int, AudioModel, dict[str, np.ndarray]], None] | None = None,
) -> TrainResult:
    """Run the configured training. `on_epoch(epoch, row)` is called after every validation (HPO pruning
    raises from it); `on_model(epoch, model, predictions)` on rank 0 with the epoch's weights and its
    validation predictions (cross-validation keeps them). Rank 0 writes checkpoints and reports to `cfg.out`."""

    started = time.time()
    dist, device = setup(cfg)
    torch.manual_seed(cfg.seed)
    if prep is None:
        if dist.world > 1 and not dist.main:
            torch.distributed.barrier()  # rank 0 fills the feature cache first
        prep = prepare(cfg, progress=dist.main)
        if dist.world > 1 and dist.main:
            torch.distributed.barrier()
    # `held_out` is what the figures are reported on; `prep` is what the loop fits and chooses the epoch on.
    held_out = prep
    if cfg.select is EpochChoice.INNER:
        prep = inner_split(held_out, cfg.val_fraction, cfg.seed + 1)
    if dist.main:
        log.info("split: %s | train %d clips, val %d clips", held_out.rule, len(held_out.train), len(held_out.val))
        if prep is not held_out:
            log.info("epoch chosen on %s (%d clips); fitted on %d clips", prep.rule, len(prep.val), len(prep.train))
    out = Path(cfg.out)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg, prep).to(device)
    encoder = model.encoder
    optimizer = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    history: list[dict[str, float]] = []
    best = {"accuracy": -1.0, "macro_f1": -1.0, "epoch": -1}
    start_epoch = 0
    if cfg.resume and (out / LAST_CKPT).is_file():
        start_epoch, history, best = resume(out / LAST_CKPT, cfg, prep, model, optimizer, scheduler)
        if dist.main:
            log.info("resumed from %s at epoch %d", out / LAST_CKPT, start_epoch)

    weight = class_weight(cfg, prep, device)
    batches_of = TrainingBatches(cfg, prep, device)
    net = _rebuild(encoder, cfg, dist, device)
    eval_batch = max(1, cfg.batch_size // dist.world) * 4

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        train_loss, train_accuracy = fit_epoch(
            cfg, net, batches_of, optimizer, weight, epoch, dist, f"epoch {epoch + 1}"
        )
        val_pred = predict(net, prep.val, prep.mel_mean, prep.mel_std, eval_batch, device)
        val = quick_scores(val_pred, prep.val, len(prep.classes))
        scheduler.step(val["loss"] if np.isfinite(val["loss"]) else -val["accuracy"])
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(row)
        improved = (val["accuracy"], val["macro_f1"]) > (best["accuracy"], best["macro_f1"])
        if improved:
            best = {"accuracy": val["accuracy"], "macro_f1": val["macro_f1"], "epoch": epoch + 1}
        if dist.main:
            log.info(
                "epoch %d/%d  loss %.3f  train acc %.3f  val acc %.3f  val F1 %.3f  lr %.2g  %.0fs%s",
                epoch + 1,
                cfg.epochs,
                row["train_loss"],
                row["train_accuracy"],
                val["accuracy"],
                val["macro_f1"],
                row["lr"],
                row["seconds"],
                "  *best*" if improved else "",
            )
            state = {
                "epoch": epoch,
                "history": history,
                "best": best,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            if improved:
                save_audio_model(model, out / BEST_CKPT, checkpoint_extra(cfg, prep, **state))
            save_audio_model(model, out / LAST_CKPT, checkpoint_extra(cfg, prep, **state))
        if on_model is not None and dist.main:
            on_model(epoch, model, val_pred)
        if on_epoch is not None:
            on_epoch(epoch, row)

    if dist.world > 1:
        torch.distributed.barrier()
    # finish on the best weights (the epoch's own copy on every rank: read it back from rank 0's file)
    best_path = out / BEST_CKPT
    if best_path.is_file():
        state_dict = load_checkpoint(best_path, "audio_model", required=("state_dict",))["state_dict"]
        model.load_state_dict(state_dict)
    model.eval()
    refitted = cfg.refit and prep is not held_out and best["epoch"] > 0
    if refitted:
        schedule = [cfg.lr] + [h["lr"] for h in history[: best["epoch"] - 1]]  # the lr each epoch ran at
        model = refit_model(cfg, held_out, schedule, dist, device)
    metrics: dict[str, Any] = {}
    if dist.main:
        fit_projection(model, held_out if refitted else prep, cfg, device)
        report = reported_data(held_out, prep, refitted)
        metrics = evaluate_run(model, report, cfg, history, best, device, command, time.time() - started)
        state = {"epoch": best["epoch"] - 1, "history": history, "best": best, "metrics": json_safe(metrics)}
        save_audio_model(model.cpu(), best_path, checkpoint_extra(cfg, report, **state))
        (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8")
        log.info(
            "%s: val accuracy %.3f, macro-F1 %.3f (%s)",
            out,
            metrics["val"]["accuracy"],
            metrics["val"]["macro_f1"],
            report.rule,
        )
    if dist.world > 1:
        torch.distributed.barrier()
    return TrainResult(out, metrics, model.cpu(), history)


def class_weight(cfg: TrainConfig, data: RunData, device: torch.device) -> torch.Tensor | None:
    """Inverse-frequency cross-entropy weights of the training clips (`class_weights`), else None."""
    if not cfg.class_weights:
        return None
    counts = np.bincount(data.train.labels[data.train.labels >= 0], minlength=len(data.classes))
    return torch.as_tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32).to(device)


def fit_epoch(
    cfg: TrainConfig,
    net: torch.nn.Module,
    batches_of: TrainingBatches,
    optimizer: torch.optim.Optimizer,
    weight: torch.Tensor | None,
    epoch: int,
    dist: Dist,
    desc: str,
) -> tuple[float, float]:
    """One pass over this rank's batches; (mean loss per clip, accuracy on labelled clips)."""
    from tqdm import tqdm

    net.train()
    n = len(batches_of.prep.train)
    batches = epoch_batches(n, cfg.batch_size, epoch, cfg.seed, dist.world, dist.rank, batches_of.weights)
    total, correct, seen = 0.0, 0, 0
    show = dist.main and sys.stderr.isatty()  # bars for a terminal; a log file gets the epoch lines
    bar = tqdm(batches, desc=f"{desc}/{cfg.epochs}", unit="batch", disable=not show, leave=False)
    for step, index in enumerate(bar):
        x, y, va, has_va = batches_of(index, epoch, step, dist.rank)
        if cfg.mixup > 0:
            x, y, y_mix, lam, va, has_va = mixup(x, y, va, has_va, cfg.mixup, [cfg.seed, epoch, dist.rank, step])
            out_t = net(x)
            loss = lam * loss_fn(cfg, out_t, y, va, has_va, weight)
            loss = loss + (1 - lam) * loss_fn(cfg, out_t, y_mix, va, has_va, weight)
        else:
            out_t = net(x)
            loss = loss_fn(cfg, out_t, y, va, has_va, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(index)
        labelled = y >= 0
        correct += int((out_t[0].argmax(1)[labelled] == y[labelled]).sum())
        seen += int(labelled.sum())
        bar.set_postfix(loss=f"{total / max(1, step + 1) / len(index):.3f}")
    net.eval()
    return total / max(1, sum(len(b) for b in batches)), correct / max(1, seen)


def mixup(x: torch.Tensor, y: torch.Tensor, va: torch.Tensor, has_va: torch.Tensor, alpha: float, seed: list[int]):
    """Mixup (Zhang et al., 2018): each clip mixed with a partner of the same batch at one weight
    lam ~ Beta(alpha, alpha), lam >= 0.5 so the first label stays the dominant one. Returns the mixed
    features, both label vectors, lam, and the mixed valence/arousal targets (kept only where both
    clips have them). Seeded per step: resumable, no hidden RNG state."""
    rng = np.random.default_rng([*seed, 0x3A1])
    lam = float(rng.beta(alpha, alpha))
    lam = max(lam, 1 - lam)
    perm = torch.as_tensor(rng.permutation(len(x)), device=x.device)
    mixed = lam * x + (1 - lam) * x[perm]
    va_mixed = lam * va + (1 - lam) * va[perm]
    return mixed, y, y[perm], lam, va_mixed, has_va & has_va[perm]


def refit_model(cfg: TrainConfig, data: RunData, schedule: list[float], dist: Dist, device: torch.device) -> AudioModel:
    """A fresh model trained on all of `data.train` for len(schedule) epochs, epoch e at learning rate
    schedule[e]: the choosing run's own schedule up to its kept epoch, so nothing is chosen again."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data).to(device)
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=schedule[0], weight_decay=cfg.weight_decay)
    batches_of = TrainingBatches(cfg, data, device)
    net = _rebuild(model.encoder, cfg, dist, device)
    weight = class_weight(cfg, data, device)
    for epoch, lr in enumerate(schedule):
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.time()
        loss, accuracy = fit_epoch(cfg, net, batches_of, optimizer, weight, epoch, dist, f"refit {epoch + 1}")
        if dist.main:
            log.info(
                "refit epoch %d/%d  loss %.3f  train acc %.3f  lr %.2g  %.0fs",
                epoch + 1, len(schedule), loss, accuracy, lr, time.time() - t0,
            )  # fmt: skip
    if dist.world > 1:
        torch.distributed.barrier()
    return model.eval()


# what a resume file (ckpt.pt) must hold beside the model
RESUME_KEYS = ("train_config", "split", "state_dict", "optimizer", "scheduler", "epoch", "history", "best")


def resume(path: Path, cfg: TrainConfig, prep: RunData, model, optimizer, scheduler):
    """Restore model, optimizer and scheduler from the last checkpoint; refuse a different setup."""
    ckpt = load_checkpoint(path, "audio_model", required=RESUME_KEYS)
    saved = ckpt.get("train_config", {})
    keys = ("arch", "taxonomy", "data", "split", "test_corpus", "width", "embedding_dim", "rnn_hidden", "seed")
    now = cfg.model_dump(mode="json")
    diff = [k for k in keys if saved.get(k) != now.get(k)]
    if diff or ckpt.get("split", {}).get("val_speakers") != prep.split.get("val_speakers"):
        raise ConfigError(f"{path}: cannot resume, the run differs in {diff or ['split']}; use another --out")
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt["epoch"]) + 1, list(ckpt["history"]), dict(ckpt["best"])
