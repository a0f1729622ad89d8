"""Any CSV/TSV/Parquet interaction log, given (or guessing) which column is which."""

from __future__ import annotations

import codecs
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import polars as pl

from sessionrec import _schema as S
from sessionrec.datasets._events import Dataset, iso_to_time, to_events
from sessionrec.datasets._read import check_file, diagnose, text_error
from sessionrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_GUESSES = {
    "session": ("session_id", "sessionId", "SessionId", "session"),
    "user": ("user_id", "userId", "UserId", "user"),
    "item": ("item_id", "itemId", "ItemId", "item", "movieId", "product_id"),
    "time": ("timestamp", "Timestamp", "time", "Time", "ts", "datetime", "date"),
    "rating": ("rating", "Rating", "score"),
    "event_type": ("event_type", "eventType", "event", "type"),
}
TIME_UNITS = ("s", "ms", "us", "ns", "iso")
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
#: What to do with times outside the plausible window (see :func:`plausible_window`).
ON_BAD_TIME = ("drop", "error")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Times a datetime can hold at all (years 1 to 9999), in seconds since 1970.
_POSSIBLE = (-62_135_596_800, 253_402_300_800)


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column plays which role; None means guess from common names."""

    session: str | None = None
    user: str | None = None
    item: str | None = None
    time: str | None = None
    rating: str | None = None
    event_type: str | None = None
    time_unit: str | None = None  # s | ms | us | ns | iso; detected when None
    separator: str | None = None  # detected from the extension or header when None
    encoding: str | None = None  # of a CSV/TSV file (latin-1, cp1252, ...); UTF-8 when None
    on_bad_time: str = "drop"  # drop | error: times outside plausible_window()


def plausible_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """Times a log can plausibly hold: from 1990-01-01 to the end of next year (UTC)."""
    year = (now or datetime.now(UTC)).year
    return datetime(1990, 1, 1, tzinfo=UTC), datetime(year + 2, 1, 1, tzinfo=UTC)


def _sniff_separator(path: Path) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline().lstrip("\ufeff")
    counts = {sep: head.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def load_table(
    path: str | Path, mapping: ColumnMapping | None = None, *, frame: pl.LazyFrame | None = None
) -> Dataset:
    """Load a CSV/TSV/Parquet log into the Events contract.

    The path is read literally (``log[1].csv`` is that file, never a pattern). Numeric times
    are in the unit given, else the unit that puts the column's median in the plausible window
    (1990 to the end of next year); a log whose median lies before 1990 in every unit is read
    as a relative clock (seconds when small). Times outside the window (outside years 1-9999
    for a relative clock) are dropped with a warning naming the first one's line, or refused
    (``on_bad_time="error"``); the count goes to ``info["bad_times"]``.

    With ``frame`` (a DataFrame in memory, ``sr.load(df)``), the columns are read from it and
    ``path`` only names it in messages.

    Raises:
        DataError: a missing column, a byte the encoding cannot decode, a bad time with
            ``on_bad_time="error"``, or values that do not parse (naming file, line, column).
        ConfigError: an unknown option value, or a ``time_unit`` that puts the whole log out
            of the window while another unit puts it in.
    """
    path = Path(path)
    m = mapping or ColumnMapping()
    if m.on_bad_time not in ON_BAD_TIME:
        raise ConfigError(f"--on-bad-time must be drop or error, not {m.on_bad_time!r}")
    if frame is None:
        check_file(path)
    is_parquet = frame is not None or path.suffix.lower() in (".parquet", ".pq")
    encoding = _encoding(m.encoding)
    data: bytes | None = None  # the file as read, when not read from the path
    lone_cr = False
    if is_parquet:
        lf = pl.scan_parquet(path, glob=False) if frame is None else frame
        sep = ""
        try:
            columns = lf.collect_schema().names()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(
                path, expected="a Parquet file", found=str(exc).splitlines()[0]
            ) from exc
    else:
        sep = m.separator or _sniff_separator(path)
        if encoding != "utf-8":
            data = _decoded(path, encoding)
        if _has_lone_cr(path if data is None else data):
            # Old Mac line endings (a CR alone): polars would read two lines as one.
            raw_bytes = path.read_bytes() if data is None else data
            data = raw_bytes.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lone_cr = True
        lf = pl.scan_csv(
            path if data is None else data,
            glob=False,
            separator=sep,
            infer_schema_length=10_000,
        )
        try:
            columns = lf.collect_schema().names()
        except pl.exceptions.PolarsError as exc:
            raise _text_error(path, encoding, data) or DataError(
                path, expected="a delimited text file", found=_first_line_of(exc)
            ) from exc
        if any("\ufffd" in c for c in columns):  # a header that is not UTF-8
            bad = _text_error(path, encoding, data)
            if bad is not None:
                raise bad
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
    if m.time_unit is not None and m.time_unit not in TIME_UNITS:
        raise ConfigError(
            f"--time-unit must be one of {', '.join(TIME_UNITS)}, not {m.time_unit!r}"
        )

    dtypes: dict[str, pl.DataType | type[pl.DataType]] = {}
    for role, dt in (("user", pl.Int64), ("session", pl.Int64), ("rating", pl.Float32)):
        if roles[role]:
            dtypes[roles[role]] = dt  # type: ignore[index]
    icol = roles["item"]
    assert icol is not None
    # Ids stay as the source has them; listed so that an empty id is reported by line.
    dtypes[icol] = pl.Int64 if schema[icol].is_integer() else pl.Utf8

    # A blank line (no value in any column that plays a role) is no event: skipped, counted.
    used = [c for c in roles.values() if c is not None]
    blank = pl.lit(False) if is_parquet else pl.all_horizontal(pl.col(c).is_null() for c in used)
    lf = lf.with_row_index(_SOURCE_ROW)

    def explain() -> DataError:
        if is_parquet:
            source = pl.scan_parquet(path, glob=False) if frame is None else frame
            return _diagnose_frame(source, path, dtypes)
        return diagnose(path, sep, None, dtypes, has_header=True,
                        encoding=encoding, data=data, skip_blank=True)  # fmt: skip

    try:
        times = _TimeColumn.profile(lf, tcol, schema[tcol], m.time_unit, path, is_parquet, blank)
    except pl.exceptions.PolarsError as exc:
        raise explain() from exc
    unit = times.unit
    if unit != "iso":
        dtypes[tcol] = pl.Float64 if schema[tcol].is_float() else pl.Int64
    elif schema[tcol] == pl.Utf8:
        dtypes[tcol] = S.TIME_DTYPE
    info: dict[str, Any] = {
        "format": "dataframe" if frame is not None else "parquet" if is_parquet else "csv",
        "columns": roles,
        "time_unit": unit,
    }
    if encoding != "utf-8":
        info["encoding"] = encoding
    if lone_cr:
        info["line_endings"] = "CR (read as LF)"
    if times.n_bad:
        info["bad_times"] = times.handle(m.on_bad_time)
    if times.n_blank:
        info["blank_lines"] = times.n_blank
    if times.n_bad or times.n_blank:
        lf = lf.filter(~(times.bad | blank))
    if unit == "iso":
        time = (
            iso_to_time(tcol) if schema[tcol] == pl.Utf8 else pl.col(tcol).cast(pl.Datetime("us"))
        )
    else:
        # Strict: a text column of epochs fails on its first non-number (diagnosed by line).
        epoch_unit: Literal["s", "ms", "us", "ns"] = unit  # type: ignore[assignment]
        if schema[tcol].is_float():
            # Fractions of the unit are kept (to the microsecond), not truncated.
            micros = (pl.col(tcol) * (10**6 / _PER_SECOND[unit])).round().cast(pl.Int64)
            time = pl.from_epoch(micros, time_unit="us")
        else:
            time = pl.from_epoch(pl.col(tcol).cast(pl.Int64, strict=True), time_unit=epoch_unit)
        time = time.dt.replace_time_zone("UTC")

    def col(role: str, dtype: type[pl.DataType] | None = None) -> pl.Expr | None:
        name = roles[role]
        if name is None:
            return None
        c = pl.col(name)
        if dtype is pl.Int64 and schema[name].is_float():
            # 1.0 is the id 1 (a float column from a frame with missing ids); 1.5 is no id:
            # NaN makes the strict cast fail, and the failure is explained by line.
            c = pl.when(c.is_null() | (c == c.floor())).then(c).otherwise(float("nan"))
        return c if dtype is None else c.cast(dtype, strict=True)

    ev = to_events(
        lf,
        user=col("user", pl.Int64),
        session=col("session", pl.Int64),
        item=col("item"),
        rating=col("rating", pl.Float32),
        event_type=col("event_type", pl.Utf8),
        time=time,
    )
    try:
        ev.head(2000).collect()
    except pl.exceptions.PolarsError as exc:
        raise explain() from exc
    files = [] if frame is not None else [path]
    return Dataset(str(path), ev, None, files=files, info=info, diagnose=explain)


def _has_lone_cr(source: Path | bytes) -> bool:
    """Whether a CR ends a line without an LF after it (read in 4 MiB blocks)."""
    if isinstance(source, bytes):
        return source.count(b"\r") != source.count(b"\r\n")
    with open(source, "rb") as f:
        carry = b""
        while chunk := f.read(1 << 22):
            block = carry + chunk
            # a CR at the block's end may meet its LF in the next block
            carry = b"\r" if block.endswith(b"\r") else b""
            body = block[:-1] if carry else block
            if body.count(b"\r") != body.count(b"\r\n"):
                return True
        return carry == b"\r"


def _encoding(name: str | None) -> str:
    """The codec's canonical name (``utf-8``, ``iso8859-1``, ...); ConfigError when unknown."""
    if name is None:
        return "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ConfigError(f"unknown --encoding {name!r}; try utf-8, latin-1 or cp1252") from None


