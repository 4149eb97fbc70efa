"""Speaker-grouped K-fold cross-validation (`synesthesia-train audio --folds K`) and leave-one-corpus-out
(`--folds corpus`): the selection protocol of issue 12.

Folds are groups of whole speakers (scikit-learn's `StratifiedGroupKFold`, seeded: no speaker in two
folds, class shares as even as whole speakers allow). Each fold trains on the other K-1 folds and is
validated on its own; every epoch's validation predictions are kept, the epoch is chosen on the folds'
**mean validation macro-F1 curve**, and every fold is then scored at that one epoch: mean ± sd over folds
per metric, per corpus, each fold's confusion matrix, and the pooled out-of-fold figures. `--refit`
trains one model on every speaker for the chosen epochs (`OUT/best.pt`, what `export` takes);
`--ensemble` keeps the K fold models at the chosen epoch as one `EnsembleAudioModel` (`OUT/ensemble.pt`),
or with `--ensemble-epoch last` each fold's last epoch (read from its resume checkpoint `fold-K/ckpt.pt`:
nothing is chosen, so the last-epoch fold means are the members' unchosen estimate).

`--resume` continues a stopped fold run in the same OUT: a fold whose `fold-K/predictions.npz` (every
epoch's validation predictions, written when the fold finishes) matches the run's config is read back
instead of trained; when every fold finished and `oof.npz` exists (the refit was what stopped), the folds
are read from `oof.npz` at the chosen epoch and only the refit runs. Not with `--ensemble` at the chosen
epoch (its per-epoch weights are not kept in a form a resume can trust); a last-epoch ensemble resumes.

Side effects: fold runs under OUT/fold-K/, OUT/metrics.json, OUT/folds.md, OUT/oof.npz (out-of-fold
predictions) and the two checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.models.checkpoint import load_audio_model, load_checkpoint, save_audio_model, save_ensemble
from engine.models.encoders import count_parameters
from engine.models.ensemble import EnsembleAudioModel
from trainer.audio import reports
from trainer.audio.config import BEST_CKPT, CORPUS_FOLDS, LAST_CKPT, EnsembleEpoch, EpochChoice, TrainConfig, json_safe
from trainer.audio.data import RunData, prepare_pool
from trainer.audio.features import ClipBank, mel_statistics
from trainer.audio.loop import build_model, checkpoint_extra, refit_model, setup, train
from trainer.audio.results import fit_projection
from trainer.audio.splits import SPEAKER_RULE

log = logging.getLogger("synesthesia.train.folds")

ENSEMBLE_CKPT = "ensemble.pt"
OOF_FILE = "oof.npz"  # out-of-fold predictions at the chosen epoch
PREDICTIONS = "predictions.npz"  # a finished fold's validation predictions, one row per epoch
EPOCHS_DIR = "epochs"  # per-epoch fold weights, kept until the epoch is chosen (only with --ensemble)


def speaker_folds(speakers: list[str], labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Clip indices of each of `k` folds: whole speakers, stratified by class as far as grouping allows
    (StratifiedGroupKFold, shuffled by `seed`). ConfigError with fewer than `k` speakers."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_speakers = len(set(speakers))
    if k < 2 or n_speakers < k:
        raise ConfigError(f"--folds {k}: needs 2 <= K <= the number of speakers ({n_speakers})")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [val for _, val in splitter.split(np.zeros(len(labels)), labels, groups=speakers)]


def corpus_folds(corpora: list[str]) -> list[np.ndarray]:
    """One fold per corpus (leave one corpus out); ConfigError with fewer than two corpora."""
    names = sorted(set(corpora))
    if len(names) < 2:
        raise ConfigError(f"--folds corpus: needs at least two corpora, got {names}")
    arr = np.asarray(corpora)
    return [np.flatnonzero(arr == name) for name in names]


def make_folds(pool: ClipBank, cfg: TrainConfig) -> tuple[list[np.ndarray], str]:
    """The folds of `cfg.folds` and the protocol's description."""
    if cfg.folds == CORPUS_FOLDS:
        return corpus_folds(pool.corpora), "leave-one-corpus-out (each fold one corpus held out)"
    k = int(cfg.folds or 0)
    folds = speaker_folds(pool.speakers, pool.labels, k, cfg.seed)
    return folds, f"speaker-grouped {k}-fold cross-validation (StratifiedGroupKFold, seed {cfg.seed}); {SPEAKER_RULE}"


