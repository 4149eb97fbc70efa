"""Issue 12's protocol on tiny procedural data: speaker-grouped folds, balanced sampling, mixup, instnorm,
fold ensembles exported as one ONNX graph, and test-time crops (CPU, seconds each)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.inference.base import Component
from engine.inference.onnx_backend import OnnxRunner
from engine.inference.torch_backend import TorchRunner
from engine.models.bundle import load_bundle
from engine.models.checkpoint import audio_model_from_config, load_audio_model, load_checkpoint
from engine.models.encoders import Arch, EncoderConfig, build_encoder
from engine.models.ensemble import EnsembleAudioModel
from tests.bundles import attach_small_art_half
from trainer.audio import reports
from trainer.audio.config import Balance
from trainer.audio.data import epoch_batches, sampling_weights
from trainer.audio.features import ClipBank, crops_of
from trainer.audio.folds import corpus_folds, speaker_folds
from trainer.audio.loop import mixup
from trainer.bundle.export import PARITY_ATOL
from trainer.cli import main

TINY = ["--data", "synthetic:6", "--width", "4", "--embedding-dim", "16", "--rnn-hidden", "16"]
FAST = ["--no-reports", "--latency-runs", "0", "--augment", "none", "--heads", "2", "--layers", "1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """One 3-fold run with every switch on: refit, ensemble, instnorm, mixup, speaker balance."""
    out = tmp_path_factory.mktemp("cv")
    argv = ["audio", *TINY, *FAST, "--arch", "ann", "--epochs", "2", "--folds", "3", "--refit", "--ensemble"]
    argv += ["--instnorm", "--mixup", "0.4", "--balance", "speaker", "--cache-dir", str(cache), "--out", str(out)]
    assert main(argv) == 0
    return out


def bank_of(speakers: list[str], labels: list[int], corpora: list[str] | None = None) -> ClipBank:
    n = len(speakers)
    return ClipBank(
        audio=[np.zeros(4, np.float16)] * n,
        mels=np.zeros((n, 2, 2), np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        va=np.zeros((n, 2), np.float32),
        has_va=np.ones(n, bool),
        speakers=speakers,
        corpora=corpora or ["c"] * n,
    )


def test_grouped_folds_keep_speakers_apart_and_hold_every_class() -> None:
    rng = np.random.default_rng(0)
    speakers, labels = [], []
    for s in range(15):  # unequal speakers, every speaker with every class, a few clips each
        for c in range(4):
            for _ in range(int(rng.integers(1, 6))):
                speakers.append(f"spk{s:02d}")
                labels.append(c)
    folds = speaker_folds(speakers, np.asarray(labels), 5, seed=3)
    assert sorted(int(i) for f in folds for i in f) == list(range(len(labels)))  # a partition of the clips
    fold_speakers = [{speakers[i] for i in f} for f in folds]
    for a in range(5):
        for b in range(a + 1, 5):
            assert fold_speakers[a].isdisjoint(fold_speakers[b])  # no speaker in two folds
        assert {labels[i] for i in folds[a]} == {0, 1, 2, 3}  # every class in every fold
    again = speaker_folds(speakers, np.asarray(labels), 5, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(folds, again, strict=True))  # deterministic by seed
    assert [len(f) for f in corpus_folds(["b", "a", "b", "c"])] == [1, 2, 1]


def test_too_few_speakers_for_k_folds_is_a_config_error() -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="number of speakers"):
        speaker_folds(["a", "a", "b"], np.array([0, 1, 0]), 3, 0)


def test_speaker_balance_gives_every_speaker_an_equal_share() -> None:
    # one voice with 1000 clips (TESS-like), one with 100, one with 10
    speakers = ["big"] * 1000 + ["mid"] * 100 + ["small"] * 10
    bank = bank_of(speakers, [i % 4 for i in range(len(speakers))])
    weights = sampling_weights(bank, Balance.SPEAKER)
    drawn = Counter()
    for epoch in range(20):
        for batch in epoch_batches(len(bank), 16, epoch, seed=7, world=1, rank=0, weights=weights):
            drawn.update(speakers[i] for i in batch)
    total = sum(drawn.values())
    for spk in ("big", "mid", "small"):
        assert abs(drawn[spk] / total - 1 / 3) < 0.02, drawn
    assert sampling_weights(bank, Balance.NONE) is None
    # two ranks get the same number of batches and together cover the weighted draw
    r0 = epoch_batches(len(bank), 16, 0, 7, 2, 0, weights)
    r1 = epoch_batches(len(bank), 16, 0, 7, 2, 1, weights)
    assert len(r0) == len(r1) and all(len(b) == 8 for b in r0 + r1)


def test_procedural_voices_count_as_one_speaker_under_speaker_balance() -> None:
    # three real speakers and sixteen synthetic voices: the synthetic corpus gets one speaker's share
    speakers = ["a"] * 30 + ["b"] * 30 + ["c"] * 30 + [f"synth0-speech-{i}" for i in range(16) for _ in range(5)]
    corpora = ["real"] * 90 + ["synthetic"] * 80
    bank = bank_of(speakers, [i % 4 for i in range(len(speakers))], corpora)
    w = sampling_weights(bank, Balance.SPEAKER)
    assert np.isclose(w[90:].sum(), 0.25) and np.isclose(w[:30].sum(), 0.25)
    w = sampling_weights(bank, Balance.SPEAKER, synthetic_weight=3.0)  # --synthetic-weight 3: three speakers' share
    assert np.isclose(w[90:].sum(), 0.5) and np.isclose(w[:30].sum(), 1 / 6)


def test_speaker_class_and_corpus_balance() -> None:
    speakers = ["a"] * 90 + ["a"] * 10 + ["b"] * 20
    labels = [0] * 90 + [1] * 10 + [0] * 20
    corpora = ["x"] * 100 + ["y"] * 20
    bank = bank_of(speakers, labels, corpora)
    w = sampling_weights(bank, Balance.SPEAKER_CLASS)
    assert np.isclose(w[:90].sum(), 0.25) and np.isclose(w[90:100].sum(), 0.25) and np.isclose(w[100:].sum(), 0.5)
    w = sampling_weights(bank, Balance.CORPUS)
    assert np.isclose(w[:100].sum(), 0.5) and np.isclose(w[100:].sum(), 0.5)


def test_mixup_mixes_features_and_targets() -> None:
    x = torch.arange(8, dtype=torch.float32).reshape(4, 1, 1, 2)
    y = torch.tensor([0, 1, 2, 3])
    va = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    has = torch.tensor([True, True, False, True])
    mixed, y1, y2, lam, va_m, has_m = mixup(x, y, va, has, 0.4, [0, 1, 2])
    assert 0.5 <= lam <= 1.0 and torch.equal(y1, y)
    perm = [int((y == t).nonzero()) for t in y2]
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(va_m, lam * va + (1 - lam) * va[perm])
    assert torch.equal(has_m, has & has[perm])
    again = mixup(x, y, va, has, 0.4, [0, 1, 2])
    assert again[3] == lam  # seeded per step


def test_instnorm_removes_a_fixed_channel_colouring() -> None:
    cfg = EncoderConfig(arch=Arch.CNN, n_mels=32, n_frames=40, width=4, embedding_dim=8, instnorm=True)
    enc = build_encoder(cfg).eval()
    x = torch.randn(2, 1, 32, 40)
    colouring = torch.linspace(-3, 3, 32)[None, None, :, None]  # a microphone's per-band offset
    with torch.no_grad():
        for a, b in zip(enc(x), enc(x + colouring), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    plain = build_encoder(cfg.model_copy(update={"instnorm": False}))
    assert plain.state_dict().keys() == enc.state_dict().keys()  # no new weights: old checkpoints load


def test_ensemble_is_the_mean_of_its_members_on_their_own_statistics() -> None:
    enc = {"arch": "ann", "n_mels": 8, "n_frames": 16, "embedding_dim": 8}
    torch.manual_seed(0)
    members = [audio_model_from_config(enc, 4).eval() for _ in range(3)]
    rng = np.random.default_rng(0)
    stats = [(rng.normal(size=8), rng.uniform(0.5, 2, size=8)) for _ in members]
    mean_b, std_b = rng.normal(size=8), rng.uniform(0.5, 2, size=8)
    ens = EnsembleAudioModel(members, mean_b, std_b, stats).eval()
    raw = torch.randn(2, 1, 8, 16, dtype=torch.float64)

    def z(m, s):
        return ((raw - torch.as_tensor(m)[:, None]) / torch.as_tensor(s)[:, None]).float()

    with torch.no_grad():
        got = ens(z(mean_b, std_b))
        outs = [m(z(*st)) for m, st in zip(members, stats, strict=True)]
    torch.testing.assert_close(got[0], torch.stack([o[0] for o in outs]).mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], torch.stack([o[1] for o in outs]).mean(0), atol=1e-5, rtol=1e-4)
    assert torch.allclose(got[2].norm(dim=1), torch.ones(2)) and torch.allclose(got[3].norm(dim=1), torch.ones(2))


def test_audio_folds_writes_fold_means_and_confusions(fold_run: Path) -> None:
    metrics = json.loads((fold_run / "metrics.json").read_text())
    assert metrics["k"] == 3 and metrics["protocol"].startswith("speaker-grouped 3-fold")
    assert metrics["selection"]["on"] == "mean validation macro-F1 over the folds"
    assert len(metrics["selection"]["mean_macro_f1"]) == 2 and 1 <= metrics["best_epoch"] <= 2
    for key in ("accuracy", "macro_f1", "f1/angry", "recall/sad", "valence_ccc", "arousal_ccc", "synthetic/accuracy"):
        cell = metrics["mean_sd"][key]
        assert cell["n"] == 3 and cell["sd"] >= 0 and np.isfinite(cell["mean"])
    speakers = [set(f["val_speakers"]) for f in metrics["folds"]]
    assert sum(len(s) for s in speakers) == len(set().union(*speakers)) == 6  # every voice in exactly one fold
    for fold in metrics["folds"]:
        assert len(fold["scores"]["confusion"]) == 4 and set(fold["val"]["classes"]) == {
            "angry",
            "happy",
            "sad",
            "neutral",
        }
    assert metrics["pooled_out_of_fold"]["n"] == 24
    md = (fold_run / "folds.md").read_text()
    assert "| macro_f1 |" in md and "±" in md and "Fold 3 confusion" in md
    assert metrics["refit"]["clips"] == 24 and (fold_run / "best.pt").is_file()
    assert metrics["ensemble"]["members"] == 3
    assert not (fold_run / "fold-1" / "epochs").exists()  # the unchosen epochs' weights are gone
    assert metrics["config"]["instnorm"] and metrics["config"]["mixup"] == 0.4
    oof = np.load(fold_run / "oof.npz")
    assert len(oof["ids"]) == len(oof["label"]) == 24 and oof["logits"].shape == (24, 4)
    assert sorted(set(oof["fold"].tolist())) == [1, 2, 3]  # every clip predicted by the fold that held it out


def test_arousal_ranking_reads_the_source_emotion_from_the_file_name() -> None:
    # RAVDESS names: modality-channel-EMOTION-intensity-statement-repetition-actor; 02 calm, 01 neutral, 05 angry
    ids = ["x/03-01-02-01-01-01-01.wav", "x/03-01-01-01-01-01-01.wav", "x/03-01-05-01-01-01-01.wav", "proc:7"]
    ranked = reports.arousal_by_emotion(ids, np.array([-0.5, 0.0, 0.6, 0.9]))
    assert ranked["ranked"] is True and ranked["per_emotion"]["calm"] == {"n": 1, "mean": -0.5}
    assert set(ranked["per_emotion"]) == {"calm", "neutral", "angry"}  # the procedural clip has no source emotion
    assert reports.arousal_by_emotion(ids, np.array([0.1, 0.0, 0.6, 0.0]))["ranked"] is False
    assert reports.arousal_by_emotion(ids[1:], np.array([0.0, 0.6, 0.0]))["ranked"] is None  # no calm clip


def test_fold_ensemble_exports_as_one_graph_the_engine_runs(fold_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    argv = ["export", str(fold_run / "ensemble.pt"), "--out", str(out), "--tensorrt", "off", "--art-from", "none"]
    assert main(argv) == 0  # audio-only here: the ensemble's art alignment is tested with the default recipe
    bundle = load_bundle(out)
    enc = bundle.manifest.encoder
    assert enc.model_extra["ensemble"] == 3 and enc.config.instnorm
    assert bundle.manifest.metrics["export_parity_max_abs"]["audio_model"] <= PARITY_ATOL
    x = np.random.default_rng(1).standard_normal((3, 1, 128, 130)).astype(np.float32)
    got = OnnxRunner(bundle, Component.AUDIO, threads=1)(x)
    ref = TorchRunner(bundle, Component.AUDIO)(x)
    assert [g.shape for g in got] == [(3, 4), (3, 2), (3, 16), (3, 128)]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=PARITY_ATOL)
    assert isinstance(load_audio_model(bundle.file("audio_model.pt")), EnsembleAudioModel)
    # the refitted single model exports as an ordinary bundle
    assert (
        main(
            [
                "export",
                str(fold_run / "best.pt"),
                "--art-from",
                "none",
                "--out",
                str(tmp_path / "refit"),
                "--tensorrt",
                "off",
            ]
        )
        == 0
    )
    assert "ensemble" not in load_bundle(tmp_path / "refit").manifest.encoder.model_extra


def test_compare_two_families_under_three_folds(tmp_path: Path, cache: Path) -> None:
    argv = ["compare", *TINY, *FAST, "--epochs", "1", "--arch", "ann", "--arch", "cnn", "--folds", "3"]
    assert main([*argv, "--cache-dir", str(cache), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["ann", "cnn"]
    assert result["protocol"].startswith("speaker-grouped 3-fold")
    md = (tmp_path / "compare.md").read_text()
    assert "| ann |" in md and "±" in md
    assert (tmp_path / "cnn" / "metrics.json").is_file()


def test_leave_one_corpus_out_needs_two_corpora(tmp_path: Path, cache: Path) -> None:
    argv = ["audio", *TINY, *FAST, "--arch", "ann", "--epochs", "1", "--folds", "corpus"]
    assert main([*argv, "--cache-dir", str(cache), "--out", str(tmp_path)]) == 2  # one corpus: a config error


def test_hpo_trials_score_on_the_fold_mean(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "study.db"
    argv = ["hpo", *TINY, *FAST, "--arch", "ann", "--epochs", "1", "--trials", "1", "--folds", "3"]
    argv += ["--storage", f"sqlite:///{db}", "--study-name", "f", "--cache-dir", str(cache), "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads((tmp_path / "hpo.json").read_text())
    assert "folds' mean validation macro-F1" in result["protocol"] and len(result["trials"]) == 1


def test_crops_cover_a_long_clip_evenly() -> None:
    clip = np.arange(100, dtype=np.float32)
    parts = crops_of(clip, 40, 3)
    assert [int(p[0]) for p in parts] == [0, 30, 60] and all(p.size == 40 for p in parts)
    assert len(crops_of(clip[:30], 40, 3)) == 1 and crops_of(clip[:30], 40, 3)[0].size == 40


def test_svm_baseline_runs_the_same_folds_and_beats_chance(tmp_path: Path, cache: Path) -> None:
    """The handcrafted-feature SVM on procedural voices: one row per fold, speakers apart, above chance
    (the procedural emotions differ in pitch, tempo and brightness, which its functionals see)."""
    out = tmp_path / "baseline"
    argv = ["baseline", "--data", "synthetic:8", "--folds", "3", "--balance", "speaker", "--cache-dir", str(cache)]
    assert main([*argv, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3
    speakers = [set(f["val_speakers"]) for f in metrics["folds"]]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    assert metrics["mean_sd"]["macro_f1"]["n"] == 3
    assert metrics["mean_sd"]["accuracy"]["mean"] > 0.5  # 4 classes: chance 0.25
    assert "arousal_ccc" in metrics["mean_sd"]
    assert "Fold 3" in (out / "baseline.md").read_text()


def test_handcrafted_features_are_finite_and_fixed_size() -> None:
    from trainer.audio.baseline import N_MFCC, handcrafted_features

    rng = np.random.default_rng(0)
    mels = rng.normal(-4.0, 2.0, size=(3, 64, 94)).astype(np.float32)
    mels[1] = -20.0  # a silent clip: no division by zero, no NaN
    feats = handcrafted_features(mels)
    assert feats.shape == (3, 4 * N_MFCC + 2 * 64 + 9)
    assert np.isfinite(feats).all()


@pytest.mark.slow
def test_default_pipeline_ships_the_fold_refit_with_fold_means(tmp_path: Path, cache: Path) -> None:
    """The bare default route (issue 12): cv -> refit on every speaker -> bundle whose figures are fold means,
    then the art half aligned to that encoder with one fold's voices held out of the alignment."""
    runs, out = tmp_path / "runs", tmp_path / "bundle"
    argv = ["default", "--data", "synthetic:6", "--synthetic-per-class", "0", "--epochs", "2", "--width", "4"]
    argv += ["--rnn-hidden", "16", "--no-compile"]
    argv += ["--runs", str(runs), "--out", str(out), "--latency-runs", "2", "--cache-dir", str(cache)]
    assert main([*argv, "--steps", "cv", "--steps", "bundle"]) == 0
    metrics = load_bundle(out).manifest.metrics
    assert metrics["source"] == "cv" and metrics["default"]["k"] == 5
    assert metrics["default"]["mean_sd"]["macro_f1"]["n"] == 5 and metrics["default"]["refit"]["clips"] > 0
    goals = metrics["goals"]
    assert goals["default_macro_f1"]["value"] == metrics["default"]["mean_sd"]["macro_f1"]["mean"]
    assert goals["cross_language_accuracy"]["value"] is None  # no leave-one-corpus-out run on one corpus
    assert goals["max_cpu_ms_per_window"]["value"] > 0  # timed on the exported refit itself
    attach_small_art_half(out, runs / "cv" / "best.pt", tmp_path / "art")
    bundle = load_bundle(out)
    assert bundle.manifest.generator is not None
    folds = [set(f) for f in metrics["default"]["fold_val_speakers"]]
    held = bundle.manifest.data["alignment_audio"]["real_val_speakers"]
    assert set(held) in folds  # one whole fold held out of the alignment


