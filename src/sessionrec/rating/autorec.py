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
from sessionrec.training.trainer import EpochSteps, fit_epochs

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

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.net: _AutoEncoder | None = None
        self.epochs_done = 0
        self.progress_hook: Any = None
        #: (matrix, active rows, optimiser, generator) of the current fit: what epochs read.
        self._fitting: (
            tuple[torch.Tensor, torch.Tensor, torch.optim.Optimizer, torch.Generator] | None
        ) = None

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

    def _fit(self, train: Ratings, valid: Ratings | None, callback: EpochCallback | None) -> None:
        c = self.config
        gen = torch.Generator().manual_seed(c.seed)
        rows, width = self._shape()
        # nn.Linear draws its init from the global generator: fork it, seed it, restore it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.net = _AutoEncoder(width, c).to(self.device)
        matrix = self._matrix().to(self.device)
        present = torch.zeros(rows, dtype=torch.bool)
        present[torch.from_numpy(self.train_items if c.based == "item" else self.train_users)] = (
            True
        )
        active = torch.nonzero(present).flatten()
        opt = torch.optim.Adam(
            self.net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay
        )
        # One generator for the whole fit: each epoch's order and dropout seeds follow the last.
        self._fitting = (matrix, active, opt, gen)
        self.epochs_done = 0

        def after_epoch(record: dict[str, Any]) -> None:
            self._recon = None  # valid_rmse reads the reconstruction of this epoch's weights
            self._epoch_record(record, valid)

        try:
            fit_epochs(
                self,
                c.n_epochs,
                n_steps=-(-len(active) // c.batch_size),
                n_events=len(self.train_ratings),
                callback=callback,
                after_epoch=after_epoch,
            )
        finally:
            self._fitting = None
        self._recon = None

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        """One pass over the rating vectors in a fresh order; each batch is reported to
        ``steps`` with its squared error and observed count (train_loss: the observed MSE)."""
        c = self.config
        assert self.net is not None and self._fitting is not None
        matrix, active, opt, gen = self._fitting
        self.net.train()
        order = active[torch.randperm(len(active), generator=gen)]
        for a in range(0, len(order), c.batch_size):
            x = matrix[order[a : a + c.batch_size].to(self.device)]
            mask = x != 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
                out = self.net(x)
                sq = ((out - x) ** 2 * mask).sum()
                # AutoRec's objective Σ_observed (r - r̂)² + λ/2·|W|², with the penalty
                # shared out over batches by their share of the rows, divided by the
                # batch's observed count so the step size does not depend on density.
                loss = sq
                if c.l2:
                    loss = loss + c.l2 / 2 * self.net.l2() * len(x) / len(order)
                loss = loss / mask.sum().clamp(min=1)
                observed = int(mask.sum())
                steps.done(loss.detach(), value=float(sq.detach()), weight=observed)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if c.dense_refeed:
                    x2 = out.detach()
                    out2 = self.net(x2)
                    opt.zero_grad()
                    ((out2 - x2) ** 2).mean().backward()
                    opt.step()

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
