"""PreparedData (the directory contract) and SessionData (the arrays models train on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec._io import read_json
from sessionrec.errors import DataError

PARTS = ("train", "valid", "test")
TARGET = "target"


@dataclass(frozen=True)
class SessionData:
    """Sessions as flat arrays, sorted by session then time (then source row).

    Attributes:
        items: (E,) int64 item indices 0..n_items-1.
        offsets: (S+1,) int64; session s spans ``items[offsets[s]:offsets[s+1]]``.
        session_ids: (S,) int64 session ids of the source.
        timestamps: (E,) int64 microseconds since the epoch (UTC).
        target: (E,) bool; False marks context rows that are history only (see prepare.split).
        n_items: size of the item vocabulary.
        users: (S,) int64 user of each session, or None.
        ratings: (E,) float32 ratings, or None.
    """

    items: np.ndarray
    offsets: np.ndarray
    session_ids: np.ndarray
    timestamps: np.ndarray
    target: np.ndarray
    n_items: int
    users: np.ndarray | None = None
    ratings: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, df: pl.DataFrame, n_items: int) -> SessionData:
        """From a part frame (session_id, item_idx, timestamp[, target, user_id, rating])."""
        df = df.sort([S.SESSION, S.TIME]) if not _is_grouped(df) else df
        sess = df[S.SESSION].to_numpy()
        starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if len(sess) else np.zeros(0)
        offsets = np.r_[starts, len(sess)].astype(np.int64)
        ts = df[S.TIME].dt.epoch("us").to_numpy().astype(np.int64)
        users = None
        if S.USER in df.columns and df[S.USER].null_count() == 0:
            users = df[S.USER].to_numpy()[offsets[:-1]].astype(np.int64)
        ratings = None
        if S.RATING in df.columns and df[S.RATING].null_count() == 0:
            ratings = df[S.RATING].to_numpy().astype(np.float32)
        target = (
            df[TARGET].to_numpy().astype(bool)
            if TARGET in df.columns
            else np.ones(len(sess), dtype=bool)
        )
        return cls(
            items=df[S.ITEM_IDX].to_numpy().astype(np.int64),
            offsets=offsets,
            session_ids=sess[offsets[:-1]].astype(np.int64),
            timestamps=ts,
            target=target,
            n_items=n_items,
            users=users,
            ratings=ratings,
        )

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_predictions(self) -> int:
        """Next-item predictions under the every-position protocol: targets after a first event."""
        first = np.zeros(self.n_events, dtype=bool)
        first[self.offsets[:-1]] = True
        return int((self.target & ~first).sum())

    def session(self, s: int) -> np.ndarray:
        return self.items[self.offsets[s] : self.offsets[s + 1]]

    def start_times(self) -> np.ndarray:
        """(S,) time of each session's first event."""
        return self.timestamps[self.offsets[:-1]]

    def concat(self, other: SessionData) -> SessionData:
        """This part followed by ``other`` (e.g. train + valid for a final fit)."""
        if other.n_items != self.n_items:
            raise ValueError("parts have different item vocabularies")
        both_users = self.users is not None and other.users is not None
        both_ratings = self.ratings is not None and other.ratings is not None
        return SessionData(
            items=np.r_[self.items, other.items],
            offsets=np.r_[self.offsets[:-1], other.offsets + self.n_events],
            session_ids=np.r_[self.session_ids, other.session_ids],
            timestamps=np.r_[self.timestamps, other.timestamps],
            target=np.r_[self.target, other.target],
            n_items=self.n_items,
            users=np.r_[self.users, other.users] if both_users else None,
            ratings=np.r_[self.ratings, other.ratings] if both_ratings else None,
        )

    def item_counts(self) -> np.ndarray:
        """(n_items,) number of events per item."""
        return np.bincount(self.items, minlength=self.n_items)


def _is_grouped(df: pl.DataFrame) -> bool:
    return bool(df.height == 0 or df[S.SESSION].is_sorted())


class PreparedData:
    """A prepared dataset directory: train/valid/test parquet, items.parquet, meta.json."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise DataError(
                self.path,
                expected="a prepared data directory with meta.json (from `sessionrec prepare`)",
                found="no meta.json" if self.path.is_dir() else "no such directory",
            )
        self.meta: dict[str, Any] = read_json(meta_path)
        self._parts: dict[str, SessionData] = {}

    @cached_property
    def items(self) -> pl.DataFrame:
        """item_idx ↔ item_id with metadata (title, year, genres when the source has them)."""
        return pl.read_parquet(self.path / "items.parquet", glob=False)

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])

    def frame(self, part: str) -> pl.DataFrame:
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, not {part!r}")
        return pl.read_parquet(self.path / f"{part}.parquet", glob=False)

    def part(self, name: str) -> SessionData:
        """The part ``train``, ``valid``, ``test`` or ``train+valid`` as SessionData."""
        if name == "train+valid":
            return self.part("train").concat(self.part("valid"))
        if name not in self._parts:
            self._parts[name] = SessionData.from_frame(self.frame(name), self.n_items)
        return self._parts[name]

    @property
    def train(self) -> SessionData:
        return self.part("train")

    @property
    def valid(self) -> SessionData:
        return self.part("valid")

    @property
    def test(self) -> SessionData:
        return self.part("test")

    def __repr__(self) -> str:
        c = self.meta.get("counts", {})
        parts = ", ".join(
            f"{k} {v['events']:,} events/{v['sessions']:,} sessions" for k, v in c.items()
        )
        return f"PreparedData({str(self.path)!r}: {self.n_items:,} items; {parts})"
