"""Train one audio emotion encoder: `synesthesia-train audio` (flags -> TrainConfig -> trainer.audio.loop.train).

The stages live in their own modules, in the order they run: trainer.audio.config (TrainConfig) ->
trainer.audio.data (corpora, taxonomy, split, cached features, statistics, batches) -> trainer.audio.loop
(model, loss, epochs, checkpoints, resume, DDP) -> trainer.audio.results (figures, the shared-space
placeholder, reports). This module holds the command line only; compare and hpo reuse its flag groups.

The defaults are the seed protocol: batch 16, 20 epochs, Adam lr 1e-3, cross-entropy plus a
valence/arousal loss, ReduceLROnPlateau, 80/20, best checkpoint by validation accuracy. Unlike the seed,
the split is speaker-independent by default; a random split is labelled "NOT speaker-independent" in
every report. Runs unchanged under `torchrun` (DDP when WORLD_SIZE > 1; only rank 0 writes).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from engine.config import Device
from engine.errors import ConfigError
from engine.models.encoders import Arch
from trainer.audio.config import (
    CORPUS_FOLDS,
    SYNTHETIC,
    AudioAugment,
    Balance,
    EnsembleEpoch,
    EpochChoice,
    SplitKind,
    TrainConfig,
    VALoss,
)
from trainer.audio.loop import train


def enum_argument(group, flag: str, default: StrEnum, text: str) -> None:
    """A flag whose values are the members of `default`'s enum."""
    kind = type(default)
    group.add_argument(flag, type=kind, choices=list(kind), default=default, help=text)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        action="append",
        metavar="SPEC",
        help="corpus spec, repeatable: ravdess:DIR, emodb:DIR, csv:FILE, folder:DIR, ... or "
        "synthetic[:N_PER_CLASS[:SEED]] (default: synthetic)",
    )
    g.add_argument("--taxonomy", default="default", help="default | seed3 | a .toml/.json taxonomy file")
    enum_argument(
        g, "--split", SplitKind.SPEAKER, "speaker (default), random (labelled NOT speaker-independent) or corpus"
    )
    g.add_argument("--test-corpus", help="with --split corpus: the corpus held out for testing")
    g.add_argument("--val-fraction", type=float, default=0.2)
    g.add_argument(
        "--select",
        type=EpochChoice,
        choices=list(EpochChoice),
        default=EpochChoice.INNER,
        help="which clips choose the kept epoch: inner (default; held-back training speakers, the reported "
        "clips stay unseen) or heldout (the seed protocol: the reported clips, optimistic)",
    )
    g.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --select inner: train again on all training speakers up to the chosen epoch; with --folds: "
        "train on every speaker for the epochs the folds chose (OUT/best.pt)",
    )
    g.add_argument(
        "--folds",
        type=fold_count,
        nargs="?",
        const=5,
        metavar="K|corpus",
        help="cross-validate instead of one split: K speaker-grouped folds (5 when given bare) or 'corpus' "
        "(leave one corpus out); the epoch is chosen on the folds' mean macro-F1; --refit then trains on all",
    )
    add_only_folds_argument(g)
    g.add_argument(
        "--ensemble",
        action="store_true",
        help="with --folds: also keep the K fold models as OUT/ensemble.pt (one ONNX graph)",
    )
    enum_argument(
        g,
        "--ensemble-epoch",
        EnsembleEpoch.CHOSEN,
        "the members' epoch: the one chosen on the folds' mean (default), or each fold's last (nothing chosen; "
        "works with --only-folds and --resume)",
    )
    enum_argument(
        g, "--balance", Balance.NONE, "weighted sampling per epoch: speaker (equal share each), corpus, speaker_class"
    )
    g.add_argument("--synthetic-per-class", type=int, default=0, help="procedural clips added to training only")
    add_synthetic_stream_argument(g)
    g.add_argument(
        "--synthetic-weight",
        type=float,
        help="with --balance: the procedural corpus weighs as this many speakers (default 1)",
    )
    g.add_argument("--cache-dir", type=Path, help="feature cache (default ~/.cache/synesthesia/features)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--arch", type=Arch, choices=list(Arch), default=Arch.CNN, help="encoder family")
    for name, default in (("width", 32), ("embedding-dim", 128), ("rnn-hidden", 128), ("heads", 4), ("layers", 2)):
        g.add_argument(f"--{name}", type=int, default=default)
    g.add_argument("--dropout", type=float, default=0.3)
    add_instnorm_argument(g)


def add_instnorm_argument(g) -> None:
    g.add_argument(
        "--instnorm",
        action="store_true",
        help="normalise each mel bin per utterance (mean/variance over time) inside the model",
    )