def fold_data(pool: RunData, extra: ClipBank, val_idx: np.ndarray, fold: int, protocol: str) -> RunData:
    """Fold `fold`: train on every other fold (plus the train-only clips), validate on this one."""
    held = np.zeros(len(pool.train), dtype=bool)
    held[val_idx] = True
    train = ClipBank.concat([pool.train.subset(np.flatnonzero(~held)), extra])
    val = pool.train.subset(val_idx)
    mean, std = mel_statistics(train.mels)

    def side(bank: ClipBank) -> dict[str, Any]:
        names = [pool.classes[i] if i >= 0 else "(va only)" for i in bank.labels]
        return {
            "clips": len(bank),
            "speakers": len(set(bank.speakers)),
            "corpora": dict(sorted(Counter(bank.corpora).items())),
            "classes": dict(sorted(Counter(names).items())),
        }

    info = {
        "rule": f"fold {fold + 1}: {protocol}",
        "fold": fold + 1,
        "train": side(train),
        "val": side(val),
        "val_speakers": sorted(set(val.speakers)),
        "train_speakers": sorted(set(train.speakers)),
    }
    return RunData(pool.classes, pool.taxonomy, train, val, info, mean, std, pool.frontend, pool.load_report)


def fold_scores(bank: ClipBank, pred: dict[str, np.ndarray], classes: list[str]) -> dict[str, Any]:
    """A fold's full figures at the chosen epoch (classification, VA, per corpus)."""
    preds = pred["logits"].argmax(1)
    out = reports.classification_metrics(bank.labels, preds, classes)
    out["va"] = reports.va_metrics(bank.va, pred["va"], bank.has_va)
    if bank.ids:
        out["arousal_by_emotion"] = reports.arousal_by_emotion(bank.ids, pred["va"][:, 1])
    corpora = np.asarray(bank.corpora)
    out["per_corpus"] = {}
    for corpus in sorted(set(bank.corpora)):
        sel = corpora == corpus
        m = reports.classification_metrics(bank.labels[sel], preds[sel], classes)
        out["per_corpus"][corpus] = {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    return out


def flat_scores(scores: dict[str, Any]) -> dict[str, float]:
    """The scalar figures of one fold, named for the summary table."""
    flat = {"accuracy": scores.get("accuracy", math.nan), "macro_f1": scores.get("macro_f1", math.nan)}
    for cls, v in scores.get("per_class", {}).items():
        if v["support"]:  # a class the fold does not hold has no recall or F1 to average
            flat[f"f1/{cls}"] = v["f1"]
            flat[f"recall/{cls}"] = v["recall"]
    for dim in reports.VA_NAMES:
        flat[f"{dim}_ccc"] = scores["va"][dim]["ccc"]
        flat[f"{dim}_r2"] = scores["va"][dim]["r2"]
    for emotion, v in scores.get("arousal_by_emotion", {}).get("per_emotion", {}).items():
        if emotion in reports.AROUSAL_ORDER:
            flat[f"arousal/{emotion}"] = v["mean"]
    for corpus, v in scores.get("per_corpus", {}).items():
        flat[f"{corpus}/accuracy"] = v["accuracy"]
        flat[f"{corpus}/macro_f1"] = v["macro_f1"]
    return flat


def mean_sd(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per key: mean, sd (n-1; 0 for one value) and n over the folds that have a finite value."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = {}
    for key in keys:
        vals = np.array([r[key] for r in rows if key in r and r[key] is not None and np.isfinite(r[key])])
        if vals.size:
            out[key] = {
                "mean": float(vals.mean()),
                "sd": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
                "n": int(vals.size),
            }
    return out


def choose_epoch(histories: list[list[dict[str, float]]]) -> dict[str, Any]:
    """The epoch with the highest mean validation macro-F1 over folds (first of equals), with the curves."""
    epochs = min(len(h) for h in histories)
    f1 = np.array([[h[e]["val_macro_f1"] for e in range(epochs)] for h in histories])
    acc = np.array([[h[e]["val_accuracy"] for e in range(epochs)] for h in histories])
    best = int(np.argmax(f1.mean(0)))
    return {
        "on": "mean validation macro-F1 over the folds",
        "epoch": best + 1,
        "mean_macro_f1": f1.mean(0).round(4).tolist(),
        "sd_macro_f1": (f1.std(0, ddof=1) if len(f1) > 1 else np.zeros(epochs)).round(4).tolist(),
        "mean_accuracy": acc.mean(0).round(4).tolist(),
        "note": "every fold is scored at this one epoch; choosing it on the same held-out folds makes the "
        "means slightly optimistic (the max of a mean curve over epochs); 'last_epoch' is the unchosen figure",
    }


# what may differ between a stopped fold run and the one that resumes it
RESUME_FREE = ("out", "resume", "only_folds")


def same_run(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether a fold's stored config is this fold's (apart from where it is written and --resume)."""
    now = cfg.model_dump(mode="json")
    default = TrainConfig().model_dump(mode="json")  # a field added since the fold ran: it ran the default
    return all(saved.get(k, default[k]) == v for k, v in now.items() if k not in RESUME_FREE)


def save_fold(fold_dir: Path, per_epoch: list[dict[str, np.ndarray]]) -> None:
    """Every epoch's validation predictions of a finished fold (logits [E, N, C], va [E, N, 2])."""
    np.savez_compressed(
        fold_dir / PREDICTIONS,
        logits=np.stack([p["logits"] for p in per_epoch]),
        va=np.stack([p["va"] for p in per_epoch]),
    )


def load_fold(fold_cfg: TrainConfig, n_val: int) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]]] | None:
    """A finished fold's history and per-epoch predictions, or None when it must (re)train."""
    fold_dir = Path(fold_cfg.out)
    metrics_file, preds_file = fold_dir / "metrics.json", fold_dir / PREDICTIONS
    if not (metrics_file.is_file() and preds_file.is_file()):
        return None
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    if not same_run(metrics.get("config", {}), fold_cfg):
        raise ConfigError(f"{fold_dir}: cannot resume, that fold ran another config; use another --out")
    with np.load(preds_file) as data:
        logits, va = data["logits"], data["va"]
    history = metrics["history"]
    if logits.shape[0] != len(history) or logits.shape[1] != n_val:
        return None
    return history, [{"logits": logits[e], "va": va[e]} for e in range(len(history))]


