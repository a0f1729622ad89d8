"""The rating-model protocol: ``fit(Ratings)`` then ``predict(users, items) -> ratings``.

Rating models are not :class:`~sessionrec.models.base.SessionModel`\\ s: they predict how a
*user* rates an item, and a session has no user to ask about. They are registered with task
``rating`` in ``sessionrec.registry`` (so the next-item contract suite does not meet them); they
share the persistence format (config.json + weights.safetensors + id tables) and the epoch
``callback`` protocol.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec._io import atomic_path, write_json
from sessionrec.errors import ConfigError, DataError
from sessionrec.models.base import EpochCallback, make_config, resolve_device
from sessionrec.rating.data import Ratings
from sessionrec.rating.metrics import rating_metrics

FORMAT = "sessionrec.rating-model/1"


class RatingModel(ABC):
    """Base class of rating predictors.

    ``fit`` records the vocabulary, the global mean, the rating scale and the training triples
    (kept for ``recommend(..., exclude_seen=True)`` and for models that read a user's or an
    item's rating vector at prediction time); subclasses implement ``_fit``, ``_predict`` and
    ``_arrays`` / ``_load_arrays``.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    tasks: ClassVar[frozenset[str]] = frozenset({"rating", "top-n"})
    #: Tiny settings for fast tests (the contract tests of rating models use them).
    test_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.device = resolve_device(device)
        self.user_ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.item_ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.global_mean = 0.0
        self.scale = (1.0, 5.0)
        self.train_users = np.zeros(0, dtype=np.int64)
        self.train_items = np.zeros(0, dtype=np.int64)
        self.train_ratings = np.zeros(0, dtype=np.float32)
        self.items: pl.DataFrame | None = None  # item_id + titles, for recommend

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **kw: Any) -> Self:
        return cls(make_config(cls.Config, params), **kw)

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

    def recommend(self, user_id: Any, k: int = 10, *, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-``k`` items by predicted rating for a raw user id, with titles when known."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a whole number of at least 1 (how many items), not {k!r}")
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

    # -- persistence ------------------------------------------------------------------------
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

    def save(self, path: str | Path) -> Path:
        """Write config.json, weights.safetensors, users.parquet and items.parquet."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {k: v.detach().contiguous().cpu() for k, v in self.state_arrays().items()}
        with atomic_path(path / "weights.safetensors") as tmp:
            save_file(arrays, str(tmp))
        items = pl.DataFrame({S.ITEM: self.item_ids})
        if self.items is not None:
            items = items.join(
                self.items.unique(S.ITEM), on=S.ITEM, how="left", maintain_order="left"
            )
        with atomic_path(path / "items.parquet") as tmp:
            items.write_parquet(tmp)
        with atomic_path(path / "users.parquet") as tmp:
            pl.DataFrame({S.USER: self.user_ids}).write_parquet(tmp)
        write_json(
            path / "config.json",
            {
                "format": FORMAT,
                "model": self.name,
                "global_mean": self.global_mean,
                "scale": list(self.scale),
                "config": dataclasses.asdict(self.config),
            },
        )
        return path

    @classmethod
    def load_from(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        """Load a rating model directory; a damaged file ends in a ``DataError`` naming it."""
        from sessionrec.models.base import load_weights, one_line, read_model_config, read_parquet

        path = Path(path)
        cfg = read_model_config(path)
        try:
            model = cls(make_config(cls.Config, cfg["config"], warn=False), device=device)
            model.global_mean = float(cfg["global_mean"])
            lo, hi = cfg["scale"]
            model.scale = (float(lo), float(hi))
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise DataError(path / "config.json", expected=f"a {cls.name} model's settings",
                            found=one_line(exc)) from None  # fmt: skip
        items = read_parquet(path / "items.parquet")
        users = read_parquet(path / "users.parquet")
        try:
            model.item_ids = items[S.ITEM].to_numpy()
            model.user_ids = users[S.USER].to_numpy()
        except pl.exceptions.ColumnNotFoundError as exc:
            raise DataError(path, expected="item_id and user_id columns in items/users.parquet",
                            found=one_line(exc)) from None  # fmt: skip
        model.items = items if items.width > 1 else None
        arrays = load_weights(path / "weights.safetensors")
        try:
            model.train_users = arrays.pop("train_users").numpy()
            model.train_items = arrays.pop("train_items").numpy()
            model.train_ratings = arrays.pop("train_ratings").numpy()
            model._load_arrays(arrays)
            if len(model.user_ids) and len(model.item_ids):  # shapes that disagree fail here
                model.predict(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
        except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
            raise DataError(path / "weights.safetensors",
                            expected=f"arrays that fit config.json ({cls.name})",
                            found=one_line(exc)) from None  # fmt: skip
        return model


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
