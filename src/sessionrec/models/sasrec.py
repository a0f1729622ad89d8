"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A causal Transformer over the session's last ``context_length`` items: item embedding plus a
learned position embedding, LayerNorm and dropout, ``blocks`` pre-LayerNorm self-attention
blocks (each position attends to itself and the positions before it; a GELU feed-forward
layer of 4 × dim), a final LayerNorm, and each position's output scored against the item
embeddings (shared input/output embeddings, as in the paper). Weights start as BERT's
(N(0, 0.02)), as RecBole's SASRec: with PyTorch's N(0, 1) embeddings and the paper's
×√dim the first runs here learned several times slower. Attention never reads padding: the
mask is additive and finite (−1e9), so a row of padding alone stays finite rather than NaN.

Training, as the paper, predicts the next item at every position of a window at once (one
forward pass gives up to ``context_length`` examples): each session is cut, from its end,
into windows of ``context_length`` inputs, every event after a session's first is a label
exactly once (when the data marks it a target), its context the items before it in its window.
The loss is cross-entropy over every item (the paper samples one negative per positive with a
binary loss; a full softmax is what later work found better, e.g. Petrov & Macdonald,
RecSys 2023, and is affordable at these catalogue sizes). Adam, as the paper.

Positions count from the first item a window holds: from the session's start for a session
that fits the window, otherwise from the oldest item kept. Training windows are left padded at
a session's start, and streaming always ends in the window's last slot; counting positions by
slot (``positions="window"``, the scheme before) gave a 3-item prefix other position ids in
training than in streaming, so trained and served logits differed. Counted from the first item,
training and streaming run one function: the logits of every prefix within the window, and of
every window's last position beyond it, are those training computed.

Streaming state: the last ``context_length`` items per slot (left padded); ``score`` runs the
network on that window and reads the last position, so streaming equals ``score_sessions``
exactly.

Defaults: chosen on the valid part of ML-100K's acceptance protocol among eight hand-picked
runs (BENCHMARKS.md, "SASRec"): 2 blocks, 1 head, dim 64 as the paper (50 there), context 50
(200 read worse), dropout 0.3, Adam 0.002, 32 windows per step, 25 epochs (the best valid
epoch of that run; ``sessionrec train`` with valid stops early).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from sessionrec.models._window import NextItemWindowModel

#: the additive attention mask of a position not to attend to (finite: no NaN rows)
_MASKED = -1e9


