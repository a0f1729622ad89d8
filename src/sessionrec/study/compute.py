"""Computing a cell: its prepared data, its model, its evaluations, each once.

Every artifact lives in ``DIR/cache/<kind>/<key>``, written into a hidden temporary folder
and renamed into place when whole; a rename that finds the key already there (another worker
finished it first) drops its own copy. A key that exists is finished: a killed run leaves
only temporary folders, which the next run ignores and cleans.

The **common target set** of a slice is the set of test events that every session definition
predicts: an event is identified by its user (or, for a log of sessions without users, its own
session id), item, time and its place among identical events, and it is a target of the common
set when it is a predicted event (a target after its session's first event) in every
definition's test part. Each definition evaluates the common set in its own sessions: where
the context starts (its session's earlier events) and what the model trained on are the
definition's; the events ranked are the same for all.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec._io import read_json, write_json
from sessionrec.errors import ConfigError, DataError
from sessionrec.prepare.data import PreparedData, SessionData
from sessionrec.study.plan import Cell, Plan, Preparation

log = logging.getLogger(__name__)

UNIT = "_unit"
OCC = "_occ"
KEY_COLUMNS = (UNIT, S.ITEM, S.TIME, OCC)


@dataclass
class Store:
    """The content-addressed cache of a study folder, and what this process did with it."""

    root: Path
    computed: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / "done.json").is_file()

    def count(self, kind: str, computed: bool) -> None:
        book = self.computed if computed else self.reused
        book[kind] = book.get(kind, 0) + 1

    @contextmanager
    def write(self, kind: str, key: str) -> Iterator[Path]:
        """A fresh folder that becomes ``kind/key`` when the block ends without an error
        (with ``done.json`` last inside, so a folder without it is never read)."""
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-{os.getpid()}-", dir=final.parent))
        try:
            yield tmp
            write_json(tmp / "done.json", {"key": key, "kind": kind, "pid": os.getpid()})
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(kind, key):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another worker finished it first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.count(kind, True)

    def clean(self) -> None:
        """Remove temporary folders left by killed runs (of processes no longer alive)."""
        from sessionrec._io import _alive

        for tmp in self.root.glob("*/.tmp-*"):
            try:
                pid = int(tmp.name.rsplit("-", 2)[-2])
            except ValueError:
                continue
            if not _alive(pid):
                shutil.rmtree(tmp, ignore_errors=True)


class Context:
    """What a worker needs: the plan, the cache, the loaded log (read on first use)."""

    def __init__(self, plan: Plan, store: Store, device: str = "cpu") -> None:
        self.plan = plan
        self.store = store
        self.device = device
        self._dataset: Any = None

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = load_source(self.plan.spec, self.store)
        return self._dataset


def load_source(spec: Any, store: Store) -> Any:
    """The spec's dataset: a name, a path relative to the spec file, or ``synth:PRESET``
    (generated once into the cache, in the YOOCHOOSE layout)."""
    from sessionrec.datasets import ColumnMapping, load

    source = spec.data.source
    if source.startswith("synth:"):
        return load(_synth(spec, store))
    path = Path(spec.base) / source
    mapping = ColumnMapping(**dict(spec.data.columns)) if spec.data.columns else None
    return load(path if path.exists() else source, mapping)


def _synth(spec: Any, store: Store) -> Path:
    from sessionrec.study.plan import code_version, digest
    from sessionrec.synthetic import generate

    preset = spec.data.source.removeprefix("synth:")
    asked = {"preset": preset, "sessions": spec.data.synth_sessions, "seed": spec.data.synth_seed}
    key = digest({**asked, "code": code_version()})
    if not store.has("synth", key):
        extra = {"n_sessions": spec.data.synth_sessions} if spec.data.synth_sessions else {}
        log_ = generate(preset, seed=spec.data.synth_seed, **extra)
        with store.write("synth", key) as tmp:
            log_.save(tmp / "log", layout="yoochoose")
    return store.path("synth", key) / "log"


def log_span(ds: Any) -> tuple[datetime, datetime]:
    times = ds.collect([S.TIME])[S.TIME]
    first, last = times.min(), times.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    return first, last


# -- preparations ---------------------------------------------------------------------------------


def ensure_prepared(ctx: Context, prep: Preparation) -> PreparedData:
    store = ctx.store
    if store.has("prepared", prep.key):
        store.count("prepared", False)
        return PreparedData(store.path("prepared", prep.key) / "data")
    from sessionrec.prepare import PrepareConfig, prepare_frames, write_prepared

    ds = ctx.dataset
    if prep.window is not None:
        start, end = (datetime.fromisoformat(t) for t in prep.window)
        lazy = ds.lazy_events.filter((pl.col(S.TIME) >= start) & (pl.col(S.TIME) < end))
        ds = replace(ds, lazy_events=lazy, _events=None)
    t0 = time.perf_counter()
    parts, meta = prepare_frames(ds, PrepareConfig(**prep.config))
    meta["study"] = {"definition": prep.label, "slice": prep.slice, "window": prep.window}
    with store.write("prepared", prep.key) as tmp:
        write_prepared(tmp / "data", parts, meta)
        write_json(tmp / "info.json", {"seconds": time.perf_counter() - t0})
    log.info("prepared %s (slice %d)", prep.label, prep.slice)
    return PreparedData(store.path("prepared", prep.key) / "data")


# -- models ---------------------------------------------------------------------------------------


def ensure_model(ctx: Context, cell: Cell, data: PreparedData) -> dict[str, Any]:
    """The cell's trained model folder; returns its info (fit seconds, what chose settings)."""
    store = ctx.store
    if store.has("models", cell.key):
        store.count("models", False)
        info: dict[str, Any] = read_json(store.path("models", cell.key) / "info.json")
        return info
    from sessionrec.runner import train

    with store.write("models", cell.key) as tmp:
        t0 = time.perf_counter()
        if cell.tune is None:
            train(
                cell.name, data, tmp / "model", params=cell.params, fit_on=cell.fit_on,
                seed=cell.seed, device=ctx.device, progress=False,
                exclude_seen=ctx.plan.spec.evaluation.exclude_seen,
            )  # fmt: skip
            chosen = "fixed" if not _in_grid(ctx, cell) else "grid point (fixed)"
            params = cell.params
        else:
            params, chosen = _tune(ctx, cell, data, tmp)
        info = {
            "fit_seconds": time.perf_counter() - t0,
            "chosen_by": chosen,
            "params": params,
            "fit_on": cell.fit_on if cell.tune is None else "train+valid",
        }
        write_json(tmp / "info.json", info)
    log.info("trained %s", cell.describe())
    return info


