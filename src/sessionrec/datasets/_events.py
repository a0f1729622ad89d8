"""The Events contract (DESIGN.md): one schema every loader produces."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.errors import DataError


@dataclass
class Dataset:
    """A loaded interaction log: events (lazy), optional item metadata, and where it came from.

    Attributes:
        name: dataset name (``ml-100k``) or the path it was read from.
        lazy_events: the Events frame as a polars LazyFrame (read on demand, streaming-friendly).
        items: item metadata (``item_id``, ``title``, ``year``, ``genres``) or None.
        files: the source files, for checksums and messages.
        info: facts about the source (format, which source was used, ...).
        diagnose: builds the DataError that explains a failed read (bad line and column); lazy
            reads fail only when collected, so the loader hands over how to explain them.
    """

    name: str
    lazy_events: pl.LazyFrame
    items: pl.DataFrame | None = None
    files: list[Path] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)
    diagnose: Callable[[], DataError] | None = field(default=None, repr=False)
    _events: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def events(self) -> pl.DataFrame:
        """The Events frame, collected once (see :meth:`collect`)."""
        if self._events is None:
            self._events = self.collect()
        return self._events

    def collect(self, columns: list[str] | None = None) -> pl.DataFrame:
        """Read the events (only ``columns`` when given), checked.

        Raises:
            DataError: a value that does not parse, a short line (a missing item or time), or
                no rows at all, naming the file, line and column where the loader knows them.
        """
        if self._events is not None:
            return self._events if columns is None else self._events.select(columns)
        where = self.files[0] if self.files else self.name
        lf = self.lazy_events if columns is None else self.lazy_events.select(columns)
        try:
            ev = lf.collect()
        except pl.exceptions.PolarsError as exc:
            if self.diagnose is None:
                raise
            raise self.diagnose() from exc
        if ev.height == 0:
            raise DataError(where, expected="at least one event", found="no rows")
        # A short line reads as nulls rather than failing; every event needs item and time.
        # (null_count is kept with the columns, so this check is free.)
        for col in (S.ITEM, S.TIME):
            if col in ev.columns and ev[col].null_count():
                if self.diagnose is not None:
                    raise self.diagnose()
                row = int(ev[col].is_null().arg_max())  # type: ignore[arg-type]
                raise DataError(where, column=col, expected=f"a {col} on every row",
                                found=f"an empty value in data row {row + 1}")  # fmt: skip
        return ev

    def checksum(self) -> str:
        """sha256 over the source files' bytes (in order), to record what a result came from."""
        h = hashlib.sha256()
        for f in self.files:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
        return h.hexdigest()

    def _repr_markdown_(self) -> str:
        ev = self.events
        return f"**{self.name}**: {ev.height:,} events, {ev[S.ITEM].n_unique():,} items" + (
            f", {ev[S.USER].n_unique():,} users" if ev[S.USER].null_count() < ev.height else ""
        )


def to_events(
    lf: pl.LazyFrame,
    *,
    time: pl.Expr,
    user: pl.Expr | None = None,
    session: pl.Expr | None = None,
    item: pl.Expr | None = None,
    rating: pl.Expr | None = None,
    event_type: pl.Expr | None = None,
) -> pl.LazyFrame:
    """Map a raw frame onto the Events schema; ``row`` numbers the source rows from 0."""
    cols = [
        (user if user is not None else pl.lit(None)).cast(pl.Int64).alias(S.USER),
        (session if session is not None else pl.lit(None)).cast(pl.Int64).alias(S.SESSION),
        (item if item is not None else pl.col(S.ITEM)).alias(S.ITEM),
        time.cast(S.TIME_DTYPE).alias(S.TIME),
        pl.col(S.ROW).cast(pl.Int64),
    ]
    if rating is not None:
        cols.append(rating.cast(pl.Float32).alias(S.RATING))
    if event_type is not None:
        cols.append(event_type.cast(pl.Utf8).alias(S.EVENT_TYPE))
    # Column order as in _schema.EVENT_COLUMNS, then the optional ones.
    return lf.with_row_index(S.ROW).select(cols)


def repeated_events(events: pl.DataFrame, by: str | None) -> pl.Series:
    """True on each event that repeats an earlier one exactly (every column but the source row).

    ``events`` must be sorted by ``by`` (the actor: user or session; None for none), then time,
    then source row, as sessionizing and exploring leave them: equal rows then sit in one run
    of equal ``by`` and time, so only rows tied with a neighbour are hashed.
    """
    if events.height < 2:
        return pl.Series("repeated", [False] * events.height, dtype=pl.Boolean)
    keys = [c for c in (by, S.TIME) if c is not None]
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift(1)) for c in keys)
    tied = events.select(
        (same.fill_null(False) | same.shift(-1).fill_null(False)).alias("t")
    ).to_series()
    out = np.zeros(events.height, dtype=bool)
    if tied.any():
        cols = [c for c in events.columns if c != S.ROW]
        at = np.flatnonzero(tied.to_numpy())
        candidates = events[at].select(cols)
        out[at] = ~candidates.select(pl.struct(cols).is_first_distinct()).to_series().to_numpy()
    return pl.Series("repeated", out)


def epoch_to_time(col: str, unit: Literal["s", "ms", "us"]) -> pl.Expr:
    """Unix time in ``unit`` (s, ms, us) to a UTC Datetime."""
    return pl.from_epoch(pl.col(col), time_unit=unit).dt.replace_time_zone("UTC")


def iso_to_time(col: str) -> pl.Expr:
    """ISO-8601 text (``2014-04-07T10:51:09.277Z`` and the like) to a UTC Datetime."""
    return pl.col(col).str.to_datetime(time_unit="us", time_zone="UTC", strict=True)


def title_year(title: pl.Expr) -> pl.Expr:
    """The year in a MovieLens-style title, ``"Toy Story (1995)"`` → 1995 (null when absent)."""
    return title.str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int32, strict=False)
