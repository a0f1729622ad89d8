"""The preparation pipeline: sessionize → filter (recursive) → split → encode → write."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec._io import check_output, output_dir, write_json
from sessionrec.datasets import Dataset, load
from sessionrec.datasets._events import repeated_events
from sessionrec.errors import ConfigError, DataError
from sessionrec.prepare import split as sp
from sessionrec.prepare.data import (
    FIT_PARTS,
    PARTS,
    TARGET,
    PreparedData,
    data_fingerprint,
    file_sha256,
)
from sessionrec.prepare.filters import SupportFilter, filter_events, filter_recursive
from sessionrec.prepare.sessionize import parse_duration, sessionize

log = logging.getLogger(__name__)


#: the inactivity gap of ``session="auto"`` on a log without its own session ids
AUTO_GAP = "1h"


@dataclass(frozen=True)
class PrepareConfig:
    """Every parameter of a preparation; all of it is recorded in meta.json.

    ``session`` is ``"user"``, ``"column"`` (the log's own session ids), an inactivity gap
    such as ``"30m"`` / ``"1h"``, or ``"auto"`` (the default): the log's own session ids when
    it has them (YOOCHOOSE), else a 1 h gap. meta.json records what ``auto`` chose.
    """

    session: str = "auto"
    min_rating: float | None = None
    event_type: str | None = None
    drop_repeats: bool = False
    drop_duplicates: bool = False
    min_session_length: int | None = 2
    max_session_length: int | None = None
    min_item_support: int | None = 5
    min_user_events: int | None = None
    max_user_events: int | None = None
    split: str = "time"
    test_days: float = 1.0
    valid_days: float = 1.0
    test_fraction: float = 0.1
    valid_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in sp.SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(sp.SPLITS)}, not {self.split!r}")
        if self.session not in ("user", "column", "auto"):
            parse_duration(self.session)
        for name in ("test_fraction", "valid_fraction"):
            v = getattr(self, name)
            if not 0 <= v < 1:  # false for nan too
                raise ConfigError(f"--{name.replace('_', '-')} must lie in [0, 1), not {v}")
        for name in ("test_days", "valid_days"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a finite number of days >= 0, not {v}"
                )
        if self.min_rating is not None and not math.isfinite(self.min_rating):
            raise ConfigError(f"--min-rating must be a finite number, not {self.min_rating}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prepare(
    source: str | Path | Dataset,
    out: str | Path | None = None,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    **params: Any,
) -> PreparedData | dict[str, pl.DataFrame]:
    """Sessionize, filter and split a log; write a PreparedData directory to ``out``.

    Args:
        source: a dataset name, a path, or a loaded :class:`Dataset`.
        out: the output directory (written atomically). Without it the parts are returned as
            DataFrames instead.
        config: a :class:`PrepareConfig`; keyword ``params`` override its fields.
        overwrite: replace ``out`` when it is a folder sessionrec wrote (a new or empty
            folder is always fine; anything else is refused, before any work).

    Returns:
        The written :class:`PreparedData`, or ``{"train", "valid", "test", "items"}`` frames.
    """
    cfg = dataclasses.replace(config or PrepareConfig(), **params)
    if out is not None:
        check_output(out, overwrite=overwrite, verb="prepare")  # refuse before the work
    ds = source if isinstance(source, Dataset) else load(source)
    parts, meta = prepare_frames(ds, cfg)
    if out is None:
        return parts
    return write_prepared(out, parts, meta, overwrite=overwrite)


def prepare_frames(
    ds: Dataset, cfg: PrepareConfig
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """The pipeline in memory: returns the parts (and items) and the meta record.

    The source is read once, with only the columns the configuration needs; then sessionize
    (skipping the sort when the log is already in session/time order), the recursive filter
    on integer codes, the split and the encoding each make one pass. The source checksum is
    computed in a background thread meanwhile (hashing releases the GIL).
    """
    where = str(ds.files[0]) if ds.files else ds.name
    checksum = _Background(ds.checksum)
    dropped: dict[str, Any] = {}
    bad_times = ds.info.get("bad_times")
    dropped["bad_times"] = bad_times["count"] if isinstance(bad_times, dict) else 0
    events, n_raw, n_dup = _read_sessions(ds, cfg, where, dropped)
    if "session_auto" in dropped:  # meta.json records the definition that was used
        cfg = dataclasses.replace(cfg, session=dropped.pop("session_auto"))
    dropped["event_filters"] = n_raw - events.height - dropped["duplicates"]
    # Items are coded once, in id order: the support filter counts on the codes, the item
    # table is their bincount over train and item_idx a lookup, so item ids are hashed once.
    item_ids, events = _code_items(events)
    if cfg.split != "user-time":
        # The source row only orders ties in time; the events are in that order now, and only
        # the per-user split sorts again (by user), so the other splits go without it.
        events = events.drop(S.ROW)
    rules = SupportFilter(
        cfg.min_session_length,
        cfg.max_session_length,
        cfg.min_item_support,
        cfg.min_user_events,
        cfg.max_user_events,
    )
    if S.USER not in events.columns and (rules.min_user_events or rules.max_user_events):
        raise DataError(where, column=S.USER, expected="users for the user caps", found="none")
    events, rounds = filter_recursive(events, rules, codes={S.ITEM: events[_CODE].to_numpy()})
    dropped["support_rounds"] = rounds
    if events.height == 0:
        raise DataError(
            where,
            expected="events left after filtering",
            found=f"none of {n_raw:,} events pass (filters {rules.to_dict()})",
        )
    has_users = S.USER in events.columns and events[S.USER].null_count() < events.height
    has_ratings = S.RATING in events.columns
    if cfg.split == "time":
        label = sp.label_time(events, cfg.test_days, cfg.valid_days)
    elif cfg.split == "random":
        label = sp.label_random(events, cfg.test_fraction, cfg.valid_fraction, cfg.seed)
    elif cfg.split == "random-event":
        label = sp.label_random_event(events, cfg.test_fraction, cfg.valid_fraction, cfg.seed)
    elif cfg.split == "user-time":
        label = sp.label_user_time(events, cfg.test_fraction, cfg.valid_fraction)
    else:
        label = sp.label_leave_one_out(events, valid=cfg.valid_fraction > 0)
    parts = sp.assemble(events, label)
    del events, label  # the parts hold what is kept; free the full log before encoding
    if parts["train"].height == 0:
        raise DataError(where, expected="a non-empty training part", found="no training events")
    train_count = np.bincount(parts["train"][_CODE].to_numpy(), minlength=item_ids.len())
    known = train_count > 0  # (k,) per item code: seen in train
    items = _item_table(item_ids, train_count, ds.items)
    for name in ("valid", "test"):
        part = parts[name]
        kept = part.filter(pl.Series(known[part[_CODE].to_numpy()]))
        short = kept.filter(pl.len().over(S.SESSION) < 2)
        kept = kept.filter(pl.len().over(S.SESSION) >= 2)
        dropped[name] = {
            "unknown_item_events": part.height - kept.height - short.height,
            "short_sessions": short[S.SESSION].n_unique(),
            "short_session_events": short.height,
        }
        parts[name] = kept
        # Test also accepts items seen in valid; valid items are a subset of train's here.
    index_of_code = np.cumsum(known) - 1  # item code → item_idx (for known items)
    encoded = {}
    for name in PARTS:  # one part at a time, dropping the unencoded one as it goes
        encoded[name] = _encode(parts.pop(name), index_of_code, has_users)
    counts = {
        name: {
            "events": int(df[TARGET].sum()),
            "rows": df.height,
            "sessions": _n_sessions(df),
            # The item table is made from train, so train has every item.
            "items": items.height if name == "train" else df[S.ITEM_IDX].n_unique(),
        }
        for name, df in encoded.items()
    }
    meta = {
        "format": "sessionrec.prepared/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "name": ds.name,
            "files": [str(f) for f in ds.files],
            "sha256": checksum.result(),
            **ds.info,
        },
        "params": cfg.to_dict(),
        "raw_events": n_raw,
        "duplicates": {"events": n_dup, "dropped": cfg.drop_duplicates},
        "dropped": dropped,
        "counts": counts,
        "n_items": items.height,
        "has_ratings": has_ratings,
        "has_users": has_users,
        "package_version": _version(),
    }
    return {**encoded, "items": items}, meta


def _read_sessions(
    ds: Dataset, cfg: PrepareConfig, where: str, dropped: dict[str, Any]
) -> tuple[pl.DataFrame, int, int]:
    """Read the events once, with only the columns needed, filtered per event and sessionized.

    Exact duplicates (rows equal in every column but the source row, after the per-event
    filters) are counted, warned about, and dropped with ``drop_duplicates``.

    Returns the events (sorted by session, time, row), the number of raw events and the number
    of duplicate events found.
    """
    lf = ds.lazy_events
    schema = lf.collect_schema()
    if cfg.min_rating is not None and S.RATING not in schema:
        raise DataError(where, column=S.RATING, expected="ratings for --min-rating", found="none")
    if cfg.event_type is not None and S.EVENT_TYPE not in schema:
        raise DataError(
            where, column=S.EVENT_TYPE, expected="event types for --event-type", found="none"
        )
    # event_type serves the filter and tells events apart when looking for duplicates; it is
    # not part of the prepared parts.
    columns = [*S.EVENT_COLUMNS, *(c for c in (S.RATING, S.EVENT_TYPE) if c in schema)]
    raw = ds.collect(columns)
    n_raw = raw.height
    if cfg.session == "auto":
        has_ids = S.SESSION in raw.columns and raw[S.SESSION].null_count() < n_raw
        chosen = "column" if has_ids else AUTO_GAP
        log.info(
            "%s: sessions %s (session='auto')",
            where,
            "by the log's own session ids" if has_ids else f"cut by a {AUTO_GAP} inactivity gap",
        )
        cfg = dataclasses.replace(cfg, session=chosen)
        dropped["session_auto"] = chosen
    if cfg.session == "column" and raw[S.USER].null_count() == n_raw:
        raw = raw.drop(S.USER)  # a log of sessions without users (YOOCHOOSE)
    kept = filter_events(raw.lazy(), min_rating=cfg.min_rating, event_type=cfg.event_type)
    sessions = sessionize(kept.collect(), cfg.session, where).collect()
    repeated = repeated_events(sessions, S.SESSION)
    n_dup = int(repeated.sum())
    dropped["duplicates"] = n_dup if cfg.drop_duplicates else 0
    if n_dup:
        log.warning(
            "%s: %s event(s) repeat an earlier row exactly (same %s); %s",
            where, f"{n_dup:,}", ", ".join(c for c in raw.columns if c != S.ROW and raw[c].null_count() < n_raw),
            "dropped (--drop-duplicates)" if cfg.drop_duplicates
            else "kept: --drop-duplicates removes them",
        )  # fmt: skip
        if cfg.drop_duplicates:
            sessions = sessions.filter(~repeated)
    sessions = sessions.drop(S.EVENT_TYPE, strict=False)
    return filter_events(sessions.lazy(), drop_repeats=cfg.drop_repeats).collect(), n_raw, n_dup


_CODE = "_item_code"


def _code_items(events: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """The distinct item ids in order, and the events with each item's position among them."""
    ids = events[S.ITEM].unique().sort()
    codes = ids.to_frame().with_row_index(_CODE).with_columns(pl.col(_CODE).cast(pl.Int32))
    coded = events.select(S.ITEM).join(codes, on=S.ITEM, how="left", maintain_order="left")
    return ids, events.with_columns(coded[_CODE])


def _item_table(ids: pl.Series, train_count: np.ndarray, meta: pl.DataFrame | None) -> pl.DataFrame:
    """item_idx 0..n-1 over the items seen in train, in id order, with their train counts."""
    known = train_count > 0
    items = pl.DataFrame(
        {
            S.ITEM_IDX: np.arange(int(known.sum()), dtype=np.int64),
            S.ITEM: ids.filter(pl.Series(known)),
            "count": train_count[known].astype(np.int64),
        }
    )
    if meta is not None:
        items = items.join(meta, on=S.ITEM, how="left", maintain_order="left")
    return items


def _encode(part: pl.DataFrame, index_of_code: np.ndarray, has_users: bool) -> pl.DataFrame:
    """Item indices for a part; the parts are already in session, time, row order."""
    cols = [S.SESSION, S.ITEM_IDX, S.ITEM, S.TIME, TARGET]
    cols += [c for c in (S.USER, S.RATING) if c in part.columns and (c != S.USER or has_users)]
    index = index_of_code[part[_CODE].to_numpy()]
    return part.with_columns(pl.Series(S.ITEM_IDX, index, dtype=pl.Int64)).select(cols)


def _n_sessions(part: pl.DataFrame) -> int:
    """Distinct sessions of a part (grouped by session: count the runs, no hashing)."""
    sessions = part[S.SESSION]
    if part.height and sessions.is_sorted():
        return int(sessions.rle_id()[-1]) + 1
    return sessions.n_unique()


class _Background:
    """A function run in a daemon thread (it never delays interpreter exit); ``result()``
    waits for it and re-raises its exception, if any."""

    def __init__(self, fn: Callable[[], str]) -> None:
        self._result: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], str]) -> None:
        try:
            self._result = fn()
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def write_prepared(
    out: str | Path,
    parts: dict[str, pl.DataFrame],
    meta: dict[str, Any],
    *,
    overwrite: bool = False,
) -> PreparedData:
    """Write the PreparedData directory atomically (a crash leaves no complete-looking dir).

    ``out`` must be new or empty, or a folder sessionrec wrote and ``overwrite`` (the rule of
    ``sessionrec._io.output_dir``). meta.json records the sha256 of the train and valid files
    and the fingerprints a model trained on them records (``PreparedData.fingerprint``).
    """
    with output_dir(out, overwrite=overwrite, verb="prepare") as tmp:
        hashing: dict[str, _Background] = {}
        for name, df in parts.items():
            # lz4: about 2.5x faster to write than polars' default zstd level, files ~40 %
            # larger, the fastest to read back.
            path = Path(tmp) / f"{name}.parquet"
            df.write_parquet(path, compression="lz4")
            if name in ("train", "valid"):  # hashed while the next part is written
                hashing[name] = _Background(functools.partial(file_sha256, path))
        sha = {name: h.result() for name, h in hashing.items()}
        meta = {
            **meta,
            "part_sha256": sha,
            "fingerprints": {
                fit: data_fingerprint(sha, fit, meta.get("params"))
                for fit, names in FIT_PARTS.items()
                if all(n in sha for n in names)
            },
        }
        write_json(Path(tmp) / "meta.json", meta)
    return PreparedData(out)


def _version() -> str:
    from sessionrec._version import __version__

    return __version__
