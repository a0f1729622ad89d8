"""GRU4Rec: session-based recommendation with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based recommendations with recurrent neural
networks", ICLR 2016; Hidasi & Karatzoglou, "Recurrent neural networks with top-k gains for
session-based recommendations", CIKM 2018.

A GRU reads a session one item at a time; its last layer's hidden state ``h`` (B, H) scores
every item as ``h @ W.T + b`` where ``W`` (n_items, H) holds the output item vectors. Written
from the papers:

* session-parallel mini-batches (``sessionrec.training.batching``), truncated to one step: the
  hidden state is carried between steps without back-propagation through time;
* inputs as one-hot vectors (an item's row of the first GRU layer's input weights), through a
  separate embedding (``embedding`` > 0), or through the output item vectors themselves
  (``constrained_embedding``, the "shared" embedding of the CIKM 2018 code);
* during training only the mini-batch targets and ``n_sample`` shared negatives drawn in
  proportion to ``popularity ** sample_alpha`` are scored: ``h @ W[targets ∪ samples].T + b``;
  the other sessions' targets act as negatives too (``sessionrec.training.sampling``);
* losses cross-entropy (optionally logQ-corrected), BPR-max with score regularisation and
  TOP1-max over ELU-activated scores (``sessionrec.training.losses``);
* Adagrad with Nesterov momentum, updating only the item rows a step touches
  (``sessionrec.training.optim``); weights uniform in ±sqrt(6 / (fan_in + fan_out)).

Where the official PyTorch code (hidasib/GRU4Rec_PyTorch_Official) does something else, the
config offers its behaviour beside ours; ``GRU4RecConfig.official`` and official parameter
files (``sessionrec.models.gru4rec_official``) select all of it:

=============================  ==================================  ============================
option                         sessionrec default                  official code
=============================  ==================================  ============================
``hidden_dropout_placement``   ``output``: the state carried to    ``state``: the dropped-out
                               the next step is the clean one      state is carried
``momentum_type``              ``nesterov``                        ``heavy-ball`` (``p += v``)
``logq_correction``            ``popularity``: ``log pop`` for     ``sampling``: ``log pop`` for
                               every column                        the batch's targets,
                                                                   ``sample_alpha · log pop``
                                                                   for the shared samples
``elu_for_cross_entropy``      ``True``                            ``False`` (ELU only in
                                                                   BPR-max)
``elu_param`` default          0                                   0.5
=============================  ==================================  ============================

One-hot input (``constrained_embedding=False, embedding=0``) differs from the official
``GRUEmbedding`` and is not switchable: ours is the first GRU layer with one-hot input rows
(``n = tanh(x_n + b_in + r * (h W_hn + b_hn))``: the reset gate multiplies the recurrent
product, two biases, ``z`` weighs the old state), and ``dropout_p_embed`` drops whole items
from the input. Official applies the reset gate before the product (``tanh(x_n + (r * h)
W_h)``), has one bias on the input side, weighs the new state by ``z``, and applies
``dropout_p_embed`` elementwise to the first layer's output (which is also fed back as that
layer's next state). The official parameter files all use the constrained embedding.

``n_sample = -1`` scores the whole catalogue at every step (a full softmax over all items,
without sampling): the configuration the seeds used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData
from sessionrec.training.batching import session_order, session_parallel_schedule
from sessionrec.training.distributed import Distributed, rank_seed
from sessionrec.training.losses import LOSSES, loss_and_grad
from sessionrec.training.optim import Adam, RowOptimizer, RowSums, make_optimizer
from sessionrec.training.sampling import NegativeSampler
from sessionrec.training.trainer import EpochSteps, fit_epochs

log = logging.getLogger(__name__)

#: Called every few hundred steps with (pairs done, pairs in the epoch, running mean loss).
ProgressHook = Callable[[int, int, float], None]


@dataclass(frozen=True)
class _EpochData:
    """What ``fit`` prepares once and every epoch reads: the session-parallel schedule as
    tensors, (steps, B) inputs and targets, the slots to reset before each step, the active
    slots of the last steps, the item counts (for the sampler) and log popularities (logQ)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    reset_slots: torch.Tensor
    reset_off: list[int]
    active: np.ndarray
    n_full: int
    n_steps: int
    counts: np.ndarray
    log_pop: torch.Tensor


