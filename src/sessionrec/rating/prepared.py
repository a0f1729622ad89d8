"""Ratings from a PreparedData directory, so rating models train and evaluate through the CLI.

The parts of a PreparedData keep ``user_id`` and ``rating``; this reads them as
:class:`~sessionrec.rating.data.Ratings` over one vocabulary (users and item ids of all parts).
Context rows (``target`` False: history repeated before a test part's targets) are dropped from
valid and test, so every rating is scored once; the training part keeps all its rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.errors import DataError
from sessionrec.prepare import PreparedData
from sessionrec.rating.data import Ratings


def prepared_ratings(data: PreparedData, part: str) -> Ratings:
    """The part ``train``, ``valid``, ``test`` or ``train+valid`` of ``data`` as Ratings."""
    names = ["train", "valid"] if part == "train+valid" else [part]
    frames = {p: data.frame(p) for p in ("train", "valid", "test")}
    for name, f in frames.items():
        for col in (S.USER, S.RATING):
            if col not in f.columns:
                raise DataError(
                    data.path / f"{name}.parquet",
                    column=col,
                    expected="explicit ratings with users (a rating source)",
                    found=f"no {col} column",
                )
    every = pl.concat([f.select(S.USER, S.ITEM, S.RATING) for f in frames.values()])
    user_ids = np.sort(every[S.USER].unique().to_numpy())
    item_ids = np.sort(every[S.ITEM].unique().to_numpy())
    r_all = every[S.RATING].drop_nulls().to_numpy()
    picked = []
    for name in names:
        f = frames[name]
        if name != "train" and "target" in f.columns:
            f = f.filter(pl.col("target"))
        picked.append(f.select(S.USER, S.ITEM, S.RATING, S.TIME))
    rows = pl.concat(picked).filter(pl.col(S.RATING).is_not_null())
    return Ratings(
        users=np.searchsorted(user_ids, rows[S.USER].to_numpy()).astype(np.int64),
        items=np.searchsorted(item_ids, rows[S.ITEM].to_numpy()).astype(np.int64),
        ratings=rows[S.RATING].to_numpy().astype(np.float32),
        timestamps=rows[S.TIME].dt.epoch("us").to_numpy().astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        scale=(float(r_all.min()), float(r_all.max())) if len(r_all) else (1.0, 5.0),
    )
