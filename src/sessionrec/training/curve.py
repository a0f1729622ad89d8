"""What an epoch-trained model leaves in its directory: history.jsonl and learning_curve.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sessionrec._io import atomic_path


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """One JSON record per epoch, written atomically; a non-finite number is written as null
    (``json.dumps`` would write a bare ``NaN``, which is not JSON)."""
    from sessionrec.training.finite import finite_or_none

    lines = (
        json.dumps({k: finite_or_none(v) for k, v in r.items()}, allow_nan=False) + "\n"
        for r in history
    )
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def learning_curve(path: Path, history: list[dict[str, Any]], title: str) -> None:
    """Train loss and valid metrics per epoch (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    loss = [np.nan if r.get("train_loss") is None else r["train_loss"] for r in history]
    valid = sorted({k for r in history for k in r if k.startswith("valid_")})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, loss, "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("train loss", color="tab:blue")
    if valid:
        ax2 = ax.twinx()
        for key in valid:
            ax2.plot(epochs, [r.get(key, np.nan) for r in history], "s--", label=key)
        ax2.set_ylabel("valid metric")
        ax2.legend(loc="center right")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
