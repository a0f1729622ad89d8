"""Shared test helpers: a plain-Python rank reference, SessionData builders, a tie-heavy model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import torch

from sessionrec.models.base import SessionModel
from sessionrec.prepare.data import SessionData


def py_rank(
    scores: list[float], target: int, ties: str, exclude: set[int] | frozenset[int] = frozenset()
) -> float:
    """The definition, item by item: the slow reference for ranks."""
    if target in exclude:  # never served: a miss whatever the scores
        return math.inf
    t = scores[target]
    if math.isnan(t):  # a NaN target ranks last among the rankable items, whatever the ties
        return float(sum(1 for j in range(len(scores)) if j == target or j not in exclude))
    higher = equal = 0
    for j, s in enumerate(scores):
        if j == target or j in exclude or math.isnan(s):
            continue
        higher += s > t
        equal += s == t
    return {
        "conservative": 1.0 + higher + equal,
        "optimistic": 1.0 + higher,
        "average": 1.0 + higher + equal / 2,
    }[ties]


def run_cli(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """Run ``sessionrec ARGV`` in-process: (exit code, stdout, stderr)."""
    from sessionrec.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def session_data(
    sessions: list[list[int]], n_items: int, targets: list[list[bool]] | None = None
) -> SessionData:
    """SessionData straight from lists of item indices (and optional target flags)."""
    lengths = [len(s) for s in sessions]
    items = np.array([i for s in sessions for i in s], dtype=np.int64)
    target = (
        np.array([t for ts in targets for t in ts], dtype=bool)
        if targets is not None
        else np.ones(len(items), dtype=bool)
    )
    return SessionData(
        items=items,
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        session_ids=np.arange(len(sessions), dtype=np.int64),
        timestamps=np.arange(len(items), dtype=np.int64) * 1_000_000,
        target=target,
        n_items=n_items,
    )


@dataclass(frozen=True)
class _NoConfig:
    pass


class TieModel(SessionModel):
    """A test model whose integer scores depend on the whole prefix and tie often."""

    name = "tie-model"
    Config = _NoConfig

    def fit(self, train: SessionData, valid: SessionData | None = None, **_: Any) -> Self:
        self.n_items = train.n_items
        return self

    def start(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 2, dtype=torch.long)

    def reset(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        state = state.clone()
        state[mask] = 0
        return state

    def step(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # (sum of items, number of events): a slot that is not reset scores differently.
        return state + torch.stack([items, torch.ones_like(items)], 1)

    def score(self, state: torch.Tensor) -> torch.Tensor:
        j = torch.arange(self.n_items)
        return ((state[:, :1] * 3 + state[:, 1:] + j * 7) % 4).float()

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        pass
