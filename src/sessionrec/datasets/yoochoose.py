"""YOOCHOOSE (RecSys Challenge 2015; Ben-Shimon et al., 2015): e-commerce click sessions.

- ``yoochoose-clicks.dat``: session id, ISO-8601 time ending in Z, item id, category
  (``S`` for a special offer, a number, or a brand id; kept as text); no header.
- ``yoochoose-buys.dat``: session id, time, item id, price, quantity; no header.

The full clicks file has 33M rows. Each file is read, when the events are collected, by Arrow's
multi-threaded CSV reader with the columns typed, the ISO times parsed while reading (about
1.5x less CPU time than polars reading them as text and cutting the fixed layout, on 5M clicks;
BENCHMARKS.md); it is never held as text, so the Events frame is the only copy that lives in
memory. A file Arrow rejects is read again by the polars path (text times, the fixed
layout or the strict general format), which reads the remaining shapes or fails, and a failure
is explained line-precisely by ``Dataset.diagnose``.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from sessionrec import _schema as S
from sessionrec.datasets._events import Dataset, to_events
from sessionrec.datasets._read import collect_checked, diagnose, read_delimited
from sessionrec.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

CLICKS = "yoochoose-clicks.dat"
BUYS = "yoochoose-buys.dat"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"

_CLICK_NAMES = ["session", "time", "item", "category"]
_BUY_NAMES = ["session", "time", "item", "price", "quantity"]
# What the columns read as; `time` stays text and is parsed by an expression (see _events).
_READ_DTYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    "session": pl.Int64,
    "time": pl.Utf8,
    "item": pl.Int64,
}
# What the columns must parse as, for the line-precise diagnosis of a failed read.
_CHECK_DTYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    "session": pl.Int64,
    "time": S.TIME_DTYPE,
    "item": pl.Int64,
}
# What the fast path returns (a Datetime in the Events' unit: no cast afterwards).
_RAW_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "session": pl.Int64,
    "time": S.TIME_DTYPE,
    "item": pl.Int64,
}


def iso_z_to_time(col: str) -> pl.Expr:
    """``2014-04-07T10:51:09.277Z`` text to a UTC Datetime, fast for YOOCHOOSE's fixed layout.

    polars' general datetime parser costs about 1.7 us a value here (a minute for 33M clicks);
    the fixed 24-character layout is cut into integer fields instead (about 3x faster), and any
    other shape (no milliseconds, ...) goes through the general parser, strictly.
    """
    c = pl.col(col)

    def field(start: int, length: int) -> pl.Expr:
        return c.str.slice(start, length).cast(pl.Int64, strict=True)

    days = c.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=True).cast(pl.Int64)
    us = (
        days * 86_400_000_000
        + field(11, 2) * 3_600_000_000
        + field(14, 2) * 60_000_000
        + field(17, 2) * 1_000_000
        + field(20, 3) * 1_000
    )
    fixed = us.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    general = c.str.to_datetime(format=_TIME_FORMAT, time_unit="us", time_zone="UTC", strict=True)
    return (
        pl.when((c.str.len_bytes() == 24) & c.str.ends_with("Z") & (c.str.slice(10, 1) == "T"))
        .then(fixed)
        .otherwise(general)
    )


def load_yoochoose(path: str | Path, *, buys: bool = True) -> Dataset:
    """Load YOOCHOOSE clicks (and buys, when ``path`` is a folder that holds them).

    Args:
        path: ``yoochoose-clicks.dat`` itself, or a folder holding it (and optionally
            ``yoochoose-buys.dat``).
        buys: read ``yoochoose-buys.dat`` too when the folder has it (``event_type`` "buy").

    Returns:
        A :class:`Dataset` whose events have ``session_id`` from the file, a null ``user_id``,
        integer ``item_id`` and ``event_type`` "click" / "buy"; clicks come first in ``row``
        order, then buys.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    clicks = path / CLICKS if path.is_dir() else path
    if path.is_dir() and not clicks.exists():
        raise DataError(
            path,
            expected=f"a YOOCHOOSE folder with {CLICKS}",
            found=", ".join(sorted(p.name for p in path.iterdir())[:8]) or "an empty folder",
        )
    files = [clicks]
    frames = [_scan(clicks, _CLICK_NAMES, "click")]
    buys_path = folder / BUYS
    if buys and path.is_dir() and buys_path.exists():
        files.append(buys_path)
        frames.append(_scan(buys_path, _BUY_NAMES, "buy"))
    raw = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    ev = to_events(
        raw,
        session=pl.col("session"),
        item=pl.col("item"),
        time=pl.col("time"),
        event_type=pl.col("event_type"),
    )
    return Dataset(
        "yoochoose",
        ev,
        None,
        files=files,
        info={"layout": "yoochoose", "files": [f.name for f in files]},
        diagnose=functools.partial(_diagnose_all, files),
    )


