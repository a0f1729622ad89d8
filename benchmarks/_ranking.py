"""A small local next-item ranking helper for the benchmarks of branch cfmodels, used until
``sessionrec.evaluation.evaluate`` lands: every-position protocol, full ranking, conservative
ties (rank = 1 + items scored ≥ the target, the target excluded), streaming through the model
protocol so what is measured is what is served."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sessionrec.models.base import SessionModel
from sessionrec.prepare.data import SessionData


@torch.no_grad()
def next_item_ranks(model: Any, data: SessionData, batch_size: int = 256) -> np.ndarray:
    """Conservative full ranks of every target event after a session's first event."""
    order = np.argsort(data.lengths, kind="stable")
    out: list[np.ndarray] = []
    for a in range(0, len(order), batch_size):
        sess = order[a : a + batch_size]
        lengths = data.lengths[sess]
        max_len = int(lengths.max())
        pad = np.zeros((len(sess), max_len), dtype=np.int64)
        tgt = np.zeros((len(sess), max_len), dtype=bool)
        for r, s in enumerate(sess):
            lo, hi = data.offsets[s], data.offsets[s + 1]
            pad[r, : hi - lo] = data.items[lo:hi]
            tgt[r, : hi - lo] = data.target[lo:hi]
        items = torch.from_numpy(pad)
        state = model.start(len(sess))
        for t in range(max_len - 1):
            state = model.step(state, items[:, t].to(model.device))
            rows = np.flatnonzero((lengths > t + 1) & tgt[:, t + 1])
            if len(rows) == 0:
                continue
            scores = model.score(state)[torch.from_numpy(rows).to(model.device)].float()
            y = items[rows, t + 1].to(scores.device)
            ts = scores.gather(1, y[:, None])
            out.append(((scores >= ts).sum(1)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def ranking_metrics(
    ranks: np.ndarray, cutoffs: tuple[int, ...] = (1, 5, 10, 20, 50, 100)
) -> dict[str, float]:
    out: dict[str, float] = {"predictions": float(len(ranks))}
    for k in cutoffs:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float((hit / ranks).mean())
    return out


class Popularity(SessionModel):
    """Training counts for every session (a local stand-in when REGISTRY has no ``pop``)."""

    name = "pop-local"
    Config = dict

    def fit(
        self, train: SessionData, valid: SessionData | None = None, *, callback: Any = None
    ) -> Popularity:
        self.n_items = train.n_items
        self.counts = torch.from_numpy(train.item_counts().astype(np.float32))
        return self

    def start(self, batch_size: int) -> int:
        return batch_size

    def reset(self, state: int, mask: torch.Tensor) -> int:
        return state

    def step(self, state: int, items: torch.Tensor) -> int:
        return state

    def score(self, state: int) -> torch.Tensor:
        return self.counts.expand(state, -1)

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.counts = arrays["counts"]