@dataclass(frozen=True)
class SASRecConfig:
    """Parameters of SASRec.

    Attributes:
        context_length: items of the session the network reads (the last ones).
        dim: embedding and hidden size.
        blocks: self-attention blocks.
        heads: attention heads per block (``dim`` must divide by it).
        dropout: dropout on the embeddings, attention and feed-forward layers.
        n_epochs: passes over the training windows.
        batch_size: windows per step.
        learning_rate: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        seed: weights and shuffles.
        positions: ``first`` (position ids count from the first item the window holds) or
            ``window`` (by slot of the left-padded window; models saved before ``first``
            existed load with it).
    """

    context_length: int = 50
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.3
    n_epochs: int = 25
    batch_size: int = 32
    learning_rate: float = 0.002
    weight_decay: float = 0.0
    seed: int = 0
    positions: str = "first"

    def __post_init__(self) -> None:
        from sessionrec.errors import ConfigError

        if self.positions not in ("first", "window"):
            raise ConfigError(f"sasrec: positions must be first | window, not {self.positions!r}")
        if self.dim % self.heads:
            raise ConfigError(f"sasrec: dim ({self.dim}) must divide by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"sasrec: dropout must be in [0, 1), not {self.dropout}")


class _Block(nn.Module):
    """One pre-LayerNorm self-attention block: x + attention(LN(x)), then x + FF(LN(x)).

    Written out over ``scaled_dot_product_attention`` rather than ``nn.TransformerEncoderLayer``:
    in eval mode with an even number of heads that layer takes PyTorch's fused fast path, which
    turned the rows of padding into NaN and spread them (3,366 of 10,924 valid predictions NaN
    with ``heads=2``); here the additive mask is applied as written in training and eval alike.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.p = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) inputs, (B, 1, L, L) additive mask → (B, L, dim)."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        a = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            dropout_p=self.p if self.training else 0.0,
        )
        x = x + self.dropout(self.out(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.dropout(self.ff(self.norm2(x)))


class _Net(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.by_slot = cfg.positions == "window"
        # index n_items is padding (windows shorter than context_length)
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        self.position = nn.Embedding(cfg.context_length, cfg.dim)
        self.input_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            [_Block(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.blocks)]
        )
        self.norm = nn.LayerNorm(cfg.dim)
        future = torch.ones(cfg.context_length, cfg.context_length).triu(1).bool()
        self.register_buffer("future", future, persistent=False)
        # BERT's initialisation (RecBole's SASRec): N(0, 0.02) weights, zero biases
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """(B, L) item indices, left padded with n_items → (B, L, dim) outputs."""
        n = window.shape[1]
        if self.by_slot:
            pos = self.position.weight[None, :n]
        else:  # counted from the window's first item (padding is on the left; it gets 0)
            held = (window != self.n_items).sum(1, keepdim=True)  # (B, 1)
            slot = torch.arange(n, device=window.device)[None]
            pos = self.position((slot - (n - held)).clamp(min=0))  # (B, L, dim)
        x = self.item(window) + pos
        x = self.dropout(self.input_norm(x))
        future: torch.Tensor = self.future  # type: ignore[assignment]
        blocked = future[:n, :n][None] | (window == self.n_items)[:, None, :]  # (B, L, L)
        mask = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device)
        mask = mask.masked_fill(blocked, _MASKED)[:, None]  # (B, 1, L, L): every head
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., dim) outputs → (..., n_items) scores against the item embeddings."""
        return h @ self.item.weight[: self.n_items].T


class SASRec(NextItemWindowModel):
    """A causal self-attention network over the session's last items (Kang & McAuley 2018)."""

    name = "sasrec"
    Config = SASRecConfig
    config: SASRecConfig
    test_params: ClassVar[dict[str, Any]] = {
        "context_length": 8,
        "dim": 16,
        "blocks": 1,
        "dropout": 0.0,
        "n_epochs": 30,
        "batch_size": 16,
        "learning_rate": 0.01,
    }

    net: _Net | None

    def _network(self) -> _Net:
        return _Net(self.n_items, self.config)

    def _make_optimizer(self, net: _Net) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.Adam(
            net.parameters(), lr=c.learning_rate, betas=(0.9, 0.98), weight_decay=c.weight_decay
        )

    def _loss(self, windows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Cross-entropy over every item at the labelled positions of a batch of windows."""
        assert self.net is not None
        at = labels >= 0
        h = self.net(windows)[at]  # (N, dim): the labelled positions
        return nn.functional.cross_entropy(self.net.logits(h), labels[at]), int(at.sum())

    @classmethod
    def load_from(cls, path: str | Path, device: str | torch.device = "cpu") -> SASRec:
        """As every model; a folder saved before ``positions`` existed keeps its scheme."""
        model = super().load_from(path, device)
        raw = json.loads((Path(path) / "config.json").read_text())
        if "positions" not in raw.get("config", {}):
            model.config = dataclasses.replace(model.config, positions="window")
            if model.net is not None:
                model.net.by_slot = True
        return model

    # -- streaming (the window: WindowModel) -----------------------------------------------
    @torch.no_grad()
    def score(self, state: torch.Tensor) -> torch.Tensor:
        assert self.net is not None, "fit or load the model first"
        self.net.eval()
        return self.net.logits(self.net(state)[:, -1])  # (B, n_items)
