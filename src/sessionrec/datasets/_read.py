"""Typed, lazy reading of delimited files with errors that point at the bad line and column.

The fast path scans with the final dtypes; only when that fails is the file re-read as text to
find the first offending line, so good files are read once and cheaply.
"""

from __future__ import annotations

import codecs
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
    if path.suffix.lower() == ".gz":
        check_gzip(path)


def check_gzip(path: Path) -> None:
    """Read a gzip file through once, so that a truncated or corrupt stream is a one-line
    ``DataError`` naming the file, not an error from deep inside the CSV reader."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        found = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, EOFError):
            found = "a truncated stream (" + found + ")"
        raise DataError(path, expected="a complete gzip-compressed file", found=found) from None


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
            glob=False,
            separator=separator,
            has_header=has_header,
            schema=schema,
            quote_char=None if not has_header else '"',
            encoding=encoding,
        )
        return df.lazy().select(list(dtypes))
    return pl.scan_csv(
        path,
        glob=False,
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
    data: bytes | None = None,
    skip_blank: bool = False,
) -> DataError:
    """Re-read ``path`` as text and describe the first value that does not parse.

    The re-read is a lazy scan that stops at the first bad line, so explaining an error in a
    25M-row file does not hold the file as text in memory. A byte that is not UTF-8 is found
    first (by line), since the lossy re-read would not see it. ``data`` is the file's content
    when the loader read it into memory (decoded or with its line endings fixed); with
    ``skip_blank``, lines without a value in any of ``dtypes``' columns are passed over, as
    the loader skips them.
    """
    if encoding in ("utf8", "utf-8"):
        bad_text = text_error(path, "utf-8", data)
        if bad_text is not None:
            return bad_text
    header_names = _header(path, separator, has_header, encoding)
    file_names = header_names if has_header else list(names or [])
    file_names += [f"_extra{i}" for i in range(len(header_names) - len(file_names))]
    text = pl.scan_csv(
        path if data is None else data,
        glob=False,
        separator=separator,
        has_header=has_header,
        schema=dict.fromkeys(file_names, pl.Utf8),
        quote_char=None if not has_header else '"',
        encoding="utf8-lossy",
        truncate_ragged_lines=False,
    ).with_row_index("_line", offset=2 if has_header else 1)
    if skip_blank:  # the loader skips lines without any of the columns it reads
        text = text.filter(~pl.all_horizontal(pl.col(c).is_null() for c in dtypes))
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
        ragged = _ragged_line(path, data, separator, len(file_names), has_header)
        if ragged is not None:
            return ragged
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


def _ragged_line(
    path: Path, data: bytes | None, separator: str, n_fields: int, has_header: bool
) -> DataError | None:
    """The first line whose number of separators differs from the header's (counted without
    regard to quotes: only called once a parse has failed)."""
    if len(separator) != 1:
        return None
    separators = pl.col("text").str.count_matches(separator, literal=True)
    found = _first_matching_line(path, data, has_header, separators != n_fields - 1)
    if found is None:
        return _unclosed_quote(path, data, has_header)
    line, text = found
    return DataError(
        path,
        line=line,
        expected=f"{n_fields} fields separated by {separator!r}",
        found=f"{text.count(separator) + 1} in {text[:80]!r}",
    )


def _unclosed_quote(path: Path, data: bytes | None, has_header: bool) -> DataError | None:
    """The first line with an odd number of double quotes (a quote opened and not closed)."""
    found = _first_matching_line(
        path, data, has_header, pl.col("text").str.count_matches('"', literal=True) % 2 == 1
    )
    if found is None:
        return None
    line, text = found
    return DataError(
        path,
        line=line,
        expected="fields with their double quotes closed on the same line",
        found=f"an unclosed quote in {text[:80]!r}",
    )


def _first_matching_line(
    path: Path, data: bytes | None, has_header: bool, bad: pl.Expr
) -> tuple[int, str] | None:
    """(line number, text) of the first line after the header where ``bad`` holds, the file
    read as raw lines (column ``text``, no quoting); None when no line does or the file cannot
    be read so."""
    try:
        lines = (
            pl.scan_csv(
                path if data is None else data,
                glob=False,
                has_header=False,
                separator="\x1f",
                quote_char=None,
                schema={"text": pl.Utf8},
                encoding="utf8-lossy",
            )
            .with_row_index("_line", offset=1)
            .filter(pl.col("_line") > int(has_header))
            .filter(bad)
            .head(1)
            .collect()
        )
    except pl.exceptions.PolarsError:
        return None
    if lines.height == 0:
        return None
    return int(lines["_line"][0]), (lines["text"][0] or "").rstrip("\r")


def text_error(path: Path, encoding: str, data: bytes | None = None) -> DataError | None:
    """The first line of ``path`` (or of ``data``, its bytes) that does not decode, as a
    DataError that suggests ``--encoding``; None when the whole file decodes.

    Read in 4 MiB blocks; a character cut by a block's end is completed by the next block.
    """
    line = 1
    pending = b""
    with open(path, "rb") if data is None else _BytesReader(data) as f:
        while True:
            chunk = f.read(1 << 22)
            block = pending + chunk
            try:
                block.decode(encoding)
                pending = b""
            except UnicodeDecodeError as exc:
                if chunk and exc.reason == "unexpected end of data":
                    line += block.count(b"\n", 0, exc.start)
                    pending = block[exc.start :]
                    continue
                line += block.count(b"\n", 0, exc.start)
                start = block.rfind(b"\n", 0, exc.start) + 1
                end = block.find(b"\n", exc.start)
                text = block[start : end if end >= 0 else len(block)].rstrip(b"\r")
                shown = text.decode(encoding, errors="backslashreplace")[:80]
                hint = "--encoding latin-1" if encoding.replace("-", "") == "utf8" else "--encoding"
                return DataError(
                    path,
                    line=line,
                    expected=f"{codecs.lookup(encoding).name} text (give the file's encoding "
                    f"with {hint} or another)",
                    found=f'byte 0x{block[exc.start]:02x} in "{shown}"',
                )
            if not chunk:
                return None
            line += block.count(b"\n")


class _BytesReader:
    """``open(path, "rb")``'s read/with for bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, n: int) -> bytes:
        out = self._data[self._at : self._at + n]
        self._at += len(out)
        return out

    def __enter__(self) -> _BytesReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _is_bad(raw: pl.Expr, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """True where the text ``raw`` is empty or does not parse as ``dtype``."""
    if isinstance(dtype, pl.Datetime):
        # ISO-8601 text; the format is inferred from the values, as the loaders do.
        parsed = raw.str.strip_chars().str.to_datetime(
            time_unit="us", time_zone="UTC", strict=False
        )
    else:
        parsed = raw.str.strip_chars().cast(dtype, strict=False)
        if dtype in (pl.Int64, pl.Int32):
            # "3.0" is the integer 3 (a float column holding ids); "3.5" is not an integer
            number = raw.str.strip_chars().cast(pl.Float64, strict=False)
            whole = pl.when(number == number.floor()).then(number)
            parsed = pl.coalesce(parsed, whole)
    return raw.is_null() | parsed.is_null()


def _first_line(path: Path, encoding: str) -> str:
    utf8 = encoding in ("utf8", "utf-8")
    with open(path, encoding="utf-8" if utf8 else "latin-1", errors="replace") as f:
        return f.readline().lstrip("\ufeff").rstrip("\r\n")[:80]


def _header(path: Path, separator: str, has_header: bool, encoding: str) -> list[str]:
    line = _first_line(path, encoding)
    fields = line.split(separator)
    if has_header:
        return [f.strip().strip('"') for f in fields]
    return [f"_c{i}" for i in range(len(fields))]
