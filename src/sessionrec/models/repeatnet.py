"""RepeatNet: a repeat-explore network for session-based recommendation (Ren et al., AAAI 2019).

A GRU reads the session's last ``context_length`` items; three additive attentions of the
current position over the positions before it (``v · tanh(W h_τ + U h_t)``) then make

* the **mode**: P(repeat) and P(explore) = softmax(W_m c), c the first attention's context;
* the **repeat decoder**: P(i | repeat) = the attention weight of the positions holding item i
  (only items of the session);
* the **explore decoder**: P(i | explore) = a softmax over every item *not* in the session, of
  ``[h_t; c_e]`` projected to the item embeddings (shared with the input, as GRU4Rec's
  constrained embedding and SASRec; the paper's is a separate output matrix);

and P(i) = P(repeat) P(i | repeat) + P(explore) P(i | explore). An item is either in the
session or not, so log P(i) is one of the two terms exactly: ``score`` returns it. Training
maximises log P(next item) at every position of a window at once (the paper's loss, without its
optional extra loss on the mode), Adam as the paper.

What it adds beside GRU4Rec and SASRec is that whether the next item repeats one of the session
is learned from the training log: on a log where sessions never repeat an item (MovieLens
ratings) it learns P(repeat) ≈ 0 and ranks the session's items last; on a log whose sessions
return to their items it learns to rank them first (both planted in tests/test_repeatnet.py).
``repeat_mode=False`` is an ablation: the explore decoder alone, one softmax over every item.

"The session" is the window: items older than ``context_length`` events are neither repeat
candidates nor excluded from exploring. The GRU has no biases and the padding embedding is zero,
so the left padding of a window leaves its state at zero exactly: a prefix scores the same
whatever its window's padding (training and streaming see the same function).

Streaming state: the window (``WindowModel``); ``score`` runs the network on it and reads the
last position, as training read that position, so streaming equals ``score_sessions``.

Defaults: chosen on the valid parts of four logs (ML-100K's acceptance protocol and three
synthetic logs; BENCHMARKS.md, "RepeatNet"): dim 100 as the paper, dropout 0.3 (0.5 and 0.6
read better on ML-100K alone, worse over the four logs), Adam 0.002 (0.004 peaked sooner and
lower), batch 64, context 50, 26 epochs (the median best valid epoch over the four logs;
``sessionrec train`` with valid stops early).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sessionrec.models._window import NextItemWindowModel

#: a finite "minus infinity" for masked scores: softmax weight 0, and never NaN
_MASKED = -1e9


@dataclass(frozen=True)
class RepeatNetConfig:
    """Parameters of RepeatNet.

    Attributes:
        context_length: items of the session the network reads (the last ones).
        dim: embedding and GRU size.
        dropout: dropout on the item embeddings and on the GRU's outputs.
        n_epochs: passes over the training windows.
        batch_size: windows per step.
        learning_rate: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        seed: weights and shuffles.
        repeat_mode: False for an ablation: the explore decoder alone, over every item (the
            session's included), with no repeat/explore choice (an attention GRU, as NARM).
    """

    context_length: int = 50
    dim: int = 100
    dropout: float = 0.3
    n_epochs: int = 26
    batch_size: int = 64
    learning_rate: float = 0.002
    weight_decay: float = 0.0
    seed: int = 0
    repeat_mode: bool = True

    def __post_init__(self) -> None:
        from sessionrec.errors import ConfigError

        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"repeatnet: dropout must be in [0, 1), not {self.dropout}")
        if self.context_length < 1 or self.dim < 1:
            raise ConfigError("repeatnet: context_length and dim must be at least 1")


class _Attention(nn.Module):
    """Additive attention of queries over a window: log weights, masked positions ~ −1e9."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(dim, dim, bias=False)
        self.query = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, 1, bias=False)

    def forward(
        self, h: torch.Tensor, rows: torch.Tensor, query: torch.Tensor, blocked: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, dim) window states, (N,) the window of each query, (N, dim) queries, (N, L)
        blocked → (N, L) log weights. Keys are projected once per window, not per query."""
        keys = self.key(h)[rows]
        e = self.v(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)
        return e.masked_fill(blocked, _MASKED).log_softmax(-1)


class _Net(nn.Module):
    def __init__(self, n_items: int, cfg: RepeatNetConfig) -> None:
        super().__init__()
        self.n_items = n_items
        d = cfg.dim
        # index n_items is padding; its embedding stays zero (no gradient reaches it)
        self.item = nn.Embedding(n_items + 1, d, padding_idx=n_items)
        self.gru = nn.GRU(d, d, batch_first=True, bias=False)  # zero in, zero state: padding
        self.dropout = nn.Dropout(cfg.dropout)
        self.mode_attention = _Attention(d)
        self.mode = nn.Linear(d, 2)
        self.repeat_attention = _Attention(d)
        self.explore_attention = _Attention(d)
        self.explore = nn.Linear(2 * d, d, bias=False)
        self.repeat_mode = cfg.repeat_mode
        nn.init.normal_(self.item.weight, std=d**-0.5)
        with torch.no_grad():
            self.item.weight[n_items].zero_()

    def forward(
        self, window: torch.Tensor, rows: torch.Tensor, at: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three heads at positions ``at`` of windows ``rows`` of ``(B, L)`` windows.

        Returns, for those N positions: (N, 2) log P(repeat), log P(explore); (N, L) log
        attention of the repeat decoder over the window; (N, n_items) log P(i | explore)
        (~ −1e9 for the session's items); and (N, L) the window positions that count (the
        real items up to the position).
        """
        h, _ = self.gru(self.dropout(self.item(window)))
        h = self.dropout(h)
        n = window.shape[1]
        win = window[rows]  # (N, L)
        query = h[rows, at]  # (N, d)
        pos = torch.arange(n, device=window.device)[None]
        # the positions up to `at` holding an item; position `at` itself always (a window of
        # padding alone then attends to its own zero state, never to an empty set)
        counts = (pos <= at[:, None]) & ((win != self.n_items) | (pos == at[:, None]))
        blocked = ~counts
        seen = torch.where(counts, win, self.n_items)  # the padding column takes the rest
        present = torch.zeros((len(win), self.n_items + 1), dtype=torch.bool, device=win.device)
        present = present.scatter(-1, seen, True)[:, : self.n_items]
        # a mode without candidates gets no probability: nothing to repeat before the first
        # item, nothing to explore once the session holds every item
        impossible = torch.stack([~present.any(-1), present.all(-1)], -1)
        c_m = _context(self.mode_attention(h, rows, query, blocked), h, rows)
        log_mode = self.mode(c_m).masked_fill(impossible, _MASKED).log_softmax(-1)
        log_repeat = self.repeat_attention(h, rows, query, blocked)
        c_e = _context(self.explore_attention(h, rows, query, blocked), h, rows)
        logits = self.explore(torch.cat([query, c_e], -1)) @ self.item.weight.T  # (N, n+1)
        if self.repeat_mode:  # the explore decoder never proposes the session's items
            logits = logits.scatter(-1, seen, _MASKED)
        logits = logits[:, : self.n_items]
        return log_mode, log_repeat, logits.log_softmax(-1), counts


