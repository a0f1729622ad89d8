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
from pathlib import Path

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.datasets import Dataset
from sessionrec.errors import ConfigError, DataError
from sessionrec.prepare.data import PreparedData, SessionData


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


def _frame(part: SessionData, item_ids: np.ndarray) -> pl.DataFrame:
    """A part frame (the PreparedData columns) from example SessionData."""
    session = np.repeat(part.session_ids, part.lengths)
    return pl.DataFrame(
        {
            S.SESSION: pl.Series(session, dtype=pl.Int64),
            S.ITEM_IDX: pl.Series(part.items, dtype=pl.Int64),
            S.ITEM: pl.Series(item_ids[part.items]),
            S.TIME: pl.Series(part.timestamps, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "target": pl.Series(part.target, dtype=pl.Boolean),
        }
    )


def prepare_examples(
    source: str | Path | Dataset,
    out: str | Path,
    *,
    min_rating: float | None = 2.0,
    min_timeline: int = 3,
    max_context: int = 10,
    test_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
) -> PreparedData:
    """Write the tutorial's examples as a PreparedData directory (valid empty).

    Each example is a "session" of its context rows (``target`` False) and its label, so
    ``sessionrec train`` and ``sessionrec evaluate`` read it unchanged and make one prediction
    per example: Recall@k is then the tutorial's top-k accuracy (``--cutoffs 1 5 10 50 100``).
    Item ``count`` in items.parquet counts training labels.
    """
    from datetime import UTC, datetime

    from sessionrec._io import check_output
    from sessionrec.datasets import load
    from sessionrec.prepare.pipeline import _version, write_prepared

    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), not {test_fraction}")
    check_output(out, overwrite=overwrite, verb="prepare")
    ds = source if isinstance(source, Dataset) else load(source)
    ex = sequence_examples(
        ds.events,
        min_rating=min_rating,
        min_timeline=min_timeline,
        max_context=max_context,
        train_fraction=1 - test_fraction,
        seed=seed,
        item_meta=ds.items,
    )
    item_ids = ex.items[S.ITEM].to_numpy()
    parts = {"train": _frame(ex.train, item_ids), "test": _frame(ex.test, item_ids)}
    parts["valid"] = parts["test"].clear()
    labels = ex.train.items[ex.train.target]
    items = ex.items.with_columns(
        pl.Series("count", np.bincount(labels, minlength=ex.items.height), dtype=pl.Int64)
    )
    counts = {
        name: {
            "events": int(df["target"].sum()),
            "rows": df.height,
            "sessions": df[S.SESSION].n_unique(),
            "items": items.height if name == "train" else df[S.ITEM_IDX].n_unique(),
        }
        for name, df in parts.items()
    }
    meta = {
        "format": "sessionrec.prepared/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "name": ds.name,
            "files": [str(f) for f in ds.files],
            "sha256": ds.checksum(),
            **ds.info,
        },
        "params": {
            "examples": "tfrs",
            "min_rating": min_rating,
            "min_timeline": min_timeline,
            "max_context": max_context,
            "test_fraction": test_fraction,
            "seed": seed,
        },
        "raw_events": ds.events.height,
        "dropped": {},
        "counts": counts,
        "n_items": items.height,
        "has_ratings": False,
        "has_users": False,
        "package_version": _version(),
    }
    return write_prepared(out, {**parts, "items": items}, meta, overwrite=overwrite)