def fold_seconds(fold_cfg: TrainConfig) -> float:
    """A finished fold's training time from its metrics.json (0 when it has none)."""
    path = Path(fold_cfg.out) / "metrics.json"
    return float(json.loads(path.read_text(encoding="utf-8")).get("duration_s", 0.0)) if path.is_file() else 0.0


def load_finished_folds(
    out: Path, fold_cfgs: list[TrainConfig], folds: list[np.ndarray], bank: ClipBank
) -> tuple[list[list[dict[str, float]]], list[list[dict[str, np.ndarray] | None]]] | None:
    """Histories and chosen-epoch predictions of a run whose folds all finished and whose `oof.npz` was
    written (a stopped refit): the other epochs' predictions are then unknown (None). None otherwise."""
    if not (out / OOF_FILE).is_file():
        return None
    histories = []
    for fold_cfg in fold_cfgs:
        metrics_file = Path(fold_cfg.out) / "metrics.json"
        if not metrics_file.is_file():
            return None
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        if not same_run(metrics.get("config", {}), fold_cfg):
            raise ConfigError(f"{fold_cfg.out}: cannot resume, that fold ran another config; use another --out")
        histories.append(metrics["history"])
    chosen = choose_epoch(histories)["epoch"] - 1
    with np.load(out / OOF_FILE) as data:
        fold_of, logits, va, ids = data["fold"], data["logits"], data["va"], [str(i) for i in data["ids"]]
    preds: list[list[dict[str, np.ndarray] | None]] = []
    for k, val_idx in enumerate(folds):
        sel = np.flatnonzero(fold_of == k + 1)
        val_ids = bank.subset(val_idx).ids
        if len(sel) != len(val_idx) or (val_ids and [ids[i] for i in sel] != list(val_ids)):
            raise ConfigError(f"{out / OOF_FILE}: its folds are not this run's clips; use another --out")
        per_epoch: list[dict[str, np.ndarray] | None] = [None] * len(histories[k])
        per_epoch[chosen] = {"logits": logits[sel], "va": va[sel]}
        preds.append(per_epoch)
    return histories, preds


