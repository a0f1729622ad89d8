"""An autoencoder over rating vectors: I-AutoRec (Sedhain et al., 2015) in the manner of
NVIDIA's DeepRecommender (Kuchaiev & Ginsburg, 2017).

Each training example is one item's vector of ratings by all users (``based="item"``, AutoRec's
better variant) or one user's vector over all items (``based="user"``, DeepRecommender). The
encoder maps it through ``hidden`` layers (SELU by default), dropout acts on the code, the
decoder mirrors the encoder — with the transposed encoder weights when ``constrained`` — and
the output layer is linear. The loss is the squared error on observed entries only (masked
MSE). With ``dense_refeed``, the output is fed back in as a fully observed input and trained
to reproduce itself (DeepRecommender's dense re-feeding). The rating of user u for item i is
entry u of item i's reconstruction (or entry i of user u's).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sessionrec.models.base import EpochCallback
from sessionrec.rating.base import RatingModel, known_mask
from sessionrec.rating.data import Ratings
from sessionrec.training.distributed import Distributed, rank_seed
from sessionrec.training.trainer import (
    EpochSteps,
    fit_epochs,
    load_optimizer_arrays,
    optimizer_arrays,
)

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


@dataclass(frozen=True)
class AutoRecConfig:
    """Defaults: I-AutoRec as tuned on one ML-100K fold (BENCHMARKS.md): item-based, 500
    sigmoid units, linear output, λ = 100 on Σ_observed squared error, Adam, 20 epochs.
    DeepRecommender's recipe is ``activation="selu", dropout=0.8, constrained=True,
    dense_refeed=True, based="user"`` (it overfit here on ML-100K)."""

    based: str = "item"
    hidden: tuple[int, ...] = (500,)
    activation: str = "sigmoid"
    dropout: float = 0.0
    constrained: bool = False
    dense_refeed: bool = False
    n_epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    l2: float = 100.0
    seed: int = 0

    def __post_init__(self) -> None:
        from sessionrec.errors import ConfigError

        if self.based not in ("item", "user"):
            raise ConfigError(f"based must be 'item' or 'user', not {self.based!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        if not self.hidden:
            raise ConfigError("hidden needs at least one layer size")


class _AutoEncoder(nn.Module):
    def __init__(self, n_in: int, cfg: AutoRecConfig) -> None:
        super().__init__()
        sizes = [n_in, *cfg.hidden]
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.constrained = cfg.constrained
        if cfg.constrained:
            # Tied weights: the decoder reuses the encoder matrices transposed; own biases.
            self.dec_bias = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a in sizes[:-1][::-1])
        else:
            rev = sizes[::-1]
            self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(rev))
        self.act = ACTIVATIONS[cfg.activation]()
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) ratings with 0 for missing → (B, n_in) reconstruction."""
        for layer in self.enc:
            x = self.act(layer(x))
        x = self.drop(x)
        n = len(self.enc)
        for k in range(n):
            last = k == n - 1
            if self.constrained:
                enc: nn.Linear = self.enc[n - 1 - k]  # type: ignore[assignment]
                # The encoder's (out, in) weight transposed maps the code back: out → in.
                x = nn.functional.linear(x, enc.weight.t(), self.dec_bias[k])
            else:
                x = self.dec[k](x)
            if not last:
                x = self.act(x)
        return x

    def l2(self) -> torch.Tensor:
        layers = list(self.enc) if self.constrained else [*self.enc, *self.dec]
        total = torch.zeros(())
        for m in layers:
            assert isinstance(m, nn.Linear)
            total = total + (m.weight**2).sum()
        return total


