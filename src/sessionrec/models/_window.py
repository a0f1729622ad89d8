"""What the neural models over the session's last items share (two-tower, sasrec).

* The streaming state: the last ``context_length`` item indices per slot, left padded with
  ``n_items``; ``step`` shifts the window, ``score`` runs the network on it (so streaming
  equals ``score_sessions`` exactly, and states join as rows of one tensor).
* The training checkpoint of a torch network with a torch optimiser (the runner's
  ``--resume``): weights, the optimiser's per-parameter state, the finished epochs.
* ``_build`` seeded from the config, so that equal seeds give equal weights.

A subclass sets ``net`` through ``_build`` / ``load_state_arrays`` and says how to make the
network (``_network``), its optimiser (``_make_optimizer``) and how many items a saved set
of weights covers (``_items_in``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sessionrec.models.base import SessionModel


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

    # -- checkpoints (the runner's --resume) ---------------------------------------------------
    def training_state(self) -> dict[str, torch.Tensor]:
        """Weights, the optimiser's state and the number of finished epochs."""
        assert self.net is not None, "fit the model first"
        out = {f"param/{k}": v.detach() for k, v in self.net.state_dict().items()}
        if self._opt is not None:
            for i, st in self._opt.state_dict()["state"].items():
                out.update({f"opt/{i}/{k}": torch.as_tensor(v) for k, v in st.items()})
        out["epochs_done"] = torch.tensor([self.epochs_done], dtype=torch.int64)
        return out

    def load_training_state(self, arrays: dict[str, torch.Tensor]) -> None:
        """Restore a checkpoint; the next ``fit`` continues after its last finished epoch."""
        self.load_state_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
        assert self.net is not None
        self._opt = self._make_optimizer(self.net)
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, v in arrays.items():
            if key.startswith("opt/"):
                _, i, name = key.split("/")
                state.setdefault(int(i), {})[name] = v
        if state:
            sd = self._opt.state_dict()
            sd["state"] = state
            self._opt.load_state_dict(sd)
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
