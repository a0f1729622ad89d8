"""Splits of a sessionized log into train / valid / test.

Every split labels each event with a part (0 train, 1 valid, 2 test). When a part begins in the
middle of a session (per-user temporal hold-out, leave-one-out), the session's earlier events are
copied into that part as *context* rows (``target = False``): a model sees them as history but
no prediction is scored for them, so every event is still a target exactly once.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from sessionrec import _schema as S

TARGET = "target"
PART = "_part"
SPLITS = ("time", "user-time", "leave-one-out", "random", "random-event")


def _grouped(events: pl.DataFrame) -> bool:
    """Whether each session's events are contiguous (sessionize leaves session_id sorted)."""
    return events[S.SESSION].null_count() == 0 and events[S.SESSION].is_sorted()


def _session_end(events: pl.DataFrame) -> pl.DataFrame:
    """One row per session: session_id, _end (time of its last event) and, for grouped
    events, _len (its number of events), in event order."""
    if _grouped(events):
        # Runs of a sorted column: reduce each run in order, no hashing of session ids.
        runs = events[S.SESSION].rle().struct.unnest()
        lengths = runs["len"].cast(pl.Int64).to_numpy()
        starts = np.r_[0, np.cumsum(lengths)[:-1]]
        time = events[S.TIME]
        end = np.maximum.reduceat(time.to_physical().to_numpy(), starts)
        return pl.DataFrame(
            {
                S.SESSION: runs["value"],
                "_end": pl.Series(end).cast(time.dtype),
                "_len": runs["len"],
            }
        )
    return events.group_by(S.SESSION).agg(pl.col(S.TIME).max().alias("_end"))


def _broadcast(events: pl.DataFrame, sessions: pl.DataFrame) -> pl.Series:
    """The per-session label (_part of ``sessions``) of every event, in event order."""
    if "_len" in sessions.columns:
        return sessions.select(pl.col(PART).repeat_by("_len").explode())[PART]
    joined = events.select(S.SESSION).join(
        sessions, on=S.SESSION, how="left", maintain_order="left"
    )
    return joined[PART]


def label_time(events: pl.DataFrame, test_days: float, valid_days: float) -> pl.Series:
    """Whole sessions by the time of their last event, as GRU4Rec's preprocessing does.

    A session is test when its last event lies within ``test_days`` of the log's last event;
    valid is then cut the same way from what remains (within ``valid_days`` of the
    remainder's last event).
    """
    # A window beyond a million days (2,700 years) covers any log; timedelta stops near 2.7M.
    test_days, valid_days = min(test_days, 1e6), min(valid_days, 1e6)
    ends = _session_end(events)
    t_max = ends["_end"].max()
    is_test = pl.col("_end") >= pl.lit(t_max) - timedelta(days=test_days)
    rest_max = ends.filter(~is_test)["_end"].max()
    if rest_max is None:
        rest_max, valid_days = t_max, 0
    labels = ends.with_columns(
        pl.when(is_test)
        .then(2)
        .when(
            pl.lit(valid_days > 0)
            & (pl.col("_end") >= pl.lit(rest_max) - timedelta(days=valid_days))
        )
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
        .alias(PART),
    )
    return _broadcast(events, labels)


def label_random(
    events: pl.DataFrame, test_fraction: float, valid_fraction: float, seed: int
) -> pl.Series:
    """Whole sessions drawn at random (seeded) into test and valid."""
    sessions = events[S.SESSION].unique().sort()
    u = np.random.default_rng(seed).random(sessions.len())
    part = np.where(u < test_fraction, 2, np.where(u < test_fraction + valid_fraction, 1, 0))
    labels = pl.DataFrame({S.SESSION: sessions, PART: pl.Series(part, dtype=pl.Int8)})
    return _broadcast(events, labels)


