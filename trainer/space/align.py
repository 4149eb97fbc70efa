"""Align audio and art in one 128-d shared space (docs/design.md §4): `synesthesia-train align`.

Two stages, so that the art side (which the GAN is conditioned on) does not move when an audio encoder is
retrained, and a new audio encoder is aligned in seconds:

1. Art space. An image encoder trained from scratch (trainer.art.encoder) with its projection head and
   a linear valence/arousal readout from the shared space. Losses on class-balanced batches of artworks:
   supervised contrastive loss (Khosla et al. 2020) in the shared space, cross-entropy of an auxiliary
   emotion classifier, and the VA readout's squared error.
2. Audio into the art space. The art side is frozen; a new audio projection head on a trained, frozen
   audio encoder is trained with a cross-modal supervised contrastive loss (every audio vector is pulled
   towards the artworks of its emotion and pushed from the others, and every artwork towards the audio
   clips of its emotion, as in CLIP with labels defining the positives) plus valence/arousal agreement:
   the same frozen VA readout must give each clip's valence and arousal, so VA runs the same way for
   sound and picture; and a pull of each clip onto the centroid of its emotion's artworks, so that audio
   vectors land where the generator was trained (no modality gap). The trained projection replaces the
   placeholder in the AudioModel.

The measure (as the seed measured it): for every validation audio clip, is the nearest artwork (cosine,
shared space) of the same emotion? Validation audio comes from held-out speakers, validation art from a
held-out art seed, so neither side was seen in training.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from engine.errors import BundleError
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.models.ensemble import EnsembleAudioModel
from engine.models.heads import AudioModel, ProjectionHead
from trainer.art.diffaug import translation
from trainer.art.encoder import ArtEncoder, ImageEncoderConfig
from trainer.art.images import ArtImages
from trainer.space.audio_set import AudioSet, audio_shared, embed_audio
from trainer.space.data import add_data_arguments, load_bundle_models, load_data

log = logging.getLogger("synesthesia.align")


# --------------------------------------------------------------------------------------------------
# Configuration


class ArtSpaceConfig(BaseModel):
    """Stage 1: the image encoder, its projection and the VA readout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: ImageEncoderConfig = ImageEncoderConfig()
    steps: int = Field(400, ge=1)
    per_class: int = Field(16, ge=2, description="artworks per emotion in each batch")
    temperature: float = Field(0.1, gt=0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    w_supcon: float = Field(1.0, ge=0, description="supervised contrastive loss among artworks")
    w_ce: float = Field(0.5, ge=0, description="auxiliary emotion classifier")
    w_va: float = Field(1.0, ge=0, description="valence/arousal readout from the shared space")
    eval_every: int = Field(100, ge=1)


class StepChoice(StrEnum):
    """Which step of the stage-2 schedule the projection keeps."""

    LAST = "last"  # the end of the fixed one-cycle schedule: the held-out clips choose nothing
    BEST = "best"  # the best held-out retrieval: optimistic, for exploring schedules only


class AudioAlignConfig(BaseModel):
    """Stage 2: the audio projection into the frozen art space."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    projection_hidden: int = Field(256, gt=0)
    steps: int = Field(1500, ge=1)
    per_class: int = Field(32, ge=1, description="audio clips and artworks per emotion in each batch")
    temperature: float = Field(0.1, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    w_cross: float = Field(1.0, ge=0, description="cross-modal supervised contrastive loss")
    w_va: float = Field(0.5, ge=0, description="valence/arousal agreement through the frozen readout")
    w_centroid: float = Field(
        0.5, ge=0, description="pull each clip onto its emotion's art centroid (closes the modality gap)"
    )
    audio_noise: float = Field(0.1, ge=0, description="Gaussian noise on frozen audio embeddings (regulariser)")
    eval_every: int = Field(50, ge=1)
    keep: StepChoice = Field(StepChoice.LAST, description="last step of the schedule, or the best held-out one")


class AlignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    shared_dim: int = Field(128, gt=0)
    art: ArtSpaceConfig = ArtSpaceConfig()
    audio: AudioAlignConfig = AudioAlignConfig()
    seed: int = 0


# --------------------------------------------------------------------------------------------------
# Losses


def cross_modal_supcon(
    a: torch.Tensor, la: torch.Tensor, b: torch.Tensor, lb: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric supervised contrastive loss between two modalities.

    a [Na, S], b [Nb, S] L2-normalised; la [Na], lb [Nb] labels. For each anchor of one modality the
    positives are all items of the other modality with its label; anchors without positives are ignored.
    """
    sim = a @ b.T / temperature  # [Na, Nb]
    pos = (la[:, None] == lb[None, :]).float()  # [Na, Nb]

    def one_way(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        log_prob = s - torch.logsumexp(s, dim=1, keepdim=True)
        n_pos = p.sum(dim=1)
        has = n_pos > 0
        return (-(p * log_prob).sum(dim=1)[has] / n_pos[has]).mean()

    return 0.5 * (one_way(sim, pos) + one_way(sim.T, pos.T))


def supcon(x: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss within one modality (Khosla et al. 2020), self excluded."""
    n = len(x)
    sim = x @ x.T / temperature  # [N, N]
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    sim = sim.masked_fill(eye, -1e9)
    pos = ((labels[:, None] == labels[None, :]) & ~eye).float()
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    return (-(pos * log_prob).sum(dim=1)[has] / n_pos[has]).mean()


# --------------------------------------------------------------------------------------------------
# Evaluation


def nearest_label_accuracy(
    queries: torch.Tensor, q_labels: np.ndarray, keys: torch.Tensor, k_labels: np.ndarray
) -> float:
    """Share of queries whose nearest key (cosine; inputs L2-normalised) has the query's label."""
    nearest = (queries @ keys.T).argmax(dim=1).numpy()  # [Nq]
    return float((k_labels[nearest] == q_labels).mean())


def retrieval_metrics(
    audio_shared: torch.Tensor,
    audio_labels: np.ndarray,
    art_shared: torch.Tensor,
    art_labels: np.ndarray,
    classes: Sequence[str],
) -> dict[str, Any]:
    """audio -> nearest art and art -> nearest audio accuracy, overall and per class, with chance level."""
    a2i = (audio_shared @ art_shared.T).argmax(dim=1).numpy()
    hit = art_labels[a2i] == audio_labels
    per_class = {c: float(hit[audio_labels == i].mean()) for i, c in enumerate(classes) if (audio_labels == i).any()}
    counts = np.bincount(art_labels, minlength=len(classes)) / len(art_labels)
    chance = float(sum(counts[audio_labels].tolist()) / len(audio_labels))
    return {
        "audio_to_art": float(hit.mean()),
        "audio_to_art_per_class": per_class,
        "art_to_audio": nearest_label_accuracy(art_shared, art_labels, audio_shared, audio_labels),
        "chance": chance,
        "n_audio": len(audio_labels),
        "n_art": len(art_labels),
    }


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class ArtSpace:
    """Stage 1's result: the art side of the shared space."""

    art_encoder: ArtEncoder
    va_head: nn.Linear  # shared [B, S] -> tanh -> (valence, arousal)
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class AlignResult:
    audio_model: AudioModel | EnsembleAudioModel  # the frozen encoder(s) with the trained audio projection(s)
    art_encoder: ArtEncoder
    va_head: nn.Linear
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def _balanced(labels: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """per_class random indices of every class present (with replacement when a class is small)."""
    out = []
    for c in range(n_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool):
            out.append(rng.choice(pool, per_class, replace=len(pool) < per_class))
    return np.concatenate(out)


def _augment_images(x: torch.Tensor) -> torch.Tensor:
    """Shifts and small brightness changes; hue is left alone (it carries the emotion)."""
    x = translation(x, 0.125)
    return x + (torch.rand(x.shape[0], 1, 1, 1) - 0.5) * 0.1


def train_art_space(art_train: ArtImages, art_val: ArtImages, cfg: AlignConfig) -> ArtSpace:
    """Stage 1: image encoder + projection + VA readout from artworks alone; best step on held-out art."""
    acfg = cfg.art
    classes = list(art_train.classes)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    image_cfg = acfg.image.model_copy(update={"n_classes": len(classes), "shared_dim": cfg.shared_dim})

    # 1. Art at the encoder's input size, once; models; optimiser.
    img_train = art_train.tensor(image_cfg.input_size)  # [N, 3, r, r]
    img_val = art_val.tensor(image_cfg.input_size)
    labels = torch.from_numpy(art_train.labels)
    va = torch.from_numpy(art_train.va)
    art_encoder = ArtEncoder(image_cfg)
    va_head = nn.Linear(cfg.shared_dim, 2)
    opt = torch.optim.AdamW(
        [*art_encoder.parameters(), *va_head.parameters()], lr=acfg.lr, weight_decay=acfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=acfg.lr, total_steps=acfg.steps, pct_start=0.1)

    def evaluate() -> dict[str, Any]:
        art_encoder.eval()
        with torch.no_grad():
            _, logits, val_shared = art_encoder(img_val)
            _, _, train_shared = art_encoder(img_train)
            va_pred = torch.tanh(va_head(val_shared)).numpy()
        art_encoder.train()
        return {
            "art_classifier_accuracy": float((logits.argmax(1).numpy() == art_val.labels).mean()),
            "art_nearest_neighbour_accuracy": nearest_label_accuracy(
                val_shared, art_val.labels, train_shared, art_train.labels
            ),
            "art_va_mae": float(np.abs(va_pred - art_val.va).mean()),
        }

    # 2. The loop: class-balanced, augmented batches.
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Any], dict[str, Any]] | None = None
    t0 = time.perf_counter()
    for step in range(1, acfg.steps + 1):
        idx = torch.from_numpy(_balanced(art_train.labels, len(classes), acfg.per_class, rng))
        _, logits, shared = art_encoder(_augment_images(img_train[idx]))  # [B, C], [B, S]
        loss_supcon = supcon(shared, labels[idx], acfg.temperature)
        loss_ce = F.cross_entropy(logits, labels[idx])
        loss_va = F.mse_loss(torch.tanh(va_head(shared)), va[idx])
        loss = acfg.w_supcon * loss_supcon + acfg.w_ce * loss_ce + acfg.w_va * loss_va
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

        if step % acfg.eval_every == 0 or step == acfg.steps:
            m = evaluate()
            row = {
                "step": step,
                "loss": loss.item(),
                "supcon": loss_supcon.item(),
                "ce": loss_ce.item(),
                "va": loss_va.item(),
                **m,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            log.info(
                "art space step %d/%d loss %.3f (supcon %.3f ce %.3f va %.3f) held-out art: classifier %.3f "
                "nearest neighbour %.3f VA MAE %.3f",
                step, acfg.steps, row["loss"], row["supcon"], row["ce"], row["va"],
                m["art_classifier_accuracy"], m["art_nearest_neighbour_accuracy"], m["art_va_mae"],
            )  # fmt: skip
            score = m["art_nearest_neighbour_accuracy"] + m["art_classifier_accuracy"] - 0.1 * m["art_va_mae"]
            if best is None or score > best[0]:
                state = {"art": copy.deepcopy(art_encoder.state_dict()), "va": copy.deepcopy(va_head.state_dict())}
                best = (score, step, m, state)

    # 3. The best step on held-out art.
    assert best is not None
    _, best_step, metrics, state = best
    art_encoder.load_state_dict(state["art"])
    va_head.load_state_dict(state["va"])
    metrics = {**metrics, "best_step": best_step, "train_seconds": round(time.perf_counter() - t0, 1)}
    return ArtSpace(art_encoder.eval(), va_head.eval(), metrics, history)


def align_audio(
    audio_model: AudioModel,
    audio_train: AudioSet,
    audio_val: AudioSet,
    space: ArtSpace,
    art_train: ArtImages,
    art_val: ArtImages,
    cfg: AlignConfig,
) -> AlignResult:
    """Stage 2: a new audio projection into the frozen art space. The step kept is the schedule's last
    (`keep=last`, the default), so the held-out figures choose nothing; `keep=best` picks the best held-out
    retrieval and is labelled as optimistic in the metrics."""
    bcfg = cfg.audio
    classes = list(audio_train.classes)
    if list(art_train.classes) != classes:
        raise ValueError(f"audio classes {classes} and art classes {art_train.classes} differ")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)

    # 1. Everything frozen is computed once: audio embeddings, art vectors, the VA readout.
    t0 = time.perf_counter()
    emb_train = embed_audio(audio_model, audio_train.features)  # [Na, E]
    emb_val = embed_audio(audio_model, audio_val.features)
    _, art_train_shared = space.art_encoder.encode(art_train.tensor())  # [Ni, S]
    _, art_val_shared = space.art_encoder.encode(art_val.tensor())
    log.info("embedded %d + %d audio clips in %.1f s", len(emb_train), len(emb_val), time.perf_counter() - t0)
    va_head = space.va_head.eval()
    for p in va_head.parameters():
        p.requires_grad_(False)

    # 2. The audio projection and its optimiser.
    audio_proj = ProjectionHead(emb_train.shape[1], cfg.shared_dim, bcfg.projection_hidden)
    opt = torch.optim.AdamW(audio_proj.parameters(), lr=bcfg.lr, weight_decay=bcfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=bcfg.lr, total_steps=bcfg.steps, pct_start=0.1)
    a_labels = torch.from_numpy(audio_train.labels)
    i_labels = torch.from_numpy(art_train.labels)
    a_va = torch.from_numpy(audio_train.va)
    art_centroids = F.normalize(
        torch.stack([art_train_shared[i_labels == c].mean(0) for c in range(len(classes))]), dim=1
    )  # [C, S]

    def evaluate() -> dict[str, Any]:
        audio_proj.eval()
        with torch.no_grad():
            audio_shared = audio_proj(emb_val)
            va_audio = torch.tanh(va_head(audio_shared)).numpy()
        audio_proj.train()
        m = retrieval_metrics(audio_shared, audio_val.labels, art_val_shared, art_val.labels, classes)
        m["va_mae_audio"] = float(np.abs(va_audio - audio_val.va).mean())
        # modality gap: mean cosine of held-out clips to their emotion's art centroid (1 = on the art)
        m["cosine_to_art_centroid"] = float(
            (audio_shared * art_centroids[torch.from_numpy(audio_val.labels)]).sum(1).mean()
        )
        return m

    # 3. The loop: a class-balanced batch of audio clips against one of (frozen) artwork vectors.
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Any], dict[str, Any]] | None = None
    t0 = time.perf_counter()
    for step in range(1, bcfg.steps + 1):
        ai = torch.from_numpy(_balanced(audio_train.labels, len(classes), bcfg.per_class, rng))
        ii = torch.from_numpy(_balanced(art_train.labels, len(classes), bcfg.per_class, rng))
        emb = emb_train[ai]
        emb = F.normalize(emb + bcfg.audio_noise * torch.randn_like(emb) / emb.shape[1] ** 0.5, dim=1)
        a_shared = audio_proj(emb)  # [Ba, S]
        loss_cross = cross_modal_supcon(a_shared, a_labels[ai], art_train_shared[ii], i_labels[ii], bcfg.temperature)
        loss_va = F.mse_loss(torch.tanh(va_head(a_shared)), a_va[ai])
        loss_centroid = (1.0 - (a_shared * art_centroids[a_labels[ai]]).sum(dim=1)).mean()
        loss = bcfg.w_cross * loss_cross + bcfg.w_va * loss_va + bcfg.w_centroid * loss_centroid
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

        if step % bcfg.eval_every == 0 or step == bcfg.steps:
            m = evaluate()
            row = {
                "step": step,
                "loss": loss.item(),
                "cross": loss_cross.item(),
                "va": loss_va.item(),
                "retrieval": m["audio_to_art"],
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            log.info(
                "audio alignment step %d/%d loss %.3f (cross %.3f va %.3f) retrieval audio->art %.3f art->audio %.3f",
                step, bcfg.steps, row["loss"], row["cross"], row["va"], m["audio_to_art"], m["art_to_audio"],
            )  # fmt: skip
            score = m["audio_to_art"] + 1e-3 * m["art_to_audio"]
            kept = (best is None or score > best[0]) if bcfg.keep is StepChoice.BEST else step == bcfg.steps
            if kept:
                best = (score, step, m, copy.deepcopy(audio_proj.state_dict()))

    # 4. The kept step, assembled into the exported AudioModel (frozen encoder + new projection).
    assert best is not None
    _, best_step, metrics, state = best
    audio_proj.load_state_dict(state)
    aligned = AudioModel(copy.deepcopy(audio_model.encoder), audio_proj).eval()
    metrics = {
        **metrics,
        "best_step": best_step,
        "step_choice": bcfg.keep.value
        + (" (the end of the schedule)" if bcfg.keep is StepChoice.LAST else " (on these held-out clips: optimistic)"),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "art_space": space.metrics,
    }
    return AlignResult(aligned, space.art_encoder, space.va_head, metrics, history)


def align_ensemble(
    ensemble: EnsembleAudioModel,
    audio_train: AudioSet,
    audio_val: AudioSet,
    space: ArtSpace,
    art_train: ArtImages,
    art_val: ArtImages,
    cfg: AlignConfig,
) -> AlignResult:
    """Stage 2 for a fold ensemble: each member's projection is aligned on its own standardisation of the
    features (the members' embeddings are separate spaces, so each needs its own map into the one art
    space); the result averages the aligned members' shared vectors like any ensemble output. Its
    metrics are the ensemble's retrieval on `audio_val`, with each member's beside them."""
    t0 = time.perf_counter()
    members, per_member = [], []
    for k, member in enumerate(ensemble.members):

        def own(s: AudioSet, k: int = k) -> AudioSet:  # the member's standardisation, as in the ensemble's forward
            return replace(s, features=s.features * ensemble.scale[k] + ensemble.shift[k])

        result = align_audio(member, own(audio_train), own(audio_val), space, art_train, art_val, cfg)
        members.append(result.audio_model)
        per_member.append(result.metrics)
        log.info("aligned ensemble member %d/%d", k + 1, len(ensemble.members))
    aligned = copy.deepcopy(ensemble).eval()  # keeps the members' standardisation buffers
    aligned.members = nn.ModuleList(members)
    _, art_val_shared = space.art_encoder.encode(art_val.tensor())
    shared = audio_shared(aligned, audio_val.features)
    metrics = {
        **retrieval_metrics(shared, audio_val.labels, art_val_shared, art_val.labels, list(audio_val.classes)),
        "members": per_member,
        "step_choice": per_member[0]["step_choice"],
        "train_seconds": round(time.perf_counter() - t0, 1),
        "art_space": space.metrics,
    }
    return AlignResult(aligned, space.art_encoder, space.va_head, metrics)


def train_alignment(
    audio_model: AudioModel,
    audio_train: AudioSet,
    audio_val: AudioSet,
    art_train: ArtImages,
    art_val: ArtImages,
    cfg: AlignConfig,
    space: ArtSpace | None = None,
) -> AlignResult:
    """Both stages (stage 1 is skipped when an ArtSpace is given)."""
    if space is None:
        space = train_art_space(art_train, art_val, cfg)
    return align_audio(audio_model, audio_train, audio_val, space, art_train, art_val, cfg)


# --------------------------------------------------------------------------------------------------
# Checkpoints


def save_art_space(space: ArtSpace, cfg: AlignConfig, path: str | Path) -> None:
    """art_space.pt: stage 1 (image encoder config and weights, VA readout, metrics)."""
    save_checkpoint(
        {
            "kind": "art_space",
            "config": cfg.model_dump(mode="json"),
            "art_encoder": {
                "config": space.art_encoder.config.model_dump(mode="json"),
                "state_dict": space.art_encoder.state_dict(),
            },
            "va_head": space.va_head.state_dict(),
            "metrics": json.loads(json.dumps(space.metrics)),
        },
        path,
    )


def save_alignment(result: AlignResult, cfg: AlignConfig, path: str | Path) -> None:
    """align.pt: both stages (the audio encoder itself is not copied; it lives in its bundle). A fold
    ensemble's member projections are stored under `audio_projections`, one per member."""
    models = result.audio_model.members if isinstance(result.audio_model, EnsembleAudioModel) else [result.audio_model]
    projections = [
        {
            "in_dim": m.projection.net[0].in_features,
            "shared_dim": m.projection.net[-1].out_features,
            "hidden": m.projection.net[0].out_features,
            "state_dict": m.projection.state_dict(),
        }
        for m in models
    ]
    audio = {"audio_projections": projections} if len(models) > 1 else {"audio_projection": projections[0]}
    save_checkpoint(
        {
            "kind": "alignment",
            "config": cfg.model_dump(mode="json"),
            "art_encoder": {
                "config": result.art_encoder.config.model_dump(mode="json"),
                "state_dict": result.art_encoder.state_dict(),
            },
            "va_head": result.va_head.state_dict(),
            **audio,
            "metrics": json.loads(json.dumps(result.metrics)),
        },
        path,
    )


def _load(path: Path) -> dict[str, Any]:
    ckpt = load_checkpoint(path, required=("art_encoder", "va_head"))
    if ckpt.get("kind") not in ("art_space", "alignment"):
        raise BundleError(f"{path}: neither art_space.pt nor align.pt")
    return ckpt


def va_head_from_state(state: dict[str, torch.Tensor]) -> nn.Linear:
    """Stage 1's valence/arousal readout (shared [B, S] -> [B, 2]) from its state dict."""
    head = nn.Linear(state["weight"].shape[1], 2)  # weight [2, S]
    head.load_state_dict(state)
    return head.eval()


def load_art_space(path: str | Path) -> ArtSpace:
    """Stage 1 from art_space.pt or align.pt."""
    ckpt = _load(Path(path))
    enc = ArtEncoder(ImageEncoderConfig.model_validate({**ckpt["art_encoder"]["config"], "pretrained": None}))
    enc.load_state_dict(ckpt["art_encoder"]["state_dict"])
    va_head = va_head_from_state(ckpt["va_head"])
    metrics = ckpt.get("metrics", {})
    return ArtSpace(enc.eval(), va_head.eval(), metrics.get("art_space", metrics))


def load_alignment(path: str | Path, audio_model: AudioModel) -> tuple[ArtEncoder, AudioModel]:
    """(art encoder, audio model with the trained projection) from align.pt and the encoder it aligned."""
    ckpt = _load(Path(path))
    if ckpt["kind"] != "alignment":
        raise ValueError(f"{path}: has no audio projection (art_space.pt); run `synesthesia-train align`")
    if "audio_projection" not in ckpt:
        raise ValueError(f"{path}: a fold ensemble's alignment; its aligned model is the bundle's audio model")
    space = load_art_space(path)
    head = ckpt["audio_projection"]
    proj = ProjectionHead(head["in_dim"], head["shared_dim"], head["hidden"])
    proj.load_state_dict(head["state_dict"])
    return space.art_encoder, AudioModel(copy.deepcopy(audio_model.encoder), proj).eval()


# --------------------------------------------------------------------------------------------------
# Shared-space map and art index


def shared_space_map(
    path: str | Path,
    audio_shared: np.ndarray,
    audio_labels: np.ndarray,
    art_shared: np.ndarray,
    art_labels: np.ndarray,
    classes: Sequence[str],
    *,
    max_per_modality: int = 400,
    seed: int = 0,
) -> Path:
    """t-SNE of both modalities in the shared space, coloured by emotion, marked by modality -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)

    def pick(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, min(n, max_per_modality), replace=False))

    ia, ii = pick(len(audio_shared)), pick(len(art_shared))
    x = np.concatenate([audio_shared[ia], art_shared[ii]])  # [Na' + Ni', S]
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    xy = TSNE(2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed).fit_transform(x)
    na = len(ia)
    colours = {"angry": "#d62728", "happy": "#f2b701", "sad": "#1f5fbf", "neutral": "#7f7f7f"}
    fallback = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    for ci, c in enumerate(classes):
        col = colours.get(c, fallback(ci))
        sel_a = audio_labels[ia] == ci
        sel_i = art_labels[ii] == ci
        ax.scatter(xy[:na][sel_a, 0], xy[:na][sel_a, 1], s=14, c=[col], marker="o", alpha=0.6, label=f"{c} audio")
        ax.scatter(
            xy[na:][sel_i, 0], xy[na:][sel_i, 1], s=26, c=[col], marker="^", edgecolors="black",
            linewidths=0.4, label=f"{c} art",
        )  # fmt: skip
    ax.set_title("Shared audio–art space (t-SNE, cosine): o audio clips, ^ artworks")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_alignment(result: AlignResult, audio_val: AudioSet, art_val: ArtImages, path: str | Path) -> Path:
    """The shared-space map for the validation audio and validation art of a trained alignment."""
    shared = audio_shared(result.audio_model, audio_val.features).numpy()
    _, art_shared = result.art_encoder.encode(art_val.tensor())
    return shared_space_map(path, shared, audio_val.labels, art_shared.numpy(), art_val.labels, list(audio_val.classes))


def art_shared_vectors(art_encoder: ArtEncoder, art: ArtImages) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F], shared [N, S]) of a corpus, float32."""
    feats, shared = art_encoder.encode(art.tensor())
    return feats.numpy(), shared.numpy()


def build_art_index(art_encoder: ArtEncoder, art: ArtImages, thumbnail: int = 32) -> dict[str, np.ndarray]:
    """The bundle's art index: shared vectors [N, S], labels [N], ids [N], thumbnails [N, t, t, 3], va [N, 2]."""
    _, shared = art_shared_vectors(art_encoder, art)
    return {
        "vectors": shared.astype(np.float32),
        "labels": np.asarray([art.classes[i] for i in art.labels]),
        "ids": np.asarray(art.ids).astype(str),
        "thumbnails": art.thumbnails(thumbnail),
        "valence_arousal": art.va.astype(np.float32),
    }


# --------------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    d_art, d_audio = ArtSpaceConfig(), AudioAlignConfig()
    parser.add_argument("--out", type=Path, default=Path("runs/align"), help="output directory (default runs/align)")
    parser.add_argument(
        "--art-space",
        type=Path,
        default=None,
        help="reuse stage 1 (art_space.pt or align.pt): only the audio projection is trained",
    )
    parser.add_argument("--art-only", action="store_true", help="stage 1 only: write art_space.pt and stop")
    parser.add_argument("--art-steps", type=int, default=d_art.steps, help=f"stage 1 steps (default {d_art.steps})")
    parser.add_argument(
        "--audio-steps", type=int, default=d_audio.steps, help=f"stage 2 steps (default {d_audio.steps})"
    )
    parser.add_argument("--temperature", type=float, default=d_art.temperature)
    parser.add_argument("--image-size", type=int, default=64, help="image encoder input size (default 64)")
    parser.add_argument("--image-width", type=int, default=16, help="image encoder stem channels (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", action="store_true", help="skip the t-SNE shared-space map")
    parser.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="no training: cross-modal retrieval of a bundle (its audio model and art_encoder.pt) on the "
        "held-out audio speakers and art seed that the data flags select",
    )


