"""PreparedData (the directory contract) and SessionData (the arrays models train on)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec._io import read_json_object
from sessionrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PARTS = ("train", "valid", "test")
TARGET = "target"
#: The parts a model can be fitted on, and the files each fingerprint covers.
FIT_PARTS: dict[str, tuple[str, ...]] = {"train": ("train",), "train+valid": ("train", "valid")}


@dataclass(frozen=True)
class SessionData:
    """Sessions as flat arrays, sorted by session then time (then source row).

    Attributes:
        items: (E,) int64 item indices 0..n_items-1.
        offsets: (S+1,) int64; session s spans ``items[offsets[s]:offsets[s+1]]``.
        session_ids: (S,) int64 session ids of the source.
        timestamps: (E,) int64 microseconds since the epoch (UTC).
        target: (E,) bool; False marks context rows that are history only (see prepare.split).
        n_items: size of the item vocabulary.
        users: (S,) int64 user of each session, or None.
        ratings: (E,) float32 ratings, or None.
    """

    items: np.ndarray
    offsets: np.ndarray
    session_ids: np.ndarray
    timestamps: np.ndarray
    target: np.ndarray
    n_items: int
    users: np.ndarray | None = None
    ratings: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, df: pl.DataFrame, n_items: int) -> SessionData:
        """From a part frame (session_id, item_idx, timestamp[, target, user_id, rating])."""
        df = df.sort([S.SESSION, S.TIME]) if not _is_grouped(df) else df
        sess = df[S.SESSION].to_numpy()
        starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if len(sess) else np.zeros(0)
        offsets = np.r_[starts, len(sess)].astype(np.int64)
        ts = df[S.TIME].dt.epoch("us").to_numpy().astype(np.int64)
        users = None
        if S.USER in df.columns and df[S.USER].null_count() == 0:
            users = df[S.USER].to_numpy()[offsets[:-1]].astype(np.int64)
        ratings = None
        if S.RATING in df.columns and df[S.RATING].null_count() == 0:
            ratings = df[S.RATING].to_numpy().astype(np.float32)
        target = (
            df[TARGET].to_numpy().astype(bool)
            if TARGET in df.columns
            else np.ones(len(sess), dtype=bool)
        )
        return cls(
            items=df[S.ITEM_IDX].to_numpy().astype(np.int64),
            offsets=offsets,
            session_ids=sess[offsets[:-1]].astype(np.int64),
            timestamps=ts,
            target=target,
            n_items=n_items,
            users=users,
            ratings=ratings,
        )

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_predictions(self) -> int:
        """Next-item predictions under the every-position protocol: targets after a first event."""
        first = np.zeros(self.n_events, dtype=bool)
        first[self.offsets[:-1]] = True
        return int((self.target & ~first).sum())

    def session(self, s: int) -> np.ndarray:
        return self.items[self.offsets[s] : self.offsets[s + 1]]

    def start_times(self) -> np.ndarray:
        """(S,) time of each session's first event."""
        return self.timestamps[self.offsets[:-1]]

    def concat(self, other: SessionData) -> SessionData:
        """This part followed by ``other`` (e.g. train + valid for a final fit)."""
        if other.n_items != self.n_items:
            raise ValueError("parts have different item vocabularies")
        both_users = self.users is not None and other.users is not None
        both_ratings = self.ratings is not None and other.ratings is not None
        return SessionData(
            items=np.r_[self.items, other.items],
            offsets=np.r_[self.offsets[:-1], other.offsets + self.n_events],
            session_ids=np.r_[self.session_ids, other.session_ids],
            timestamps=np.r_[self.timestamps, other.timestamps],
            target=np.r_[self.target, other.target],
            n_items=self.n_items,
            users=np.r_[self.users, other.users] if both_users else None,
            ratings=np.r_[self.ratings, other.ratings] if both_ratings else None,
        )

    def item_counts(self) -> np.ndarray:
        """(n_items,) number of events per item."""
        return np.bincount(self.items, minlength=self.n_items)


def _is_grouped(df: pl.DataFrame) -> bool:
    return bool(df.height == 0 or df[S.SESSION].is_sorted())