def label_random_event(
    events: pl.DataFrame, test_fraction: float, valid_fraction: float, seed: int
) -> pl.Series:
    """Single events drawn at random (seeded) into test and valid: the rating-level random
    split (the seed's 70/30 with ``test_fraction=0.3, valid_fraction=0``).

    Exactly ``round(N * test_fraction)`` events are test and ``round(N * valid_fraction)``
    valid, as :func:`sessionrec.rating.random_split` cuts. A held-out event's earlier events of
    its session become context rows of its part (see :func:`assemble`).
    """
    n = events.height
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = round(n * test_fraction), round(n * valid_fraction)
    part = np.zeros(n, dtype=np.int8)
    part[perm[:n_test]] = 2
    part[perm[n_test : n_test + n_valid]] = 1
    return pl.Series(PART, part, dtype=pl.Int8)


def label_user_time(events: pl.DataFrame, test_fraction: float, valid_fraction: float) -> pl.Series:
    """Per-user temporal hold-out: each user's last ``test_fraction`` of events is test, the
    ``valid_fraction`` before it valid (rounded up, at least one each when the user has 3+)."""
    has_users = S.USER in events.columns and events[S.USER].null_count() < events.height
    key = S.USER if has_users else S.SESSION
    order = events.with_row_index("_i").sort([key, *S.TIME_ORDER])
    n = pl.len().over(key)
    pos_from_end = n - 1 - pl.int_range(pl.len()).over(key)
    n_test = (n.cast(pl.Float64) * test_fraction).ceil().cast(pl.Int64)
    n_valid = (n.cast(pl.Float64) * valid_fraction).ceil().cast(pl.Int64)
    labelled = order.select(
        "_i",
        pl.when(pos_from_end < n_test)
        .then(2)
        .when(pos_from_end < n_test + n_valid)
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
        .alias(PART),
    ).sort("_i")
    return labelled[PART]


def label_leave_one_out(events: pl.DataFrame, valid: bool = True) -> pl.Series:
    """Each session's last event is test and (with ``valid``) the one before it valid."""
    pos_from_end = pl.len().over(S.SESSION) - 1 - pl.int_range(pl.len()).over(S.SESSION)
    return events.select(
        pl.when(pos_from_end == 0)
        .then(2)
        .when(pl.lit(valid) & (pos_from_end == 1))
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
        .alias(PART)
    )[PART]


def _mixed(sessions: pl.Series, part: pl.Series) -> bool:
    """Whether a session (grouped) has events in more than one part."""
    change = (sessions == sessions.shift(1)) & (part != part.shift(1))
    return bool(change.any())


def assemble(events: pl.DataFrame, part: pl.Series) -> dict[str, pl.DataFrame]:
    """Cut labelled events (sorted by session, time, row) into parts, adding context rows.

    For a valid or test part that starts inside a session, the session's earlier events of
    lower parts (up to its last event in that part) are included with ``target = False``.
    """
    if _grouped(events) and not _mixed(events[S.SESSION], part):
        # Whole sessions in each part (time and random splits): no context rows to add.
        ev = events.with_columns(part.alias(PART), pl.lit(True).alias(TARGET))
        return {
            name: ev.filter(pl.col(PART) == code).drop(PART)
            for code, name in ((0, "train"), (1, "valid"), (2, "test"))
        }
    ev = events.with_columns(part.alias(PART), pl.int_range(pl.len()).over(S.SESSION).alias("_pos"))
    out = {"train": ev.filter(pl.col(PART) == 0).with_columns(pl.lit(True).alias(TARGET))}
    for code, name in ((1, "valid"), (2, "test")):
        # Every earlier event of a lower part is history: for a suffix split (user-time,
        # leave-one-out) that is the session's start; for random-event also the train events
        # between held-out ones.
        last = (
            ev.filter(pl.col(PART) == code)
            .group_by(S.SESSION)
            .agg(pl.col("_pos").max().alias("_last"))
        )
        rows = ev.join(last, on=S.SESSION, how="inner", maintain_order="left").filter(
            (pl.col(PART) == code) | ((pl.col("_pos") < pl.col("_last")) & (pl.col(PART) < code))
        )
        out[name] = rows.with_columns((pl.col(PART) == code).alias(TARGET)).drop("_last")
    return {k: v.drop(PART, "_pos") for k, v in out.items()}