def _in_grid(ctx: Context, cell: Cell) -> bool:
    return any(m.grid and cell.model.startswith(m.label + " ") for m in ctx.plan.spec.models)


def _tune(ctx: Context, cell: Cell, data: PreparedData, tmp: Path) -> tuple[dict[str, Any], str]:
    """Search on valid (train fits, valid scores), refit the best on train+valid."""
    from sessionrec.tuning import tune

    assert cell.tune is not None
    ev = ctx.plan.spec.evaluation
    result = tune(
        cell.name, data, tmp / "tune", trials=int(cell.tune["trials"]),
        metric=str(cell.tune["metric"]), exclude_seen=ev.exclude_seen, seed=cell.seed,
        device=ctx.device, n_boot=10,
    )  # fmt: skip
    os.replace(tmp / "tune" / "model", tmp / "model")
    params = dict(result["refit"]["params"])
    best = result["valid"][cell.tune["metric"]]
    chosen = (
        f"tune: {cell.tune['trials']} trials on valid (trial {result['trial']}, "
        f"{cell.tune['metric']} {best:.4f}); refit on train+valid"
    )
    return params, chosen


def load_cell_model(ctx: Context, cell: Cell) -> Any:
    from sessionrec.models import load_model

    return load_model(ctx.store.path("models", cell.key) / "model", device=ctx.device)


# -- common targets -------------------------------------------------------------------------------


