"""Known datasets: where their official archives live, their checksums, and the local cache.

The cache is ``$SESSIONREC_HOME/datasets/NAME/`` (by default the platform's user cache dir).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from sessionrec.errors import UnknownNameError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    url: str | None
    sha256: str | None
    kind: str  # movielens | yoochoose
    description: str
    inner: str = ""  # folder inside the archive that holds the files


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("ml-100k", "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                    "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c0a2b47",
                    "movielens", "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies",
                    "ml-100k"),
        DatasetSpec("ml-1m", "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                    "movielens", "MovieLens 1M: 1,000,209 ratings, 6,040 users", "ml-1m"),
        DatasetSpec("ml-10m", "https://files.grouplens.org/datasets/movielens/ml-10m.zip",
                    None, "movielens", "MovieLens 10M: 10,000,054 ratings", "ml-10M100K"),
        DatasetSpec("ml-20m", "https://files.grouplens.org/datasets/movielens/ml-20m.zip",
                    None, "movielens", "MovieLens 20M: 20,000,263 ratings", "ml-20m"),
        DatasetSpec("ml-25m", "https://files.grouplens.org/datasets/movielens/ml-25m.zip",
                    None, "movielens", "MovieLens 25M: 25,000,095 ratings", "ml-25m"),
        DatasetSpec("ml-32m", "https://files.grouplens.org/datasets/movielens/ml-32m.zip",
                    None, "movielens", "MovieLens 32M: 32,000,204 ratings", "ml-32m"),
        DatasetSpec("ml-latest", "https://files.grouplens.org/datasets/movielens/ml-latest.zip",
                    None, "movielens", "MovieLens latest (full; changes over time)", "ml-latest"),
        DatasetSpec("ml-latest-small",
                    "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
                    None, "movielens", "MovieLens latest, small (changes over time)",
                    "ml-latest-small"),
        DatasetSpec("yoochoose", None, None, "yoochoose",
                    "YOOCHOOSE (RecSys Challenge 2015): 33M clicks; download by hand, then "
                    "`sessionrec data import yoochoose PATH`"),
    ]
}  # fmt: skip


def home() -> Path:
    """The sessionrec data home: ``$SESSIONREC_HOME`` or the platform's cache directory."""
    env = os.environ.get("SESSIONREC_HOME")
    return Path(env) if env else Path(platformdirs.user_cache_dir("sessionrec"))


def spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, list(DATASETS)) from None


def cache_dir(name: str) -> Path:
    """Where dataset ``name`` lives once fetched or imported (may not exist yet)."""
    return home() / "datasets" / spec(name).name


def is_cached(name: str) -> bool:
    return (cache_dir(name) / ".complete").exists()
