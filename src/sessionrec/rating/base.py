"""The rating-model protocol: ``fit(Ratings)`` then ``predict(users, items) -> ratings``.

Rating models are not :class:`~sessionrec.models.base.SessionModel`\\ s: they predict how a
*user* rates an item, and a session has no user to ask about. They are registered with task
``rating`` in ``sessionrec.registry`` (so the next-item contract suite does not meet them).
They are :class:`~sessionrec.models.base.Model`\\ s like every other model: the same folder
(config.json + weights.safetensors + id tables), saved and loaded by the same code, the same
``recommend`` entry and the same epoch ``callback`` protocol.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec._io import read_parquet
from sessionrec.errors import ConfigError, DataError, one_line
from sessionrec.models.base import EpochCallback, Model
from sessionrec.rating.data import Ratings
from sessionrec.rating.metrics import rating_metrics

FORMAT = "sessionrec.rating-model/1"


class RatingModel(Model):
    """Base class of rating predictors (the ``Model`` of a user's ratings).

    ``fit`` records the vocabulary, the global mean, the rating scale and the training triples
    (kept for ``recommend(..., exclude_seen=True)`` and for models that read a user's or an
    item's rating vector at prediction time); subclasses implement ``_fit``, ``_predict`` and
    ``_arrays`` / ``_load_arrays``.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"rating", "top-n"})
    FORMAT: ClassVar[str] = FORMAT
    #: Tiny settings for fast tests (the contract tests of rating models use them).
    test_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        self.user_ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.item_ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.global_mean = 0.0
        self.scale = (1.0, 5.0)
        self.train_users = np.zeros(0, dtype=np.int64)
        self.train_items = np.zeros(0, dtype=np.int64)
        self.train_ratings = np.zeros(0, dtype=np.float32)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        train: Ratings,
        valid: Ratings | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        """Learn from ``train``; with ``valid``, epoch records carry ``valid_rmse``."""
        if len(train) == 0:
            raise DataError(None, expected="training ratings", found="none")
        self.user_ids, self.item_ids = train.user_ids, train.item_ids
        self.global_mean = float(np.mean(train.ratings, dtype=np.float64))
        self.scale = train.scale
        self.train_users, self.train_items = train.users, train.items
        self.train_ratings = train.ratings
        self._fit(train, valid, callback)
        return self

    @abstractmethod
    def _fit(self, train: Ratings, valid: Ratings | None, callback: EpochCallback | None) -> None:
        """Learn the parameters (vocabulary and global mean are already set)."""

    def _epoch_done(
        self,
        callback: EpochCallback | None,
        epoch: int,
        loss: float,
        started: float,
        n: int,
        valid: Ratings | None,
    ) -> bool:
        """Build the epoch record, hand it to ``callback``; True means stop. (The loops of
        baseline, svd and svdpp; autorec's epochs run in ``sessionrec.training.trainer``.)"""
        if not np.isfinite(loss):
            self._epoch_record({"epoch": epoch, "train_loss": loss}, None)
        seconds = time.perf_counter() - started
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss,
            "seconds": seconds,
            "events_per_second": n / max(seconds, 1e-9),
        }
        self._epoch_record(record, valid)
        return bool(callback(record)) if callback is not None else False

    def _epoch_record(self, record: dict[str, Any], valid: Ratings | None) -> None:
        """Refuse an epoch whose train loss is not finite; add ``valid_rmse`` to ``record``."""
        loss = record["train_loss"]
        if not np.isfinite(loss):
            raise ConfigError(
                f"{self.name} diverged in epoch {record['epoch']} (train loss {loss}): lower lr "
                "(or batch_size, whose steps are summed)"
            )
        if valid is not None and len(valid):
            pred = self.predict(valid.users, valid.items)
            record["valid_rmse"] = float(np.sqrt(np.mean((pred - valid.ratings) ** 2)))

    # -- prediction -------------------------------------------------------------------------
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(N,) predicted ratings for user/item index pairs, clipped to the rating scale.

        Indices outside the training vocabulary, or never seen in training, get the global
        mean plus whatever part of the model is known (the biases of the known side).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError("users and items must have the same shape")
        known_u = (users >= 0) & (users < self.n_users)
        known_i = (items >= 0) & (items < self.n_items)
        pred = self._predict(np.where(known_u, users, -1), np.where(known_i, items, -1))
        return np.clip(pred, *self.scale).astype(np.float32)

    @abstractmethod
    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Unclipped predictions; an index of -1 means unknown."""

    def predict_ids(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Predictions for raw user and item ids (unknown ids → global mean)."""
        return self.predict(
            _lookup(self.user_ids, np.asarray(user_ids)),
            _lookup(self.item_ids, np.asarray(item_ids)),
        )

    def evaluate(self, test: Ratings) -> dict[str, float]:
        """{"rmse", "mae", "fcp"} on ``test`` (same vocabulary as the training ratings)."""
        return rating_metrics(test.users, test.ratings, self.predict(test.users, test.items))

    def recommend(
        self, user_id: Any, k: int = 10, *, exclude_seen: bool = True, index: Any = None
    ) -> pl.DataFrame:
        """Top-``k`` items by predicted rating for a raw user id, with titles when known:
        columns rank, item_id, predicted, title, year, genres. ``exclude_seen`` leaves out the
        items the user rated in training."""
        return super().recommend(user_id, k, exclude_seen=exclude_seen, index=index)

    def _recommend(self, query: Any, k: int, *, exclude_seen: bool, index: Any) -> pl.DataFrame:
        if index is not None:
            raise ConfigError(f"{self.name} ranks every item by predicted rating: no index")
        user_id = query
        u = _lookup(self.user_ids, np.asarray([user_id]))[0]
        if u < 0:
            raise DataError(
                None, column=S.USER, expected="a user seen in training", found=str(user_id)
            )
        pred = self.predict(np.full(self.n_items, u), np.arange(self.n_items)).astype(np.float64)
        if exclude_seen:
            pred[self.train_items[self.train_users == u]] = -np.inf
        k = min(k, int(np.isfinite(pred).sum()))
        top = np.argsort(-pred, kind="stable")[:k]
        out = pl.DataFrame(
            {"rank": np.arange(1, k + 1), S.ITEM: self.item_ids[top], "predicted": pred[top]}
        )
        if self.items is not None:
            meta = [c for c in (S.TITLE, S.YEAR, S.GENRES) if c in self.items.columns]
            out = out.join(
                self.items.select(S.ITEM, *meta).unique(S.ITEM),
                on=S.ITEM,
                how="left",
                maintain_order="left",
            )
        return out

    # -- the model folder: global mean and scale in config.json, users and items beside ---
    @abstractmethod
    def _arrays(self) -> dict[str, torch.Tensor]:
        """The learned arrays to persist."""

    @abstractmethod
    def _load_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        """Restore what ``_arrays`` returned."""

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {
            **self._arrays(),
            "train_users": torch.from_numpy(self.train_users),
            "train_items": torch.from_numpy(self.train_items),
            "train_ratings": torch.from_numpy(self.train_ratings),
        }

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        arrays = dict(arrays)
        self.train_users = arrays.pop("train_users").numpy()
        self.train_items = arrays.pop("train_items").numpy()
        self.train_ratings = arrays.pop("train_ratings").numpy()
        self._load_arrays(arrays)

    @property
    def weights_device(self) -> str:
        return "cpu"  # the training triples are numpy arrays; each model moves its own part

    def folder_record(self) -> dict[str, Any]:
        return {"global_mean": self.global_mean, "scale": list(self.scale)}

    def read_folder_record(self, record: dict[str, Any], path: Path) -> None:
        try:
            self.global_mean = float(record["global_mean"])
            lo, hi = record["scale"]
            self.scale = (float(lo), float(hi))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(path / "config.json", expected=f"a {self.name} model's settings",
                            found=one_line(exc)) from None  # fmt: skip

    def folder_tables(self) -> dict[str, pl.DataFrame]:
        items = pl.DataFrame({S.ITEM: self.item_ids})
        if self.items is not None:
            items = items.join(
                self.items.unique(S.ITEM), on=S.ITEM, how="left", maintain_order="left"
            )
        return {"items.parquet": items, "users.parquet": pl.DataFrame({S.USER: self.user_ids})}

    def read_folder_tables(self, path: Path) -> None:
        items = read_parquet(path / "items.parquet")
        users = read_parquet(path / "users.parquet")
        try:
            self.item_ids = items[S.ITEM].to_numpy()
            self.user_ids = users[S.USER].to_numpy()
        except pl.exceptions.ColumnNotFoundError as exc:
            raise DataError(path, expected="item_id and user_id columns in items/users.parquet",
                            found=one_line(exc)) from None  # fmt: skip
        self.items = items if items.width > 1 else None

    def check_loaded(self, record: dict[str, Any]) -> None:
        if len(self.user_ids) and len(self.item_ids):  # shapes that disagree fail here
            self.predict(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))


def _lookup(vocab: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each id in the sorted ``vocab``; -1 where absent."""
    if len(vocab) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    try:
        ids = ids.astype(vocab.dtype)
    except (ValueError, TypeError):
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(vocab, ids), 0, len(vocab) - 1)
    return np.where(vocab[pos] == ids, pos, -1).astype(np.int64)


def known_mask(index: np.ndarray, size: int, seen: np.ndarray) -> np.ndarray:
    """Boolean (len(seen_vector),) of which ``index`` entries are valid and seen in training."""
    seen_vec = np.zeros(size, dtype=bool)
    seen_vec[seen] = True
    ok = index >= 0
    out = np.zeros(len(index), dtype=bool)
    out[ok] = seen_vec[index[ok]]
    return out
