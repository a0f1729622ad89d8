"""Statistics of an Events log: pure, vectorised functions (polars + numpy, no loop per event).

Everything here works on one stable time order: events sorted by actor (the user, or the log's
own session when it has no users), then timestamp, then source row. In that order an actor's
history is one contiguous run, so per-actor quantities (gaps, sessions an inactivity gap would
cut, bursts) come from shifts, ``cumsum`` and run lengths over flat arrays.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.errors import DataError
from sessionrec.prepare.sessionize import parse_duration

#: Quantiles reported for every length distribution (linear interpolation, numpy's default).
QUANTILES = (0.5, 0.9, 0.99, 0.999)
#: Quantiles reported for inter-event gaps.
GAP_QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.99)
#: Inactivity gaps whose sessions are counted; the suggested gap is one of them.
CANDIDATE_GAPS = ("5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d")
#: Knee rule: the suggested gap is the shortest candidate from which doubling the gap would
#: merge fewer than this share of the sessions.
SUGGEST_MAX_CUT = 0.05

SUGGEST_RULE = (
    "the shortest candidate gap from which doubling the gap would merge fewer than "
    f"{SUGGEST_MAX_CUT:.0%} of the sessions (the knee where the session count stops dropping "
    "fast; per doubling, interpolated geometrically between neighbouring candidates); when no "
    "candidate qualifies, the one with the smallest such cut"
)


def actor_label(column: str | None) -> str:
    """``user_id`` → user, ``session_id`` → session (what one history belongs to)."""
    return {S.USER: "user", S.SESSION: "session"}.get(column or "", "history")


_US = 1_000_000


@dataclass(frozen=True)
class Ordered:
    """An Events log in stable time order per actor, with the flat arrays the statistics use.

    Attributes:
        frame: the events (actor, session, item, timestamp, rating columns as present), sorted
            by actor, timestamp, row. (E rows)
        actor: the column that groups events into histories (``user_id`` or ``session_id``),
            or None when the log has neither (then it is one history).
        t_us: timestamps in microseconds since the epoch. (E,) int64
        starts: True where an actor's history begins. (E,) bool
        gaps: seconds since the same actor's previous event; NaN where a history begins. (E,)
    """

    frame: pl.DataFrame
    actor: str | None
    t_us: np.ndarray
    starts: np.ndarray
    gaps: np.ndarray

    @property
    def n_events(self) -> int:
        return self.frame.height

    def actor_codes(self) -> np.ndarray:
        """0, 1, ... numbering the actors in sorted order. (E,) int64"""
        return np.cumsum(self.starts, dtype=np.int64) - 1

    def actor_ids(self) -> pl.Series:
        """The actor id of each history, in the order of :meth:`actor_codes`. (A,)"""
        name = self.actor or "actor"
        if self.actor is None:
            return pl.Series(name, [None])
        return self.frame[self.actor].filter(pl.Series(self.starts))


def has_values(lf: pl.LazyFrame | pl.DataFrame, column: str) -> bool:
    """Whether ``column`` exists and holds at least one non-null value."""
    frame = lf.lazy()
    if column not in frame.collect_schema():
        return False
    return bool(frame.select(pl.col(column).is_not_null().any()).collect().item())


def order_events(events: pl.LazyFrame | pl.DataFrame, source: str = "<events>") -> Ordered:
    """Sort an Events log by actor, timestamp, row and derive starts and gaps.

    The actor is the user when the log has user ids, else the log's own session.
    """
    lf = events.lazy()
    schema = lf.collect_schema()
    for col in (S.ITEM, S.TIME):
        if col not in schema:
            raise DataError(source, column=col, expected="an Events frame", found="no such column")
    if S.ROW not in schema:
        lf = lf.with_row_index(S.ROW).with_columns(pl.col(S.ROW).cast(pl.Int64))
    actor = next((c for c in (S.USER, S.SESSION) if has_values(lf, c)), None)
    keep = [c for c in (S.USER, S.SESSION, S.ITEM, S.TIME, S.RATING) if c in schema]
    lf = lf.select(*keep, S.ROW).with_columns(pl.col(S.TIME).cast(S.TIME_DTYPE))
    by = [actor, *S.TIME_ORDER] if actor else list(S.TIME_ORDER)
    # read (streaming where the source allows), then sort eagerly: in polars 2 a lazy sort
    # runs on the streaming engine, about 3× slower than the in-memory sort here
    frame = lf.collect().sort(by, nulls_last=False).drop(S.ROW)
    if frame.height == 0:
        raise DataError(source, expected="at least one event", found="no rows")
    t_us = frame[S.TIME].dt.epoch("us").to_numpy()
    starts = np.zeros(frame.height, dtype=bool)
    starts[0] = True
    if actor is not None:
        key = frame[actor]
        # ne_missing: a null actor is one more actor, not a break at every row
        starts[1:] = key.ne_missing(key.shift(1)).to_numpy()[1:]
    gaps = np.empty(frame.height, dtype=np.float64)
    gaps[0] = np.nan
    gaps[1:] = np.diff(t_us) / _US
    gaps[starts] = np.nan
    return Ordered(frame, actor, t_us, starts, gaps)


def run_lengths(breaks: np.ndarray) -> np.ndarray:
    """Lengths of the runs that start where ``breaks`` is True (``breaks[0]`` must be True).

    Args:
        breaks: (E,) bool.

    Returns:
        (R,) int64, R = number of True values; the lengths sum to E.
    """
    idx = np.flatnonzero(breaks)
    return np.diff(np.append(idx, breaks.shape[0])).astype(np.int64)


def int_quantiles(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of non-negative integers, as ``np.quantile`` (linear) computes them, from a
    histogram in O(n + max) instead of a partition per call: lengths are small integers.

    Args:
        values: (n,) non-negative integers, n > 0.
    """
    counts = np.cumsum(np.bincount(values))
    pos = np.asarray(qs, dtype=np.float64) * (values.size - 1)
    lo, hi = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    # the k-th smallest value (0-based) is the first v with more than k values <= v
    v_lo = np.searchsorted(counts, lo, side="right")
    v_hi = np.searchsorted(counts, hi, side="right")
    return v_lo + (pos - lo) * (v_hi - v_lo)


