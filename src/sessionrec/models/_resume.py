"""Resuming a model's training from its checkpoint: the checks that a resumed run is the
same run (same data, same parameters but for the number of epochs). Shared by the next-item
runner (``sessionrec.runner``) and the rating one (``sessionrec.rating.prepared``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sessionrec.errors import ConfigError, DataError
from sessionrec.models.base import make_config
from sessionrec.prepare.data import PreparedData
from sessionrec.training.trainer import CHECKPOINT, read_progress

log = logging.getLogger(__name__)

#: the parameters that count epochs: the only ones a resumed run may change (to extend it)
EPOCH_KEYS = ("n_epochs", "epochs")


def read_resume_state(
    ckpt: Path, model_name: str, data: PreparedData, fit_on: str, out: Path
) -> dict[str, Any]:
    """The run's record in the checkpoint folder ``ckpt``, checked to continue ``model_name``
    on ``fit_on`` of ``data``."""
    if not (ckpt / "progress.json").exists():
        raise DataError(ckpt, expected="a checkpoint to resume from", found="none")
    state = read_progress(ckpt / "progress.json")
    if state["model"] != model_name:
        raise ConfigError(f"the checkpoint is of model {state['model']!r}, not {model_name!r}")
    check_resume_data(state, data, fit_on, out)
    return state


def check_resume_data(state: dict[str, Any], data: PreparedData, fit_on: str, out: Path) -> None:
    """A checkpoint continues on the data it was trained on, and only there."""
    was = state.get("fit_on")
    if was is not None and was != fit_on:
        raise ConfigError(f"the checkpoint in {out} was fit on {was}, not {fit_on}")
    saved = state.get("fingerprint")
    if saved is None:
        log.warning("the checkpoint in %s records no data fingerprint (older sessionrec)", out)
        return
    ours = data.fingerprint(fit_on)
    if saved != ours:
        raise DataError(
            out / CHECKPOINT,
            expected=f"a checkpoint of {fit_on} of {data.path} (fingerprint {ours[:12]})",
            found=f"one trained on other data (fingerprint {saved[:12]}); --resume continues "
            "on the same data only",
        )


def resumed_config(cls: Any, state: dict[str, Any], given: dict[str, Any], where: Path) -> Any:
    """The checkpoint's config, with the number of epochs raised where ``given`` says so;
    any other parameter given differently is refused (a resumed run is the same run)."""
    import dataclasses

    from sessionrec.models.base import ALIASES, PRESET_KEY

    if PRESET_KEY in given:
        raise ConfigError("--resume continues the checkpoint's parameters: drop the preset")
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    given = {(ALIASES[k] if k in ALIASES and k not in fields else k): v for k, v in given.items()}
    try:
        saved: Any = make_config(cls.Config, state["config"], warn=False)
    except ConfigError as exc:
        raise DataError(where, expected="the run's parameters", found=str(exc)) from None
    asked: Any = make_config(cls.Config, {**dataclasses.asdict(saved), **given})
    changed = [k for k in given if getattr(asked, k) != getattr(saved, k) and k not in EPOCH_KEYS]
    if changed:
        raise ConfigError(
            "--resume continues the checkpoint's run with its parameters; only the number of "
            "epochs may change, not "
            + ", ".join(f"{k} ({getattr(saved, k)!r} → {getattr(asked, k)!r})" for k in changed)
        )
    done = len(state.get("history", []))
    for k in EPOCH_KEYS:
        if k in given and getattr(asked, k) < done:
            raise ConfigError(f"{k}={getattr(asked, k)} is below the {done} epochs already done")
    return asked


__all__ = ["EPOCH_KEYS", "check_resume_data", "read_resume_state", "resumed_config"]
