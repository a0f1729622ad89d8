"""Models behind one protocol (``sessionrec.models.base.SessionModel``).

The registry maps a ``--model`` name to the module and class that implement it; modules are
imported only when asked for, so `import sessionrec` stays light.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from sessionrec.errors import DataError, UnknownNameError
from sessionrec.models.base import SessionModel, read_model_config
from sessionrec.prepare.data import read_trained_on

#: --model name → (module, class). One line per model.
REGISTRY: dict[str, tuple[str, str]] = {
    "pop": ("sessionrec.models.pop", "Pop"),
    "spop": ("sessionrec.models.pop", "SPop"),
    "bpr": ("sessionrec.models.bpr", "BPR"),
    "als": ("sessionrec.models.als", "ALS"),
    "markov": ("sessionrec.models.markov", "Markov"),
    "sr": ("sessionrec.models.sr", "SR"),
    "itemknn": ("sessionrec.models.itemknn", "ItemKNN"),
    "sknn": ("sessionrec.models.sknn", "SKNN"),
    "vsknn": ("sessionrec.models.vsknn", "VSKNN"),
    "gru4rec": ("sessionrec.models.gru4rec", "GRU4Rec"),
    "two-tower": ("sessionrec.models.two_tower", "TwoTower"),
}


def model_class(name: str) -> type[SessionModel]:
    try:
        module, cls = REGISTRY[name]
    except KeyError:
        raise UnknownNameError("model", name, list(REGISTRY)) from None
    return getattr(importlib.import_module(module), cls)


def create(
    name: str, params: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> SessionModel:
    """A new, untrained model ``name`` with ``params`` (unknown keys are rejected)."""
    return model_class(name).from_params(params, device=device)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SessionModel:
    """Load a saved model directory (config.json + weights + items).

    A damaged folder ends in a ``DataError`` naming the file and what is wrong. The model's
    ``trained_on`` holds what ``data_meta.json`` says of its training data (path, part,
    fingerprint), or None for a model saved without it (``model.save``).
    """
    path = Path(path)
    name = read_model_config(path)["model"]
    try:
        cls = model_class(name)
    except UnknownNameError as exc:
        raise DataError(path / "config.json", column="model", expected="a next-item model name",
                        found=str(exc)) from None  # fmt: skip
    model = cls.load_from(path, device=device)
    model.trained_on = read_trained_on(path)
    return model


__all__ = ["REGISTRY", "SessionModel", "create", "load_model", "model_class"]