@dataclass(frozen=True)
class GRU4RecConfig:
    """Hyperparameters, named as in the papers and the official code.

    Attributes:
        loss: ``cross-entropy`` | ``bpr-max`` | ``top1-max``.
        constrained_embedding: the input embedding is the output item matrix (shared).
        embedding: size of a separate input embedding; 0 = one-hot input (ignored when
            ``constrained_embedding``); ``"layersize"`` = the first layer's size (as the
            official code).
        elu_param: alpha of an ELU on the training scores; 0 = linear scores.
        layers: GRU layer sizes; an int means one layer.
        n_epochs: passes over the training data.
        batch_size: B, the number of session-parallel slots.
        dropout_p_embed: dropout on the input embedding.
        dropout_p_hidden: dropout on the hidden state fed to the next layer / the output.
        hidden_dropout_placement: ``output`` (default): the dropped-out hidden state goes
            only to the next layer / the output, the clean state is carried to the next step;
            ``state``: the dropped-out state is also the next step's recurrent state (the
            official code).
        learning_rate: step size.
        momentum: momentum of the Adagrad optimiser (0 = plain Adagrad).
        momentum_type: ``nesterov`` (default) or ``heavy-ball`` (``p += v``, the official
            ``IndexedAdagradM``).
        n_sample: shared negative samples per mini-batch (0 = in-batch negatives only,
            -1 = score every item: a full softmax, no sampling).
        sample_alpha: negatives are drawn in proportion to ``popularity ** sample_alpha``.
        bpreg: weight of BPR-max's score regularisation.
        logq: weight of the logQ correction of cross-entropy (0 = none).
        logq_correction: ``popularity`` (default): subtract ``logq · log pop`` from every
            column; ``sampling`` (the official code): ``logq · log pop`` for the batch's
            targets, ``logq · sample_alpha · log pop`` for the shared samples (each column's
            own sampling distribution), with pop the raw training counts.
        elu_for_cross_entropy: apply ``elu_param`` to cross-entropy's scores too (default);
            the official code applies the ELU only in BPR-max.
        optimizer: ``adagrad`` (with Nesterov momentum) | ``adam``.
        seed: seeds the weights, the dropout masks and the samples.
        sample_store_size: negatives drawn per refill of the sample buffer.

    The defaults were chosen on the VALID parts of five logs (ML-100K, three synthetic shapes,
    a YOOCHOOSE-shaped log; ``benchmarks/choose_defaults.py``, BENCHMARKS.md "How GRU4Rec's
    defaults were chosen"): cross-entropy over every item (``n_sample=-1``; its cost grows
    with the catalogue, so for catalogues of many tens of thousands of items ``n_sample=2048``
    is the faster choice); then (a second selection, after a per-epoch diagnosis on the
    synthetic logs: train loss falling while valid peaked, a wider layer peaking higher but
    sooner) one layer of 300 with hidden dropout 0.5, and 5 epochs (the median best valid
    epoch over the five logs; what a fit on train+valid trains). A fit on train with a valid
    part stops early on valid by default and may run up to 10 epochs
    when ``n_epochs`` is not given (``GRU4Rec.early_stopping_epochs``).
    """

    loss: str = "cross-entropy"
    constrained_embedding: bool = True
    embedding: int | str = 0
    elu_param: float = 0.0
    layers: tuple[int, ...] = (300,)
    n_epochs: int = 5
    batch_size: int = 64
    dropout_p_embed: float = 0.0
    dropout_p_hidden: float = 0.5
    hidden_dropout_placement: str = "output"
    learning_rate: float = 0.05
    momentum: float = 0.0
    momentum_type: str = "nesterov"
    n_sample: int = -1
    sample_alpha: float = 0.5
    bpreg: float = 1.0
    logq: float = 0.0
    logq_correction: str = "popularity"
    elu_for_cross_entropy: bool = True
    optimizer: str = "adagrad"
    seed: int = 0
    sample_store_size: int = 4_000_000

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, int):
            layers = (layers,)
        object.__setattr__(self, "layers", tuple(int(x) for x in layers))
        if not self.layers or min(self.layers) < 1:
            raise ConfigError(f"layers must be positive sizes, not {self.layers!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.optimizer not in ("adagrad", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; known: adagrad, adam")
        for name in ("dropout_p_embed", "dropout_p_hidden"):
            p = getattr(self, name)
            if not 0 <= p < 1:
                raise ConfigError(f"{name} must be in [0, 1), not {p!r}")
        if self.embedding == "layersize":
            object.__setattr__(self, "embedding", self.layers[0])
        elif isinstance(self.embedding, (str, bool)):
            raise ConfigError(f"embedding must be a size or 'layersize', not {self.embedding!r}")
        choices = {
            "hidden_dropout_placement": ("output", "state"),
            "momentum_type": ("nesterov", "heavy-ball"),
            "logq_correction": ("popularity", "sampling"),
        }
        for name, known in choices.items():
            if getattr(self, name) not in known:
                raise ConfigError(
                    f"{name} must be one of {', '.join(known)}, not {getattr(self, name)!r}"
                )
        if self.n_sample == 0 and self.batch_size < 2:
            raise ConfigError(
                "n_sample=0 needs batch_size >= 2: the other sessions' targets are then the "
                "only negatives"
            )
        if self.batch_size < 1 or self.n_epochs < 0 or self.n_sample < -1:
            raise ConfigError("batch_size must be >= 1, n_epochs >= 0, n_sample >= -1")
        if self.embedding_size < 0 or self.elu_param < 0 or self.learning_rate <= 0:
            raise ConfigError("embedding and elu_param must be >= 0, learning_rate > 0")

    @property
    def embedding_size(self) -> int:
        """``embedding`` as a size (``"layersize"`` is resolved when the config is made)."""
        return int(self.embedding)