def _decoded(path: Path, encoding: str) -> bytes:
    """The file re-encoded as UTF-8 (in memory: polars reads only UTF-8 itself)."""
    raw = path.read_bytes()
    try:
        return raw.decode(encoding).lstrip("\ufeff").encode("utf-8")
    except UnicodeDecodeError:
        err = text_error(path, encoding, raw)
        assert err is not None
        raise err from None


def _text_error(path: Path, encoding: str, data: bytes | None) -> DataError | None:
    """A byte that is not UTF-8 (in a file read as UTF-8; a file in another encoding is
    checked when decoded)."""
    return text_error(path, "utf-8", data) if encoding == "utf-8" else None


def _first_line_of(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _diagnose_frame(
    lf: pl.LazyFrame, path: Path, dtypes: dict[str, pl.DataType | type[pl.DataType]]
) -> DataError:
    """The first row of a typed file (Parquet) whose value does not convert, by row number."""
    from sessionrec.datasets._read import _is_bad, describe_dtype

    try:
        schema = lf.collect_schema()
        bad = {
            c: _is_bad(pl.col(c), t)
            if schema[c] == pl.Utf8
            else pl.col(c).is_null() | pl.col(c).cast(t, strict=False).is_null()
            for c, t in dtypes.items()
        }
        first = (
            lf.with_row_index("_row", offset=1)
            .select(
                "_row",
                *(pl.col(c).cast(pl.Utf8) for c in bad),  # as text: any value can be shown
                *(e.alias(f"_bad_{c}") for c, e in bad.items()),
            )
            .filter(pl.any_horizontal(f"_bad_{c}" for c in bad))
            .head(1)
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        return DataError(path, expected="a readable Parquet file", found=_first_line_of(exc))
    if first.height == 0:
        return DataError(path, expected="values of the expected types", found="one that is not")
    r = first.row(0, named=True)
    c = next(c for c in dtypes if r[f"_bad_{c}"])
    value = r[c]
    return DataError(
        path,
        column=c,
        expected=describe_dtype(dtypes[c]),
        found=("an empty value" if value is None else repr(value)) + f" in row {r['_row']:,}",
    )


def _describe_seconds(seconds: float) -> str:
    """A time given as seconds since 1970, as a date (or a year beyond what dates hold)."""
    if not math.isfinite(seconds):
        return str(seconds)
    if _POSSIBLE[0] <= seconds < _POSSIBLE[1]:
        return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")
    year = 1970 + seconds / 31_556_952
    if abs(year) > 1e6:
        return "beyond year 9999" if year > 0 else "before year 1"
    return f"year {year:,.0f}"


@dataclass
class _TimeColumn:
    """What one pass over the time column found: its unit, whether it is a calendar clock,
    and the rows whose times lie outside the window."""

    path: Path
    column: str
    unit: str
    window: tuple[float, float]  # seconds since 1970, [low, high)
    calendar: bool  # the median lies in the plausible window
    n_bad: int
    first_bad: int  # row index (0-based, in data rows) of the first bad time
    first_value: str | None  # as text: a datetime beyond year 9999 has no Python value
    textual: bool  # the column is text (its values are shown quoted)
    bad: pl.Expr  # true on the rows with a bad time (false where the time is missing)
    is_parquet: bool
    n_blank: int  # blank lines

    @classmethod
    def profile(
        cls,
        lf: pl.LazyFrame,
        col: str,
        dtype: pl.DataType,
        given: str | None,
        path: Path,
        is_parquet: bool,
        blank: pl.Expr,
    ) -> _TimeColumn:
        """One pass over the column: its median in every candidate unit and, per unit, the
        times outside the plausible and the possible windows (so that detecting the unit
        costs no second read of the file)."""
        low, high = (t.timestamp() for t in plausible_window())
        possible = (float(_POSSIBLE[0]), float(_POSSIBLE[1]))
        raw = pl.col(col)
        if dtype == pl.Utf8:
            number = raw.str.strip_chars().cast(pl.Float64, strict=False)
        elif dtype.is_numeric():
            number = raw.cast(pl.Float64)
        else:
            number = pl.lit(None, dtype=pl.Float64)
        unit = given
        if unit is None:
            if dtype.is_numeric():
                unit = "?"  # a numeric unit, decided by the median below
            elif dtype == pl.Utf8:
                # Text that is mostly numbers (a stray bad value made the column text) counts
                # as numeric, so the bad value is reported as "expected an integer" on its line.
                head = lf.select(
                    raw.head(10_000).count().alias("all"),
                    number.head(10_000).count().alias("numbers"),
                ).collect()
                unit = "?" if head.item(0, 1) * 2 > head.item(0, 0) else "iso"
            else:
                unit = "iso"
        candidates: dict[str, pl.Expr] = {}  # unit -> time in seconds since 1970
        if unit == "iso":
            if isinstance(dtype, pl.Datetime | pl.Date):
                us = raw.cast(pl.Datetime("us")).dt.epoch("us")
            elif dtype == pl.Utf8:
                parsed = raw.str.strip_chars().str.to_datetime(
                    time_unit="us", time_zone="UTC", strict=False
                )
                us = parsed.dt.epoch("us")
            else:
                raise DataError(
                    path, column=col, expected="times as text or dates with --time-unit iso",
                    found=f"a column of {dtype}",
                )  # fmt: skip
            candidates["iso"] = us.cast(pl.Float64) / 1e6
        else:
            units = list(_PER_SECOND) if unit == "?" else [unit]
            candidates = {u: number / _PER_SECOND[u] for u in units}
        windows = {"plausible": (low, high), "possible": possible}

        def outside(seconds: pl.Expr, window: tuple[float, float]) -> pl.Expr:
            return ((seconds < window[0]) | (seconds >= window[1])).fill_null(False)

        median_of = number.median() if unit != "iso" else candidates["iso"].median()
        # A blank line has no time; only a column with missing times is read whole for them.
        aggs = [raw.null_count().alias("missing"), median_of.alias("median")]
        for u, seconds in candidates.items():
            for w, window in windows.items():
                bad = outside(seconds, window)
                aggs.append(bad.sum().alias(f"n {u} {w}"))
        stats = lf.select(aggs).collect().row(0, named=True)
        median = stats["median"]  # in the column's own numbers (seconds for iso)
        if unit == "?":
            unit = _unit_of(median, low, high)
        per = 1.0 if unit == "iso" else float(_PER_SECOND[unit])
        mid = None if median is None else float(median) / per
        calendar = mid is not None and low <= mid < high
        if given is not None and given != "iso" and mid is not None and not calendar:
            other = next(
                (u for u in _PER_SECOND if low <= float(median) / _PER_SECOND[u] < high), None
            )
            if other is not None:
                raise ConfigError(
                    f"{path}: column {col!r}: read as --time-unit {given}, the times centre on "
                    f"{_describe_seconds(mid)}; they look like {_UNIT_NAMES[other]} (centring on "
                    f"{_describe_seconds(float(median) / _PER_SECOND[other])}): give --time-unit "
                    f"{other}, or leave it out to detect it"
                )
        w = "plausible" if calendar else "possible"
        bad = outside(candidates[unit], windows[w])
        n_bad = int(stats[f"n {unit} {w}"] or 0)
        first, value = 0, None
        if n_bad:  # the first bad row, read again only when there is one
            found = lf.filter(bad).select(_SOURCE_ROW, raw.cast(pl.Utf8)).head(1).collect()
            first, value = int(found.item(0, 0)), found.item(0, 1)
        n_blank = lf.select(blank.sum()).collect().item() if stats["missing"] else 0
        return cls(path, col, unit, windows[w], calendar, n_bad, first, value,
                   dtype == pl.Utf8, bad, is_parquet, int(n_blank or 0))  # fmt: skip

    def handle(self, on_bad_time: str) -> dict[str, Any]:
        """Refuse the bad times (DataError), or log a warning and describe them for meta.json."""
        lo, hi = (
            (_describe_seconds(w)[:10] for w in self.window)
            if self.calendar
            else ("year 1", "year 10000")
        )
        where = None if self.is_parquet else self.first_bad + 2  # the header is line 1
        row = f" (row {self.first_bad + 1:,})" if self.is_parquet else ""
        value = self.first_value
        shown = repr(value.strip()) if self.textual and value is not None else str(value)
        try:
            numeric = value is not None and self.unit != "iso"
            secs = float(value) / _PER_SECOND[self.unit] if numeric else None  # type: ignore[arg-type]
        except ValueError:
            secs = None
        if secs is not None:
            shown += f" = {_describe_seconds(secs)} in {_UNIT_NAMES[self.unit]}"
        kind = "plausible" if self.calendar else "possible"
        if on_bad_time == "error":
            more = f", and {self.n_bad - 1:,} more such rows" if self.n_bad > 1 else ""
            raise DataError(
                self.path,
                line=where,
                column=self.column,
                expected=f"a {kind} time, from {lo} to before {hi} (--on-bad-time drop drops "
                "such rows)",
                found=shown + row + more,
            )
        log.warning(
            "%s%s: column %r: dropped %s row(s) whose time is not %s (from %s to before %s); "
            "the first: %s%s (--on-bad-time error refuses them)",
            self.path, "" if where is None else f":{where}", self.column, f"{self.n_bad:,}",
            kind, lo, hi, shown, row,
        )  # fmt: skip
        return {
            "count": self.n_bad,
            "action": "dropped",
            "window": [lo, hi],
            ("row" if self.is_parquet else "first_line"): (
                self.first_bad + 1 if where is None else where
            ),
        }


_SOURCE_ROW = "__sessionrec_source_row"
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _unit_of(median: float | None, low: float, high: float) -> str:
    """The unit that puts the median time in [low, high); for a relative clock (none does),
    the unit by magnitude."""
    if median is None:
        return "s"
    for unit, per in _PER_SECOND.items():
        if low <= median / per < high:
            return unit
    top = abs(median)
    return "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"