def _context(log_weights: torch.Tensor, h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(N, L) log attention weights over the windows ``rows`` of ``h`` → (N, dim) contexts."""
    return torch.bmm(log_weights.exp()[:, None], h[rows]).squeeze(1)


def _in_window(
    log_repeat: torch.Tensor, win: torch.Tensor, counts: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: log Σ of the repeat weights of the positions holding it (stable: the largest
    weight factored out) and whether any counted position holds it; (N, n) each."""
    idx = torch.where(counts, win, n)
    big = torch.full((len(win), n + 1), _MASKED, dtype=log_repeat.dtype, device=win.device)
    big = big.scatter_reduce(-1, idx, log_repeat, reduce="amax", include_self=True)
    total = torch.zeros_like(big).scatter_add(-1, idx, (log_repeat - big.gather(-1, idx)).exp())
    present = torch.zeros(big.shape, dtype=torch.bool, device=win.device).scatter(-1, idx, True)
    log_sum = big + total.clamp_min(1e-30).log()
    return log_sum[:, :n], present[:, :n]


class RepeatNet(NextItemWindowModel):
    """A GRU with a learned choice between repeating a session's item and exploring a new one
    (Ren et al., AAAI 2019)."""

    name = "repeatnet"
    Config = RepeatNetConfig
    config: RepeatNetConfig
    test_params: ClassVar[dict[str, Any]] = {
        "context_length": 8,
        "dim": 16,
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
        return torch.optim.Adam(net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)

    def _loss(self, windows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """−log P(next item) at the labelled positions: of the repeat term when the item is in
        the window before the position, of the explore term otherwise."""
        assert self.net is not None
        rows, at = (labels >= 0).nonzero(as_tuple=True)
        y = labels[rows, at]
        log_mode, log_repeat, log_explore, counts = self.net(windows, rows, at)
        if not self.config.repeat_mode:
            return -log_explore.gather(-1, y[:, None]).mean(), len(y)
        match = counts & (windows[rows] == y[:, None])
        repeat = log_mode[:, 0] + log_repeat.masked_fill(~match, _MASKED).logsumexp(-1)
        explore = log_mode[:, 1] + log_explore.gather(-1, y[:, None]).squeeze(-1)
        log_p = torch.where(match.any(-1), repeat, explore)
        return -log_p.mean(), len(y)

    # -- streaming (the window: WindowModel) -----------------------------------------------
    @torch.no_grad()
    def score(self, state: torch.Tensor) -> torch.Tensor:
        """log P(i) of every item after the window ``state`` (B, L)."""
        assert self.net is not None, "fit or load the model first"
        self.net.eval()
        b, n = state.shape
        rows = torch.arange(b, device=state.device)
        at = torch.full((b,), n - 1, dtype=torch.long, device=state.device)
        log_mode, log_repeat, log_explore, counts = self.net(state, rows, at)
        if not self.config.repeat_mode:
            return log_explore
        log_sum, present = _in_window(log_repeat, state, counts, self.n_items)
        return torch.where(present, log_mode[:, :1] + log_sum, log_mode[:, 1:] + log_explore)