class PreparedData:
    """A prepared dataset directory: train/valid/test parquet, items.parquet, meta.json.

    Opening one checks that meta.json is a JSON object with ``n_items`` and that every part
    file is there; a part that cannot be read (damaged, wrong columns, item indices outside the
    vocabulary) is a ``DataError`` naming the file when it is first read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise DataError(
                self.path,
                expected="a prepared data directory with meta.json (from `sessionrec prepare`)",
                found="no meta.json" if self.path.is_dir() else "no such directory",
            )
        self.meta: dict[str, Any] = _read_meta(meta_path)
        for name in (*PARTS, "items"):
            path = self.path / f"{name}.parquet"
            if not path.is_file():
                raise DataError(
                    path,
                    expected=f"the {name} part of the prepared data (meta.json is there)",
                    found="no such file",
                )
            try:  # the footer only: a truncated or foreign file fails here, cheaply
                schema = dict(pl.scan_parquet(path, glob=False).collect_schema())
            except Exception as exc:
                raise DataError(path, expected="a Parquet file", found=_first_line(exc)) from None
            if name != "items":
                _check_columns(schema, path)
        self._parts: dict[str, SessionData] = {}
        self._sha256: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}

    @cached_property
    def items(self) -> pl.DataFrame:
        """item_idx ↔ item_id with metadata (title, year, genres when the source has them)."""
        items = _read_parquet(self.path / "items.parquet")
        if S.ITEM_IDX in items.columns and items.height != self.n_items:
            raise DataError(
                self.path / "items.parquet",
                expected=f"{self.n_items:,} items (meta.json)",
                found=f"{items.height:,} rows",
            )
        return items

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])

    def item_popularity(self) -> np.ndarray:
        """(n_items,) training counts of each item, the evaluator's popularity source: the
        items table's ``count`` column, else counted from the train part."""
        items = self.items
        if "count" in items.columns:
            return items.sort(S.ITEM_IDX)["count"].to_numpy()
        return self.train.item_counts()

    def frame(self, part: str) -> pl.DataFrame:
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, not {part!r}")
        path = self.path / f"{part}.parquet"
        df = _read_parquet(path)
        _check_part(df, path, self.n_items)
        return df

    def part(self, name: str) -> SessionData:
        """The part ``train``, ``valid``, ``test`` or ``train+valid`` as SessionData.

        Its ``extra["prepared"]`` is this PreparedData, so that ``evaluate`` can check that a
        model was trained on this data.
        """
        if name == "train+valid":
            both = self.part("train").concat(self.part("valid"))
            both.extra["prepared"] = self
            return both
        if name not in self._parts:
            if name not in PARTS:
                raise ConfigError(
                    f"part must be one of {', '.join((*PARTS, 'train+valid'))}, not {name!r}"
                )
            self._parts[name] = SessionData.from_frame(self.frame(name), self.n_items)
            self._parts[name].extra["prepared"] = self
        return self._parts[name]

    @property
    def train(self) -> SessionData:
        return self.part("train")

    @property
    def valid(self) -> SessionData:
        return self.part("valid")

    @property
    def test(self) -> SessionData:
        return self.part("test")

    def fingerprint(self, fit_on: str = "train") -> str:
        """sha256 of the files of the part ``fit_on`` (``train`` or ``train+valid``) and the
        prepare parameters: what a model trained on it records, and what ``evaluate`` compares.

        Computed from the files; where meta.json records the files' sha256 (written by
        ``prepare``) a part changed since is a ``DataError``.
        """
        if fit_on not in FIT_PARTS:
            raise ConfigError(f"fit_on must be one of {', '.join(FIT_PARTS)}, not {fit_on!r}")
        if fit_on not in self._fingerprints:
            recorded = self.meta.get("part_sha256") or {}
            for part in FIT_PARTS[fit_on]:
                if part not in self._sha256:
                    path = self.path / f"{part}.parquet"
                    digest = file_sha256(path)
                    if isinstance(recorded, dict) and recorded.get(part) not in (None, digest):
                        raise DataError(
                            path,
                            expected=f"the content meta.json records (sha256 "
                            f"{str(recorded[part])[:12]}…)",
                            found=f"other content (sha256 {digest[:12]}…): changed after "
                            "`sessionrec prepare`",
                        )
                    self._sha256[part] = digest
            self._fingerprints[fit_on] = data_fingerprint(
                self._sha256, fit_on, self.meta.get("params")
            )
        return self._fingerprints[fit_on]

    def __repr__(self) -> str:
        c = self.meta.get("counts", {})
        parts = ", ".join(
            f"{k} {v['events']:,} events/{v['sessions']:,} sessions" for k, v in c.items()
        )
        return f"PreparedData({str(self.path)!r}: {self.n_items:,} items; {parts})"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 8 MiB blocks; hashing releases the GIL)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(sha256: dict[str, str], fit_on: str, params: Any) -> str:
    """The fingerprint of the training part ``fit_on``: its files' sha256 + prepare parameters."""
    record = {"parts": {p: sha256[p] for p in FIT_PARTS[fit_on]}, "params": params}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def read_trained_on(model_dir: str | Path) -> dict[str, Any] | None:
    """What a model directory's ``data_meta.json`` says of its training data: ``path``,
    ``fit_on`` and ``fingerprint`` (None for an older model); None without the file."""
    path = Path(model_dir) / "data_meta.json"
    if not path.is_file():
        return None
    meta = _read_meta(path)
    fit_on = meta.get("fit_on", "train")
    return {
        "path": meta.get("path"),
        "fit_on": fit_on,
        "fingerprint": meta.get("fingerprint"),
        "model_dir": str(model_dir),
    }


