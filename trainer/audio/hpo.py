"""`synesthesia-train hpo`: Optuna search over encoder hyper-parameters.

Honest protocol: trials are scored on an *inner* speaker-independent split of the training speakers;
the outer validation speakers are never seen during the search and are used once, at the end, to
score the best settings retrained on all training speakers. The study lives in a database
(`--storage`, sqlite by default; any SQLAlchemy URL such as postgresql://... works) under
`--study-name`, so several machines can run `hpo` against one study at the same time. Trials are
pruned by epoch (median rule) on the inner validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from engine.deps import require
from engine.errors import ConfigError
from engine.models.encoders import Arch
from trainer.audio.config import EpochChoice, TrainConfig, json_safe
from trainer.audio.data import RunData, inner_split, prepare
from trainer.audio.loop import train
from trainer.audio.train import (
    add_data_arguments,
    add_model_arguments,
    add_optim_arguments,
    add_run_arguments,
    command_line,
    config_from_args,
)

log = logging.getLogger("synesthesia.train.hpo")

RECURRENT = {Arch.CNN_LSTM, Arch.CNN_GRU, Arch.CNN_LSTM_ATTN, Arch.TRANSFORMER}  # archs that use rnn_hidden


def suggest(trial, arch: Arch) -> dict[str, Any]:
    """The search space: optimiser, regularisation and sizes."""
    params: dict[str, Any] = {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32]),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "embedding_dim": trial.suggest_categorical("embedding_dim", [64, 128, 256]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }
    if arch in RECURRENT:
        params["rnn_hidden"] = trial.suggest_categorical("rnn_hidden", [64, 128, 256])
    return params


def open_study(optuna, name: str, storage: str, seed: int, pruner=None):
    """The shared study (created or joined), maximising, TPE seeded by `seed`."""
    sampler = optuna.samplers.TPESampler(seed=seed)
    return optuna.create_study(
        study_name=name, storage=storage, load_if_exists=True, direction="maximize", sampler=sampler, pruner=pruner
    )


def search(
    base: TrainConfig,
    trials: int,
    storage: str,
    study_name: str,
    timeout: float | None = None,
    final: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    optuna = require("optuna", "hyper-parameter search")
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    if base.folds is not None:
        return search_folds(base, trials, storage, study_name, timeout, command)
    outer = prepare(base)
    inner = inner_split(outer, base.val_fraction, base.seed + 1)
    log.info("hpo: trials on %s (%d train / %d val clips)", inner.rule, len(inner.train), len(inner.val))

    def objective(trial) -> float:
        trial_dir = out / f"trial-{trial.number:04d}"
        # the trial's validation clips are the inner split: choosing on them is the search's job
        params = {**base.model_dump(), **suggest(trial, base.arch), "out": trial_dir, "reports": False}
        cfg = TrainConfig(**{**params, "select": EpochChoice.HELDOUT})

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            trial.report(row["val_accuracy"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")

        history = train(cfg, inner, on_epoch).history
        return max(h["val_accuracy"] for h in history)

    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    study = open_study(optuna, study_name, storage, base.seed, pruner)
    study.optimize(objective, n_trials=trials, timeout=timeout)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError(f"study {study_name!r}: no trial completed")
    result: dict[str, Any] = {
        "study": study_name,
        "storage": storage,
        "inner_split_rule": inner.rule,
        "best_params": study.best_params,
        "best_inner_val_accuracy": study.best_value,
        "trials": [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials
        ],
        "command": command,
    }
    if final:
        result["final"] = final_run(base, outer, study.best_params, command)
    (out / "hpo.json").write_text(json.dumps(json_safe(result), indent=2) + "\n", encoding="utf-8")
    return result


def search_folds(
    base: TrainConfig, trials: int, storage: str, study_name: str, timeout: float | None, command: str | None
) -> dict[str, Any]:
    """Trials scored on the fold protocol: the peak of the folds' mean validation macro-F1 curve. No pruning
    (a trial's folds run one after another) and no final held-out run: every speaker is in some fold, so
    the best trial's fold figure is the search's own, optimistic by the choice among trials."""
    from trainer.audio.data import prepare_pool
    from trainer.audio.folds import cross_validate

    optuna = require("optuna", "hyper-parameter search")
    out = Path(base.out)
    pool = prepare_pool(base)

    def objective(trial) -> float:
        params = {**base.model_dump(), **suggest(trial, base.arch), "out": out / f"trial-{trial.number:04d}"}
        metrics = cross_validate(TrainConfig(**{**params, "reports": False, "refit": False}), command, pool)
        return max(metrics["selection"]["mean_macro_f1"])

    study = open_study(optuna, study_name, storage, base.seed)
    study.optimize(objective, n_trials=trials, timeout=timeout)
    result = {
        "study": study_name,
        "storage": storage,
        "protocol": f"{base.folds} folds; score: peak of the folds' mean validation macro-F1",
        "best_params": study.best_params,
        "best_fold_mean_macro_f1": study.best_value,
        "note": "no untouched speakers remain in a fold search: the best value is optimistic",
        "trials": [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials
        ],
        "command": command,
    }
    (out / "hpo.json").write_text(json.dumps(json_safe(result), indent=2) + "\n", encoding="utf-8")
    return result


def final_run(base: TrainConfig, outer: RunData, params: dict[str, Any], command: str | None) -> dict[str, Any]:
    """Retrain with the best settings on all training speakers; score once on the outer held-out speakers."""
    cfg = TrainConfig(**{**base.model_dump(), **params, "out": Path(base.out) / "final"})
    metrics = train(cfg, outer, command=command).metrics
    return {
        "split_rule": outer.rule,
        "note": "outer validation speakers: never used while tuning",
        "accuracy": metrics["val"]["accuracy"],
        "macro_f1": metrics["val"]["macro_f1"],
        "out": str(cfg.out),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_optim_arguments(parser, epochs=10)
    add_run_arguments(parser, "runs/hpo")
    g = parser.add_argument_group("search")
    g.add_argument("--trials", type=int, default=20, help="trials this process runs (the study may hold more)")
    g.add_argument("--storage", help="study database URL (default sqlite:///OUT/optuna.db); share it across machines")
    g.add_argument("--study-name", help="default: ARCH-TAXONOMY")
    g.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    g.add_argument("--no-final", dest="final", action="store_false", help="skip the retrain on the outer split")


def run(args: argparse.Namespace) -> int:
    base = config_from_args(args)
    out = Path(base.out)
    storage = args.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    name = args.study_name or f"{base.arch.value}-{Path(base.taxonomy).stem}"
    result = search(base, args.trials, storage, name, args.timeout, args.final, command_line(args))
    summary = {
        k: result[k]
        for k in ("study", "best_params", "best_inner_val_accuracy", "best_fold_mean_macro_f1")
        if k in result
    }
    if "final" in result:
        summary["held_out"] = result["final"]
    print(json.dumps(json_safe(summary)))
    return 0
