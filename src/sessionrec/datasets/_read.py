"""Typed, lazy reading of delimited files with errors that point at the bad line and column.

The fast path scans with the final dtypes; only when that fails is the file re-read as text to
find the first offending line, so good files are read once and cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from sessionrec.errors import DataError

_DTYPE_NAMES = {
    pl.Int64: "an integer",
    pl.Int32: "an integer",
    pl.Float32: "a number",
    pl.Float64: "a number",
    pl.Utf8: "text",
}


def describe_dtype(dtype: pl.DataType | type[pl.DataType]) -> str:
    if isinstance(dtype, pl.Datetime):
        return "an ISO-8601 time (like 2014-04-07T10:51:09.277Z)"
    for known, name in _DTYPE_NAMES.items():
        if dtype == known:
            return name
    return str(dtype)


def check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, expected="an existing file", found="no such file")
    if path.is_dir():
        raise DataError(path, expected="a file", found="a directory")
    if path.stat().st_size == 0:
        raise DataError(path, expected="at least one row of data", found="an empty file")


def read_delimited(
    path: Path,
    *,
    separator: str,
    names: list[str] | None,
    dtypes: Mapping[str, pl.DataType | type[pl.DataType]],
    has_header: bool = False,
    encoding: str = "utf8",
    lazy: bool = True,
    expected_fields: str | None = None,
) -> pl.LazyFrame:
    """Read the columns named in ``dtypes`` from a delimited file, with those dtypes.

    ``names`` names the file's columns when it has no header; with a header the file's own names
    are checked against ``dtypes``. The result is lazy; :func:`collect_checked` collects it with
    line-precise errors.
    """
    check_file(path)
    header_names = _header(path, separator, has_header, encoding)
    n_cols = len(header_names)
    if names is not None and n_cols < len(names):
        raise DataError(
            path,
            line=1,
            expected=expected_fields or f"{len(names)} fields separated by {separator!r}",
            found=f"{n_cols} field(s) in {_first_line(path, encoding)!r}",
        )
    file_names = header_names if has_header else (names or [])
    if has_header:
        missing = [c for c in dtypes if c not in header_names]
        if missing:
            raise DataError(
                path,
                line=1,
                column=missing[0],
                expected=f"a header with column {missing[0]!r}",
                found=f"columns {header_names}",
            )
    schema: dict[str, pl.DataType | type[pl.DataType]] = {c: pl.Utf8 for c in file_names}
    if not has_header and names is not None:
        schema.update({f"_extra{i}": pl.Utf8 for i in range(n_cols - len(names))})
    for c, t in dtypes.items():
        schema[c] = t
    if encoding not in ("utf8", "utf-8"):
        # polars decodes latin-1 etc. only in the eager reader; such files are small.
        df = pl.read_csv(
            path,
            separator=separator,
            has_header=has_header,
            schema=schema,
            quote_char=None if not has_header else '"',
            encoding=encoding,
        )
        return df.lazy().select(list(dtypes))
    return pl.scan_csv(
        path,
        separator=separator,
        has_header=has_header,
        schema=schema,
        quote_char=None if not has_header else '"',
    ).select(list(dtypes))


def collect_checked(
    lf: pl.LazyFrame,
    path: Path,
    *,
    separator: str,
    names: list[str] | None,
    dtypes: Mapping[str, pl.DataType | type[pl.DataType]],
    has_header: bool = False,
    encoding: str = "utf8",
) -> pl.DataFrame:
    """Collect ``lf``; on a parse failure, find the first bad line and raise a DataError."""
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise diagnose(path, separator, names, dtypes, has_header, encoding) from exc


def diagnose(
    path: Path,
    separator: str,
    names: list[str] | None,
    dtypes: Mapping[str, pl.DataType | type[pl.DataType]],
    has_header: bool,
    encoding: str,
) -> DataError:
    """Re-read ``path`` as text and describe the first value that does not parse.

    The re-read is a lazy scan that stops at the first bad line, so explaining an error in a
    25M-row file does not hold the file as text in memory.
    """
    header_names = _header(path, separator, has_header, encoding)
    file_names = header_names if has_header else list(names or [])
    file_names += [f"_extra{i}" for i in range(len(header_names) - len(file_names))]
    text = pl.scan_csv(
        path,
        separator=separator,
        has_header=has_header,
        schema=dict.fromkeys(file_names, pl.Utf8),
        quote_char=None if not has_header else '"',
        encoding="utf8-lossy",
        truncate_ragged_lines=False,
    ).with_row_index("_line", offset=2 if has_header else 1)
    bad = {col: _is_bad(pl.col(col), dtype) for col, dtype in dtypes.items()}
    try:
        # Flags first, then filter: a datetime format inferred from the bad row alone could
        # accept it.
        first = (
            text.with_columns(e.alias(f"_bad_{c}") for c, e in bad.items())
            .filter(pl.any_horizontal(f"_bad_{c}" for c in bad))
            .head(1)
            .collect()
        )
    except pl.exceptions.PolarsError as exc:
        msg = str(exc).strip().splitlines()[0]
        return DataError(path, expected=f"{len(file_names)} fields per line", found=msg)
    if first.height == 0:
        return DataError(path, expected="a well-formed file", found="a value that does not parse")
    row = first.row(0, named=True)
    col = next(c for c in dtypes if row[f"_bad_{c}"])
    value = row[col]
    return DataError(
        path,
        line=int(row["_line"]),
        column=col,
        expected=describe_dtype(dtypes[col]),
        found="an empty value" if value is None else repr(value),
    )


def _is_bad(raw: pl.Expr, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """True where the text ``raw`` is empty or does not parse as ``dtype``."""
    if isinstance(dtype, pl.Datetime):
        # ISO-8601 text; the format is inferred from the values, as the loaders do.
        parsed = raw.str.strip_chars().str.to_datetime(
            time_unit="us", time_zone="UTC", strict=False
        )
    else:
        parsed = raw.str.strip_chars().cast(dtype, strict=False)
    return raw.is_null() | parsed.is_null()


def _first_line(path: Path, encoding: str) -> str:
    with open(path, encoding="latin-1" if encoding != "utf8" else "utf-8", errors="replace") as f:
        return f.readline().rstrip("\r\n")[:80]


def _header(path: Path, separator: str, has_header: bool, encoding: str) -> list[str]:
    line = _first_line(path, encoding)
    fields = line.split(separator)
    if has_header:
        return [f.strip().strip('"') for f in fields]
    return [f"_c{i}" for i in range(len(fields))]
