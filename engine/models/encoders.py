"""The seven audio encoder families (docs/design.md §4) behind one interface.

Every encoder maps z-scored log-mel features [B, 1, n_mels, n_frames] to
`logits[B, C]`, `va[B, 2]` (valence, arousal in [-1, 1]) and `embedding[B, E]` (L2-normalised).
Bodies differ; the heads are shared so families compare fairly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.configs import Arch, EncoderConfig


class UtteranceNorm(nn.Module):
    """Per-utterance mean/variance normalisation of every mel bin over time ([B, 1, M, T]).

    A fixed microphone or room colouring is an additive offset per bin in log-mel, and a speaker's vocal
    tract a slower one: subtracting each bin's mean over the window removes both, the variance step removes
    level-dependent spread. Inside the model, so training, export and the engine apply it alike.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps)


def conv_block(c_in: int, c_out: int, pool: tuple[int, int] = (2, 2)) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool),
    )


class ConvStem(nn.Module):
    """Three conv stages: [B, 1, M, T] -> [B, T/8, C*M/8] sequence features for recurrent/attention bodies."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(conv_block(1, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w))
        self.out_dim = 4 * w * (cfg.n_mels // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)  # [B, C, M/8, T/8]
        b, c, m, t = h.shape
        return h.permute(0, 3, 1, 2).reshape(b, t, c * m)  # [B, T/8, C*M/8]


class AnnBody(nn.Module):
    """Utterance statistics (mean and std of every mel bin over time) through an MLP."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * cfg.n_mels, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
        )
        self.out_dim = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.squeeze(1)  # [B, M, T]
        stats = torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1)  # [B, 2M]
        return self.net(stats)


class CnnBody(nn.Module):
    """Four conv stages, then global average and max pooling."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            conv_block(1, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w), conv_block(4 * w, 4 * w)
        )
        self.out_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)  # [B, 4w, M/16, T/16]
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # [B, 8w]


class RecurrentBody(nn.Module):
    """Conv stem then an LSTM or GRU over time; optional attention pooling instead of the mean."""

    def __init__(self, cfg: EncoderConfig, cell: type[nn.LSTM] | type[nn.GRU], attention: bool) -> None:
        super().__init__()
        self.stem = ConvStem(cfg)
        self.proj = nn.Linear(self.stem.out_dim, cfg.rnn_hidden)
        self.rnn = cell(cfg.rnn_hidden, cfg.rnn_hidden, batch_first=True, bidirectional=attention)
        rnn_out = cfg.rnn_hidden * (2 if attention else 1)
        self.attn = nn.Linear(rnn_out, 1) if attention else None
        self.out_dim = rnn_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(F.relu(self.proj(self.stem(x))))  # [B, T', H]
        if self.attn is None:
            return seq.mean(dim=1)
        weights = torch.softmax(self.attn(seq), dim=1)  # [B, T', 1]
        return (weights * seq).sum(dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ResNetBody(nn.Module):
    """A small ResNet: stem, three strided stages of two basic blocks, global pooling."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        w = cfg.width // 2 or 1
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        stages = []
        c = w
        for mult in (1, 2, 4):
            stages += [ResidualBlock(c, w * mult * 2, 2), ResidualBlock(w * mult * 2, w * mult * 2, 1)]
            c = w * mult * 2
        self.stages = nn.Sequential(*stages)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


class SelfAttentionLayer(nn.Module):
    """Pre-norm transformer layer, written out so every exporter and backend sees plain ops."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads)  # [B, T, 3, H, D/H]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, D/H]
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)  # [B, H, T, T]
        y = (att @ v).transpose(1, 2).reshape(b, t, d)  # [B, T, D]
        x = x + self.drop(self.out(y))
        return x + self.drop(self.mlp(self.norm2(x)))


class TransformerBody(nn.Module):
    """Conv stem tokens over time, learned positions, a few self-attention layers, mean pooling."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.stem = ConvStem(cfg)
        dim = cfg.rnn_hidden
        self.proj = nn.Linear(self.stem.out_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.n_frames // 8, dim))
        self.layers = nn.Sequential(*[SelfAttentionLayer(dim, cfg.heads, cfg.dropout) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(self.stem(x)) + self.pos  # [B, T/8, D]
        return self.norm(self.layers(tokens)).mean(dim=1)


def _body(cfg: EncoderConfig) -> nn.Module:
    match cfg.arch:
        case Arch.ANN:
            return AnnBody(cfg)
        case Arch.CNN:
            return CnnBody(cfg)
        case Arch.CNN_LSTM:
            return RecurrentBody(cfg, nn.LSTM, attention=False)
        case Arch.CNN_GRU:
            return RecurrentBody(cfg, nn.GRU, attention=False)
        case Arch.CNN_LSTM_ATTN:
            return RecurrentBody(cfg, nn.LSTM, attention=True)
        case Arch.RESNET:
            return ResNetBody(cfg)
        case Arch.TRANSFORMER:
            return TransformerBody(cfg)
    raise ValueError(f"unknown encoder arch {cfg.arch!r}")


class EmotionEncoder(nn.Module):
    """Body + shared heads: features -> (logits, va, embedding)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.norm = UtteranceNorm() if cfg.instnorm else nn.Identity()
        self.body = _body(cfg)
        self.embed = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(self.body.out_dim, cfg.embedding_dim))
        self.classifier = nn.Linear(cfg.embedding_dim, cfg.n_classes)
        self.va_head = nn.Linear(cfg.embedding_dim, 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = F.relu(self.embed(self.body(self.norm(features))))  # [B, E]
        return self.classifier(e), torch.tanh(self.va_head(e)), F.normalize(e, dim=1)


def build_encoder(cfg: EncoderConfig) -> EmotionEncoder:
    return EmotionEncoder(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
