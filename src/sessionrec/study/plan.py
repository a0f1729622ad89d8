"""A spec expanded into cells, each keyed by what it depends on.

A *preparation* is one session definition on one slice of the log; a *cell* is one model
setting with one seed on one preparation. Every artifact has a content key (sha256 of a JSON
record):

- prepared data: the data part of the spec, the definition's prepare settings, the slice's
  window, the input's fingerprint (sha256 of the source files) and the code version;
- a model: its preparation's key, the model, its parameters, seed, the part it is fit on,
  the tune budget and the code version;
- an evaluation: its model's key, the evaluation settings and the target set (for the common
  set, the keys of every preparation of the slice, which decide it).

Re-running a spec therefore recomputes exactly what a changed line touches, and nothing that
was finished before a run was killed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sessionrec.study.spec import ModelSpec, SessionDef, Spec


def digest(record: Any) -> str:
    """The content key of a JSON-ready record (24 hex digits of its sha256)."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@cache
def code_version() -> str:
    """The package version and a hash of its Python sources: a changed line of code makes
    every artifact new (conservative: a result never outlives the code that made it)."""
    from sessionrec import _version

    root = Path(_version.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{_version.__version__}+{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class Preparation:
    """One session definition on one slice."""

    key: str
    definition: int
    label: str
    slice: int
    window: tuple[str, str] | None  # ISO times [start, end) of the slice, None: the whole log
    config: dict[str, Any]  # PrepareConfig fields


@dataclass(frozen=True)
class Cell:
    """One model setting with one seed on one preparation."""

    key: str
    prep: Preparation
    model: str  # the row label (the entry's label and its grid values)
    name: str  # the registry name
    params: dict[str, Any]
    seed: int
    fit_on: str
    tune: dict[str, Any] | None
    evals: dict[str, str]  # target set → evaluation key

    @property
    def sessions(self) -> str:
        return self.prep.label

    def describe(self) -> str:
        where = f"slice {self.prep.slice}, " if self.prep.window else ""
        return f"{self.prep.label} · {where}{self.model} · seed {self.seed}"


@dataclass(frozen=True)
class Plan:
    """The cells of a spec and the preparations they use."""

    spec: Spec
    fingerprint: str
    code: str
    preparations: tuple[Preparation, ...]
    cells: tuple[Cell, ...]
    common: dict[int, str]  # slice → key of its common target set (empty: own targets only)

    def slices(self) -> list[int]:
        return sorted({p.slice for p in self.preparations})


def prepare_config(spec: Spec, d: SessionDef) -> dict[str, Any]:
    """The PrepareConfig fields of a definition (the data's event filters included)."""
    s, f = spec.split, d.filters
    return {
        "session": d.session,
        "min_rating": spec.data.min_rating,
        "event_type": spec.data.event_type,
        "drop_repeats": spec.data.drop_repeats,
        "drop_duplicates": spec.data.drop_duplicates,
        "min_session_length": f.min_session_length,
        "max_session_length": f.max_session_length,
        "min_item_support": f.min_item_support,
        "min_user_events": f.min_user_events,
        "max_user_events": f.max_user_events,
        "split": s.method,
        "test_days": s.test_days,
        "valid_days": s.valid_days,
        "test_fraction": s.test_fraction,
        "valid_fraction": s.valid_fraction,
        "seed": 0,
    }


def windows(spec: Spec, first: datetime, last: datetime) -> list[tuple[str, str] | None]:
    """The slices' [start, end) windows: the last one ends just after the log's last event,
    each earlier one ``step_days`` before (``window_days`` when not given)."""
    s = spec.split
    if s.slices == 1:
        return [None]
    assert s.window_days is not None
    length = timedelta(days=s.window_days)
    step = timedelta(days=s.step_days or s.window_days)
    end = last + timedelta(microseconds=1)
    out: list[tuple[str, str] | None] = []
    for i in range(s.slices):
        e = end - step * (s.slices - 1 - i)
        out.append((max(e - length, first).isoformat(), e.isoformat()))
    return out


def make_plan(spec: Spec, fingerprint: str, span: tuple[datetime, datetime]) -> Plan:
    """Every preparation and cell of ``spec`` on an input of ``fingerprint`` spanning ``span``."""
    code = code_version()
    data_part = {
        "source": spec.data.source,
        "columns": dict(spec.data.columns),
        "input": fingerprint,
        "code": code,
    }
    ev = spec.evaluation
    if ev.task == "rating":
        return _rating_plan(spec, fingerprint, code, data_part)
    preps: list[Preparation] = []
    for sl, window in enumerate(windows(spec, *span)):
        for i, d in enumerate(spec.sessions):
            config = prepare_config(spec, d)
            key = digest({"data": data_part, "prepare": config, "window": window})
            preps.append(Preparation(key, i, d.label, sl, window, config))
    eval_part = {"cutoffs": list(ev.cutoffs), "exclude_seen": ev.exclude_seen, "ties": ev.ties}
    common: dict[int, str] = {}
    if "common" in ev.targets and len(spec.sessions) > 1:
        for sl in {p.slice for p in preps}:
            keys = sorted(p.key for p in preps if p.slice == sl)
            common[sl] = digest({"common": keys, "code": code})
    cells: list[Cell] = []
    for p in preps:
        for m in spec.models:
            for label, params in m.settings():
                for seed in ev.seeds:
                    cells.append(_cell(p, m, label, params, seed, code, eval_part, common, ev))
    return Plan(spec, fingerprint, code, tuple(preps), tuple(cells), common)


def _rating_plan(spec: Spec, fingerprint: str, code: str, data_part: dict[str, Any]) -> Plan:
    """A rating study: one cell per model setting and seed, each a k-fold cross-validation
    of the log's ratings (the data's per-event filters apply; sessions and split do not)."""
    d = spec.data
    filters = {"min_rating": d.min_rating, "event_type": d.event_type}
    prep = Preparation(
        digest({"data": data_part, "ratings": filters}), 0, spec.sessions[0].label, 0, None,
        filters,
    )  # fmt: skip
    cells = []
    for m in spec.models:
        for label, params in m.settings():
            for seed in spec.evaluation.seeds:
                key = digest(
                    {"ratings": prep.key, "model": m.name, "params": params, "seed": seed,
                     "folds": spec.evaluation.folds, "code": code}
                )  # fmt: skip
                cells.append(Cell(key, prep, label, m.name, params, seed, "folds", None,
                                  {"folds": key}))  # fmt: skip
    return Plan(spec, fingerprint, code, (prep,), tuple(cells), {})


def _cell(
    p: Preparation,
    m: ModelSpec,
    label: str,
    params: dict[str, Any],
    seed: int,
    code: str,
    eval_part: dict[str, Any],
    common: dict[int, str],
    ev: Any,
) -> Cell:
    tune = None if m.tune is None else {"trials": m.tune.trials, "metric": m.tune.metric}
    model_key = digest(
        {
            "prepared": p.key,
            "model": m.name,
            "params": params,
            "seed": seed,
            "fit_on": m.fit_on,
            "tune": tune,
            "code": code,
        }
    )
    evals: dict[str, str] = {}
    if "own" in ev.targets or p.slice not in common:
        evals["own"] = digest({"model": model_key, "eval": eval_part, "target": "own"})
    if ev.sampled_negatives is not None:
        evals["sampled"] = digest(
            {"model": model_key, "eval": eval_part, "target": "sampled",
             "negatives": ev.sampled_negatives, "by": ev.sampled_by}
        )  # fmt: skip
    if p.slice in common:
        evals["common"] = digest(
            {"model": model_key, "eval": eval_part, "target": "common", "set": common[p.slice]}
        )
    return Cell(model_key, p, label, m.name, params, seed, m.fit_on, tune, evals)


__all__ = ["Cell", "Plan", "Preparation", "code_version", "digest", "make_plan", "windows"]
