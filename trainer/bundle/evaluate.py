"""`synesthesia-train evaluate`: score a bundle on labelled audio, through the engine's own backends.

Clips are decoded, trimmed and featurised like in training, z-scored with the bundle's statistics and
run through ONNX Runtime (or torch). Figures: accuracy, macro-F1, per-class F1, confusion, valence and
arousal R²/CCC. Clips whose speaker was in the bundle's training data are reported separately: only
the held-out speakers measure what a gallery will hear.

A bundle with an art half (generator.pt and art_encoder.pt) also gets its GAN figures (trainer.gan.evaluate:
emotion consistency, diversity, Fréchet distance per emotion, latent smoothness) against procedural
artworks. Side effects: with --out, writes evaluate.json and confusion.png.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BundleError, ConfigError
from engine.inference.base import BackendKind, Component
from engine.models.bundle import Bundle, load_bundle
from trainer.audio import reports
from trainer.audio.config import SYNTHETIC, json_safe
from trainer.audio.data import bank_from, load_records
from trainer.audio.features import FeatureCache, crops_of, standardize
from trainer.audio.taxonomy import get_taxonomy
from trainer.gan import evaluate as art_eval
from trainer.space.data import ART_ENCODER_FILE, DEFAULT_CLASSES, load_art, load_bundle_models

log = logging.getLogger("synesthesia.train.evaluate")


def runner_for(bundle, backend: BackendKind):
    """ONNX Runtime (what a show runs on CPU) or eager torch (the reference)."""
    if backend is BackendKind.TORCH:
        from engine.inference.torch_backend import TorchRunner

        return TorchRunner(bundle, Component.AUDIO)
    from engine.inference.onnx_backend import OnnxRunner

    return OnnxRunner(bundle, Component.AUDIO, threads=2)


def evaluate_bundle(
    bundle_dir: str | Path | None,
    specs: list[str],
    taxonomy_name: str | None = None,
    backend: BackendKind = BackendKind.ONNX,
    cache_dir: Path | None = None,
    out: Path | None = None,
    crops: int = 1,
) -> dict[str, Any]:
    """Figures of a bundle on labelled audio; `crops` > 1 averages logits and valence/arousal over that many
    evenly spaced windows of each (trimmed) clip instead of its one centred window."""
    bundle = load_bundle(bundle_dir)
    man = bundle.manifest
    tax_name = taxonomy_name or man.data.get("taxonomy", {}).get("name") or "default"
    taxonomy = get_taxonomy(tax_name)
    if list(taxonomy.classes) != bundle.classes:
        raise ConfigError(
            f"taxonomy {tax_name!r} has classes {list(taxonomy.classes)}; the bundle has {bundle.classes}"
        )
    frontend = bundle.frontend_config()
    records, sources, report = load_records(specs, taxonomy, frontend)
    cache = FeatureCache(frontend, cache_dir)
    bank = bank_from(records, sources, cache, taxonomy)
    runner = runner_for(bundle, backend)
    mean, std = np.asarray(man.audio.mel_mean), np.asarray(man.audio.mel_std)
    if crops > 1:
        logits_a, va_a = averaged_over_crops(bank, runner, cache, crops, mean, std)
    else:
        logits, va = [], []
        for start in range(0, len(bank), 32):
            res = runner(standardize(bank.mels[start : start + 32], mean, std).numpy())
            logits.append(res[0])
            va.append(res[1])
        logits_a, va_a = np.concatenate(logits), np.concatenate(va)
    preds = logits_a.argmax(1)
    seen = set(man.data.get("split", {}).get("train_speakers", []))
    held = set(man.data.get("split", {}).get("val_speakers", []))

    def scores(sel: np.ndarray) -> dict[str, Any]:
        m = reports.classification_metrics(bank.labels[sel], preds[sel], bundle.classes)
        if sel.any():
            m["va"] = reports.va_metrics(bank.va[sel], va_a[sel], bank.has_va[sel])
        return m

    everything = np.ones(len(bank), dtype=bool)
    result: dict[str, Any] = {
        "bundle": str(bundle.path),
        "backend": runner.describe(),
        "taxonomy": tax_name,
        "crops": crops,
        "data": {"specs": specs, "load": report},
        "all": scores(everything),
    }
    if held:
        sel = np.array([s in held for s in bank.speakers])
        result["bundle_validation_speakers"] = scores(sel)
    if seen:
        sel = np.array([s in seen for s in bank.speakers])
        result["seen_in_training"] = {"clips": int(sel.sum()), **scores(sel)}
        result["unseen_speakers"] = scores(~sel)
    result["note"] = (
        "'all' includes any clip the bundle was trained on; 'unseen_speakers' and 'bundle_validation_speakers' "
        "are the honest figures"
        if seen or held
        else "the bundle does not list its training speakers: figures may include clips it was trained on"
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluate.json").write_text(json.dumps(json_safe(result), indent=2) + "\n", encoding="utf-8")
        reports.plot_confusion(
            result["all"]["confusion"], bundle.classes, f"{man.name} on {', '.join(specs)}", out / "confusion.png"
        )
    return result


def averaged_over_crops(bank, runner, cache: FeatureCache, crops: int, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Test-time averaging: logits and valence/arousal of each clip averaged over its `crops_of` windows."""
    n = cache.config.n_samples
    windows, owner = [], []
    for i, clip in enumerate(bank.audio):
        parts = crops_of(clip, n, crops)
        windows += parts
        owner += [i] * len(parts)
    mels = cache.mels(windows)
    outs = [runner(standardize(mels[s : s + 32], mean, std).numpy()) for s in range(0, len(mels), 32)]
    logits, va = (np.concatenate([o[j] for o in outs]) for j in (0, 1))
    idx = np.asarray(owner)
    count = np.bincount(idx, minlength=len(bank))[:, None]
    mean_logits = np.zeros((len(bank), logits.shape[1]))
    mean_va = np.zeros((len(bank), va.shape[1]))
    np.add.at(mean_logits, idx, logits)
    np.add.at(mean_va, idx, va)
    return (mean_logits / count).astype(np.float32), (mean_va / count).astype(np.float32)