def predicted_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """The identity (KEY_COLUMNS) of every predicted event of a test part, with its row index
    in the part (``_row``); a predicted event is a target after its session's first row."""
    has_users = S.USER in frame.columns and frame[S.USER].null_count() == 0
    unit = pl.col(S.USER) if has_users else pl.col(S.SESSION)
    first = pl.int_range(pl.len()).over(S.SESSION) == 0
    rows = frame.with_row_index("_row").with_columns(unit.alias(UNIT), first.alias("_first"))
    pred = rows.filter(pl.col("target") & ~pl.col("_first"))
    return pred.with_columns(pl.int_range(pl.len()).over([UNIT, S.ITEM, S.TIME]).alias(OCC)).select(
        "_row", *KEY_COLUMNS
    )


def ensure_common(ctx: Context, slice_: int) -> pl.DataFrame:
    """The common target set of a slice: KEY_COLUMNS of the events every definition predicts,
    in a canonical order, with ``cluster`` (the user or log session: the bootstrap's unit)."""
    store, key = ctx.store, ctx.plan.common[slice_]
    path = store.path("common", key) / "targets.parquet"
    if store.has("common", key):
        store.count("common", False)
        return pl.read_parquet(path)
    preps = [p for p in ctx.plan.preparations if p.slice == slice_]
    users = []
    common: pl.DataFrame | None = None
    for p in preps:
        data = ensure_prepared(ctx, p)
        frame = data.frame("test")
        users.append(S.USER in frame.columns and frame[S.USER].null_count() == 0)
        keys = predicted_keys(frame).drop("_row")
        common = keys if common is None else common.join(keys, on=list(KEY_COLUMNS), how="semi")
    if not all(users) and any(p.config["session"] != "column" for p in preps):
        raise ConfigError(
            "common targets need users in the log (or every definition cutting by the log's "
            "own session ids): an event's identity is its user, item, time and order"
        )
    assert common is not None
    common = common.sort(list(KEY_COLUMNS)).with_columns(
        pl.col(UNIT).rank("dense").cast(pl.Int64).sub(1).alias("cluster")
    )
    if common.height == 0:
        raise DataError(
            None,
            expected="test events that every session definition predicts (common targets)",
            found=f"none in slice {slice_}: the definitions' test parts share no predicted event",
        )
    with store.write("common", key) as tmp:
        common.write_parquet(tmp / "targets.parquet")
    return common


def common_part(data: PreparedData, common: pl.DataFrame) -> tuple[SessionData, np.ndarray]:
    """The definition's test sessions holding common targets, with only those as targets;
    and, per prediction in the evaluator's order, its index in ``common``."""
    frame = data.frame("test")
    keys = predicted_keys(frame)
    idx = common.select(*KEY_COLUMNS).with_row_index("_common")
    matched = keys.join(idx, on=list(KEY_COLUMNS), how="inner")
    if matched.height != common.height:
        raise AssertionError(
            f"{data.path}: {matched.height} of the {common.height} common targets found"
        )
    is_common = np.zeros(frame.height, dtype=bool)
    is_common[matched["_row"].to_numpy()] = True
    order = np.full(frame.height, -1, dtype=np.int64)
    order[matched["_row"].to_numpy()] = matched["_common"].to_numpy()
    keep_sessions = frame.filter(pl.Series(is_common))[S.SESSION].unique()
    mask = frame[S.SESSION].is_in(keep_sessions.implode())
    sub = frame.with_columns(pl.Series("target", is_common)).filter(mask)
    sub_order = order[mask.to_numpy()]
    part = SessionData.from_frame(sub, data.n_items)
    part.extra["prepared"] = data
    return part, sub_order


# -- evaluations ----------------------------------------------------------------------------------