@pytest.mark.slow
def test_default_pipeline_can_ship_the_last_epoch_fold_ensemble_aligned_to_the_art(tmp_path: Path, cache: Path) -> None:
    """`default --ensemble`: the 5 fold models at their last epoch ship as one graph, described by the last-epoch
    fold means (nothing chosen), and the art half aligns each member into the one art space."""
    runs, out = tmp_path / "runs", tmp_path / "bundle"
    argv = ["default", "--data", "synthetic:6", "--synthetic-per-class", "0", "--epochs", "2", "--width", "4"]
    argv += ["--rnn-hidden", "16", "--no-compile", "--ensemble"]
    argv += ["--runs", str(runs), "--out", str(out), "--latency-runs", "2", "--cache-dir", str(cache)]
    assert main([*argv, "--steps", "cv", "--only-folds", "1,2"]) == 0  # shares, gathered by the resume below
    assert main([*argv, "--steps", "cv", "--steps", "bundle", "--resume"]) == 0
    assert not (runs / "cv" / "best.pt").exists()  # no refit
    manifest = load_bundle(out).manifest
    metrics = manifest.metrics
    assert manifest.encoder.model_extra["ensemble"] == 5
    ens = metrics["default"]["ensemble"]
    assert ens["members"] == 5 and ens["epoch"] == 2 and ens["estimate"] == "last_epoch_mean_sd"
    last = metrics["default"]["last_epoch_mean_sd"]
    assert metrics["goals"]["default_macro_f1"]["value"] == last["macro_f1"]["mean"]
    assert metrics["goals"]["max_cpu_ms_per_window"]["value"] > 0  # the whole ensemble, timed
    assert metrics["goals"]["max_parameters"]["value"] == 5 * metrics["parameters"]["encoder"]
    fold_ckpt = load_checkpoint(runs / "cv" / "fold-3" / "ckpt.pt")
    member = load_audio_model(runs / "cv" / "ensemble.pt").members[2]
    assert all(torch.equal(member.encoder.state_dict()[k[len("encoder."):]], v)
               for k, v in fold_ckpt["state_dict"].items() if k.startswith("encoder."))  # fmt: skip
    attach_small_art_half(out, runs / "cv" / "ensemble.pt", tmp_path / "art")
    bundle = load_bundle(out)
    assert bundle.manifest.generator is not None and bundle.manifest.encoder.model_extra["ensemble"] == 5
    aligned = load_audio_model(bundle.file(bundle.manifest.encoder.torch))
    assert isinstance(aligned, EnsembleAudioModel)
    retrieval = bundle.manifest.metrics["art"]["retrieval"]
    assert 0.0 <= retrieval["audio_to_art"] <= 1.0 and retrieval["by_audio_source"]["real"]["n_audio"] > 0
    # every member got its own projection into the art space (none is the bare fold model's placeholder)
    bare = load_audio_model(runs / "cv" / "ensemble.pt")
    for k in range(5):
        w_new = aligned.members[k].projection.net[-1].weight
        assert not torch.equal(w_new, bare.members[k].projection.net[-1].weight)
    config = aligned.members[0].encoder.config
    features = torch.randn(3, 1, config.n_mels, config.n_frames)
    shared = aligned(features)[3]
    assert torch.allclose(shared.norm(dim=1), torch.ones(3), atol=1e-5)