GAN_ART_PER_CLASS = 100  # procedural reference artworks per emotion (training side of the k-NN vote)
GAN_VAL_ART_PER_CLASS = 50  # held-out-seed artworks per emotion (the real-art scale and conditions)
GAN_PER_CLASS = 50  # generated images per emotion


def art_classes(bundle: Bundle) -> list[str]:
    """The emotions of the bundle's art half: its art index's labels in first-seen order, else the default four."""
    index = bundle.art_index()
    if index is None:
        return list(DEFAULT_CLASSES)
    return list(dict.fromkeys(str(label) for label in index["labels"]))


def evaluate_gan(
    bundle_dir: str | Path | None,
    *,
    per_class: int = GAN_PER_CLASS,
    art_per_class: int = GAN_ART_PER_CLASS,
    art_val_per_class: int = GAN_VAL_ART_PER_CLASS,
    cache_dir: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """GAN metrics of a bundle's generator in its own image encoder's space, against procedural art.

    BundleError when the bundle has no generator or no art_encoder.pt (GAN figures need both).
    """
    bundle = load_bundle(bundle_dir)
    if bundle.manifest.generator is None or ART_ENCODER_FILE not in bundle.manifest.files:
        raise BundleError(f"{bundle.path}: no art half to evaluate (needs a generator and {ART_ENCODER_FILE})")
    models = load_bundle_models(bundle.path)
    if models.generator is None:
        raise BundleError(f"{bundle.path}: the generator has no torch checkpoint to evaluate")
    size = int(bundle.manifest.data.get("art", {}).get("size", models.generator.config.resolution))
    art_train, art_val = load_art(
        art_classes(bundle), per_class=art_per_class, val_per_class=art_val_per_class, size=size, seed=seed,
        cache_dir=cache_dir,
    )  # fmt: skip
    report = art_eval.evaluate_bundle_generator(models, art_train, art_val, per_class=per_class, seed=seed)
    return {"summary": art_eval.summary_line(report), **report}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: assets/default)")
    parser.add_argument("--data", action="append", metavar="SPEC", help="labelled audio (repeatable; see audio)")
    parser.add_argument("--taxonomy", help="default: the bundle's own")
    parser.add_argument(
        "--backend", type=BackendKind, choices=[BackendKind.ONNX, BackendKind.TORCH], default=BackendKind.ONNX
    )
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--out", type=Path, help="write evaluate.json and confusion.png here")
    parser.add_argument(
        "--crops", type=int, default=1, help="test-time averaging over this many windows of each clip (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {}
    if args.data:
        result = evaluate_bundle(
            args.bundle, args.data, args.taxonomy, args.backend, args.cache_dir, args.out, crops=args.crops
        )
        if any(spec.split(":")[0] == SYNTHETIC for spec in args.data):
            log.info("procedural clips are a smoke test, not a measure of real speech")
    bundle = load_bundle(args.bundle)
    if bundle.manifest.generator is not None:
        if ART_ENCODER_FILE in bundle.manifest.files:
            result["gan"] = evaluate_gan(bundle.path, cache_dir=args.cache_dir)
        else:
            log.warning("%s: generator without %s: no GAN figures", bundle.path, ART_ENCODER_FILE)
    if not result:
        raise ConfigError("nothing to evaluate: give --data SPEC (labelled audio)")
    summary = {k: v for k, v in result.items() if k in ("bundle", "backend", "note")}
    for part in ("all", "unseen_speakers", "bundle_validation_speakers"):
        if part in result:
            summary[part] = {k: result[part][k] for k in ("n", "accuracy", "macro_f1") if k in result[part]}
    if "gan" in result:
        summary["gan"] = result["gan"]["summary"]
    print(json.dumps(json_safe(summary)))
    return 0
