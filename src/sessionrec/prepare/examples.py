"""Next-item examples from rating timelines, as the TensorFlow Recommenders sequential-retrieval
tutorial generates them (``tensorflow_recommenders/examples/movielens.py``): keep ratings
≥ ``min_rating``, order each user's ratings by time, keep timelines of at least
``min_timeline`` items, and make every position after the first a label whose context is up
to ``max_context`` previous items; shuffle the examples (seeded) and cut ``train_fraction``.

The split is by example, not by user or time, exactly as the tutorial does — so a test label
may precede training labels of the same user. Use it to reproduce the tutorial's numbers;
use ``prepare`` for honest protocols.

Each example becomes one short "session" of SessionData: its context rows (``target=False``)
followed by the label (``target=True``), so every next-item model and the ranking code read
it unchanged: one prediction per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.errors import DataError
from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class SequenceExamples:
    train: SessionData
    test: SessionData
    items: pl.DataFrame  # item_idx ↔ item_id (+ titles when the events' dataset has them)


def sequence_examples(
    events: pl.DataFrame,
    *,
    min_rating: float | None = 2.0,
    min_timeline: int = 3,
    max_context: int = 10,
    train_fraction: float = 0.9,
    seed: int = 0,
    item_meta: pl.DataFrame | None = None,
) -> SequenceExamples:
    """The tutorial's (context → next item) examples, split 90/10 at random by example."""
    ev = events
    if min_rating is not None:
        if S.RATING not in ev.columns:
            raise DataError(None, column=S.RATING, expected="ratings for min_rating", found="none")
        ev = ev.filter(pl.col(S.RATING) >= min_rating)
    key = S.USER if ev[S.USER].null_count() == 0 else S.SESSION
    order = [key, S.TIME, S.ROW] if S.ROW in ev.columns else [key, S.TIME]
    ev = ev.sort(order).filter(pl.len().over(key) >= min_timeline)
    if ev.height == 0:
        raise DataError(None, expected=f"timelines of >= {min_timeline} items", found="none")
    item_ids = ev[S.ITEM].unique().sort()
    items = pl.DataFrame({S.ITEM_IDX: np.arange(item_ids.len(), dtype=np.int64), S.ITEM: item_ids})
    if item_meta is not None:
        items = items.join(item_meta, on=S.ITEM, how="left", maintain_order="left")
    idx = np.searchsorted(item_ids.to_numpy(), ev[S.ITEM].to_numpy()).astype(np.int64)
    owner = ev[key].to_numpy()
    start = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    line_start = np.repeat(start, np.diff(np.r_[start, len(owner)]))
    pos = np.arange(len(owner))
    labels = pos[pos > line_start]  # every position after a timeline's first
    ctx = np.minimum(labels - line_start[labels], max_context)  # (N,) context sizes
    perm = np.random.default_rng(seed).permutation(len(labels))
    n_train = round(len(labels) * train_fraction)
    ts = ev[S.TIME].dt.epoch("us").to_numpy()

    def build(chosen: np.ndarray) -> SessionData:
        lab, k = labels[chosen], ctx[chosen]
        sizes = k + 1
        offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        # Row r of example e reads position lab[e] - k[e] + (r - offsets[e]).
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], sizes)
        rows = np.repeat(lab - k, sizes) + within
        target = within == np.repeat(k, sizes)
        return SessionData(
            items=idx[rows],
            offsets=offsets,
            session_ids=chosen.astype(np.int64),
            timestamps=ts[rows].astype(np.int64),
            target=target,
            n_items=item_ids.len(),
        )

    return SequenceExamples(build(np.sort(perm[:n_train])), build(np.sort(perm[n_train:])), items)
