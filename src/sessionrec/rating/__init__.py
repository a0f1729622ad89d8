"""Rating prediction (explicit ratings; RMSE, MAE, FCP): biased baseline, SVD, SVD++, AutoRec.

Rating models predict ``r̂(user, item)``; they are not next-item ``SessionModel``\\ s. They are
registered with every other model in ``sessionrec.registry`` (task ``rating``);
``RATING_MODELS`` and the functions here are its rating view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from sessionrec import registry
from sessionrec.rating.base import RatingModel
from sessionrec.rating.crossval import crossval
from sessionrec.rating.data import Ratings, kfold, random_split, time_split
from sessionrec.rating.metrics import fcp, mae, rating_metrics, rmse

#: --model name → (module, class) of every rating model (a view of ``registry.MODELS``).
RATING_MODELS: dict[str, tuple[str, str]] = {
    n: (s.module, s.cls) for n, s in registry.MODELS.items() if s.task == registry.RATING
}


def rating_model_class(name: str) -> type[RatingModel]:
    """The class of rating model ``name``; ``UnknownNameError`` listing the known ones."""
    return cast(type[RatingModel], registry.model_class(name, registry.RATING))


def create_rating_model(
    name: str, params: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> RatingModel:
    """A new, untrained rating model ``name`` with ``params`` (unknown keys are rejected)."""
    return rating_model_class(name).from_params(params, device=device)


def load_rating_model(path: str | Path, device: str | torch.device = "cpu") -> RatingModel:
    """Load a saved rating model directory; a damaged one is a ``DataError`` naming the file."""
    return cast(RatingModel, registry.load_model(path, device, task=registry.RATING))


def check_distributable(model_name: str) -> None:
    """``registry.check_distributable``: refuse a model that does not train as one rank of a
    process group, naming the models that do (next-item and rating alike)."""
    registry.check_distributable(model_name)


__all__ = [
    "RATING_MODELS",
    "RatingModel",
    "Ratings",
    "check_distributable",
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
