"""`synesthesia-train compare`: encoder families under one protocol on one split.

The data are loaded, split and featurised once; every family then trains with the same settings and
seed and is scored on the same validation clips. Writes compare.json, compare.md (with the split rule
in its heading) and compare.png, plus each family's own run folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from engine.models.encoders import Arch
from trainer.audio import reports
from trainer.audio.config import EpochChoice, TrainConfig, json_safe
from trainer.audio.data import prepare
from trainer.audio.loop import train
from trainer.audio.train import (
    add_data_arguments,
    add_instnorm_argument,
    add_optim_arguments,
    add_run_arguments,
    command_line,
    config_from_args,
)

log = logging.getLogger("synesthesia.train.compare")

COLUMNS = [
    ("name", "family"),
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("valence_r2", "valence R²"),
    ("arousal_r2", "arousal R²"),
    ("valence_ccc", "valence CCC"),
    ("arousal_ccc", "arousal CCC"),
    ("parameters", "parameters"),
    ("cpu_ms", "CPU ms/window (ORT)"),
    ("best_epoch", "best epoch"),
    ("train_s", "train s"),
]


CHOSEN_ON = {
    EpochChoice.INNER: "an inner split of the training speakers (the validation speakers are scored once)",
    EpochChoice.HELDOUT: "the validation clips themselves (seed protocol: optimistic)",
}


def row_of(arch: Arch, metrics: dict[str, Any]) -> dict[str, Any]:
    val = metrics["val"]
    va = val["va"]
    return {
        "name": arch.value,
        "accuracy": val["accuracy"],
        "macro_f1": val["macro_f1"],
        "valence_r2": va["valence"]["r2"],
        "arousal_r2": va["arousal"]["r2"],
        "valence_ccc": va["valence"]["ccc"],
        "arousal_ccc": va["arousal"]["ccc"],
        "parameters": metrics["parameters"]["encoder"],
        "cpu_ms": metrics["cpu_ms_per_window"]["onnxruntime"],
        "best_epoch": metrics["best_epoch"],
        "train_s": round(metrics["duration_s"]),
    }


FOLD_COLUMNS = [
    ("name", "family"),
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("valence_ccc", "valence CCC"),
    ("arousal_ccc", "arousal CCC"),
    ("parameters", "parameters"),
    ("best_epoch", "epoch (fold mean)"),
    ("train_s", "train s"),
]


def fold_row(arch: Arch, metrics: dict[str, Any]) -> dict[str, Any]:
    """One family's mean ± sd over the folds, as table cells (and the raw numbers under `figures`)."""
    stats = metrics["mean_sd"]
    row: dict[str, Any] = {"name": arch.value, "figures": {k: stats.get(k) for k in ("accuracy", "macro_f1")}}
    for key in ("accuracy", "macro_f1", "valence_ccc", "arousal_ccc"):
        cell = stats.get(key)
        row[key] = "n/a" if cell is None else f"{cell['mean']:.3f} ± {cell['sd']:.3f}"
    row["parameters"] = metrics["parameters"]["encoder"]
    row["best_epoch"] = metrics["best_epoch"]
    row["train_s"] = round(metrics["duration_s"])
    return row