def align_config_from_args(args: argparse.Namespace) -> AlignConfig:
    return AlignConfig(
        art=ArtSpaceConfig(
            image=ImageEncoderConfig(input_size=args.image_size, width=args.image_width),
            steps=args.art_steps,
            temperature=args.temperature,
            eval_every=max(1, min(100, args.art_steps // 4)),
        ),
        audio=AudioAlignConfig(
            steps=args.audio_steps, temperature=args.temperature, eval_every=max(1, min(50, args.audio_steps // 4))
        ),
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.evaluate is not None:
        return evaluate_bundle_command(args)
    cfg = align_config_from_args(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(args, need_audio=not args.art_only)

    if args.art_space is not None:
        space = load_art_space(args.art_space)
        log.info("reusing the art space of %s", args.art_space)
    else:
        space = train_art_space(data.art_train, data.art_val, cfg)
        save_art_space(space, cfg, out / "art_space.pt")
        (out / "art_space_history.json").write_text(json.dumps(space.history, indent=2) + "\n", encoding="utf-8")
    if args.art_only:
        m = space.metrics
        print(
            f"art space: held-out art classifier {m['art_classifier_accuracy']:.3f}, nearest neighbour "
            f"{m['art_nearest_neighbour_accuracy']:.3f}, VA MAE {m['art_va_mae']:.3f}; wrote {out / 'art_space.pt'}"
        )
        return 0

    result = align_audio(data.audio_model, data.audio_train, data.audio_val, space, data.art_train, data.art_val, cfg)
    save_alignment(result, cfg, out / "align.pt")
    (out / "align_metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n", encoding="utf-8")
    (out / "align_history.json").write_text(json.dumps(result.history, indent=2) + "\n", encoding="utf-8")
    if not args.no_plot:
        plot_alignment(result, data.audio_val, data.art_val, out / "shared_space.png")
    m = result.metrics
    print(
        f"retrieval audio->art {m['audio_to_art']:.3f} (chance {m['chance']:.2f}; {m['n_audio']} clips of held-out "
        f"speakers vs {m['n_art']} held-out artworks); art->audio {m['art_to_audio']:.3f}; "
        f"held-out art classifier {m['art_space']['art_classifier_accuracy']:.3f}; wrote {out / 'align.pt'}"
    )
    return 0


def evaluate_bundle_command(args: argparse.Namespace) -> int:
    """`synesthesia-train align --evaluate BUNDLE`: retrieval of a finished bundle on held-out data."""

    args.bundle = args.evaluate
    data = load_data(args)
    models = load_bundle_models(args.evaluate)
    _, art_shared = models.art_encoder.encode(data.art_val.tensor())
    out: dict[str, Any] = {"bundle": str(args.evaluate)}
    sets = {"all": data.audio_val, **data.audio_val_sets} if len(data.audio_val_sets) > 1 else data.audio_val_sets
    for name, held_out in sets.items():
        shared = audio_shared(models.audio_model, held_out.features)
        out[name] = retrieval_metrics(shared, held_out.labels, art_shared, data.art_val.labels, data.classes)
    print(json.dumps(out, indent=2))
    return 0
