"""Loaders that turn raw logs into the Events contract: MovieLens, YOOCHOOSE, any CSV/Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from sessionrec.datasets._events import Dataset
from sessionrec.datasets.fetch import ensure, read_source
from sessionrec.datasets.movielens import detect_layout, load_movielens
from sessionrec.datasets.registry import DATASETS, spec
from sessionrec.datasets.tabular import ColumnMapping, load_table
from sessionrec.datasets.yoochoose import load_yoochoose
from sessionrec.errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "ColumnMapping",
    "Dataset",
    "load",
    "load_movielens",
    "load_table",
    "load_yoochoose",
]


def load(source: str | Path | Any, mapping: ColumnMapping | None = None) -> Dataset:
    """Load a dataset by registry name (``ml-100k``), by path (a folder or a file), or from a
    pandas or polars DataFrame in memory.

    Args:
        source: a known dataset name (fetched into the cache when missing), a path, or a
            DataFrame (pandas or polars) with a file's columns (same names, same ``mapping``).
        mapping: column roles for CSV/TSV/Parquet logs and DataFrames; ignored for known
            layouts.
    """
    frame = _as_polars(source)
    if frame is not None:
        return load_table("<DataFrame>", mapping, frame=frame.lazy())
    text = str(source)
    path = Path(source)
    if text in DATASETS and not path.exists():
        folder = ensure(text)
        return _load_folder(folder, text)
    if path.is_dir():
        return _load_folder(path, path.name)
    if not path.exists():
        if "/" not in text and "." not in text:
            spec(text)  # raises UnknownNameError listing the known names
        raise DataError(path, expected="an existing file or folder", found="no such path")
    if path.name in ("u.data", "ratings.dat", "ratings.csv") and detect_layout(path.parent):
        return load_movielens(path.parent)
    if path.name.startswith("yoochoose-"):
        return load_yoochoose(path.parent if path.name != "yoochoose-clicks.dat" else path)
    return load_table(path, mapping)


def _as_polars(source: Any) -> pl.DataFrame | None:
    """A polars DataFrame for a polars or pandas one (pandas through ``pl.from_pandas``)."""
    if isinstance(source, pl.LazyFrame):
        return source.collect()
    if isinstance(source, pl.DataFrame):
        return source
    if type(source).__module__.startswith("pandas") and hasattr(source, "columns"):
        return pl.from_pandas(source)
    if isinstance(source, str | Path):
        return None
    raise ConfigError(
        f"sr.load takes a dataset name, a path or a pandas/polars DataFrame, "
        f"not {type(source).__name__}"
    )


def _load_folder(folder: Path, name: str) -> Dataset:
    ds = _load_layout(folder, name)
    source = read_source(folder)  # written by fetch/import into cached folders
    if source.get("source_used"):
        ds.info["source_used"] = source["source_used"]
    return ds


def _load_layout(folder: Path, name: str) -> Dataset:
    if detect_layout(folder):
        return load_movielens(folder, name)
    if (folder / "yoochoose-clicks.dat").exists():
        return load_yoochoose(folder)
    if (folder / "events.parquet").exists():
        return load_table(folder / "events.parquet")
    raise DataError(
        folder,
        expected="a MovieLens or YOOCHOOSE folder",
        found=", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "an empty folder",
    )