def fold_list(text: str) -> tuple[int, ...]:
    """--only-folds value: comma-separated 1-based fold numbers."""
    try:
        folds = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--only-folds takes fold numbers like 1,2,3, not {text!r}") from None
    if not folds or folds[0] < 1:
        raise argparse.ArgumentTypeError("--only-folds takes fold numbers from 1")
    return folds


def add_only_folds_argument(g) -> None:
    g.add_argument(
        "--only-folds",
        type=fold_list,
        metavar="K,K",
        help="with --folds: train only these folds and stop (run shares of the folds side by side, one process "
        "each on its own core, then once more with --resume and without this flag to gather and refit)",
    )


def add_synthetic_stream_argument(g) -> None:
    g.add_argument(
        "--synthetic-stream",
        action="store_true",
        default=None,
        help="cut the --synthetic-per-class clips from the demo's crossfaded procedural stream (what `synth:` "
        "sources play: windows straddle utterance joins) instead of synthesising single utterances",
    )


def fold_count(text: str) -> int | str:
    """--folds value: an integer >= 2 or 'corpus'."""
    if text == CORPUS_FOLDS:
        return text
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--folds takes an integer >= 2 or 'corpus', not {text!r}") from None
    if k < 2:
        raise argparse.ArgumentTypeError("--folds needs at least 2 folds")
    return k


def add_optim_arguments(parser: argparse.ArgumentParser, epochs: int = 20) -> None:
    g = parser.add_argument_group("optimisation (defaults: the seed protocol)")
    g.add_argument("--epochs", type=int, default=epochs)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--va-loss", type=VALoss, choices=list(VALoss), default=VALoss.MSE)
    g.add_argument("--va-weight", type=float, default=0.5, help="weight of the valence/arousal loss")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--class-weights", action="store_true", help="inverse-frequency cross-entropy weights")
    g.add_argument("--augment", type=AudioAugment, choices=list(AudioAugment), default=AudioAugment.SPEC)
    g.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA); 0: off")
    g.add_argument(
        "--speed-perturb", type=float, default=0.0, metavar="P", help="with wave augmentation: share of clips x0.9-1.1"
    )
    g.add_argument(
        "--pitch-shift", type=float, default=0.0, metavar="P", help="with wave augmentation: share of clips +-1-2 st"
    )
    g.add_argument("--seed", type=int, default=0)


def add_run_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    g = parser.add_argument_group("running")
    g.add_argument("--out", type=Path, default=Path(out), help=f"run directory (default {out})")
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the encoder: ~10x faster on CPU after ~30 s of compiling",
    )
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (0: torch default)")
    g.add_argument("--latency-threads", type=int, default=2, help="ONNX Runtime threads for the CPU ms figure")
    g.add_argument("--device", type=Device, choices=list(Device), default=Device.AUTO)
    g.add_argument("--no-reports", dest="reports", action="store_false", help="skip the PNGs")
    g.add_argument("--latency-runs", type=int, default=50, help="ONNX Runtime timing repetitions (0: skip)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_optim_arguments(parser)
    add_run_arguments(parser, "runs/audio")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")


CONFIG_FIELDS = set(TrainConfig.model_fields)


def config_from_args(args: argparse.Namespace, **override: Any) -> TrainConfig:
    """argparse namespace -> TrainConfig (unknown namespace entries ignored)."""
    values = {k: v for k, v in vars(args).items() if k in CONFIG_FIELDS and v is not None}
    values.setdefault("data", [SYNTHETIC])
    values.update(override)
    try:
        return TrainConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"invalid training settings: {exc}") from exc


def command_line(args: argparse.Namespace) -> str:
    return getattr(args, "command_line", None) or "synesthesia-train " + shlex.join(sys.argv[1:])


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if cfg.only_folds is not None and cfg.folds is None:
        raise ConfigError("--only-folds needs --folds")
    if cfg.folds is not None:
        from trainer.audio.folds import cross_validate

        metrics = cross_validate(cfg, command=command_line(args))
        if cfg.only_folds is not None:
            print(json.dumps({"out": str(cfg.out), **metrics}))
            return 0
        figures = {k: metrics["mean_sd"][k] for k in ("accuracy", "macro_f1")}
        print(
            json.dumps(
                {"out": str(cfg.out), "protocol": metrics["protocol"], "best_epoch": metrics["best_epoch"], **figures}
            )
        )
        return 0
    try:
        result = train(cfg, command=command_line(args))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if result.metrics:
        v = result.metrics["val"]
        print(
            json.dumps(
                {
                    "out": str(result.out),
                    "accuracy": v["accuracy"],
                    "macro_f1": v["macro_f1"],
                    "split": result.metrics["split_rule"],
                }
            )
        )
    return 0