def ensure_eval(
    ctx: Context, cell: Cell, target: str, data: PreparedData, model: Any | None
) -> tuple[dict[str, Any], Any]:
    """Evaluate the cell's model on its own test part or on the common targets; the stored
    record holds the metrics, the seconds, and per prediction its rank and (own) its session
    or (common) its index in the common set. Returns (record, model loaded or None)."""
    store, key = ctx.store, cell.evals[target]
    if store.has("evals", key):
        store.count("evals", False)
        return read_eval(store.path("evals", key)), model
    from sessionrec.evaluation import evaluate

    if model is None:
        model = load_cell_model(ctx, cell)
    ev = ctx.plan.spec.evaluation
    sampled: dict[str, Any] = {}
    if target in ("own", "sampled"):
        part = data.part("test")
        where = None
        if target == "sampled":
            sampled = {
                "protocol": "sampled",
                "negatives": ev.sampled_negatives,
                "negative_sampling": ev.sampled_by,
                "seed": cell.seed,
            }
    else:
        part, where = common_part(data, ensure_common(ctx, cell.prep.slice))
    res = evaluate(
        model, part, cutoffs=ev.cutoffs, exclude_seen=ev.exclude_seen, ties=ev.ties, **sampled
    )
    if res.nan_predictions:
        raise DataError(
            None, expected=f"finite scores from {cell.describe()}", found=res.warnings[0]
        )
    sessions = np.searchsorted(part.offsets, res.positions, side="right") - 1
    if where is None:
        ident = sessions
    else:
        ident = where[res.positions]
        if len(ident) != len(np.unique(ident)) or (ident < 0).any():
            raise AssertionError("the common targets were not each predicted once")
        order = np.argsort(ident, kind="stable")
        res.ranks, ident = res.ranks[order], ident[order]  # canonical order of the common set
    record = {
        "target": target,
        "predictions": res.predictions,
        "metrics": res.metrics,
        "protocol": res.protocol,
        "evaluate_seconds": res.seconds,
        "sessions": part.n_sessions,
    }
    with store.write("evals", key) as tmp:
        write_json(tmp / "eval.json", record)
        with (tmp / "ranks.npz").open("wb") as f:
            np.savez_compressed(f, ranks=res.ranks, ident=ident)
    return read_eval(store.path("evals", key)), model


def read_eval(folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = read_json(folder / "eval.json")
    with np.load(folder / "ranks.npz", allow_pickle=False) as z:
        record["ranks"] = z["ranks"]
        record["ident"] = z["ident"]
    return record


def ensure_crossval(ctx: Context, cell: Cell) -> dict[str, Any]:
    """A rating cell: ``sessionrec.rating.crossval`` over the spec's folds (per-fold RMSE,
    MAE, FCP and fit seconds)."""
    store, key = ctx.store, cell.evals["folds"]
    if store.has("evals", key):
        store.count("evals", False)
        record: dict[str, Any] = read_json(store.path("evals", key) / "crossval.json")
        return record
    from sessionrec.prepare.filters import filter_events
    from sessionrec.rating import Ratings
    from sessionrec.rating import crossval as run_crossval

    ds = ctx.dataset
    events = filter_events(
        ds.events.lazy(), min_rating=cell.prep.config["min_rating"],
        event_type=cell.prep.config["event_type"],
    ).collect()  # fmt: skip
    ratings = Ratings.from_events(events, str(ds.files[0]) if ds.files else ds.name)
    t0 = time.perf_counter()
    record = run_crossval(
        ratings, cell.name, cell.params, folds=ctx.plan.spec.evaluation.folds, seed=cell.seed,
        device=ctx.device,
    )  # fmt: skip
    record["seconds"] = time.perf_counter() - t0
    with store.write("evals", key) as tmp:
        write_json(tmp / "crossval.json", record)
    return record


def run_cell(ctx: Context, cell: Cell) -> float:
    """Everything a cell needs, computed where missing; returns its first own (or common)
    figure (the queue records it as the trial's value)."""
    if ctx.plan.spec.evaluation.task == "rating":
        return -float(ensure_crossval(ctx, cell)["mean"]["rmse"])
    data = ensure_prepared(ctx, cell.prep)
    ensure_model(ctx, cell, data)
    model = None
    value = 0.0
    for target in cell.evals:
        record, model = ensure_eval(ctx, cell, target, data, model)
        if value == 0.0:
            k = ctx.plan.spec.evaluation.cutoffs[-1]
            value = float(record["metrics"][f"mrr@{k}"])
    return value


def cell_done(store: Store, cell: Cell) -> bool:
    return all(store.has("evals", k) for k in cell.evals.values())


__all__ = [
    "Context",
    "Store",
    "cell_done",
    "common_part",
    "ensure_common",
    "ensure_eval",
    "ensure_model",
    "ensure_prepared",
    "load_source",
    "log_span",
    "predicted_keys",
    "run_cell",
]
