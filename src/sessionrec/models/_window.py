"""What the neural models over the session's last items share (two-tower, sasrec, repeatnet).

* The streaming state: the last ``context_length`` item indices per slot, left padded with
  ``n_items``; ``step`` shifts the window, ``score`` runs the network on it (so streaming
  equals ``score_sessions`` exactly, and states join as rows of one tensor).
* The training checkpoint of a torch network with a torch optimiser (the runner's
  ``--resume``): weights, the optimiser's per-parameter state, the finished epochs.
* ``_build`` seeded from the config, so that equal seeds give equal weights.

A subclass sets ``net`` through ``_build`` / ``load_state_arrays`` and says how to make the
network (``_network``), its optimiser (``_make_optimizer``) and how many items a saved set
of weights covers (``_items_in``).

``NextItemWindowModel`` adds the training of models that predict the next item at every
position of a window at once (sasrec, repeatnet): ``training_windows`` cuts the sessions, the
epoch loop is shared, and a subclass says only what a batch of windows costs (``_loss``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData
from sessionrec.training.distributed import Distributed, rank_seed
from sessionrec.training.trainer import (
    EpochSteps,
    fit_epochs,
    load_optimizer_arrays,
    optimizer_arrays,
)


class WindowModel(SessionModel):
    """A ``SessionModel`` whose state is the window of the session's last items."""

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.net: Any = None
        self.epochs_done = 0
        self._opt: torch.optim.Optimizer | None = None
        self._resume = False  # set by load_training_state: the next fit continues
        #: Called as (examples done, examples per epoch, mean loss) during an epoch (the
        #: runner's progress bar).
        self.progress_hook: Callable[[int, int, float], None] | None = None
        #: Set by the runner (or the caller) to train as one rank of a process group: the
        #: rank trains on its share of each epoch's batches, gradients are combined.
        self.distributed: Distributed | None = None

    @abstractmethod
    def _network(self) -> nn.Module:
        """A new network over ``self.n_items`` items (random weights)."""

    @abstractmethod
    def _make_optimizer(self, net: Any) -> torch.optim.Optimizer:
        """The optimiser of ``net``."""

    @staticmethod
    @abstractmethod
    def _items_in(arrays: dict[str, torch.Tensor]) -> int:
        """How many items the network weights ``arrays`` cover."""

    def _build(self) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)  # nn init draws from the global generator
            return self._network().to(self.device)

    def _start_fit(self, n_items: int) -> None:
        """A fresh network and optimiser, unless ``load_training_state`` just restored them
        for the same items (then the fit continues after its finished epochs)."""
        resume, self._resume = self._resume, False
        if not resume or self.net is None or self.n_items != n_items:
            self.n_items = n_items
            self.net, self._opt, self.epochs_done = self._build(), None, 0
        if self._opt is None:
            self._opt = self._make_optimizer(self.net)
        if self.distributed is not None:  # every rank starts from rank 0's weights
            self.distributed.broadcast_([*self.net.parameters(), *self.net.buffers()])

    # -- checkpoints (the runner's --resume) ---------------------------------------------------
    def training_state(self) -> dict[str, torch.Tensor]:
        """Weights, the optimiser's state and the number of finished epochs."""
        assert self.net is not None, "fit the model first"
        out = {f"param/{k}": v.detach() for k, v in self.net.state_dict().items()}
        out.update(optimizer_arrays(self._opt))
        out["epochs_done"] = torch.tensor([self.epochs_done], dtype=torch.int64)
        return out

    def load_training_state(self, arrays: dict[str, torch.Tensor]) -> None:
        """Restore a checkpoint; the next ``fit`` continues after its last finished epoch."""
        self.load_state_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
        assert self.net is not None
        self._opt = self._make_optimizer(self.net)
        load_optimizer_arrays(self._opt, arrays)
        self.epochs_done = int(arrays["epochs_done"][0])
        self._resume = True

    # -- streaming ---------------------------------------------------------------------------
    def start(self, batch_size: int) -> torch.Tensor:
        return torch.full(
            (batch_size, self.config.context_length), self.n_items, device=self.device
        )

    def reset(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return state.masked_fill(mask.to(self.device)[:, None], self.n_items)

    def step(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.cat([state[:, 1:], items.to(self.device)[:, None]], dim=1)

    def score_rows(self, state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.score(state[rows.to(self.device)])

    # -- persistence -------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, torch.Tensor]:
        assert self.net is not None, "fit the model first"
        return dict(self.net.state_dict())

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.n_items = self._items_in(arrays)
        self.net = self._build()
        self.net.load_state_dict(arrays)
        self.net.eval()


def training_windows(data: SessionData, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(W, L) left-padded input windows and (W, L) labels (−1: no label at that position).

    Each session is cut from its end into windows of ``length`` inputs; the label of input
    position q is the event at q + 1, kept when it is a target of the same session. Every
    target event after a session's first is the label of exactly one position.
    """
    starts, ends = data.offsets[:-1], data.offsets[1:]
    n_windows = np.maximum(-(-(ends - starts - 1) // length), 0)  # ⌈(len − 1) / L⌉
    session = np.repeat(np.arange(len(starts)), n_windows)
    k = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    last_label = ends[session] - 1 - k * length  # the label position of the window's last slot
    q = last_label[:, None] - length + np.arange(length)[None, :]  # input positions (W, L)
    has_input = q >= starts[session][:, None]
    windows = np.where(has_input, data.items[np.maximum(q, 0)], data.n_items)
    nxt = np.clip(q + 1, 0, data.n_events - 1)  # (only read where has_input)
    labelled = has_input & data.target[nxt]
    labels = np.where(labelled, data.items[nxt], -1)
    return windows.astype(np.int64), labels.astype(np.int64)


class NextItemWindowModel(WindowModel):
    """A ``WindowModel`` trained to predict the next item at every position of its windows."""

    #: Trains as one rank of a process group (``distributed``; docs/distributed.md).
    supports_distributed: ClassVar[bool] = True

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        #: (windows, labels) of the current fit: what every epoch reads.
        self._windows: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _items_in(arrays: dict[str, torch.Tensor]) -> int:
        """The rows of the item embedding ``item``, less its last (padding) row."""
        return int(arrays["item.weight"].shape[0]) - 1

    @abstractmethod
    def _loss(self, windows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The mean loss over the labelled positions (``labels >= 0``) of ``(B, L)`` windows,
        and how many positions it averaged."""

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
        windows, labels = training_windows(train, c.context_length)
        keep = (labels >= 0).any(axis=1)
        windows, labels = windows[keep], labels[keep]
        self._windows = (
            torch.from_numpy(windows).to(self.device),
            torch.from_numpy(labels).to(self.device),
        )
        world = 1 if self.distributed is None else self.distributed.world_size
        per_rank = -(-len(windows) // world)  # ⌈W / world⌉: the largest share
        try:
            fit_epochs(
                self,
                c.n_epochs,
                n_steps=-(-per_rank // c.batch_size),
                n_events=int((labels >= 0).sum()),
                report_every=20,
                first_report=20,
                callback=callback,
            )
        finally:
            self._windows = None
        net.eval()
        return self

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        """One pass over the windows in a fresh order (seeded by seed and epoch, so that a
        resumed run repeats an uninterrupted one); each step reports its mean loss.

        Under ``distributed`` every rank draws the same order and takes every world_size-th
        window of it, so the ranks' batches of a step together are the batch one process
        would take at world_size × ``batch_size``; the gradients are combined as the mean
        over all of them (``Distributed.average_gradients``)."""
        c = self.config
        net, opt = self.net, self._opt
        assert net is not None and opt is not None and self._windows is not None
        windows, labels = self._windows
        ddp = self.distributed
        gen = torch.Generator().manual_seed((c.seed * 1_000_003 + epoch) % 2**63)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rank_seed((c.seed * 7_919 + epoch) % 2**63, ddp))  # dropout
            net.train()
            order = torch.randperm(len(windows), generator=gen).to(self.device)
            if ddp is not None:
                order = order[ddp.rank :: ddp.world_size]
            for s in range(steps.n_steps if ddp is not None else -(-len(order) // c.batch_size)):
                rows = order[s * c.batch_size : (s + 1) * c.batch_size]
                opt.zero_grad()
                if len(rows):
                    y = labels[rows]
                    loss, n = self._loss(windows[rows], y)
                    steps.done(loss.detach(), value=loss.detach() * n, weight=n)
                    loss.backward()
                else:  # this rank's share ran out a step before the others'
                    n = 0
                if ddp is not None:
                    ddp.average_gradients(net.parameters(), n)
                opt.step()
