"""Any CSV/TSV/Parquet interaction log, given (or guessing) which column is which."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from sessionrec import _schema as S
from sessionrec.datasets._events import Dataset, iso_to_time, to_events
from sessionrec.datasets._read import check_file, collect_checked, diagnose
from sessionrec.errors import ConfigError, DataError

_GUESSES = {
    "session": ("session_id", "sessionId", "SessionId", "session"),
    "user": ("user_id", "userId", "UserId", "user"),
    "item": ("item_id", "itemId", "ItemId", "item", "movieId", "product_id"),
    "time": ("timestamp", "Timestamp", "time", "Time", "ts", "datetime", "date"),
    "rating": ("rating", "Rating", "score"),
    "event_type": ("event_type", "eventType", "event", "type"),
}
TIME_UNITS = ("s", "ms", "us", "iso")


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column plays which role; None means guess from common names."""

    session: str | None = None
    user: str | None = None
    item: str | None = None
    time: str | None = None
    rating: str | None = None
    event_type: str | None = None
    time_unit: str | None = None  # s | ms | us | iso; detected when None
    separator: str | None = None  # detected from the extension or header when None


def _sniff_separator(path: Path) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    counts = {sep: head.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def load_table(
    path: str | Path, mapping: ColumnMapping | None = None, *, frame: pl.LazyFrame | None = None
) -> Dataset:
    """Load a CSV/TSV/Parquet log into the Events contract.

    With ``frame`` (a DataFrame in memory, ``sr.load(df)``), the columns are read from it and
    ``path`` only names it in messages.

    Raises:
        DataError: a missing column, or values that do not parse (naming file, line, column).
    """
    path = Path(path)
    m = mapping or ColumnMapping()
    if frame is None:
        check_file(path)
    is_parquet = frame is not None or path.suffix.lower() in (".parquet", ".pq")
    if is_parquet:
        lf = pl.scan_parquet(path) if frame is None else frame
        sep = ""
        try:
            columns = lf.collect_schema().names()
        except (pl.exceptions.ComputeError, OSError) as exc:
            raise DataError(
                path, expected="a Parquet file", found=str(exc).splitlines()[0]
            ) from exc
    else:
        sep = m.separator or _sniff_separator(path)
        lf = pl.scan_csv(path, separator=sep, infer_schema_length=10_000)
        try:
            columns = lf.collect_schema().names()
        except pl.exceptions.ComputeError as exc:
            raise DataError(path, expected="a delimited text file", found=str(exc)) from exc
    roles: dict[str, str | None] = {}
    for role, guesses in _GUESSES.items():
        given = getattr(m, role)
        if given is not None:
            if given not in columns:
                raise DataError(
                    path,
                    line=None if is_parquet else 1,
                    column=given,
                    expected=f"a column named {given!r} (--{role.replace('_', '-')}-column)",
                    found=f"columns {columns}"
                    + ("" if len(columns) > 1 else f" (separator {sep!r}?)"),
                )
            roles[role] = given
        else:
            roles[role] = next((g for g in guesses if g in columns), None)
    for need in ("item", "time"):
        if roles[need] is None:
            raise DataError(
                path,
                line=None if is_parquet else 1,
                expected=f"an {need} column (name it with --{need}-column)",
                found=f"columns {columns}" + ("" if len(columns) > 1 else f" (separator {sep!r}?)"),
            )
    if roles["user"] is None and roles["session"] is None:
        raise DataError(
            path,
            line=None if is_parquet else 1,
            expected="a user or session column (--user-column / --session-column)",
            found=f"columns {columns}",
        )
    schema = lf.collect_schema()
    tcol = roles["time"]
    assert tcol is not None
    unit = m.time_unit or _detect_unit(lf, tcol, schema[tcol])
    if unit not in TIME_UNITS:
        raise ConfigError(f"--time-unit must be one of {', '.join(TIME_UNITS)}, not {unit!r}")
    if unit == "iso":
        time = (
            iso_to_time(tcol) if schema[tcol] == pl.Utf8 else pl.col(tcol).cast(pl.Datetime("us"))
        )
    else:
        # Strict: a text column of epochs fails on its first non-number (diagnosed by line).
        epoch_unit: Literal["s", "ms", "us"] = unit  # type: ignore[assignment]  # checked above
        time = pl.from_epoch(
            pl.col(tcol).cast(pl.Int64, strict=True), time_unit=epoch_unit
        ).dt.replace_time_zone("UTC")

    def col(role: str, dtype: type[pl.DataType] | None = None) -> pl.Expr | None:
        name = roles[role]
        if name is None:
            return None
        return pl.col(name) if dtype is None else pl.col(name).cast(dtype, strict=True)

    ev = to_events(
        lf,
        user=col("user", pl.Int64),
        session=col("session", pl.Int64),
        item=col("item"),
        rating=col("rating", pl.Float32),
        event_type=col("event_type", pl.Utf8),
        time=time,
    )
    dtypes: dict[str, pl.DataType | type[pl.DataType]] = {}
    for role, dt in (("user", pl.Int64), ("session", pl.Int64), ("rating", pl.Float32)):
        if roles[role]:
            dtypes[roles[role]] = dt  # type: ignore[index]
    icol = roles["item"]
    assert icol is not None
    # Ids stay as the source has them; listed so that an empty id is reported by line.
    dtypes[icol] = pl.Int64 if schema[icol].is_integer() else pl.Utf8
    if unit != "iso":
        dtypes[tcol] = pl.Int64
    elif schema[tcol] == pl.Utf8:
        dtypes[tcol] = S.TIME_DTYPE
    explain = None
    if not is_parquet:
        collect_checked(
            ev.head(2000), path, separator=sep, names=None, dtypes=dtypes, has_header=True
        )
        explain = functools.partial(
            diagnose, path, sep, None, dtypes, has_header=True, encoding="utf8"
        )
    return Dataset(
        str(path),
        ev,
        None,
        files=[] if frame is not None else [path],
        info={
            "format": "dataframe" if frame is not None else "parquet" if is_parquet else "csv",
            "columns": roles,
            "time_unit": unit,
        },
        diagnose=explain,
    )


def _detect_unit(lf: pl.LazyFrame, col: str, dtype: pl.DataType) -> str:
    """s, ms or us from the magnitude of numeric times; iso for text and datetimes.

    Text that is mostly numbers (a stray bad value made the column text) counts as numeric, so
    the bad value is reported as "expected an integer" on its line rather than every line
    failing as a date.
    """
    if isinstance(dtype, pl.Datetime | pl.Date):
        return "iso"
    head = lf.select(pl.col(col).head(1000)).collect().to_series()
    if dtype == pl.Utf8:
        head = head.str.strip_chars().cast(pl.Float64, strict=False)
        if head.null_count() * 2 > len(head):
            return "iso"
    elif not dtype.is_numeric():
        return "iso"
    top = head.abs().max()
    if top is None or float(top) < 1e11:  # type: ignore[arg-type]
        return "s"
    return "ms" if float(top) < 1e14 else "us"  # type: ignore[arg-type]
