"""Explicit ratings as flat arrays, and the rating protocols: random split, k-fold, time split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.datasets import Dataset
from sessionrec.errors import DataError


@dataclass(frozen=True)
class Ratings:
    """(user, item, rating) triples over a fixed vocabulary of users and items.

    Splits keep the vocabulary of the whole log, so a user or item absent from a training part
    still has an index; models treat indices they never saw in training as unknown (they fall
    back to the global mean and the biases they do know, as Surprise does).

    Attributes:
        users: (N,) int64 user indices 0..n_users-1.
        items: (N,) int64 item indices 0..n_items-1.
        ratings: (N,) float32.
        timestamps: (N,) int64 microseconds since the epoch (UTC).
        user_ids: (n_users,) raw user ids, index → id.
        item_ids: (n_items,) raw item ids, index → id.
        scale: (lowest, highest) rating of the whole log; predictions are clipped to it.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    scale: tuple[float, float]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, rows: np.ndarray) -> Ratings:
        """The rows ``rows`` (indices or a boolean mask), same vocabulary."""
        return Ratings(
            self.users[rows],
            self.items[rows],
            self.ratings[rows],
            self.timestamps[rows],
            self.user_ids,
            self.item_ids,
            self.scale,
        )

    @classmethod
    def from_events(cls, events: pl.DataFrame, where: str = "<data>") -> Ratings:
        """From an Events frame with a rating column (user_id, item_id, rating, timestamp)."""
        if S.RATING not in events.columns or events[S.RATING].null_count() == events.height:
            raise DataError(where, column=S.RATING, expected="explicit ratings", found="none")
        if events[S.USER].null_count() > 0:
            raise DataError(where, column=S.USER, expected="a user for every rating", found="nulls")
        events = events.filter(pl.col(S.RATING).is_not_null()).sort(
            [S.USER, *S.TIME_ORDER] if S.ROW in events.columns else [S.USER, S.TIME]
        )
        if events.height == 0:
            raise DataError(where, expected="ratings", found="an empty log")
        user_ids = events[S.USER].unique().sort()
        item_ids = events[S.ITEM].unique().sort()
        users = events[S.USER].to_numpy()
        items = events[S.ITEM].to_numpy()
        r = events[S.RATING].to_numpy().astype(np.float32)
        return cls(
            users=np.searchsorted(user_ids.to_numpy(), users).astype(np.int64),
            items=np.searchsorted(item_ids.to_numpy(), items).astype(np.int64),
            ratings=r,
            timestamps=events[S.TIME].dt.epoch("us").to_numpy().astype(np.int64),
            user_ids=user_ids.to_numpy(),
            item_ids=item_ids.to_numpy(),
            scale=(float(r.min()), float(r.max())),
        )

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Ratings:
        where = str(ds.files[0]) if ds.files else ds.name
        return cls.from_events(ds.events, where)

    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        *,
        n_users: int | None = None,
        n_items: int | None = None,
        scale: tuple[float, float] | None = None,
    ) -> Ratings:
        """From index arrays (ids = indices); handy for tests and notebooks."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        r = np.asarray(ratings, dtype=np.float32)
        nu = int(n_users if n_users is not None else users.max() + 1)
        ni = int(n_items if n_items is not None else items.max() + 1)
        return cls(
            users,
            items,
            r,
            np.arange(len(r), dtype=np.int64),
            np.arange(nu),
            np.arange(ni),
            scale or (float(r.min()), float(r.max())),
        )


def random_split(
    data: Ratings, test_fraction: float = 0.3, seed: int = 0
) -> tuple[Ratings, Ratings]:
    """A random split of the ratings (the seed's protocol: 70/30)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(data))
    n_test = round(len(data) * test_fraction)
    return data.subset(np.sort(perm[n_test:])), data.subset(np.sort(perm[:n_test]))


def kfold(data: Ratings, folds: int = 5, seed: int = 0) -> Iterator[tuple[Ratings, Ratings]]:
    """``folds`` (train, test) pairs; every rating is in exactly one test fold.

    Like Surprise's ``KFold(shuffle=True)``: ratings are shuffled once, then cut into
    ``folds`` nearly equal consecutive blocks.
    """
    if folds < 2:
        raise ValueError("folds must be >= 2")
    perm = np.random.default_rng(seed).permutation(len(data))
    bounds = np.linspace(0, len(data), folds + 1).round().astype(np.int64)
    for k in range(folds):
        test = np.zeros(len(data), dtype=bool)
        test[perm[bounds[k] : bounds[k + 1]]] = True
        yield data.subset(~test), data.subset(test)


def time_split(data: Ratings, test_fraction: float = 0.2) -> tuple[Ratings, Ratings]:
    """The latest ``test_fraction`` of all ratings (by time, then position) is the test part."""
    order = np.lexsort((np.arange(len(data)), data.timestamps))
    n_test = round(len(data) * test_fraction)
    test = np.zeros(len(data), dtype=bool)
    test[order[len(data) - n_test :]] = True
    return data.subset(~test), data.subset(test)