def cross_validate(
    cfg: TrainConfig,
    command: str | None = None,
    pool: tuple[RunData, ClipBank] | None = None,
) -> dict[str, Any]:
    """Run the fold protocol of `cfg.folds`; returns (and writes) the summary metrics."""
    started = time.time()
    keep_members = cfg.ensemble and cfg.ensemble_epoch is EnsembleEpoch.CHOSEN  # every epoch's weights
    if cfg.resume and keep_members:  # the members' per-epoch weights are not kept in a form a resume can trust
        raise ConfigError("--resume does not apply to --folds runs with --ensemble; use another --out")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ConfigError("--folds runs in one process (run folds side by side as separate commands instead)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data, extra = pool if pool is not None else prepare_pool(cfg)
    folds, protocol = make_folds(data.train, cfg)
    log.info("%s: %d folds over %d clips", protocol, len(folds), len(data.train))
    fold_cfgs = [
        cfg.model_copy(
            update={
                "folds": None,
                "select": EpochChoice.HELDOUT,  # the fold's own clips; the epoch is chosen across folds below
                "refit": False,
                "ensemble": False,
                "ensemble_epoch": EnsembleEpoch.CHOSEN,
                "reports": False,
                "latency_runs": 0,
                "resume": False,
                "only_folds": None,
                "out": out / f"fold-{k + 1}",
            }
        )
        for k in range(len(folds))
    ]
    if cfg.only_folds is not None:
        return train_fold_share(cfg, data, extra, folds, protocol, fold_cfgs, command)
    fold_info: dict[int, dict[str, Any]] = {}  # each fold's split description, from its one fold_data call
    finished, earlier = None, 0.0  # earlier: training seconds of folds read back instead of trained now
    if cfg.resume and not all((Path(c.out) / PREDICTIONS).is_file() for c in fold_cfgs):
        finished = load_finished_folds(out, fold_cfgs, folds, data.train)  # a run from before predictions.npz
    if finished is not None:
        log.info("resuming %s: every fold finished, reading the chosen epoch from %s", out, OOF_FILE)
        histories, fold_preds = finished
        earlier = sum(fold_seconds(c) for c in fold_cfgs)
        fold_info = {k: fold_data(data, extra, v, k, protocol).split for k, v in enumerate(folds)}
    else:
        histories, fold_preds = [], []
        for k, val_idx in enumerate(folds):
            done = load_fold(fold_cfgs[k], len(val_idx)) if cfg.resume else None
            if done is not None:
                log.info("fold %d/%d: finished earlier, read from %s", k + 1, len(folds), fold_cfgs[k].out)
                histories.append(done[0])
                fold_preds.append(done[1])
                earlier += fold_seconds(fold_cfgs[k])
                fold_info[k] = fold_data(data, extra, val_idx, k, protocol).split
                continue
            prep = fold_data(data, extra, val_idx, k, protocol)
            fold_info[k] = prep.split
            result, per_epoch = train_one_fold(fold_cfgs[k], prep, command, keep_members=keep_members)
            histories.append(result.history)
            fold_preds.append(per_epoch)

    selection = choose_epoch(histories)
    chosen = selection["epoch"] - 1
    folds_out, rows, last_rows, pooled_y, pooled_p, oof = [], [], [], [], [], []
    for k, val_idx in enumerate(folds):
        val = data.train.subset(val_idx)
        scores = fold_scores(val, fold_preds[k][chosen], data.classes)
        rows.append(flat_scores(scores))
        if fold_preds[k][-1] is not None:  # None: resumed from oof.npz, which holds the chosen epoch only
            last_rows.append(flat_scores(fold_scores(val, fold_preds[k][-1], data.classes)))
        pooled_y.append(val.labels)
        pooled_p.append(fold_preds[k][chosen]["logits"].argmax(1))
        oof.append((val, fold_preds[k][chosen], k))
        folds_out.append({**fold_info[k], "scores": scores, "own_best_epoch": int(np.argmax(
            [h["val_macro_f1"] for h in histories[k]]) + 1)})  # fmt: skip
    summary = mean_sd(rows)
    pooled = reports.classification_metrics(np.concatenate(pooled_y), np.concatenate(pooled_p), data.classes)
    pooled["arousal_by_emotion"] = write_out_of_fold(out / OOF_FILE, oof, data.classes)
    metrics: dict[str, Any] = {
        "protocol": protocol,
        "split_rule": protocol,
        "taxonomy": data.taxonomy["name"],
        "classes": data.classes,
        "arch": cfg.arch.value,
        "k": len(folds),
        "best_epoch": selection["epoch"],
        "epochs": cfg.epochs,
        "selection": selection,
        "mean_sd": summary,
        "last_epoch_mean_sd": mean_sd(last_rows),
        "val": {
            "n": int(sum(len(f) for f in folds)),
            "accuracy": summary["accuracy"]["mean"],
            "macro_f1": summary["macro_f1"]["mean"],
            "note": "fold means at the chosen epoch (see mean_sd)",
        },
        "pooled_out_of_fold": pooled,
        "folds": folds_out,
        "parameters": {"encoder": count_parameters(build_model(cfg, data).encoder)},
        "data": {"specs": cfg.data, "load": data.load_report, "train_only_clips": len(extra)},
        "command": command,
        "config": cfg.model_dump(mode="json"),
    }
    everything = RunData(
        data.classes, data.taxonomy, ClipBank.concat([data.train, extra]), data.val, data.split,
        data.mel_mean, data.mel_std, data.frontend, data.load_report,
    )  # fmt: skip
    if cfg.refit:
        metrics["refit"] = refit_all(cfg, everything, histories, selection["epoch"], metrics)
    if cfg.ensemble:
        last = cfg.ensemble_epoch is EnsembleEpoch.LAST
        epoch = len(histories[0]) if last else selection["epoch"]
        metrics["ensemble"] = write_ensemble(cfg, data, extra, folds, protocol, everything, epoch)
    metrics["duration_s"] = round(time.time() - started + earlier, 1)
    if cfg.resume:
        metrics["resumed"] = {"this_process_s": round(time.time() - started, 1), "earlier_folds_s": round(earlier, 1)}
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8")
    (out / "folds.md").write_text(folds_markdown(metrics), encoding="utf-8")
    log.info(
        "%s: macro-F1 %.3f ± %.3f, accuracy %.3f ± %.3f over %d folds at epoch %d",
        out, summary["macro_f1"]["mean"], summary["macro_f1"]["sd"], summary["accuracy"]["mean"],
        summary["accuracy"]["sd"], len(folds), selection["epoch"],
    )  # fmt: skip
    return metrics


def train_one_fold(fold_cfg: TrainConfig, prep: RunData, command: str | None, keep_members: bool):
    """Train one fold, keeping every epoch's validation predictions (and, for ensembles, its weights)."""
    per_epoch: list[dict[str, np.ndarray]] = []
    fold_dir = Path(fold_cfg.out)
    log.info("%s: %d train / %d val clips", fold_dir.name, len(prep.train), len(prep.val))

    def keep(epoch: int, model, pred) -> None:
        per_epoch.append(pred)
        if keep_members:
            (fold_dir / EPOCHS_DIR).mkdir(parents=True, exist_ok=True)
            save_audio_model(model, fold_dir / EPOCHS_DIR / f"{epoch + 1:03d}.pt")

    result = train(fold_cfg, prep, command=command, on_model=keep)
    save_fold(fold_dir, per_epoch)
    return result, per_epoch


def train_fold_share(
    cfg: TrainConfig, data: RunData, extra: ClipBank, folds: list[np.ndarray], protocol: str, fold_cfgs, command
) -> dict[str, Any]:
    """`--only-folds`: train this process's share of the folds (keeping finished ones under --resume) and stop;
    the run with --resume and without --only-folds gathers every fold. Returns what was done (no metrics.json)."""
    assert cfg.only_folds is not None
    wrong = [k for k in cfg.only_folds if k > len(folds)]
    if wrong:
        raise ConfigError(f"--only-folds {','.join(map(str, wrong))}: this protocol has {len(folds)} folds")
    if cfg.ensemble and cfg.ensemble_epoch is EnsembleEpoch.CHOSEN:
        raise ConfigError(
            "--only-folds does not apply to --ensemble at the chosen epoch (the members are gathered in one "
            "process); use --ensemble-epoch last"
        )
    trained, kept = [], []
    for k in (f - 1 for f in cfg.only_folds):
        if cfg.resume and load_fold(fold_cfgs[k], len(folds[k])) is not None:
            log.info("fold %d/%d: finished earlier, kept in %s", k + 1, len(folds), fold_cfgs[k].out)
            kept.append(k + 1)
            continue
        prep = fold_data(data, extra, folds[k], k, protocol)
        train_one_fold(fold_cfgs[k], prep, command, keep_members=False)
        trained.append(k + 1)
    log.info("%s: folds %s done; run again with --resume and without --only-folds to gather them", cfg.out,
             ",".join(map(str, cfg.only_folds)))  # fmt: skip
    return {"only_folds": list(cfg.only_folds), "trained": trained, "kept": kept, "protocol": protocol}


def write_out_of_fold(path: Path, oof: list[tuple[ClipBank, dict[str, np.ndarray], int]], classes) -> dict[str, Any]:
    """Every clip's out-of-fold prediction at the chosen epoch -> `path` (npz: ids, fold, label, logits,
    va, target va), so later analyses need no retraining; returns the pooled arousal ranking."""
    ids = [i for bank, _, _ in oof for i in (bank.ids or [""] * len(bank))]
    va = np.concatenate([p["va"] for _, p, _ in oof])
    np.savez_compressed(
        path,
        ids=np.array(ids),
        fold=np.concatenate([np.full(len(bank), k + 1) for bank, _, k in oof]),
        label=np.concatenate([bank.labels for bank, _, _ in oof]),
        logits=np.concatenate([p["logits"] for _, p, _ in oof]),
        va=va,
        va_target=np.concatenate([bank.va for bank, _, _ in oof]),
        classes=np.array(classes),
    )
    return reports.arousal_by_emotion(ids, va[:, 1])


def refit_all(cfg: TrainConfig, everything: RunData, histories, epochs: int, metrics) -> dict[str, Any]:
    """One model on every speaker for the chosen epochs (learning rate per epoch: the folds' median)."""
    dist, device = setup(cfg)
    lrs = [cfg.lr] + [float(np.median([h[e]["lr"] for h in histories])) for e in range(epochs - 1)]
    model = refit_model(cfg, everything, lrs, dist, device)
    fit_projection(model, everything, cfg, device)
    note = "trained on every speaker for the epochs the folds chose: no held-out figure of its own; the fold means are"
    state = {"epoch": epochs - 1, "metrics": json_safe({k: metrics[k] for k in ("protocol", "mean_sd", "selection")})}
    save_audio_model(model.cpu(), Path(cfg.out) / BEST_CKPT, checkpoint_extra(cfg, everything, **state))
    return {
        "checkpoint": str(Path(cfg.out) / BEST_CKPT),
        "epochs": epochs,
        "clips": len(everything.train),
        "note": note,
    }


def write_ensemble(cfg, data: RunData, extra, folds, protocol, everything: RunData, epoch: int) -> dict[str, Any]:
    """The K fold models at `epoch` (1-based) as one EnsembleAudioModel (`OUT/ensemble.pt`, what `export`
    takes): from the kept per-epoch weights, or with `ensemble_epoch` last from each fold's resume checkpoint."""
    _, device = setup(cfg)
    last = cfg.ensemble_epoch is EnsembleEpoch.LAST
    members, stats = [], []
    for k, val_idx in enumerate(folds):
        fold_dir = Path(cfg.out) / f"fold-{k + 1}"
        path = fold_dir / LAST_CKPT if last else fold_dir / EPOCHS_DIR / f"{epoch:03d}.pt"
        if last and int(load_checkpoint(path, "audio_model").get("epoch", -1)) != epoch - 1:
            raise ConfigError(f"{path}: not the fold's last epoch ({epoch}); train the fold again (another --out)")
        member = load_audio_model(path).to(device)
        prep = fold_data(data, extra, val_idx, k, protocol)
        fit_projection(member, prep, cfg, device)
        members.append(member.cpu().eval())
        stats.append((prep.mel_mean, prep.mel_std))
        if not last:
            shutil.rmtree(fold_dir / EPOCHS_DIR)  # the other epochs' weights are not needed any more
    model = EnsembleAudioModel(members, everything.mel_mean, everything.mel_std, stats).eval()
    out = Path(cfg.out) / ENSEMBLE_CKPT
    save_ensemble(model, out, checkpoint_extra(cfg, everything, epoch=epoch - 1))
    estimate = "last_epoch_mean_sd" if last else "mean_sd"
    return {"checkpoint": str(out), "members": len(members), "epoch": epoch, "members_epoch": cfg.ensemble_epoch.value,
            "estimate": estimate}  # fmt: skip


def _pm(cell: dict[str, float] | None) -> str:
    return "n/a" if cell is None else f"{cell['mean']:.3f} ± {cell['sd']:.3f}"


def folds_markdown(metrics: dict[str, Any]) -> str:
    """The run's table: mean ± sd per metric with each fold's value, then each fold's confusion matrix."""
    summary, folds = metrics["mean_sd"], metrics["folds"]
    flat = [flat_scores(f["scores"]) for f in folds]
    head = "| metric | mean ± sd | " + " | ".join(f"fold {f['fold']}" for f in folds) + " |"
    lines = [
        f"# {metrics['arch']}, taxonomy `{metrics['taxonomy']}`: {metrics['protocol']}",
        "",
        f"Epoch {metrics['best_epoch']} of {metrics['epochs']}, chosen on {metrics['selection']['on']}; every fold "
        "scored at that epoch.",
        "",
        head,
        "|---|---|" + "---|" * len(folds),
    ]
    for key in summary:
        cells = " | ".join("" if key not in f else f"{f[key]:.3f}" for f in flat)
        lines.append(f"| {key} | {_pm(summary.get(key))} | {cells} |")
    lines += ["", "Fold validation speakers: " + "; ".join(
        f"fold {f['fold']}: {', '.join(f['val_speakers'])}" for f in folds)]  # fmt: skip
    rank = metrics.get("pooled_out_of_fold", {}).get("arousal_by_emotion")
    if rank and rank["per_emotion"]:
        means = ", ".join(f"{e} {v['mean']:+.2f} (n {v['n']})" for e, v in rank["per_emotion"].items())
        verdict = {True: "holds", False: "does not hold", None: "cannot be checked (an emotion is missing)"}
        lines += ["", f"Mean predicted arousal out of fold by source emotion: {means}; "
                  f"{' < '.join(rank['order'])} {verdict[rank['ranked']]}."]  # fmt: skip
    classes = metrics["classes"]
    for f in folds:
        cm = f["scores"].get("confusion")
        if cm is None:
            continue
        lines += ["", f"Fold {f['fold']} confusion (rows: truth)", "", "| | " + " | ".join(classes) + " |"]
        lines.append("|---|" + "---|" * len(classes))
        lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(classes, cm, strict=True)]
    if metrics.get("command"):
        lines += ["", f"Reproduce: `{metrics['command']}`"]
    return "\n".join(lines) + "\n"
