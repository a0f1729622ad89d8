"""MovieLens loaders for the official GroupLens layouts (Harper & Konstan, 2015).

- 100K: ``u.data`` (tab: user, item, rating, unix time), ``u.item`` (pipe, latin-1, 19 genre flags)
- 1M / 10M: ``ratings.dat`` and ``movies.dat`` (``::``-separated, latin-1)
- 20M, 25M, 32M, latest, latest-small: ``ratings.csv`` and ``movies.csv`` (with headers)
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import polars as pl

from sessionrec import _schema as S
from sessionrec.datasets._events import Dataset, epoch_to_time, title_year, to_events
from sessionrec.datasets._read import check_file, collect_checked, diagnose, read_delimited
from sessionrec.errors import DataError

GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip

_RATING_DTYPES: dict[str, type[pl.DataType]] = {
    "user": pl.Int64,
    "item": pl.Int64,
    "rating": pl.Float32,
    "time": pl.Int64,
}


def detect_layout(folder: Path) -> str | None:
    """The MovieLens layout of ``folder``: '100k', 'dat' (1M/10M), 'csv' (20M+) or None."""
    if (folder / "u.data").exists():
        return "100k"
    if (folder / "ratings.dat").exists():
        return "dat"
    if (folder / "ratings.csv").exists() and (folder / "movies.csv").exists():
        return "csv"
    return None


def load_movielens(folder: str | Path, name: str | None = None) -> Dataset:
    """Load a MovieLens folder in any official layout as a :class:`Dataset`."""
    folder = Path(folder)
    layout = detect_layout(folder)
    if layout == "100k":
        return _load_100k(folder, name or "ml-100k")
    if layout == "dat":
        return _load_dat(folder, name or folder.name)
    if layout == "csv":
        return _load_csv(folder, name or folder.name)
    raise DataError(
        folder,
        expected="a MovieLens folder (u.data, ratings.dat or ratings.csv + movies.csv)",
        found=", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "an empty folder"
        if folder.is_dir()
        else "no such folder",
    )


def _ratings(raw: pl.LazyFrame) -> pl.LazyFrame:
    return to_events(
        raw,
        user=pl.col("user"),
        item=pl.col("item"),
        rating=pl.col("rating"),
        time=epoch_to_time("time", "s"),
    )


def _checked_lazy(
    path: Path,
    *,
    separator: str,
    names: list[str] | None,
    has_header: bool = False,
    expected_fields: str | None = None,
) -> pl.LazyFrame:
    """Read typed; parse errors surface at collect time, so probe the first rows eagerly too."""
    dtypes = _RATING_DTYPES if names is None or "user" in names else {}
    lf = read_delimited(
        path,
        separator=separator,
        names=names,
        dtypes=dtypes,
        has_header=has_header,
        expected_fields=expected_fields,
    )
    # A cheap probe of the head turns a wrong separator into a clear error before any work.
    collect_checked(
        lf.head(1000), path, separator=separator, names=names, dtypes=dtypes, has_header=has_header
    )
    return lf


def _load_100k(folder: Path, name: str) -> Dataset:
    path = folder / "u.data"
    names = ["user", "item", "rating", "time"]
    lf = _checked_lazy(path, separator="\t", names=names)
    ev = _ratings(lf)
    # Small enough to read now: errors surface at load time with their line.
    events = collect_checked(ev, path, separator="\t", names=names, dtypes=_RATING_DTYPES)
    items = None
    item_path = folder / "u.item"
    if item_path.exists():
        items = _items_100k(item_path)
    explain = functools.partial(
        diagnose, path, "\t", names, _RATING_DTYPES, has_header=False, encoding="utf8"
    )
    return Dataset(
        name, events.lazy(), items, files=[path], info={"layout": "ml-100k"}, diagnose=explain
    )


def _items_100k(path: Path) -> pl.DataFrame:
    check_file(path)
    cols = ["item_id", "title", "release", "video_release", "url", *GENRES_100K]
    raw = pl.read_csv(
        path,
        glob=False,
        separator="|",
        has_header=False,
        new_columns=cols,
        encoding="latin-1",
        quote_char=None,
        schema_overrides={"item_id": pl.Int64, "title": pl.Utf8, "release": pl.Utf8},
        infer_schema_length=0,
    )
    flags = pl.concat_list(
        [pl.when(pl.col(g) == "1").then(pl.lit(g)).otherwise(None) for g in GENRES_100K]
    ).list.drop_nulls()
    return raw.select(
        pl.col("item_id").cast(pl.Int64).alias(S.ITEM),
        # A few 100K titles end in a space ("Two Friends (1986) "); strip so lookups by title work.
        pl.col("title").str.strip_chars().alias(S.TITLE),
        pl.coalesce(
            title_year(pl.col("title").str.strip_chars()),
            pl.col("release").str.extract(r"(\d{4})$", 1).cast(pl.Int32, strict=False),
        ).alias(S.YEAR),
        flags.alias(S.GENRES),
    )


# "1::1193::5::978300760" split on ':' gives the fields at 0, 2, 4, 6.
_DAT_NAMES = ["user", "_a", "item", "_b", "rating", "_c", "time"]


def _dat_ratings(path: Path) -> pl.LazyFrame:
    return _checked_lazy(
        path,
        separator=":",
        names=_DAT_NAMES,
        expected_fields="4 fields separated by '::' (user::item::rating::time)",
    )


def _load_dat(folder: Path, name: str) -> Dataset:
    path = folder / "ratings.dat"
    lf = _dat_ratings(path)
    items = _movies_dat(folder / "movies.dat") if (folder / "movies.dat").exists() else None
    explain = functools.partial(
        diagnose, path, ":", _DAT_NAMES, _RATING_DTYPES, has_header=False, encoding="utf8"
    )
    return Dataset(
        name, _ratings(lf), items, files=[path], info={"layout": "ml-dat"}, diagnose=explain
    )


def _movies_dat(path: Path) -> pl.DataFrame:
    check_file(path)
    data = path.read_bytes()
    try:
        # ML-10M's movies.dat is UTF-8, ML-1M's is latin-1; both are small.
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = pl.read_csv(
        io.BytesIO(text.encode("utf-8")),
        separator="\x1f",
        has_header=False,
        new_columns=["line"],
        quote_char=None,
        schema={"line": pl.Utf8},
    )
    parts = pl.col("line").str.splitn("::", 3)
    raw = lines.select(
        parts.struct.field("field_0").alias("item"),
        parts.struct.field("field_1").alias("title"),
        parts.struct.field("field_2").alias("genres"),
    )
    return _movie_table(raw, path, header_lines=0)


def _movie_table(raw: pl.DataFrame, path: Path, header_lines: int) -> pl.DataFrame:
    ids = raw["item"].cast(pl.Int64, strict=False)
    if ids.null_count():
        i = int(ids.is_null().arg_max())  # type: ignore[arg-type]
        raise DataError(
            path,
            line=i + 1 + header_lines,
            column="movieId",
            expected="an integer movie id",
            found=repr(raw["item"][i]),
        )
    return raw.select(
        ids.alias(S.ITEM),
        pl.col("title").str.strip_chars().alias(S.TITLE),
        title_year(pl.col("title")).alias(S.YEAR),
        pl.when(pl.col("genres") == "(no genres listed)")
        .then(pl.lit([], dtype=pl.List(pl.Utf8)))
        .otherwise(pl.col("genres").str.split("|"))
        .alias(S.GENRES),
    )


def _load_csv(folder: Path, name: str) -> Dataset:
    path = folder / "ratings.csv"
    dtypes = {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}
    lf = read_delimited(path, separator=",", names=None, dtypes=dtypes, has_header=True)
    collect_checked(lf.head(1000), path, separator=",", names=None, dtypes=dtypes, has_header=True)
    ev = to_events(
        lf,
        user=pl.col("userId"),
        item=pl.col("movieId"),
        rating=pl.col("rating"),
        time=epoch_to_time("timestamp", "s"),
    )
    mpath = folder / "movies.csv"
    check_file(mpath)
    raw = pl.read_csv(
        mpath, glob=False, schema_overrides={"movieId": pl.Utf8}, infer_schema_length=0
    )
    items = _movie_table(
        raw.rename({"movieId": "item"}).select("item", "title", "genres"), mpath, header_lines=1
    )
    explain = functools.partial(diagnose, path, ",", None, dtypes, has_header=True, encoding="utf8")
    return Dataset(name, ev, items, files=[path], info={"layout": "ml-csv"}, diagnose=explain)