def _uniform(
    shape: tuple[int, ...], fan_in: int, fan_out: int, gen: torch.Generator
) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.empty(shape).uniform_(-bound, bound, generator=gen)


def _gates(rows: int, fan_in: int, hidden: int, gen: torch.Generator) -> torch.Tensor:
    """(rows, 3H) weights of the three gates, each block initialised with its own fans."""
    return torch.cat([_uniform((rows, hidden), fan_in, hidden, gen) for _ in range(3)], dim=1)


def _gru(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step from the input projection ``gi`` (B, 3H) and the state ``h`` (B, H).

    Gate order r, z, n; ``n = tanh(gi_n + r * (h W_hn + b_hn))``, ``h' = (1 - z) n + z h``.
    """
    gh = torch.addmm(b_hh, h, w_hh)
    hidden = h.shape[1]
    rz = torch.sigmoid(gi[:, : 2 * hidden] + gh[:, : 2 * hidden])
    r, z = rz[:, :hidden], rz[:, hidden:]
    n = torch.tanh(torch.addcmul(gi[:, 2 * hidden :], r, gh[:, 2 * hidden :]))
    return torch.lerp(n, h, z)


@dataclass(frozen=True)
class _GRUCache:
    """What a GRU step's backward reads: the recurrent projection and the gates."""

    gh: torch.Tensor
    rz: torch.Tensor
    n: torch.Tensor


def _gru_train(
    gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, _GRUCache]:
    """``_gru`` keeping the gates for ``_gru_backward``."""
    gh = torch.addmm(b_hh, h, w_hh)
    hidden = h.shape[1]
    rz = torch.add(gi[:, : 2 * hidden], gh[:, : 2 * hidden]).sigmoid_()
    r, z = rz[:, :hidden], rz[:, hidden:]
    # tanh(a) = 2 σ(2a) − 1: torch's CPU tanh costs three sigmoids
    n = torch.addcmul(gi[:, 2 * hidden :], r, gh[:, 2 * hidden :]).mul_(2.0).sigmoid_()
    n.mul_(2.0).sub_(1.0)
    return torch.lerp(n, h, z), _GRUCache(gh, rz, n)


def _gru_backward(
    dh: torch.Tensor, h: torch.Tensor, c: _GRUCache
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of a GRU step's input and recurrent projections (``gi``, ``gh``) from
    that of its new state; the old state is a constant (one-step truncation).

    With ``h' = (1 − z) n + z h``, ``n = tanh(a)``, ``a = gi_n + r gh_n``::

        da = dh (1 − z)(1 − n²)      dgi_n = da       dgh_n = r da
        dz = dh (h − n) z (1 − z)    dgi_z = dgh_z = dz
        dr = da gh_n r (1 − r)       dgi_r = dgh_r = dr
    """
    hidden = h.shape[1]
    r, z, n = c.rz[:, :hidden], c.rz[:, hidden:], c.n
    one = h.new_ones(())  # a Python float operand costs a tensor conversion per op
    slopes = torch.addcmul(c.rz, c.rz, c.rz, value=-1.0)  # σ' = σ (1 − σ) of both gates
    da = torch.sub(one, z).mul_(dh).mul_(torch.addcmul(one, n, n, value=-1.0))
    dz = torch.sub(h, n).mul_(dh).mul_(slopes[:, hidden:])
    dr = torch.mul(da, c.gh[:, 2 * hidden :]).mul_(slopes[:, :hidden])
    dgi = torch.cat([dr, dz, da], dim=1)
    dgh = torch.cat([dr, dz, da * r], dim=1)
    return dgi, dgh


#: the largest first-layer input table ``GRU4Rec._input_table`` keeps (50,000 items × 3 × 300
#: hidden units is 180 MB)
_INPUT_TABLE_MAX_BYTES = 256 * 2**20


class GRU4Rec(SessionModel):
    """GRU4Rec (see the module docstring). State: a tuple of (B, H_l) hidden states."""

    name: ClassVar[str] = "gru4rec"
    Config: ClassVar[type] = GRU4RecConfig
    #: The epoch cap of a fit that stops early on valid by default (``sessionrec train`` on
    #: train with a valid part, ``n_epochs`` not given): valid picks the epoch, up to 10
    #: (BENCHMARKS.md, "Early stopping by default").
    early_stopping_epochs: ClassVar[int] = 10
    #: Trains as one rank of a process group (``distributed``; docs/distributed.md).
    supports_distributed: ClassVar[bool] = True
    #: Tiny settings for the shared contract tests.
    test_params: ClassVar[dict[str, Any]] = {
        "layers": [16],
        "n_epochs": 2,
        "batch_size": 8,
        "n_sample": 16,
        "loss": "bpr-max",
        "elu_param": 0.5,
        "momentum": 0.3,
    }

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        self.config: GRU4RecConfig
        self.params: dict[str, torch.Tensor] = {}
        self.epochs_done = 0
        self.progress_hook: ProgressHook | None = None
        self._opt: RowOptimizer | None = None
        self._epoch_data: _EpochData | None = None
        self._table: tuple[tuple[tuple[int, int], ...], torch.Tensor] | None = None
        self._sums: tuple[tuple[int, torch.device], RowSums] | None = None
        #: Set by the runner (or the caller) to train as one rank of a process group: the
        #: rank trains on its shard of the sessions, gradients are summed over the ranks.
        self.distributed: Distributed | None = None

    # -- parameters -------------------------------------------------------------------------
    @property
    def _input_mode(self) -> str:
        cfg = self.config
        if cfg.constrained_embedding:
            return "shared"
        return "embedding" if cfg.embedding_size > 0 else "onehot"

    def _row_names(self) -> list[str]:
        """Item tables updated by rows (the rest, the GRU weights, are updated densely)."""
        names = ["item.weight", "item.bias"] if self.config.n_sample >= 0 else []
        if self._input_mode == "embedding":
            names.append("embed.weight")
        elif self._input_mode == "onehot":
            names.append("onehot.weight")
        return names

    def _init_params(self, n_items: int) -> None:
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        layers = cfg.layers
        p: dict[str, torch.Tensor] = {
            "item.weight": _uniform((n_items, layers[-1]), n_items, layers[-1], gen),
            "item.bias": torch.zeros(n_items),
        }
        if self._input_mode == "shared":
            in_dim = layers[-1]
        elif self._input_mode == "embedding":
            size = cfg.embedding_size
            p["embed.weight"] = _uniform((n_items, size), n_items, size, gen)
            in_dim = size
        else:
            p["onehot.weight"] = _gates(n_items, n_items, layers[0], gen)
            in_dim = 0
        for i, hidden in enumerate(layers):
            if in_dim:
                p[f"gru{i}.w_ih"] = _gates(in_dim, in_dim, hidden, gen)
            p[f"gru{i}.b_ih"] = torch.zeros(3 * hidden)
            p[f"gru{i}.w_hh"] = _gates(hidden, hidden, hidden, gen)
            p[f"gru{i}.b_hh"] = torch.zeros(3 * hidden)
            in_dim = hidden
        self.n_items = n_items
        self._set_params(p)

    def _set_params(self, arrays: dict[str, torch.Tensor]) -> None:
        rows = set(self._row_names())
        self.params = {}
        for k, v in arrays.items():
            t = v.detach().to(self.device, torch.float32).clone()
            self.params[k] = t.requires_grad_(k not in rows)
        self._opt = None
        self._table = None

    def _input_table(self) -> torch.Tensor | None:
        """(n_items, 3 H) the first GRU layer's input projection of every item, for inference.

        A step then reads one row per session instead of multiplying the session's embedding
        by ``w_ih``: a one-row product that reads all of ``w_ih`` (0.12 ms of a served
        GRU4Rec event's 1.4 ms of CPU on the development machine, BENCHMARKS.md "Serving").
        The table is one product over every item; its rows have the bits of a product over a
        batch of sessions (MKL rounds one- and two-row products differently; in our checks
        batches of 7 rows and more agree with the table bit for bit). Kept until the weights
        change (keyed by the tensors and their version counters, which every in-place update
        bumps); None for one-hot input (already a row per item) and for a table over
        ``_INPUT_TABLE_MAX_BYTES``."""
        mode = self._input_mode
        if mode == "onehot":
            return None
        p = self.params
        src = p["item.weight" if mode == "shared" else "embed.weight"]
        w, b = p["gru0.w_ih"], p["gru0.b_ih"]
        if src.shape[0] * w.shape[1] * 4 > _INPUT_TABLE_MAX_BYTES:
            return None
        key = tuple((id(t), t._version) for t in (src, w, b))
        if self._table is None or self._table[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._table = (key, torch.addmm(b, src, w))
        return self._table[1]

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.params.items()}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self._set_params(arrays)
        self.n_items = int(arrays["item.weight"].shape[0])

    # -- checkpoints (weights + optimiser state + epoch) ------------------------------------
    def training_state(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue training after the last finished epoch.

        The random streams of epoch e are seeded from (seed, e), so the epoch number is the
        whole RNG state: a resumed run gives the same numbers as an uninterrupted one.
        """
        out = {f"param/{k}": v.detach() for k, v in self.params.items()}
        if self._opt is not None:
            out.update({f"opt/{k}": v for k, v in self._opt.state_dict().items()})
        out["epochs_done"] = torch.tensor([self.epochs_done], dtype=torch.int64)
        return out

    def load_training_state(self, arrays: dict[str, torch.Tensor]) -> None:
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        self.load_state_arrays(params)
        opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        if opt:
            self._opt = self._make_optimizer()
            self._opt.load_state_dict({k: v.to(self.device) for k, v in opt.items()})
        self.epochs_done = int(arrays["epochs_done"][0])

    def _make_optimizer(self) -> RowOptimizer:
        cfg = self.config
        return make_optimizer(
            cfg.optimizer,
            self.params,
            cfg.learning_rate,
            cfg.momentum,
            nesterov=cfg.momentum_type == "nesterov",
        )

    # -- streaming protocol -----------------------------------------------------------------
    def start(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(batch_size, h, device=self.device) for h in self.config.layers)

    def reset(
        self, state: tuple[torch.Tensor, ...], mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        keep = (~mask.to(self.device, torch.bool)).unsqueeze(1).to(torch.float32)
        return tuple(h * keep for h in state)

    @torch.no_grad()
    def step(
        self, state: tuple[torch.Tensor, ...], items: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        items = items.to(self.device, torch.long)
        return tuple(self._forward(items, list(state), None, train=False)[0])

    @torch.no_grad()
    def score(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        p = self.params
        # Raw scores: the ELU of training is monotone, so it would not change a ranking, but
        # it saturates and would turn distinct low scores into ties.
        return torch.addmm(p["item.bias"], state[-1], p["item.weight"].t())

    @torch.no_grad()
    def score_rows(self, state: tuple[torch.Tensor, ...], rows: torch.Tensor) -> torch.Tensor:
        return self.score((state[-1][rows.to(self.device)],))

    def _forward(
        self,
        items: torch.Tensor,
        hidden: list[torch.Tensor],
        gen: MaskSource | None,
        *,
        train: bool,
        x: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """GRU layers for one step. Returns the new states and the last layer's output
        (dropped out when training). ``x`` is the input embedding when already gathered."""
        cfg = self.config
        p = self.params
        mode = self._input_mode
        gi0 = None  # the first layer's input projection, read from the table at inference
        if x is None:
            table = None if train else self._input_table()
            if table is not None:
                gi0 = table.index_select(0, items)
            else:
                name = {
                    "shared": "item.weight",
                    "embedding": "embed.weight",
                    "onehot": "onehot.weight",
                }
                x = p[name[mode]].index_select(0, items)
        if train and cfg.dropout_p_embed > 0:
            assert x is not None  # training never reads the table
            if mode == "onehot":  # dropping a one-hot input drops the whole item
                x = x * _mask((x.shape[0], 1), cfg.dropout_p_embed, gen, x.device)
            else:
                x = x * _mask(x.shape, cfg.dropout_p_embed, gen, x.device)
        new: list[torch.Tensor] = []
        for i, h in enumerate(hidden):
            if i == 0 and gi0 is not None:
                gi = gi0
            else:
                assert x is not None  # no table: the input was gathered
                if i == 0 and mode == "onehot":
                    gi = x + p["gru0.b_ih"]
                else:
                    gi = torch.addmm(p[f"gru{i}.b_ih"], x, p[f"gru{i}.w_ih"])
            h = _gru(gi, h, p[f"gru{i}.w_hh"], p[f"gru{i}.b_hh"])
            x = h
            if train and cfg.dropout_p_hidden > 0:
                x = x * _mask(x.shape, cfg.dropout_p_hidden, gen, x.device)
                if cfg.hidden_dropout_placement == "state":
                    h = x  # the official code carries the dropped-out state
            new.append(h)
        assert x is not None  # the last layer's output
        return new, x

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        cfg = self.config
        if not self.params or self.n_items != train.n_items:
            self._init_params(train.n_items)
            self.epochs_done = 0
        if self._opt is None:
            self._opt = self._make_optimizer()
        dev = self.device
        ddp = self.distributed
        counts = train.item_counts()  # of the whole log on every rank (the sampler's weights)
        offsets, starts, all_items = train.offsets, train.start_times(), train.items
        if ddp is not None:
            # Every rank starts from rank 0's weights and optimiser state, and trains on every
            # world_size-th session in the order of their start times (its own slots).
            ddp.broadcast_([*self.params.values(), *self._opt.state_tensors()])
            offsets, starts, all_items = _shard_sessions(train, ddp.rank, ddp.world_size)
        sched = session_parallel_schedule(offsets, starts, cfg.batch_size)
        items = np.r_[all_items, 0]  # index -1 (idle slot) reads the dummy item 0
        inputs = torch.from_numpy(items[sched.inputs]).to(dev)
        targets = torch.from_numpy(items[sched.targets]).to(dev)
        rt, rb = np.nonzero(sched.reset)
        reset_slots = torch.from_numpy(rb).to(dev)
        reset_off = np.searchsorted(rt, np.arange(sched.n_steps + 1)).tolist()
        active = sched.active
        if cfg.logq_correction == "sampling":  # the official code's raw counts
            log_pop = torch.from_numpy(np.log(np.maximum(counts, 1.0))).to(dev, torch.float32)
        else:
            log_pop = torch.from_numpy(np.log(np.maximum(counts, 1) / max(counts.sum(), 1))).to(
                dev, torch.float32
            )
        n_steps = sched.n_steps
        if cfg.n_sample == 0:
            # Without shared samples the other sessions' targets are the only negatives: once
            # fewer than two slots are active, BPR-max and TOP1-max would take a softmax over
            # no negatives (NaN) and cross-entropy has nothing to learn (one column). The
            # official code stops the epoch there too (``n_sample == 0 and n_valid < 2``).
            few = np.flatnonzero(active[sched.n_full :].sum(axis=1) < 2)
            if len(few):
                n_steps = sched.n_full + int(few[0])
        self._epoch_data = _EpochData(
            inputs, targets, reset_slots, reset_off, active, sched.n_full, n_steps, counts, log_pop
        )
        # Ranks step together: one whose shard is done takes part in the rest with no rows.
        all_steps = n_steps if ddp is None else ddp.max_int(n_steps)
        try:
            fit_epochs(
                self,
                cfg.n_epochs,
                n_steps=all_steps,
                n_events=int(active[:n_steps].sum()),
                report_every=200,
                callback=callback,
            )
        finally:
            self._epoch_data = None  # the schedule's tensors are not kept with the model
        return self

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        """One pass over the session-parallel schedule (epoch 1-based); each mini-batch is
        reported to ``steps`` with its loss weighted by its pairs."""
        cfg = self.config
        d = self._epoch_data
        assert d is not None, "train_epoch runs inside fit"
        dev = self.device
        # The random streams of an epoch are seeded from (seed, 0-based epoch): the epoch number
        # is the whole RNG state, so a resumed run repeats an uninterrupted one.
        ddp = self.distributed
        seed = rank_seed((cfg.seed * 1_000_003 + epoch - 1) % 2**63, ddp)
        gen = _mask_source(seed, torch.device(dev))
        sampler = (
            NegativeSampler(
                d.counts,
                cfg.sample_alpha,
                cfg.n_sample,
                seed=seed,
                buffer_size=min(cfg.sample_store_size, d.n_steps * cfg.n_sample),
                device=dev,
            )
            if cfg.n_sample > 0
            else None
        )
        hidden = list(self.start(cfg.batch_size))
        for t in range(d.n_steps):
            a, b = d.reset_off[t], d.reset_off[t + 1]
            if b > a:
                slots = d.reset_slots[a:b]
                for h in hidden:
                    h.index_fill_(0, slots, 0.0)
            if t < d.n_full:
                act = None
                inp, tgt, hs = d.inputs[t], d.targets[t], hidden
            else:
                act = torch.from_numpy(np.flatnonzero(d.active[t])).to(dev)
                inp, tgt = d.inputs[t, act], d.targets[t, act]
                hs = [h.index_select(0, act) for h in hidden]
            samples = sampler.next() if sampler is not None else None
            loss, new = self._train_step(inp, tgt, samples, hs, gen, d.log_pop)
            if act is None:
                hidden = new
            else:
                for h, n in zip(hidden, new, strict=True):
                    h.index_copy_(0, act, n)
            steps.done(loss, value=loss * len(tgt), weight=len(tgt))
        if ddp is not None:  # the other ranks' steps after this shard's last
            for _ in range(d.n_steps, steps.n_steps):
                self._idle_step()

    def _log_q(self, log_pop: torch.Tensor, columns: torch.Tensor | None, n: int) -> torch.Tensor:
        """(C,) log sampling probability of each scored column (before the ``logq`` weight).

        ``columns`` are the scored items (the n batch targets, then the shared samples), None
        for the whole catalogue. With ``logq_correction="sampling"`` the shared samples'
        entries are ``sample_alpha · log pop``: they were drawn from ``pop ** sample_alpha``,
        while the batch's targets come from the data (``pop``). (The official code's
        ``xe_loss_with_softmax`` splits the columns at B, the batch size, also in the last
        steps of an epoch when fewer than B slots are active; we split at the active count.)
        """
        if columns is None:
            return log_pop
        out = log_pop.index_select(0, columns)
        if self.config.logq_correction == "sampling" and columns.shape[0] > n:
            out = torch.cat([out[:n], out[n:] * self.config.sample_alpha])
        return out

    @torch.no_grad()
    def _train_step(
        self,
        inp: torch.Tensor,
        tgt: torch.Tensor,
        samples: torch.Tensor | None,
        hidden: list[torch.Tensor],
        gen: MaskSource,
        log_pop: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One mini-batch: forward, loss, backward, update. Returns (loss, new states).

        The backward is written out (``_gru_backward``, ``losses.loss_and_grad``) rather than
        recorded by autograd: a step is a handful of matrix products and ~100 small ops, and
        autograd's bookkeeping (slice backwards that zero-fill, graph nodes, the loss's
        ELU through ``where``) cost as much as the products on one CPU thread. The gradient
        is the loss summed over the active rows divided by B, the number of slots (not by
        the active rows): every pair weighs 1/B. Near the end of an epoch only a few long
        sessions are left in the slots; averaging over just those rows gave their steps the
        weight of a full mini-batch, and the last few hundred steps of each epoch pulled the
        model towards a handful of sessions (ML-100K, retailrocket bpr-max settings:
        Recall@20 0.086 instead of 0.21). The returned loss is the row mean.
        tests/test_gru4rec.py checks every input mode, loss and dropout placement against
        autograd through ``_forward``.
        """
        cfg = self.config
        p = self.params
        opt = self._opt
        assert opt is not None
        if isinstance(opt, Adam):
            opt.begin_step()
        n = inp.shape[0]
        full = cfg.n_sample < 0
        mode = self._input_mode
        table = {"shared": "item.weight", "embedding": "embed.weight", "onehot": "onehot.weight"}
        out_idx: torch.Tensor | None = None
        xe = cfg.loss == "cross-entropy"
        # the loss over distinct items, each with its count of columns (bpr-max; cross-entropy
        # unless its logQ term differs between a target's and a sample's column of one item)
        by_item = cfg.loss == "bpr-max" or (
            xe and (cfg.logq == 0 or cfg.logq_correction == "popularity")
        )
        if full:
            w_out, b_out = p["item.weight"], p["item.bias"]
            pos = tgt
            x = p[table[mode]].index_select(0, inp)
        else:
            # The scored columns (the targets, then the shared samples) repeat items: score
            # each distinct item once, a product over U rows instead of C columns; the loss
            # weighs each item by its count of columns (``by_item``), or the scores are spread
            # to the columns and the columns' gradients gathered back by index.
            out_idx = tgt if samples is None else torch.cat([tgt, samples])
            pos = torch.arange(n, device=inp.device)
            shared = mode == "shared"  # the inputs are rows of the same table
            uniq, inverse = self._row_sums().unique(
                torch.cat([inp, out_idx]) if shared else out_idx
            )
            col = inverse[n:] if shared else inverse
            w_out = p["item.weight"].index_select(0, uniq)
            b_out = p["item.bias"].index_select(0, uniq)
            x = (
                w_out.index_select(0, inverse[:n])
                if shared
                else p[table[mode]].index_select(0, inp)
            )
        # forward, keeping what the backward reads (masks drawn in ``_forward``'s order)
        mask_e = None
        if cfg.dropout_p_embed > 0:
            shape = (n, 1) if mode == "onehot" else tuple(x.shape)
            mask_e = _mask(shape, cfg.dropout_p_embed, gen, x.device)
            x = x * mask_e
        kept: list[tuple[torch.Tensor, torch.Tensor, _GRUCache, torch.Tensor | None]] = []
        new: list[torch.Tensor] = []
        for i, h in enumerate(hidden):
            if i == 0 and mode == "onehot":
                gi = x + p["gru0.b_ih"]
            else:
                gi = torch.addmm(p[f"gru{i}.b_ih"], x, p[f"gru{i}.w_ih"])
            h_new, cache = _gru_train(gi, h, p[f"gru{i}.w_hh"], p[f"gru{i}.b_hh"])
            out, mask_h = h_new, None
            if cfg.dropout_p_hidden > 0:
                mask_h = _mask(tuple(h_new.shape), cfg.dropout_p_hidden, gen, h_new.device)
                out = h_new * mask_h
                if cfg.hidden_dropout_placement == "state":
                    h_new = out  # the official code carries the dropped-out state
            kept.append((x, h, cache, mask_h))
            new.append(h_new)
            x = out
        scores = torch.addmm(b_out, x, w_out.t())
        counts = None
        columns = out_idx
        if out_idx is not None:
            if by_item:
                counts = torch.bincount(col, minlength=w_out.shape[0])
                pos, columns = col[:n], uniq
            else:
                scores = scores.index_select(1, col)
        elu = cfg.elu_param if cfg.elu_for_cross_entropy or not xe else 0.0
        log_q = None
        if xe and cfg.logq > 0:
            log_q = cfg.logq * self._log_q(log_pop, columns, n)
        loss, d = loss_and_grad(
            cfg.loss, scores, pos, scale=1.0 / cfg.batch_size, bpreg=cfg.bpreg, elu=elu,
            log_q=log_q, counts=counts,
        )  # fmt: skip
        # backward: the output layer, then the GRU layers from the top
        grads: dict[str, torch.Tensor] = {}
        if out_idx is not None and not by_item:  # the columns' gradients onto their items
            d = d.new_zeros((n, w_out.shape[0])).index_add_(1, col, d)
        d_w_out = torch.mm(d.t(), x)
        d_b_out = d.sum(0)
        d_x = torch.mm(d, w_out)
        for i in reversed(range(len(hidden))):
            x_in, h_prev, cache, mask_h = kept[i]
            if mask_h is not None:
                d_x = d_x * mask_h
            dgi, dgh = _gru_backward(d_x, h_prev, cache)
            grads[f"gru{i}.w_hh"] = torch.mm(h_prev.t(), dgh)
            grads[f"gru{i}.b_hh"] = dgh.sum(0)
            grads[f"gru{i}.b_ih"] = dgi.sum(0)
            if i == 0 and mode == "onehot":
                d_x = dgi  # the input rows are the first layer's input projection
            else:
                grads[f"gru{i}.w_ih"] = torch.mm(x_in.t(), dgi)
                d_x = torch.mm(dgi, p[f"gru{i}.w_ih"].t())
        if mask_e is not None:
            d_x = d_x * mask_e
        rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        sums = self._row_sums()
        if full:
            if mode == "shared":
                d_w_out.index_add_(0, inp, d_x)
            else:
                rows[table[mode]] = sums(inp, d_x)
            grads["item.weight"], grads["item.bias"] = d_w_out, d_b_out
        else:
            if shared:
                d_w_out.index_add_(0, inverse[:n], d_x)
            else:
                rows[table[mode]] = sums(inp, d_x)
            rows["item.weight"] = (uniq, d_w_out)
            # a bias moves only when its item was scored (not when it was only an input)
            scored = (
                counts > 0
                if counts is not None
                else uniq.new_zeros(uniq.shape[0], dtype=torch.bool).index_fill_(0, col, True)
            )
            if bool(scored.all()):
                rows["item.bias"] = (uniq, d_b_out)
            else:
                keep = torch.nonzero(scored).squeeze(1)
                rows["item.bias"] = (uniq.index_select(0, keep), d_b_out.index_select(0, keep))
        dense = [k for k, v in p.items() if v.requires_grad]
        self._apply(rows, dense, [grads[k] for k in dense])
        return loss, new

    def _row_sums(self) -> RowSums:
        if self._sums is None or self._sums[0] != (self.n_items, self.device):
            self._sums = ((self.n_items, self.device), RowSums(self.n_items, self.device))
        return self._sums[1]

    def _apply(
        self,
        rows: dict[str, tuple[torch.Tensor, torch.Tensor]],
        dense: list[str],
        grads: list[torch.Tensor],
    ) -> None:
        """Update the row tables (``rows``: name → unique rows, their gradients) and the dense
        parameters. Under ``distributed`` the gradients are first summed over the ranks (the
        row tables as ``Distributed.rows`` says) and divided by the world size: each rank's
        gradient weighs its pairs by 1 / its batch size, so the update weighs every pair of
        every rank by 1 / (world size × batch size), as one process with the ranks' slots."""
        opt = self._opt
        assert opt is not None
        ddp = self.distributed
        if ddp is not None and ddp.world_size > 1:
            p = self.params
            names = self._row_names()
            empty = torch.empty(0, dtype=torch.int64, device=self.device)
            local = [rows.get(k, (empty, p[k].new_zeros((0, *p[k].shape[1:])))) for k in names]
            got = ddp.sum_rows(local, [p[k].shape[0] for k in names])
            ddp.sum_dense_(grads)
            scale = 1.0 / ddp.world_size
            rows = {k: (i, g.mul_(scale)) for k, (i, g) in zip(names, got, strict=True)}
            grads = [g.mul_(scale) for g in grads]
        for name, (idx, g) in rows.items():
            if len(idx):
                opt.step_rows(name, idx, g)
        opt.step_dense(dense, grads)

    def _idle_step(self) -> None:
        """A step of the other ranks after this rank's shard is done: no rows, zero dense
        gradients, the same collectives and optimiser counters."""
        opt = self._opt
        assert opt is not None
        if isinstance(opt, Adam):
            opt.begin_step()
        dense = [k for k, v in self.params.items() if v.requires_grad]
        with torch.no_grad():
            self._apply({}, dense, [torch.zeros_like(self.params[k]) for k in dense])


def _shard_sessions(
    data: SessionData, rank: int, world_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, start times, items) of rank ``rank``'s sessions: every ``world_size``-th
    in the order of their start times (so each rank's slots see the whole time span)."""
    order = session_order(data.offsets, data.start_times())
    mine = np.sort(order[rank::world_size])
    begin, end = data.offsets[mine], data.offsets[mine + 1]
    lengths = end - begin
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    events = np.repeat(begin - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
    return offsets, data.start_times()[mine], data.items[events]


#: A training step's source of dropout masks: numpy's PCG64 on CPU (torch's CPU
#: ``bernoulli_`` took 0.2 ms for one (80, 224) mask, a twentieth of the step's products),
#: torch's generator on other devices, so that masks are drawn where they are used.
MaskSource = torch.Generator | np.random.Generator


def _mask_source(seed: int, device: torch.device) -> MaskSource:
    if device.type == "cpu":
        return np.random.default_rng(seed)
    return torch.Generator(device=device).manual_seed(seed)


def _mask(shape: Any, p: float, gen: MaskSource | None, device: torch.device) -> torch.Tensor:
    """Inverted-dropout mask: 0 with probability p, else 1 / (1 - p)."""
    if isinstance(gen, np.random.Generator):
        u = gen.random(shape, dtype=np.float32)
        u += np.float32(1 - p)  # ≥ 1 exactly when u ≥ p: kept with probability 1 - p
        np.floor(u, out=u)
        u *= np.float32(1 / (1 - p))
        return torch.from_numpy(u).to(device)
    keep = torch.empty(shape, device=device).bernoulli_(1 - p, generator=gen)
    return keep.div_(1 - p)


__all__ = ["GRU4Rec", "GRU4RecConfig"]
