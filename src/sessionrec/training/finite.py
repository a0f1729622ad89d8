"""Stop training the moment it turns non-finite, naming the epoch and the step.

A NaN loss propagates into every weight within a step or two; an epoch trained on from there
would be scored, checkpointed and possibly picked as the best. Every epoch loop calls
``check_loss`` after each step (one host sync, negligible next to the step itself) and the
runner calls ``check_arrays`` on the weights after each epoch, before anything is saved.
"""

from __future__ import annotations

import math

import torch

from sessionrec.errors import TrainingDivergedError


def check_loss(model: str, loss: torch.Tensor | float, epoch: int, step: int) -> None:
    """Raise ``TrainingDivergedError`` when ``loss`` is NaN or infinite (epoch, step 1-based)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise TrainingDivergedError(model, f"the training loss turned {value}", epoch, step)


def check_arrays(model: str, arrays: dict[str, torch.Tensor], epoch: int) -> None:
    """Raise ``TrainingDivergedError`` naming the first floating array with a non-finite entry."""
    for name, a in arrays.items():
        if a.is_floating_point() and not bool(torch.isfinite(a).all()):
            raise TrainingDivergedError(model, f"parameter {name!r} turned non-finite", epoch)


def finite_or_none(value: object) -> object:
    """A float that JSON can hold: NaN and ±inf become None (``null``), anything else as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