def length_summary(lengths: np.ndarray | Sequence[int]) -> dict[str, float]:
    """min, quantiles 0.5/0.9/0.99/0.999 (linear interpolation), mean and max of lengths."""
    a = np.asarray(lengths, dtype=np.int64)
    if a.size == 0:
        return {}
    qs = int_quantiles(a, QUANTILES)
    out: dict[str, float] = {"min": int(a.min())}
    out.update({_qname(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)})
    out["mean"] = float(a.mean())
    out["max"] = int(a.max())
    return out


def _qname(q: float) -> str:
    return f"p{q * 100:g}"


def log_histogram(
    values: np.ndarray, *, integer: bool = False, bins_per_decade: int = 10
) -> pl.DataFrame:
    """Histogram on log-spaced bins: columns ``lo``, ``hi`` (bin [lo, hi)) and ``count``.

    Non-positive values are left out (the caller reports zeros on their own). With
    ``integer`` the edges are whole numbers starting at 1, so each bin holds whole lengths.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[v > 0]
    if v.size == 0:
        return pl.DataFrame(schema={"lo": pl.Float64, "hi": pl.Float64, "count": pl.Int64})
    if integer:
        top = math.log10(v.max() + 1)
        n = max(2, math.ceil(top * bins_per_decade) + 1)
        edges = np.unique(np.round(np.logspace(0, top, n)))
        if edges.size < 2:
            edges = np.array([1.0, 2.0])
    else:
        lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
        hi = max(hi, lo + 1)
        edges = np.logspace(lo, hi, (hi - lo) * bins_per_decade + 1)
    counts, edges = np.histogram(v, bins=edges)
    return pl.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": counts.astype(np.int64)})


def gap_summary(gaps: np.ndarray) -> dict[str, float | int]:
    """Count of within-history gaps, share of 0 s (identical timestamps) and under 1 s gaps,
    and the quantiles of ``GAP_QUANTILES`` in seconds. ``gaps``: (E,) with NaN at starts."""
    g = gaps[~np.isnan(gaps)]
    out: dict[str, float | int] = {"count": int(g.size)}
    if g.size == 0:
        return out
    out["zero_share"] = float(np.mean(g == 0))
    out["under_1s_share"] = float(np.mean(g < 1))
    qs = np.quantile(g, GAP_QUANTILES)
    out.update({f"{_qname(q)}_s": float(v) for q, v in zip(GAP_QUANTILES, qs, strict=True)})
    out["mean_s"] = float(g.mean())
    out["max_s"] = float(g.max())
    return out


def gap_breaks(gaps: np.ndarray, gap: float | None) -> np.ndarray:
    """Session starts under an inactivity gap (seconds): a history starts, or the previous
    event lies more than ``gap`` before (strictly, as :func:`sessionize_by_gap` cuts).
    ``gap`` None: one session per history. Returns (E,) bool."""
    starts = np.isnan(gaps)
    if gap is None:
        return starts
    with np.errstate(invalid="ignore"):
        return starts | (gaps > gap)


def candidate_gaps(gaps: np.ndarray, candidates: Sequence[str] = CANDIDATE_GAPS) -> pl.DataFrame:
    """The sessions each candidate inactivity gap would cut.

    Args:
        gaps: (E,) seconds since the actor's previous event, NaN where a history starts.
        candidates: gap texts (``"30m"``, ``"1h"``), in increasing order.

    Returns:
        One row per candidate: ``gap`` (text), ``seconds``, ``sessions``, ``median_length``,
        ``mean_length`` and ``cut_per_doubling`` — the share of sessions that doubling the gap
        would merge, from this candidate's count S and the next one's S' at gap ratio r:
        ``1 - (S'/S) ** (ln 2 / ln r)`` (null for the last candidate).
    """
    secs = [parse_duration(c).total_seconds() for c in candidates]
    if any(b <= a for a, b in itertools.pairwise(secs)):
        raise ValueError(f"candidate gaps must increase: {list(candidates)}")
    sessions, medians, means = [], [], []
    for s in secs:
        lengths = run_lengths(gap_breaks(gaps, s))
        sessions.append(int(lengths.size))
        medians.append(float(int_quantiles(lengths, [0.5])[0]))
        means.append(float(lengths.mean()))
    cuts: list[float | None] = []
    for i in range(len(secs)):
        if i + 1 == len(secs):
            cuts.append(None)
            continue
        ratio = sessions[i + 1] / sessions[i]
        cuts.append(1.0 - ratio ** (math.log(2) / math.log(secs[i + 1] / secs[i])))
    return pl.DataFrame(
        {
            "gap": list(candidates),
            "seconds": secs,
            "sessions": sessions,
            "median_length": medians,
            "mean_length": means,
            "cut_per_doubling": cuts,
        },
        schema_overrides={"cut_per_doubling": pl.Float64},
    )


def suggest_gap(table: pl.DataFrame, max_cut: float = SUGGEST_MAX_CUT) -> str:
    """The knee of the session count over the candidate gaps (see ``SUGGEST_RULE``).

    Args:
        table: the output of :func:`candidate_gaps`.
        max_cut: the largest share of sessions a doubling of the gap may still merge.
    """
    cuts = table["cut_per_doubling"].to_list()
    gaps = table["gap"].to_list()
    for gap, cut in zip(gaps, cuts, strict=True):
        if cut is not None and cut < max_cut:
            return str(gap)
    known = [(c, i) for i, c in enumerate(cuts) if c is not None]
    return str(gaps[min(known)[1]] if known else gaps[0])


def format_duration(td: timedelta | float) -> str:
    """Seconds or a timedelta as the shortest of ``90s``, ``30m``, ``1h``, ``1d`` that is exact."""
    s = td.total_seconds() if isinstance(td, timedelta) else float(td)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


def column_session_lengths(frame: pl.DataFrame) -> np.ndarray:
    """Events per value of the log's own session column (nulls form no session). (S,)"""
    counts = frame.lazy().drop_nulls(S.SESSION).group_by(S.SESSION).len().collect()
    return counts["len"].to_numpy().astype(np.int64)


def time_span(t_us: np.ndarray) -> dict[str, str | float]:
    """First and last event (ISO, UTC) and the span in days."""
    first, last = int(t_us.min()), int(t_us.max())
    as_iso = pl.Series([first, last]).cast(S.TIME_DTYPE).dt.to_string("%Y-%m-%dT%H:%M:%SZ")
    return {"first": as_iso[0], "last": as_iso[1], "days": (last - first) / _US / 86400}


def activity(frame: pl.DataFrame, unit: str) -> pl.DataFrame:
    """Events per ``unit`` (``"day"`` or ``"month"``): columns ``period`` (Date), ``events``."""
    every = {"day": "1d", "month": "1mo"}[unit]
    return (
        frame.lazy()
        .group_by(pl.col(S.TIME).dt.truncate(every).dt.date().alias("period"))
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .sort("period")
        .collect()
    )


def activity_unit(span_days: float) -> str:
    """Per day up to two years of log, per month beyond (a readable number of points)."""
    return "day" if span_days <= 731 else "month"


def hour_of_day(frame: pl.DataFrame) -> pl.DataFrame:
    """Events per hour of the day (UTC), all 24 hours: columns ``hour``, ``events``."""
    return _complete(frame, pl.col(S.TIME).dt.hour().cast(pl.Int64).alias("hour"), range(24))


def weekday(frame: pl.DataFrame) -> pl.DataFrame:
    """Events per ISO weekday (1 = Monday ... 7 = Sunday, UTC): columns ``weekday``, ``events``."""
    return _complete(
        frame, pl.col(S.TIME).dt.weekday().cast(pl.Int64).alias("weekday"), range(1, 8)
    )


def _complete(frame: pl.DataFrame, key: pl.Expr, values: range) -> pl.DataFrame:
    counts = frame.lazy().group_by(key).agg(pl.len().cast(pl.Int64).alias("events")).collect()
    name = counts.columns[0]
    full = pl.DataFrame({name: list(values)})
    return full.join(counts, on=name, how="left").with_columns(pl.col("events").fill_null(0))


def item_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """Events per item, most popular first (ties by item id): ``item_id``, ``events``."""
    return (
        frame.lazy()
        .group_by(S.ITEM)
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .sort(["events", S.ITEM], descending=[True, False])
        .collect()
    )


def top_share(counts_desc: np.ndarray, fraction: float) -> float:
    """Share of events on the top ``ceil(fraction * n_items)`` items (at least one item).

    Args:
        counts_desc: events per item, sorted in decreasing order. (I,)
    """
    if counts_desc.size == 0:
        return 0.0
    k = max(1, math.ceil(fraction * counts_desc.size - 1e-9))
    return float(counts_desc[:k].sum() / counts_desc.sum())


def popularity(counts: pl.DataFrame) -> dict[str, float | int]:
    """Long-tail numbers from :func:`item_counts`."""
    c = counts["events"].to_numpy()
    return {
        "items": int(c.size),
        "top1pct_items": max(1, math.ceil(0.01 * c.size - 1e-9)),
        "top1pct_share": top_share(c, 0.01),
        "top10pct_items": max(1, math.ceil(0.10 * c.size - 1e-9)),
        "top10pct_share": top_share(c, 0.10),
        "single_event_items": int((c == 1).sum()),
        "single_event_items_share": float((c == 1).mean()),
        "max_item_events": int(c.max()),
        "median_item_events": float(np.median(c)),
    }


def rank_frequency(counts: pl.DataFrame, points: int = 400) -> pl.DataFrame:
    """Rank (1 = most popular) and events at about ``points`` log-spaced ranks (for a log-log
    plot; the last rank is always kept)."""
    c = counts["events"].to_numpy()
    n = c.size
    ranks = np.unique(np.round(np.logspace(0, math.log10(n), points)).astype(np.int64))
    ranks = np.unique(np.append(ranks[(ranks >= 1) & (ranks <= n)], n))
    return pl.DataFrame({"rank": ranks, "events": c[ranks - 1]})


def bursts(o: Ordered, window_s: float, threshold: int) -> tuple[pl.DataFrame, dict[str, float]]:
    """Events an actor packs into one calendar window (a second, a minute).

    A burst is a window (``t // window``) in which one actor has at least ``threshold`` events.

    Returns:
        Per actor (A rows): ``max_in_window`` (most events in one window) and ``burst_events``
        (events in that actor's bursts); and the summary: ``actors`` with at least one burst,
        their share, the share of all events that lie in bursts, and the largest window count.
    """
    window = np.floor_divide(o.t_us, int(window_s * _US))
    new = o.starts.copy()
    new[1:] |= window[1:] != window[:-1]
    idx = np.flatnonzero(new)
    lens = np.diff(np.append(idx, o.n_events))
    codes = o.actor_codes()[idx]
    n_actors = int(o.starts.sum())
    max_in = np.zeros(n_actors, dtype=np.int64)
    np.maximum.at(max_in, codes, lens)
    in_burst = np.bincount(codes, weights=lens * (lens >= threshold), minlength=n_actors)
    per = pl.DataFrame({"max_in_window": max_in, "burst_events": in_burst.astype(np.int64)})
    summary = {
        "threshold": threshold,
        "actors": int((in_burst > 0).sum()),
        "actors_share": float((in_burst > 0).mean()),
        "events_share": float(in_burst.sum() / o.n_events),
        "max_in_window": int(max_in.max()),
    }
    return per, summary


def repeat_share(o: Ordered) -> float:
    """Share of events that repeat the same actor's previous item (what --drop-repeats drops)."""
    item = o.frame[S.ITEM]
    same = item.eq_missing(item.shift(1)).to_numpy()
    same[o.starts] = False
    return float(same.mean())


def rating_distribution(frame: pl.DataFrame) -> pl.DataFrame | None:
    """Events per rating value (``rating``, ``events``, ``share``), or None without ratings."""
    if not has_values(frame, S.RATING):
        return None
    return (
        frame.lazy()
        .drop_nulls(S.RATING)
        .group_by(S.RATING)
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .sort(S.RATING)
        .with_columns((pl.col("events") / pl.col("events").sum()).alias("share"))
        .collect()
    )
