"""Rating prediction (explicit ratings; RMSE, MAE, FCP): biased baseline, SVD, SVD++, AutoRec.

Rating models predict ``r̂(user, item)``; they are not next-item ``SessionModel``\\ s and sit in
their own registry, ``RATING_MODELS``, beside ``sessionrec.models.REGISTRY``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from sessionrec.errors import ConfigError, DataError, UnknownNameError
from sessionrec.rating.base import RatingModel
from sessionrec.rating.crossval import crossval
from sessionrec.rating.data import Ratings, kfold, random_split, time_split
from sessionrec.rating.metrics import fcp, mae, rating_metrics, rmse

#: --model name → (module, class) for rating models.
RATING_MODELS: dict[str, tuple[str, str]] = {
    "baseline": ("sessionrec.rating.baseline", "Baseline"),
    "svd": ("sessionrec.rating.svd", "SVD"),
    "svdpp": ("sessionrec.rating.svdpp", "SVDpp"),
    "autorec": ("sessionrec.rating.autorec", "AutoRec"),
}


def rating_model_class(name: str) -> type[RatingModel]:
    try:
        module, cls = RATING_MODELS[name]
    except KeyError:
        raise UnknownNameError("rating model", name, list(RATING_MODELS)) from None
    return getattr(importlib.import_module(module), cls)


def create_rating_model(
    name: str, params: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> RatingModel:
    """A new, untrained rating model ``name`` with ``params`` (unknown keys are rejected)."""
    return rating_model_class(name).from_params(params, device=device)


def load_rating_model(path: str | Path, device: str | torch.device = "cpu") -> RatingModel:
    from sessionrec.models.base import read_model_config

    path = Path(path)
    name = read_model_config(path)["model"]
    try:
        cls = rating_model_class(name)
    except ConfigError as exc:
        raise DataError(path / "config.json", column="model", expected="a rating model name",
                        found=str(exc)) from None  # fmt: skip
    return cls.load_from(path, device)


__all__ = [
    "RATING_MODELS",
    "RatingModel",
    "Ratings",
    "create_rating_model",
    "crossval",
    "fcp",
    "kfold",
    "load_rating_model",
    "mae",
    "random_split",
    "rating_metrics",
    "rating_model_class",
    "rmse",
    "time_split",
]
