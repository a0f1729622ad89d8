"""Two-tower retrieval with a GRU query tower (the TensorFlow Recommenders sequential-retrieval
tutorial; Yi et al., "Sampling-bias-corrected neural modeling", RecSys 2019, for logQ).

Query tower: item embedding + GRU over the last ``context_length`` items of the session (left
padded with a learned padding item), its last hidden state projected to ``dim``. Candidate
tower: an item embedding. Training: every target event with at least one earlier item is an
example (context → next item); in-batch softmax over the batch's labels, each logit corrected
by ``−log(expected count of that candidate in the batch)`` (logQ), accidental hits (the same
item labelling another row) masked, optionally ``extra_negatives`` uniformly sampled items
shared by the batch. Scoring: the query against every item embedding, exact (``B × n_items``);
``query_vectors`` / ``item_vectors`` let ``sessionrec.ann`` serve it from an HNSW index.

Streaming state: the last ``context_length`` items per slot; ``score`` runs the query tower on
that window, the same function training used, so streaming equals ``score_sessions`` exactly.

Two settings side by side (BENCHMARKS.md, "Two-tower"):

* the defaults, an improved variant: dim 64, a linear projection after the GRU, both towers
  L2-normalised, temperature 0.1, logQ correction, accidental hits masked, Adam 0.002, mean
  loss over the batch, batch 256, 10 epochs, left padding;
* preset ``tfrs`` (``--param preset=tfrs``): the TensorFlow Recommenders sequential-retrieval
  tutorial's model as written (``docs/examples/sequential_retrieval.ipynb``): a GRU of 32 over
  item embeddings of 32 whose last state is the query (no projection), a candidate embedding of
  32, no normalisation, no temperature, no logQ, accidental hits not removed, TFRS's
  ``Retrieval`` loss (in-batch softmax cross-entropy summed over the batch), Keras' Adagrad
  (lr 0.1, initial accumulator 0.1, ε 1e-7), Keras' initialisers (embeddings U(±0.05), GRU
  Glorot-uniform input weights, orthogonal recurrent weights per gate, zero biases), contexts
  right-padded as its example generator writes them, batch 12,800, 3 epochs. Not reproduced:
  its one shuffle (buffer 10,000) cached across epochs (here a full reshuffle every epoch), and
  its OOV row in the candidate table (never a label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from sessionrec.errors import ConfigError
from sessionrec.models._window import WindowModel
from sessionrec.models.base import EpochCallback
from sessionrec.prepare.data import SessionData
from sessionrec.training.distributed import rank_seed
from sessionrec.training.trainer import EpochSteps, fit_epochs

OPTIMIZERS = ("adam", "adagrad")
REDUCTIONS = ("mean", "sum")
INITS = ("torch", "keras")
PADDINGS = ("left", "right")


@dataclass(frozen=True)
class TwoTowerConfig:
    """Parameters of the two-tower model (the module doc compares the defaults and ``tfrs``).

    Attributes:
        context_length: items of the session the query tower reads (the last ones).
        dim: embedding and GRU size.
        n_epochs: passes over the training examples.
        batch_size: examples per in-batch softmax.
        learning_rate: learning rate.
        weight_decay: L2 penalty (Adam's ``weight_decay``; Adagrad's too).
        logq: subtract log(expected count in the batch) from each logit (Yi et al. 2019).
        extra_negatives: uniformly sampled items added to every batch's candidates.
        temperature: logits are divided by it.
        seed: weights and shuffles.
        optimizer: ``adam`` or ``adagrad`` (Keras' flavour: initial accumulator 0.1, ε 1e-7).
        normalize: L2-normalise queries and candidates.
        query_projection: a linear layer after the GRU (else the GRU state is the query).
        mask_accidental_hits: mask in-batch negatives that are the row's own label item.
        loss_reduction: ``mean`` or ``sum`` of the batch's cross-entropies (TFRS sums).
        init: ``torch`` (PyTorch's default initialisers) or ``keras`` (see the module doc).
        padding: where short contexts are padded before the GRU reads them.
    """

    context_length: int = 10
    dim: int = 64
    n_epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 0.002
    weight_decay: float = 0.0
    logq: bool = True
    extra_negatives: int = 0
    temperature: float = 0.1
    seed: int = 0
    optimizer: str = "adam"
    normalize: bool = True
    query_projection: bool = True
    mask_accidental_hits: bool = True
    loss_reduction: str = "mean"
    init: str = "torch"
    padding: str = "left"

    #: named starting points (``--param preset=NAME``; models/base.py ``make_config``)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tfrs": {
            "dim": 32,
            "n_epochs": 3,
            "batch_size": 12800,
            "learning_rate": 0.1,
            "logq": False,
            "temperature": 1.0,
            "optimizer": "adagrad",
            "normalize": False,
            "query_projection": False,
            "mask_accidental_hits": False,
            "loss_reduction": "sum",
            "init": "keras",
            "padding": "right",
        },
    }

    def __post_init__(self) -> None:
        for name, value, known in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("loss_reduction", self.loss_reduction, REDUCTIONS),
            ("init", self.init, INITS),
            ("padding", self.padding, PADDINGS),
        ):
            if value not in known:
                raise ConfigError(f"two-tower: {name} must be one of {known}, not {value!r}")


class _Towers(nn.Module):
    def __init__(self, n_items: int, cfg: TwoTowerConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.normalize = cfg.normalize
        self.right_pad = cfg.padding == "right"
        # Index n_items is padding in the query tower (windows shorter than context_length).
        self.query_embedding = nn.Embedding(n_items + 1, cfg.dim)
        self.gru = nn.GRU(cfg.dim, cfg.dim, batch_first=True)
        self.query_out = nn.Linear(cfg.dim, cfg.dim) if cfg.query_projection else None
        self.candidate_embedding = nn.Embedding(n_items, cfg.dim)
        if cfg.init == "keras":
            self._keras_init()

    @torch.no_grad()
    def _keras_init(self) -> None:
        """Keras' defaults: embeddings U(±0.05); GRU kernel Glorot-uniform, recurrent kernel
        orthogonal (per gate), biases 0."""
        for emb in (self.query_embedding, self.candidate_embedding):
            nn.init.uniform_(emb.weight, -0.05, 0.05)
        w_ih, w_hh, b_ih, b_hh = (
            self.gru.get_parameter(f"{k}_l0")
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        nn.init.xavier_uniform_(w_ih)
        for gate in w_hh.chunk(3, dim=0):
            nn.init.orthogonal_(gate)
        nn.init.zeros_(b_ih)
        nn.init.zeros_(b_hh)

    def query(self, window: torch.Tensor) -> torch.Tensor:
        """(B, L) item indices, left padded with n_items → (B, dim) queries (L2-normalised
        with ``normalize``). With right padding the items move to the front first."""
        if self.right_pad:
            order = torch.sort((window == self.n_items).to(torch.int8), dim=1, stable=True)
            window = window.gather(1, order.indices)
        out, _ = self.gru(self.query_embedding(window))
        q = out[:, -1] if self.query_out is None else self.query_out(out[:, -1])
        return nn.functional.normalize(q, dim=-1) if self.normalize else q

    def candidates(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(N, dim) candidate embeddings, all items when ``items`` is None (L2-normalised
        with ``normalize``)."""
        e = self.candidate_embedding.weight if items is None else self.candidate_embedding(items)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


def training_examples(data: SessionData, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, L) left-padded context windows and (N,) labels: every target event after a first one.

    Vectorised: window column j holds the item ``L - j`` positions before the label, or the
    padding index ``n_items`` where that reaches before the session's start.
    """
    pos = np.arange(data.n_events)
    session_start = np.repeat(data.offsets[:-1], data.lengths)
    is_label = data.target & (pos > session_start)
    labels_at = pos[is_label]
    back = np.arange(context_length, 0, -1)  # L, L-1, ..., 1 positions back
    idx = labels_at[:, None] - back[None, :]  # (N, L)
    valid = idx >= session_start[is_label][:, None]
    windows = np.where(valid, data.items[np.maximum(idx, 0)], data.n_items)
    return windows.astype(np.int64), data.items[labels_at].astype(np.int64)


class TwoTower(WindowModel):
    """GRU query tower × item-embedding candidate tower, in-batch softmax with logQ."""

    #: Trains as one rank of a process group (``distributed``; docs/distributed.md).
    supports_distributed: ClassVar[bool] = True

    name = "two-tower"
    Config = TwoTowerConfig
    config: TwoTowerConfig
    tasks = frozenset({"next-item", "top-n"})
    test_params: ClassVar[dict[str, Any]] = {
        "dim": 16,
        "n_epochs": 12,
        "batch_size": 32,
        "learning_rate": 0.01,
    }

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.net: _Towers | None = None
        #: (windows, labels, log_q) of the current fit: what every epoch reads.
        self._examples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _make_optimizer(self, net: _Towers) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adagrad":
            return torch.optim.Adagrad(
                net.parameters(),
                lr=c.learning_rate,
                weight_decay=c.weight_decay,
                initial_accumulator_value=0.1,
                eps=1e-7,
            )
        return torch.optim.Adam(net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)

    def _network(self) -> _Towers:
        return _Towers(self.n_items, self.config)

    @staticmethod
    def _items_in(arrays: dict[str, torch.Tensor]) -> int:
        return int(arrays["candidate_embedding.weight"].shape[0])

    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        c = self.config
        self._start_fit(train.n_items)
        net = self.net
        assert net is not None
        windows_np, labels_np = training_examples(train, c.context_length)
        windows = torch.from_numpy(windows_np).to(self.device)
        labels = torch.from_numpy(labels_np).to(self.device)
        # logQ: the probability that an item is a batch's label (its share of the labels).
        freq = np.bincount(labels_np, minlength=self.n_items).astype(np.float64)
        log_q = torch.from_numpy(np.log(np.maximum(freq, 1.0) / max(len(labels_np), 1))).float()
        self._examples = (windows, labels, log_q.to(self.device))
        world = 1 if self.distributed is None else self.distributed.world_size
        per_rank = -(-len(labels) // world)  # ⌈N / world⌉: the largest share
        try:
            fit_epochs(
                self,
                c.n_epochs,
                n_steps=-(-per_rank // c.batch_size),
                n_events=len(labels),
                report_every=20,
                first_report=20,
                callback=callback,
            )
        finally:
            self._examples = None
        net.eval()
        return self

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        """One pass over the (context, next item) examples in a fresh order (epoch 1-based);
        each batch is reported to ``steps`` with its loss per example."""
        c = self.config
        net, opt = self.net, self._opt
        assert net is not None and opt is not None and self._examples is not None
        windows, labels, log_q = self._examples
        # Each epoch's shuffles and negatives are seeded from (seed, epoch): the epoch
        # number is the whole RNG state, so a resumed run repeats an uninterrupted one.
        gen = torch.Generator().manual_seed((c.seed * 1_000_003 + epoch) % 2**63)
        net.train()
        order = torch.randperm(len(labels), generator=gen).to(self.device)
        ddp = self.distributed
        n_steps = -(-len(order) // c.batch_size)
        if ddp is not None:
            # every rank draws the same order and takes every world_size-th example; its
            # in-batch negatives are its own batch's, its extra negatives its own draws
            order, n_steps = order[ddp.rank :: ddp.world_size], steps.n_steps
            if ddp.rank:
                gen = torch.Generator().manual_seed(rank_seed(c.seed * 1_000_003 + epoch, ddp))
        for step in range(n_steps):
            rows = order[step * c.batch_size : (step + 1) * c.batch_size]
            if not len(rows):  # this rank's share ran out a step before the others'
                assert ddp is not None
                opt.zero_grad()
                ddp.average_gradients(net.parameters(), 0, mean=c.loss_reduction == "mean")
                opt.step()
                continue
            y = labels[rows]  # (B,)
            q = net.query(windows[rows])  # (B, D)
            cand = y
            if c.extra_negatives:
                extra = torch.randint(self.n_items, (c.extra_negatives,), generator=gen).to(
                    self.device
                )
                cand = torch.cat([y, extra])
            logits = q @ net.candidates(cand).T / c.temperature  # (B, B + M)
            if c.logq:
                expected = torch.cat(
                    [
                        log_q[y] + math.log(len(y)),
                        torch.full(
                            (len(cand) - len(y),),
                            math.log(max(c.extra_negatives, 1) / self.n_items),
                            device=self.device,
                        ),
                    ]
                )
                logits = logits - expected[None, :]
            if c.mask_accidental_hits:
                # another column holding this row's label item
                hit = cand[None, :] == y[:, None]
                hit[:, : len(y)].fill_diagonal_(False)
                logits = logits.masked_fill(hit, float("-inf"))
            target = torch.arange(len(y), device=self.device)
            loss = nn.functional.cross_entropy(logits, target, reduction=c.loss_reduction)
            steps.done(
                loss.detach(),
                # per example, whichever reduction trained
                value=float(loss.detach()) / (len(y) if c.loss_reduction == "sum" else 1),
                events=len(y),
            )
            opt.zero_grad()
            loss.backward()
            if ddp is not None:
                ddp.average_gradients(net.parameters(), len(y), mean=c.loss_reduction == "mean")
            opt.step()

    # -- streaming (the window: WindowModel) -----------------------------------------------
    @torch.no_grad()
    def score(self, state: torch.Tensor) -> torch.Tensor:
        return self.query_vectors(state) @ self.item_vectors().T  # (B, n_items)

    # -- vectors (sessionrec.ann: exact or approximate top-k) ---------------------------------
    @torch.no_grad()
    def query_vectors(self, state: torch.Tensor) -> torch.Tensor:
        """(B, dim) L2-normalised query-tower outputs for the windows in ``state``."""
        assert self.net is not None, "fit or load the model first"
        self.net.eval()
        return self.net.query(state)

    @torch.no_grad()
    def item_vectors(self) -> torch.Tensor:
        """(n_items, dim) L2-normalised candidate embeddings."""
        assert self.net is not None, "fit or load the model first"
        return self.net.candidates()
