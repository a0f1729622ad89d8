"""YOOCHOOSE click logs (RecSys Challenge 2015, Ben-Shimon et al.).

``yoochoose-clicks.dat`` has no header; each line is ``session_id,timestamp,item_id,category``
with ISO-8601 times in UTC such as ``2014-04-07T10:51:09.277Z``. The full log has 33 M clicks,
so it is read typed by Arrow's multi-threaded CSV reader, which parses the ISO times while it
reads (several times faster than reading them as text and parsing them afterwards), and only
when the lazy frame is collected.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sessionrec.datasets._events import Dataset, to_events
from sessionrec.datasets._read import check_file
from sessionrec.errors import DataError

CLICKS = "yoochoose-clicks.dat"
_NAMES = ["session", "time", "item", "category"]
_RAW_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Int64(),
    "time": pl.Datetime("ms", "UTC"),
    "item": pl.Int64(),
}
_EXPECTED = {
    "session": "an integer session id",
    "time": "an ISO-8601 time such as 2014-04-07T10:51:09.277Z",
    "item": "an integer item id",
}


def load_yoochoose(path: str | Path) -> Dataset:
    """Load the clicks of a YOOCHOOSE folder (or its ``yoochoose-clicks.dat``) as events.

    Every event has ``event_type = "click"``; the log's own session ids are ``session_id`` and
    there are no users.
    """
    path = Path(path)
    clicks = path / CLICKS if path.is_dir() else path
    check_file(clicks)
    raw = pl.defer(lambda: read_clicks(clicks), schema=_RAW_SCHEMA)
    events = to_events(
        raw,
        session=pl.col("session"),
        item=pl.col("item"),
        time=pl.col("time"),
        event_type=pl.lit("click"),
    )
    return Dataset("yoochoose", events, None, files=[clicks], info={"format": "yoochoose-clicks"})


def read_clicks(path: Path) -> pl.DataFrame:
    """session (Int64), time (Datetime ms UTC), item (Int64) of a clicks file, typed.

    Raises:
        DataError: a line with the wrong number of fields or a value that does not parse,
            naming its line and column.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=_NAMES, block_size=16 << 20)
    convert = pacsv.ConvertOptions(
        column_types={
            "session": pa.int64(),
            "time": pa.timestamp("ms", tz="UTC"),
            "item": pa.int64(),
            "category": pa.string(),
        },
        include_columns=list(_RAW_SCHEMA),
    )
    try:
        table = pacsv.read_csv(path, read_options=read, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise _diagnose(path, exc) from exc
    # No rechunk: Arrow's blocks become polars chunks as they are, without a second copy.
    df = pl.from_arrow(table, rechunk=False)
    assert isinstance(df, pl.DataFrame)
    if df.height == 0:
        raise DataError(path, expected="at least one click", found="no rows")
    return df


def _diagnose(path: Path, exc: Exception) -> DataError:
    """Re-read ``path`` as text and name the first line that does not parse."""
    try:
        text = pl.read_csv(
            path,
            has_header=False,
            new_columns=_NAMES,
            schema=dict.fromkeys(_NAMES, pl.Utf8),
            quote_char=None,
            encoding="utf8-lossy",
        )
    except pl.exceptions.ComputeError:
        return DataError(
            path, expected="4 comma-separated fields per line", found=str(exc).splitlines()[0]
        )
    checks = {
        "session": pl.col("session").str.strip_chars().cast(pl.Int64, strict=False),
        "time": pl.col("time").str.to_datetime(time_zone="UTC", strict=False),
        "item": pl.col("item").str.strip_chars().cast(pl.Int64, strict=False),
    }
    for col, parsed in checks.items():
        bad = text.select(
            parsed.is_null().arg_max().alias("i"), parsed.is_null().any().alias("any")
        )
        if bad.item(0, 1):
            i = int(bad.item(0, 0))
            value = text[col][i]
            return DataError(
                path,
                line=i + 1,
                column=col,
                expected=_EXPECTED[col],
                found="an empty value" if value is None else repr(value),
            )
    return DataError(path, expected="a well-formed YOOCHOOSE clicks file", found=str(exc)[:200])