def _scan(path: Path, names: list[str], event_type: str) -> pl.LazyFrame:
    # Read the head now so a wrong file fails at load time, not deep inside a pipeline; by the
    # reader that will read the file, so both accept the same values.
    with open(path, "rb") as f:
        head = b"".join(itertools.islice(f, 1000))
    try:
        _read_arrow(io.BytesIO(head), names)
    except _arrow_errors():
        collect_checked(_scan_text(path, names).head(1000), path, separator=",", names=names,
                        dtypes=_CHECK_DTYPES)  # fmt: skip
    # Deferred: the file is read when the events are collected (and only then). The frame
    # always has session, time and item; event_type is a literal, pruned when not selected.
    typed = pl.defer(functools.partial(_read_typed, path, names), schema=_RAW_SCHEMA)
    return typed.with_columns(pl.lit(event_type).alias("event_type"))


def _scan_text(path: Path, names: list[str]) -> pl.LazyFrame:
    """The polars path: times read as text, then parsed (fixed layout, else general, strictly)."""
    lf = read_delimited(path, separator=",", names=names, dtypes=_READ_DTYPES)
    return lf.with_columns(iso_z_to_time("time"))


def _read_typed(path: Path, names: list[str]) -> pl.DataFrame:
    """session, time (Datetime us UTC), item of a YOOCHOOSE file: Arrow's reader, else polars'.

    Arrow parses ISO-8601 times with a zone (``Z``, or an offset such as ``+01:00``, converted
    to UTC; ``T`` or a space between date and time); a file it rejects (a time without a zone or
    with nanoseconds, a short line, a value that is not a number, ...) is read by the polars
    path instead, which reads what it can and otherwise fails, to be explained by
    ``Dataset.diagnose``.
    """
    try:
        return _read_arrow(path, names)
    except _arrow_errors() as exc:
        log.info("%s: Arrow's reader failed (%s); reading it with polars", path, exc)
        return _scan_text(path, names).collect()


def _read_arrow(source: Path | io.BytesIO, names: list[str]) -> pl.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"session": pa.int64(), "time": pa.timestamp("us", tz="UTC"), "item": pa.int64()}
    # The reader takes its parse buffers from Arrow's default pool whatever memory_pool says,
    # so the pool is swapped for the read (and put back: the swap is the only way to reach them).
    pool, default = _arrow_pool(), pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
            # No quoting, as the polars path: YOOCHOOSE fields are never quoted.
            parse_options=pacsv.ParseOptions(quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types)),
            memory_pool=pool,
        )
    finally:
        pa.set_memory_pool(default)
    # No rechunk: Arrow's blocks become polars chunks as they are, without a second copy.
    df = pl.from_arrow(table, rechunk=False)
    assert isinstance(df, pl.DataFrame)
    return df


@functools.cache
def _arrow_pool() -> pa.MemoryPool:
    """jemalloc returning freed pages at once, where pyarrow has it; else Arrow's default.

    Arrow's default allocator (mimalloc) keeps the reader's freed parse buffers, more than the
    table's size (about 0.15 GB for 5M clicks, 1 GB for 33M), resident for the rest of the
    process, on top of every later peak. (Sets the decay of Arrow's jemalloc arenas, which
    nothing else here uses.)
    """
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        return pa.default_memory_pool()
    return pool


def _arrow_errors() -> tuple[type[Exception], ...]:
    import pyarrow as pa

    return (pa.ArrowInvalid, pa.ArrowKeyError)


def _diagnose_all(files: list[Path]) -> DataError:
    """The first bad value over all files (the read failed in one of them)."""
    err: DataError | None = None
    for f in files:
        names = _CLICK_NAMES if f.name != BUYS else _BUY_NAMES
        err = diagnose(f, ",", names, _CHECK_DTYPES, has_header=False, encoding="utf8")
        if err.line is not None:
            return err
    assert err is not None
    return err
