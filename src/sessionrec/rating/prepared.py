"""Ratings from a PreparedData directory, so rating models train and evaluate through the CLI.

The parts of a PreparedData keep ``user_id`` and ``rating``; this reads them as
:class:`~sessionrec.rating.data.Ratings` over one vocabulary (users and item ids of all parts).
Context rows (``target`` False: history repeated before a test part's targets) are dropped from
valid and test, so every rating is scored once; the training part keeps all its rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec._io import claim_dir, mark_complete, write_json
from sessionrec.errors import ConfigError, DataError
from sessionrec.prepare import PreparedData
from sessionrec.rating.base import RatingModel
from sessionrec.rating.data import Ratings
from sessionrec.rating.metrics import rating_metrics
from sessionrec.training.distributed import Distributed, on_main

log = logging.getLogger(__name__)


def prepared_ratings(data: PreparedData, part: str) -> Ratings:
    """The part ``train``, ``valid``, ``test`` or ``train+valid`` of ``data`` as Ratings."""
    names = ["train", "valid"] if part == "train+valid" else [part]
    frames = {p: data.frame(p) for p in ("train", "valid", "test")}
    for name, f in frames.items():
        for col in (S.USER, S.RATING):
            if col not in f.columns:
                raise DataError(
                    data.path / f"{name}.parquet",
                    column=col,
                    expected="explicit ratings with users (a rating source)",
                    found=f"no {col} column",
                )
    every = pl.concat([f.select(S.USER, S.ITEM, S.RATING) for f in frames.values()])
    user_ids = np.sort(every[S.USER].unique().to_numpy())
    item_ids = np.sort(every[S.ITEM].unique().to_numpy())
    r_all = every[S.RATING].drop_nulls().to_numpy()
    picked = []
    for name in names:
        f = frames[name]
        if name != "train" and "target" in f.columns:
            f = f.filter(pl.col("target"))
        picked.append(f.select(S.USER, S.ITEM, S.RATING, S.TIME))
    rows = pl.concat(picked).filter(pl.col(S.RATING).is_not_null())
    return Ratings(
        users=np.searchsorted(user_ids, rows[S.USER].to_numpy()).astype(np.int64),
        items=np.searchsorted(item_ids, rows[S.ITEM].to_numpy()).astype(np.int64),
        ratings=rows[S.RATING].to_numpy().astype(np.float32),
        timestamps=rows[S.TIME].dt.epoch("us").to_numpy().astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        scale=(float(r_all.min()), float(r_all.max())) if len(r_all) else (1.0, 5.0),
    )


def evaluate_prepared(model: RatingModel, data: PreparedData, split: str) -> dict[str, Any]:
    """RMSE, MAE and FCP of a rating model on the target ratings of ``split`` of ``data``
    (what `sessionrec evaluate` reports for a rating model): ``{"ratings": n, "rmse", "mae",
    "fcp"}``."""
    part = prepared_ratings(data, split)
    pred = model.predict_ids(part.user_ids[part.users], part.item_ids[part.items])
    return {"ratings": len(part), **rating_metrics(part.users, part.ratings, pred)}


def check_resumable(model_name: str) -> None:
    """Refuse ``resume`` for a rating model that keeps no checkpoint, naming those that do."""
    from sessionrec.rating import RATING_MODELS, rating_model_class

    if not hasattr(rating_model_class(model_name), "training_state"):
        keep = [n for n in RATING_MODELS if hasattr(rating_model_class(n), "training_state")]
        raise ConfigError(
            f"{model_name} keeps no checkpoint to resume from; --resume continues "
            f"{', '.join(keep)} and the next-item models"
        )


def train_rating(
    model_name: str,
    data: PreparedData,
    out_dir: str | Path,
    *,
    params: dict[str, Any] | None = None,
    fit_on: str = "train",
    seed: int = 0,
    device: str = "cpu",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    distributed: Distributed | None = None,
    after_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> RatingModel:
    """Fit a rating model on a PreparedData's ratings and write its directory.

    With ``fit_on="train"`` and ratings in valid, every epoch record carries ``valid_rmse``.
    The directory holds the model (config.json, weights, ids, items), ``history.jsonl``,
    ``learning_curve.png`` and ``data_meta.json``; a model trained in epochs with a training
    state (autorec) also keeps ``checkpoint/`` after every epoch, which ``resume`` continues
    (same data, same parameters; a larger ``n_epochs`` extends a finished run).

    ``distributed`` (autorec): train as one rank of a process group; rank 0 reads the
    checkpoint, writes the folder and calls ``on_epoch`` and ``after_epoch``, every rank
    returns the same model (docs/distributed.md). ``after_epoch`` gets each record once it
    is written and checkpointed; True stops after that epoch (on every rank).
    """
    from sessionrec.models._resume import read_resume_state, resumed_config
    from sessionrec.rating import rating_model_class
    from sessionrec.training.curve import learning_curve, write_history
    from sessionrec.training.trainer import (
        CHECKPOINT,
        load_checkpoint,
        write_checkpoint,
    )

    cls = rating_model_class(model_name)
    checkpointed = hasattr(cls, "training_state")
    if resume:
        check_resumable(model_name)
    if distributed is not None:
        from sessionrec.rating import check_distributable

        check_distributable(model_name)
        device = str(distributed.device)
    main = distributed is None or distributed.is_main
    out = Path(out_dir)
    ckpt = out / CHECKPOINT
    given = dict(params or {})
    params = dict(given)
    if "seed" in getattr(cls.Config, "__dataclass_fields__", {}):
        params.setdefault("seed", seed)
    train_r = prepared_ratings(data, fit_on)  # read (and checked) before anything is written
    valid_r = prepared_ratings(data, "valid") if fit_on == "train" else None
    if valid_r is not None and len(valid_r) == 0:
        valid_r = None
    fingerprint = data.fingerprint(fit_on)
    if resume:
        # rank 0 reads the checkpoint (other machines may not see the folder) and hands on
        # the run's record here, the arrays below
        state = on_main(distributed, lambda: read_resume_state(ckpt, model_name, data, fit_on, out))
        model = cls(resumed_config(cls, state, given, ckpt / "progress.json"), device=device)
        if main:
            load_checkpoint(ckpt, model)
    else:
        model = cls.from_params(params, device=device)  # a bad parameter fails before the claim
        on_main(distributed, lambda: claim_dir(out, overwrite=overwrite, verb="train"))
        state = {"history": [], "best_epoch": None, "best_value": None, "bad": 0}
    state["fit_on"], state["fingerprint"] = fit_on, fingerprint
    ranked: Any = model  # (autorec: a model that supports_distributed)
    if distributed is not None:
        ranked.distributed = distributed
        if resume:  # rank 0's weights, optimiser state and epochs on every rank
            arrays = distributed.broadcast_arrays(ranked.training_state() if main else None)
            if not main:
                ranked.load_training_state(arrays)

    def record(rec: dict[str, Any]) -> bool:
        state["history"].append(dict(rec))
        stop = False
        if main:
            if on_epoch is not None:
                on_epoch(rec)
            write_history(out / "history.jsonl", state["history"])
            if checkpointed:
                write_checkpoint(ckpt, model, model_name, state, None)
            stop = bool(after_epoch(rec)) if after_epoch is not None else False
        return stop if distributed is None else distributed.agree(stop)

    if main:
        log.info(
            "%s on %s: %d ratings, %d users, %d items",
            model_name,
            fit_on,
            len(train_r),
            train_r.n_users,
            train_r.n_items,
        )
    model.items = data.items.drop(S.ITEM_IDX, strict=False)
    try:
        model.fit(train_r, valid_r, callback=record)
    finally:
        if distributed is not None:
            ranked.distributed = None  # the process group is the caller's, not the model's
    if not main:
        return model
    history = state["history"]
    model.save(out)
    write_history(out / "history.jsonl", history)
    learning_curve(out / "learning_curve.png", history, model_name)
    trained_on = {"path": str(data.path), "fit_on": fit_on, "fingerprint": fingerprint}
    write_json(out / "data_meta.json", {**data.meta, **trained_on})
    mark_complete(out, "train")
    return model