def test_oof_report_gives_the_runs_fold_figures_from_the_file_alone(fold_run: Path) -> None:
    """`python -m trainer.audio.oof_report OUT/oof.npz` recomputes the fold means of metrics.json."""
    from trainer.audio.oof_report import main, oof_report

    metrics = json.loads((fold_run / "metrics.json").read_text())
    report = oof_report(fold_run / "oof.npz")
    assert report["k"] == metrics["k"] == 3
    for key in ("accuracy", "macro_f1", "valence_ccc", "arousal_ccc"):
        assert report["mean_sd"][key]["mean"] == pytest.approx(metrics["mean_sd"][key]["mean"], abs=1e-6), key
        assert report["mean_sd"][key]["sd"] == pytest.approx(metrics["mean_sd"][key]["sd"], abs=1e-6), key
    assert report["pooled"]["confusion"] == metrics["pooled_out_of_fold"]["confusion"]
    assert main([str(fold_run / "oof.npz")]) == 0


def test_a_stopped_fold_run_resumes_without_retraining_finished_folds(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cv"
    argv = ["audio", *TINY, *FAST, "--arch", "ann", "--epochs", "2", "--folds", "3", "--cache-dir", str(cache)]
    assert main([*argv, "--out", str(out)]) == 0
    first = json.loads((out / "metrics.json").read_text())
    preds = np.load(out / "fold-2" / "predictions.npz")
    assert preds["logits"].shape[:2] == (2, len(first["folds"][1]["val_speakers"]) * 4)  # 2 epochs x fold-2 clips
    # a fold that never finished trains again; finished folds are read back as they were
    for name in ("fold-3/predictions.npz", "fold-3/metrics.json", "oof.npz"):
        (out / name).unlink()
    stamp = (out / "fold-1" / "ckpt.pt").stat().st_mtime_ns
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert (out / "fold-1" / "ckpt.pt").stat().st_mtime_ns == stamp and (out / "fold-3" / "predictions.npz").is_file()
    assert again["folds"][0]["scores"] == first["folds"][0]["scores"]
    # every fold finished and oof.npz written, but no predictions.npz (a run from before them, whose refit
    # stopped): the folds come from oof.npz at the chosen epoch and only the refit runs
    for k in (1, 2, 3):
        (out / f"fold-{k}" / "predictions.npz").unlink()
    assert main([*argv, "--out", str(out), "--resume", "--refit"]) == 0
    refit = json.loads((out / "metrics.json").read_text())
    assert refit["mean_sd"]["macro_f1"] == again["mean_sd"]["macro_f1"] and (out / "best.pt").is_file()
    assert refit["last_epoch_mean_sd"] == {}  # the unchosen last epoch is not in oof.npz
    assert refit["resumed"]["earlier_folds_s"] > 0 and refit["duration_s"] >= refit["resumed"]["earlier_folds_s"]
    # another recipe in the same folder is refused rather than mixed in
    assert main([*argv, "--out", str(out), "--resume", "--lr", "0.01"]) == 2
    assert "that fold ran another config" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--resume", "--ensemble"]) == 2
    assert "--ensemble" in capsys.readouterr().err


def test_a_fold_from_before_a_new_config_field_still_resumes() -> None:
    from trainer.audio.config import TrainConfig
    from trainer.audio.folds import same_run

    cfg = TrainConfig(data=["synthetic:6"], epochs=2)
    saved = cfg.model_dump(mode="json")
    del saved["synthetic_weight"]  # written before the field existed: it ran the default
    assert same_run(saved, cfg) and same_run(saved, cfg.model_copy(update={"out": Path("elsewhere"), "resume": True}))
    assert not same_run(saved, cfg.model_copy(update={"synthetic_weight": 3.0}))
    assert not same_run(saved, cfg.model_copy(update={"epochs": 3}))


def test_shares_of_the_folds_train_apart_and_one_resume_gathers_them(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cv"
    argv = ["audio", *TINY, *FAST, "--arch", "ann", "--epochs", "2", "--folds", "3", "--cache-dir", str(cache)]
    argv += ["--out", str(out)]
    assert main([*argv, "--only-folds", "1,3"]) == 0
    share = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert share["trained"] == [1, 3] and share["kept"] == []
    assert (out / "fold-1" / "predictions.npz").is_file() and (out / "fold-3" / "predictions.npz").is_file()
    assert not (out / "fold-2").exists() and not (out / "metrics.json").exists()  # a share reports nothing
    stamp = (out / "fold-3" / "predictions.npz").stat().st_mtime_ns
    assert main([*argv, "--only-folds", "2,3", "--resume"]) == 0
    share = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert share["trained"] == [2] and share["kept"] == [3]
    assert main([*argv, "--resume", "--refit"]) == 0  # the gathering run trains no fold, only the refit
    gathered = json.loads((out / "metrics.json").read_text())
    assert (out / "fold-3" / "predictions.npz").stat().st_mtime_ns == stamp
    assert gathered["k"] == 3 and len(gathered["folds"]) == 3 and (out / "best.pt").is_file()
    assert "only_folds" not in gathered["command"]
    assert main([*argv, "--only-folds", "4"]) == 2
    assert "this protocol has 3 folds" in capsys.readouterr().err
    assert main([*argv[:-2], "--out", str(tmp_path / "x"), "--folds", "3", "--only-folds", "1", "--ensemble"]) == 2
    # the default pipeline takes shares of its fold steps only: a bundle cannot be built from a share
    assert main(["default", "--data", "synthetic:6", "--steps", "cv", "--steps", "bundle", "--only-folds", "1"]) == 2
    assert "--only-folds trains a share" in capsys.readouterr().err