class AutoRec(RatingModel):
    """I-AutoRec / DeepRecommender autoencoder (PyTorch, seeded)."""

    name = "autorec"
    Config = AutoRecConfig
    config: AutoRecConfig
    test_params: ClassVar[dict[str, Any]] = {"hidden": [8], "n_epochs": 3, "batch_size": 4}
    #: Trains as one rank of a process group (``distributed``; docs/distributed.md).
    supports_distributed: ClassVar[bool] = True

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.net: _AutoEncoder | None = None
        self.epochs_done = 0
        self.progress_hook: Any = None
        #: Set by the runner (or the caller) to train as one rank of a process group: the
        #: rank trains on its share of each epoch's rows, gradients are summed over the ranks
        #: (docs/distributed.md).
        self.distributed: Distributed | None = None
        self._opt: torch.optim.Optimizer | None = None
        #: The fit's one generator: each epoch's order and dropout seeds follow the last, so
        #: a checkpoint keeps its state (``training_state``).
        self._gen: torch.Generator | None = None
        self._resume = False  # set by load_training_state: the next fit continues
        #: (matrix, active rows, observed ratings per row) of the current fit: what epochs read.
        self._fitting: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _shape(self) -> tuple[int, int]:
        """(rows, width): examples are items (width = users) or users (width = items)."""
        if self.config.based == "item":
            return self.n_items, self.n_users
        return self.n_users, self.n_items

    def _matrix(self) -> torch.Tensor:
        """(rows, width) dense training ratings, 0 where missing."""
        rows, width = self._shape()
        m = torch.zeros(rows, width)
        r, c = (
            (self.train_items, self.train_users)
            if self.config.based == "item"
            else (self.train_users, self.train_items)
        )
        m[torch.from_numpy(r), torch.from_numpy(c)] = torch.from_numpy(self.train_ratings)
        return m

    def _new_net(self, width: int) -> _AutoEncoder:
        # nn.Linear draws its init from the global generator: fork it, seed it, restore it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return _AutoEncoder(width, self.config).to(self.device)

    def _new_optimizer(self, net: _AutoEncoder) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.Adam(net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: EpochCallback | None) -> None:
        c = self.config
        rows, width = self._shape()
        resume, self._resume = self._resume, False
        if not resume or self.net is None or self.net.enc[0].in_features != width:
            self.net, self._opt, self.epochs_done = self._new_net(width), None, 0
            self._gen = torch.Generator().manual_seed(c.seed)
        if self._opt is None:
            self._opt = self._new_optimizer(self.net)
        assert self._gen is not None
        ddp = self.distributed
        if ddp is not None:  # every rank starts from rank 0's weights and optimiser state
            self._broadcast_state(ddp)
        matrix = self._matrix().to(self.device)
        present = torch.zeros(rows, dtype=torch.bool)
        present[torch.from_numpy(self.train_items if c.based == "item" else self.train_users)] = (
            True
        )
        active = torch.nonzero(present).flatten()
        self._fitting = (matrix, active, (matrix != 0).sum(dim=1).cpu())

        def after_epoch(record: dict[str, Any]) -> None:
            self._recon = None  # valid_rmse reads the reconstruction of this epoch's weights
            if ddp is None:
                self._epoch_record(record, valid)
                return
            # (train_loss is already the sum over the ranks: every rank refuses a diverged
            # epoch alike.) The ranks hold equal weights; rank 0 scores valid, the others take
            # its figure, as the next-item models' ranks do.
            self._epoch_record(record, valid if ddp.is_main else None)
            got = ddp.broadcast_object(record.get("valid_rmse"))
            if got is not None:
                record["valid_rmse"] = got

        world = 1 if ddp is None else ddp.world_size
        try:
            fit_epochs(
                self,
                c.n_epochs,
                n_steps=-(-len(active) // (world * c.batch_size)),
                n_events=len(self.train_ratings),
                callback=callback,
                after_epoch=after_epoch,
            )
        finally:
            self._fitting = None
        self._recon = None

    def _broadcast_state(self, ddp: Distributed) -> None:
        """Rank 0's weights, optimiser state and generator on every rank (the same shapes on
        every rank: a resumed rank restored them from rank 0's checkpoint already)."""
        assert self.net is not None and self._opt is not None and self._gen is not None
        tensors = [*self.net.parameters(), *self.net.buffers()]
        for st in self._opt.state_dict()["state"].values():
            tensors += [v for v in st.values() if isinstance(v, torch.Tensor)]
        gen = self._gen.get_state()
        ddp.broadcast_([*tensors, gen])
        self._gen.set_state(gen)

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        """One pass over the rating vectors in a fresh order; each batch is reported to
        ``steps`` with its squared error and observed count (train_loss: the observed MSE).

        Under ``distributed`` every rank draws the same order and takes every world_size-th
        row of it: the ranks' batches of step s together are the rows one process takes in
        its step s at world_size × ``batch_size``, and the summed gradients are that
        process's gradient (see the loss below)."""
        c = self.config
        net, opt, gen = self.net, self._opt, self._gen
        assert net is not None and opt is not None and gen is not None
        assert self._fitting is not None
        matrix, active, counts = self._fitting
        ddp = self.distributed
        world, rank = (1, 0) if ddp is None else (ddp.world_size, ddp.rank)
        span = world * c.batch_size  # the rows of one step over all ranks
        net.train()
        order = active[torch.randperm(len(active), generator=gen)]
        for s in range(steps.n_steps):
            together = order[s * span : (s + 1) * span]  # every rank's rows of this step
            mine = together[rank::world]
            # Drawn on every rank (rank 0 keeps the one-process seed), so the generator
            # stays in step on all ranks whatever their share.
            seed = rank_seed(int(torch.randint(2**31, (1,), generator=gen)), ddp)
            # The step's objective is the one of one process over ``together``: AutoRec's
            # Σ_observed (r - r̂)² + λ/2·|W|², the penalty shared out over batches by their
            # share of the rows (len / all active rows, not this rank's), divided by the
            # observed count of all the ranks' rows of the step (so the step size does not
            # depend on density). Every rank holds the whole matrix and the order, so it
            # knows that count without asking; each rank's loss is its rows' part of the
            # numerator over the common denominator, and summing the ranks' gradients gives
            # exactly the gradient of the whole (a rank without rows adds zeros).
            observed_all = int(counts[together].sum())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                opt.zero_grad()
                out = None
                if len(mine):
                    x = matrix[mine.to(self.device)]
                    mask = x != 0
                    out = net(x)
                    sq = ((out - x) ** 2 * mask).sum()
                    loss = sq
                    if c.l2:
                        loss = loss + c.l2 / 2 * net.l2() * len(x) / len(order)
                    loss = loss / max(observed_all, 1)
                    observed = int(mask.sum())
                    steps.done(loss.detach(), value=float(sq.detach()), weight=observed)
                    loss.backward()
                self._combine(ddp)
                opt.step()
                if c.dense_refeed:
                    # DeepRecommender's re-feeding: the output as a fully observed input;
                    # its MSE is a mean over every entry of the step's rows (all ranks').
                    opt.zero_grad()
                    if out is not None:
                        x2 = out.detach()
                        out2 = net(x2)
                        (((out2 - x2) ** 2).sum() / (len(together) * x2.shape[1])).backward()
                    self._combine(ddp)
                    opt.step()

    def _combine(self, ddp: Distributed | None) -> None:
        """Sum the gradients over the ranks, in one flat all-reduce (a rank without rows in
        this step sends zeros, so that every rank takes part in every collective)."""
        if ddp is None:
            return
        assert self.net is not None
        grads = []
        for p in self.net.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        ddp.sum_dense_(grads)

    # -- checkpoints (the runner's --resume) -----------------------------------------------
    def training_state(self) -> dict[str, torch.Tensor]:
        """Weights, the optimiser's state, the generator's state and the finished epochs."""
        assert self.net is not None, "fit the model first"
        out = {f"param/{k}": v.detach() for k, v in self._arrays().items()}
        out.update(optimizer_arrays(self._opt))
        if self._gen is not None:
            out["generator"] = self._gen.get_state()
        out["epochs_done"] = torch.tensor([self.epochs_done], dtype=torch.int64)
        return out

    def load_training_state(self, arrays: dict[str, torch.Tensor]) -> None:
        """Restore a checkpoint; the next ``fit`` (on the same ratings) continues after its
        last finished epoch."""
        net = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        self.net = _AutoEncoder(int(net["net.enc.0.weight"].shape[1]), self.config).to(self.device)
        self.net.load_state_dict({k[4:]: v for k, v in net.items() if k.startswith("net.")})
        self._opt = self._new_optimizer(self.net)
        load_optimizer_arrays(self._opt, arrays)
        self._gen = torch.Generator()
        if "generator" in arrays:
            self._gen.set_state(arrays["generator"].to(torch.uint8).cpu().contiguous())
        else:
            self._gen.manual_seed(self.config.seed)
        self.epochs_done = int(arrays["epochs_done"][0])
        self._recon = None
        self._resume = True

    _recon: torch.Tensor | None = None

    @torch.no_grad()
    def _reconstruction(self) -> torch.Tensor:
        """(rows, width) reconstruction of every training vector (cached until refit)."""
        if self._recon is None:
            assert self.net is not None, "fit or load the model first"
            self.net.eval()
            matrix = self._matrix().to(self.device)
            self._recon = torch.cat(
                [self.net(matrix[a : a + 1024]).cpu() for a in range(0, len(matrix), 1024)]
            )
        return self._recon

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        ku = known_mask(users, self.n_users, self.train_users)
        ki = known_mask(items, self.n_items, self.train_items)
        pred = np.full(len(users), self.global_mean)
        both = ku & ki
        if both.any():
            recon = self._reconstruction().numpy()
            rows, cols = (items, users) if self.config.based == "item" else (users, items)
            pred[both] = recon[rows[both], cols[both]]
        return pred

    def _arrays(self) -> dict[str, torch.Tensor]:
        assert self.net is not None, "fit the model first"
        return {f"net.{k}": v for k, v in self.net.state_dict().items()}

    def _load_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        _, width = self._shape()
        self.net = _AutoEncoder(width, self.config).to(self.device)
        self.net.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("net.")})
        self._recon = None
