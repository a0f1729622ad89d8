"""Training infrastructure shared by models: session-parallel batches, negative sampling,
losses, optimisers, the epoch loop and its checkpoints (``trainer``). The runner behind
`sessionrec train` is ``sessionrec.runner``; ``train`` stays importable from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["train"]

if TYPE_CHECKING:
    from sessionrec.runner import train


def __getattr__(name: str) -> Any:
    if name == "train":
        from sessionrec.runner import train

        return train
    raise AttributeError(f"module 'sessionrec.training' has no attribute {name!r}")