_WARNED: set[tuple[str, str]] = set()


def check_trained_on(
    trained_on: dict[str, Any] | None,
    data: PreparedData,
    *,
    model: str | Path = "model",
    allow_other_data: bool = False,
) -> dict[str, Any]:
    """Whether a model was trained on ``data``: compare the fingerprint it records with the one
    of the same part of ``data``; a mismatch is a ``DataError`` naming both, unless
    ``allow_other_data``.

    A model without a record (saved with ``model.save``) is not checked; a model from an older
    sessionrec (a record without a fingerprint) is not checked either, with a warning.

    Returns what was found, for the results: ``checked``, ``same_data``,
    ``allow_other_data``, and both fingerprints.
    """
    out: dict[str, Any] = {"checked": False, "allow_other_data": allow_other_data}
    if not trained_on:
        return out
    fp = trained_on.get("fingerprint")
    fit_on = str(trained_on.get("fit_on", "train"))
    fit_on = fit_on if fit_on in FIT_PARTS else "train"
    model = trained_on.get("model_dir") or model
    if not fp:
        if (str(model), str(data.path)) not in _WARNED:
            _WARNED.add((str(model), str(data.path)))
            log.warning(
                "%s records no data fingerprint (trained by an older sessionrec): cannot "
                "check that it was trained on %s",
                model,
                data.path,
            )
        return out
    ours = data.fingerprint(fit_on)
    out.update(
        checked=True,
        same_data=fp == ours,
        model_trained_on={"path": trained_on.get("path"), "fit_on": fit_on, "fingerprint": fp},
        model=str(model),
        data={"path": str(data.path), "fingerprint": ours},
    )
    if fp != ours and not allow_other_data:
        raise DataError(
            model,
            expected=f"a model trained on {fit_on} of {data.path} (fingerprint {ours[:12]})",
            found=f"one trained on {fit_on} of {trained_on.get('path')} (fingerprint "
            f"{fp[:12]}); --allow-other-data (allow_other_data=True) evaluates across data",
        )
    if fp != ours:
        log.warning("%s was trained on other data than %s (allowed)", model, data.path)
    return out


def check_vocabulary(model: Any, data: PreparedData, where: str | Path) -> None:
    """Refuse a model whose item vocabulary is not ``data``'s: scores index items by position,
    so a model over other items would be silently wrong. ``where`` (the model's folder) names
    the model in the ``DataError``."""
    if model.n_items != data.n_items:
        raise DataError(
            where,
            expected=f"a model over the {data.n_items:,} items of {data.path}",
            found=f"a model over {model.n_items:,} items",
        )
    if model.items is not None and S.ITEM in model.items.columns:
        ours = model.items.sort(S.ITEM_IDX)[S.ITEM].cast(str).to_list()
        theirs = data.items.sort(S.ITEM_IDX)[S.ITEM].cast(str).to_list()
        if ours != theirs:
            raise DataError(
                where,
                expected=f"the item vocabulary of {data.path}",
                found="a model trained on other items (same count, different ids)",
            )


def _read_meta(path: Path) -> dict[str, Any]:
    meta = read_json_object(path)
    if path.name == "meta.json":
        from sessionrec._formats import check_format

        check_format(path, meta.get("format"), ("sessionrec.prepared",))
        n = meta.get("n_items")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise DataError(path, column="n_items", expected="a non-negative integer",
                            found=repr(n))  # fmt: skip
    return meta


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path, glob=False)
    except Exception as exc:  # polars' ComputeError, OSError, ... for a damaged file
        raise DataError(path, expected="a Parquet file", found=_first_line(exc)) from None


_PART_COLUMNS = {S.SESSION: "integers", S.ITEM_IDX: "integers", S.TIME: "datetimes"}


def _check_columns(schema: Any, path: Path) -> None:
    """The columns every part has, with their kinds of values."""
    for col, kind in _PART_COLUMNS.items():
        if col not in schema:
            raise DataError(path, column=col, expected=kind, found="no such column")
        dtype = schema[col]
        ok = dtype.is_temporal() if kind == "datetimes" else dtype.is_integer()
        if not ok:
            raise DataError(path, column=col, expected=kind, found=str(dtype))


def _check_part(df: pl.DataFrame, path: Path, n_items: int) -> None:
    """The columns every part has, and item indices inside the vocabulary."""
    _check_columns(df.schema, path)
    idx = df[S.ITEM_IDX]
    if df.height and (idx.null_count() or idx.min() < 0 or idx.max() >= n_items):  # type: ignore[operator]
        raise DataError(
            path,
            column=S.ITEM_IDX,
            expected=f"item indices 0..{n_items - 1} (meta.json: {n_items:,} items)",
            found=f"{idx.min()!r}..{idx.max()!r}" + (" and nulls" if idx.null_count() else ""),
        )