def compare_folds(base: TrainConfig, archs: list[Arch], command: str | None = None) -> dict[str, Any]:
    """Every family under the same fold protocol (the same folds: one pool, one seed): mean ± sd."""
    from trainer.audio.data import prepare_pool
    from trainer.audio.folds import cross_validate

    out = Path(base.out)
    pool = prepare_pool(base)
    rows, protocol = [], ""
    for arch in archs:
        cfg = TrainConfig(**{**base.model_dump(), "arch": arch, "out": out / arch.value})
        log.info("compare: %s (%d of %d), %s folds", arch.value, len(rows) + 1, len(archs), base.folds)
        metrics = cross_validate(cfg, command, pool)
        protocol = metrics["protocol"]
        rows.append(fold_row(arch, metrics))
    result = {"protocol": protocol, "taxonomy": pool[0].taxonomy["name"], "classes": pool[0].classes, "rows": rows}
    result.update(config=base.model_dump(mode="json", exclude={"arch", "out"}), command=command)
    heading = (
        f"# Encoder families compared\n\nProtocol: **{protocol}**; taxonomy `{result['taxonomy']}`; "
        f"{base.epochs} epochs, batch {base.batch_size}, lr {base.lr:g}, seed {base.seed}. Mean ± sd over the folds, "
        "each family at the epoch its own mean validation macro-F1 curve peaks.\n\n"
    )
    write_tables(out, result, heading + reports.markdown_table(rows, FOLD_COLUMNS) + "\n")
    return result


def write_tables(out: Path, result: dict[str, Any], md: str) -> None:
    """compare.json and compare.md (with the command that reproduces them)."""
    (out / "compare.json").write_text(json.dumps(json_safe(result), indent=2) + "\n", encoding="utf-8")
    if result.get("command"):
        md += f"\nReproduce: `{result['command']}`\n"
    (out / "compare.md").write_text(md, encoding="utf-8")


def compare(base: TrainConfig, archs: list[Arch], command: str | None = None) -> dict[str, Any]:
    if base.folds is not None:
        return compare_folds(base, archs, command)
    out = Path(base.out)
    prep = prepare(base)
    rows = []
    for arch in archs:
        cfg = TrainConfig(**{**base.model_dump(), "arch": arch, "out": out / arch.value})
        log.info("compare: %s (%d of %d)", arch.value, len(rows) + 1, len(archs))
        rows.append(row_of(arch, train(cfg, prep, command=command).metrics))
    result = {
        "split_rule": prep.rule,
        "split": prep.split,
        "taxonomy": prep.taxonomy["name"],
        "classes": prep.classes,
        "protocol": base.model_dump(mode="json", exclude={"arch", "out"}),
        "command": command,
        "rows": rows,
    }
    heading = (
        f"# Encoder families compared\n\nValidation: **{prep.rule}** — {prep.split['val']['clips']} clips, "
        f"{prep.split['val']['speakers']} speakers; taxonomy `{prep.taxonomy['name']}`; {base.epochs} epochs, "
        f"batch {base.batch_size}, lr {base.lr:g}, seed {base.seed}. CPU ms: one window through ONNX Runtime "
        f"on {base.latency_threads} threads. Epoch chosen on: {CHOSEN_ON[base.select]}"
        f"{' (then refitted on all training speakers)' if base.refit and base.select is EpochChoice.INNER else ''}.\n\n"
    )
    write_tables(out, result, heading + reports.markdown_table(rows, COLUMNS) + "\n")
    reports.plot_bars(
        rows,
        ["accuracy", "macro_f1", "valence_ccc", "arousal_ccc"],
        f"encoder families | validation: {prep.rule}",
        out / "compare.png",
    )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    g = parser.add_argument_group("model (shared by every family)")
    g.add_argument("--arch", action="append", type=Arch, choices=list(Arch), help="repeatable (default: all seven)")
    for name, default in (("width", 32), ("embedding-dim", 128), ("rnn-hidden", 128), ("heads", 4), ("layers", 2)):
        g.add_argument(f"--{name}", type=int, default=default)
    g.add_argument("--dropout", type=float, default=0.3)
    add_instnorm_argument(g)
    add_optim_arguments(parser)
    add_run_arguments(parser, "runs/compare")


def run(args: argparse.Namespace) -> int:
    archs = list(dict.fromkeys(args.arch or list(Arch)))
    base = config_from_args(args, arch=archs[0])
    result = compare(base, archs, command_line(args))
    print(reports.markdown_table(result["rows"], FOLD_COLUMNS if base.folds is not None else COLUMNS))
    return 0
