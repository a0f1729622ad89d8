"""Next-item models behind one protocol (``sessionrec.models.base.SessionModel``).

Every model, next-item and rating, is registered in ``sessionrec.registry``; ``REGISTRY``,
``model_class``, ``create`` and ``load_model`` here are its next-item view, kept for scripts
and notebooks that import them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from sessionrec import registry
from sessionrec.models.base import Model, SessionModel

#: --model name → (module, class) of every next-item model (a view of ``registry.MODELS``).
REGISTRY: dict[str, tuple[str, str]] = {
    n: (s.module, s.cls) for n, s in registry.MODELS.items() if s.task == registry.NEXT_ITEM
}


def model_class(name: str) -> type[SessionModel]:
    """The class of next-item model ``name``; ``UnknownNameError`` listing the known ones."""
    return cast(type[SessionModel], registry.model_class(name, registry.NEXT_ITEM))


def create(
    name: str, params: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> SessionModel:
    """A new, untrained model ``name`` with ``params`` (unknown keys are rejected)."""
    return model_class(name).from_params(params, device=device)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SessionModel:
    """Load a saved next-item model directory (config.json + weights + items).

    A damaged folder ends in a ``DataError`` naming the file and what is wrong. The model's
    ``trained_on`` holds what ``data_meta.json`` says of its training data (path, part,
    fingerprint), or None for a model saved without it (``model.save``).
    """
    return cast(SessionModel, registry.load_model(path, device, task=registry.NEXT_ITEM))


__all__ = ["REGISTRY", "Model", "SessionModel", "create", "load_model", "model_class"]
