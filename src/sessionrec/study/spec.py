"""The study spec: one TOML file read into frozen dataclasses, every key checked.

A spec names the data, the session definitions to compare, the filters, the split (or sliding
windows), the models with their settings, the evaluation and an example session::

    [data]
    source = "ml-100k"                 # a dataset name, or a path (relative to the spec)

    [[sessions]]                       # one table per session definition
    label = "1h"
    session = "1h"                     # user | column | an inactivity gap (30m, 1h, 1d)

    [filters]                          # defaults for every definition (a definition may
    min_session_length = 2             # override any of them in its own table)
    min_item_support = 5

    [split]
    method = "time"                    # time | user-time | leave-one-out | random
    test_days = 21
    valid_days = 21
    slices = 1                         # > 1: sliding windows of window_days each

    [[models]]
    name = "gru4rec"
    params = { n_epochs = 5 }
    grid = { layers = [[64], [128]] }  # every combination is a row of its own
    # tune = { trials = 10, metric = "mrr@20" }   # or: search on valid

    [evaluation]
    cutoffs = [20]
    exclude_seen = false
    targets = ["own", "common"]
    seeds = [0]

    [example]
    items = ["Star Wars (1977)"]       # ids or titles

An unknown key, a value of the wrong type or a model parameter the model does not have fails
when the spec is read, as one line naming the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessionrec.errors import DataError, SessionrecError

SESSION_SPLITS = ("time", "user-time", "leave-one-out", "random")
TARGETS = ("own", "common")
FIT_ON = ("train", "train+valid")


@dataclass(frozen=True)
class DataSpec:
    """Where the log comes from and which events count.

    Attributes:
        source: a dataset name (``ml-100k``), a path (a relative path is read from the
            spec file's folder), or ``synth:PRESET``: a synthetic log of
            ``sessionrec.synthetic`` (a preset, ``synth_sessions`` sessions, ``synth_seed``)
            written once into the study's cache in the YOOCHOOSE layout and read from there.
        columns: column roles of a CSV/Parquet log (``sessionrec.ColumnMapping`` fields).
        min_rating, event_type, drop_repeats, drop_duplicates: per-event filters, as
            ``sessionrec prepare`` has them.
    """

    source: str
    columns: tuple[tuple[str, str], ...] = ()
    synth_sessions: int | None = None
    synth_seed: int = 0
    min_rating: float | None = None
    event_type: str | None = None
    drop_repeats: bool = False
    drop_duplicates: bool = False


@dataclass(frozen=True)
class Filters:
    """Session and item filters, applied recursively until every one holds (with
    ``min_item_support`` and ``min_user_events`` both set this is a k-core)."""

    min_session_length: int | None = 2
    max_session_length: int | None = None
    min_item_support: int | None = 5
    min_user_events: int | None = None
    max_user_events: int | None = None


@dataclass(frozen=True)
class SessionDef:
    """One way to cut the log into sessions, with the filters it applies."""

    label: str
    session: str
    filters: Filters = field(default_factory=Filters)


@dataclass(frozen=True)
class SplitSpec:
    """How each prepared log is split; ``slices`` > 1 cuts ``slices`` consecutive windows of
    ``window_days`` (the last ending at the log's end, each ``step_days`` after the one
    before; by default windows do not overlap), each split on its own."""

    method: str = "time"
    test_days: float = 1.0
    valid_days: float = 1.0
    test_fraction: float = 0.1
    valid_fraction: float = 0.1
    slices: int = 1
    window_days: float | None = None
    step_days: float | None = None


@dataclass(frozen=True)
class TuneSpec:
    """Settings searched on valid (``sessionrec tune``) with a budget of ``trials``."""

    trials: int = 10
    metric: str = "mrr@20"


@dataclass(frozen=True)
class ModelSpec:
    """A model of the registry with its settings: fixed ``params``, a ``grid`` (each
    combination a row of its own) or a ``tune`` search on valid."""

    name: str
    label: str
    params: tuple[tuple[str, Any], ...] = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    tune: TuneSpec | None = None
    fit_on: str = "train+valid"

    def settings(self) -> list[tuple[str, dict[str, Any]]]:
        """(row label, params) for every setting this entry stands for."""
        import itertools

        base = {k: _thaw(v) for k, v in self.params}
        if not self.grid:
            return [(self.label, base)]
        keys = [k for k, _ in self.grid]
        out = []
        for combo in itertools.product(*(v for _, v in self.grid)):
            varied = {k: _thaw(v) for k, v in zip(keys, combo, strict=True)}
            label = self.label + " " + ",".join(f"{k}={_short(v)}" for k, v in varied.items())
            out.append((label, {**base, **varied}))
        return out


@dataclass(frozen=True)
class EvalSpec:
    """What every cell is scored by. ``task = "rating"``: rating models (``baseline``,
    ``svd``, ``svdpp``, ``autorec``) cross-validated over ``folds`` folds of the ratings
    (RMSE, MAE, FCP per fold); sessions, split and targets do not apply."""

    cutoffs: tuple[int, ...] = (20,)
    exclude_seen: bool = False
    targets: tuple[str, ...] = ("own", "common")
    seeds: tuple[int, ...] = (0,)
    n_boot: int = 1000
    ties: str = "conservative"
    task: str = "next-item"
    folds: int = 5
    sampled_negatives: int | None = None
    sampled_by: str = "popularity"


@dataclass(frozen=True)
class ExampleSpec:
    """A session whose top-``k`` every model shows, by title."""

    items: tuple[int | str, ...] = ()
    k: int = 10


@dataclass(frozen=True)
class Spec:
    """A whole study (see the module docstring)."""

    data: DataSpec
    sessions: tuple[SessionDef, ...]
    split: SplitSpec
    models: tuple[ModelSpec, ...]
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    example: ExampleSpec = field(default_factory=ExampleSpec)
    name: str = "study"
    base: str = "."  # the spec file's folder: relative data paths are read from it
    path: str = "<spec>"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("base")
        d.pop("path")
        return json.loads(json.dumps(d, default=str))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _thaw(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    return v


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(map(str, v))
    return str(v)


class _Reader:
    """Reads one table of the spec, remembering which keys it used and where each line is."""

    def __init__(self, text: str, path: str) -> None:
        self.lines = text.splitlines()
        self.path = path

    def line(self, table: str | None, index: int | None, key: str | None) -> int | None:
        """The line of ``key`` inside ``[table]`` (the ``index``-th ``[[table]]``), or of the
        table's header, or None."""
        start, end = 0, len(self.lines)
        if table is not None:
            pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
            headers = [i for i, ln in enumerate(self.lines) if pattern.match(ln)]
            pos = index or 0
            if pos >= len(headers):
                return None
            start = headers[pos]
            end = next(
                (i for i in range(start + 1, len(self.lines)) if _is_header(self.lines[i])),
                len(self.lines),
            )
        else:
            end = next((i for i, ln in enumerate(self.lines) if _is_header(ln)), end)
        if key is not None:
            kp = re.compile(rf"""^\s*(["']?){re.escape(key)}\1\s*=""")
            for i in range(start, end):
                if kp.match(self.lines[i]):
                    return i + 1
        return start + 1 if table is not None else None

    def error(
        self, table: str | None, index: int | None, key: str | None, expected: str, found: Any
    ) -> DataError:
        where = table if index is None or table is None else f"{table}[{index}]"
        column = ".".join(p for p in (where, key) if p)
        return DataError(
            self.path,
            line=self.line(table, index, key),
            column=column or None,
            expected=expected,
            found=found if isinstance(found, str) else repr(found),
        )


def _is_header(line: str) -> bool:
    return bool(re.match(r"^\s*\[", line))


def _fields(cls: Any) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _typed(
    r: _Reader, table: str | None, index: int | None, key: str, value: Any, ftype: str
) -> Any:
    """Check ``value`` against a field's annotation (as text: ``int | None``, ...)."""
    kinds = [t.strip() for t in ftype.split("|")]
    ok = False
    for kind in kinds:
        if kind == "None":
            continue  # TOML has no null: None is only ever the default
        if kind == "bool":
            ok = ok or isinstance(value, bool)
        elif kind == "int":
            ok = ok or (isinstance(value, int) and not isinstance(value, bool))
        elif kind == "float":
            ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
        elif kind == "str":
            ok = ok or isinstance(value, str)
    if not ok:
        raise r.error(table, index, key, f"a value of type {ftype.replace(' | None', '')}", value)
    return float(value) if "float" in kinds and "int" not in kinds else value


def _build(
    r: _Reader, cls: Any, raw: Any, table: str, index: int | None = None, **fixed: Any
) -> Any:
    """A dataclass of simple fields from a TOML table, refusing unknown keys."""
    if not isinstance(raw, dict):
        raise r.error(table, index, None, f"a table [{table}]", type(raw).__name__)
    fields = _fields(cls)
    values: dict[str, Any] = dict(fixed)
    for key, value in raw.items():
        if key not in fields or key in fixed:
            known = ", ".join(k for k in fields if k not in fixed)
            raise r.error(table, index, key, f"a key among {known}", key)
        values[key] = _typed(r, table, index, key, value, str(fields[key].type))
    try:
        return cls(**values)
    except TypeError as exc:  # a required key missing
        raise r.error(table, index, None, "every required key", str(exc)) from None


def load_spec(path: str | Path) -> Spec:
    """Read and check a study spec (``DataError`` naming the file and line on anything wrong)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, expected="a readable TOML study spec", found=str(exc)) from None
    return parse_spec(text, str(path), base=str(path.resolve().parent))


def parse_spec(text: str, where: str = "<spec>", base: str = ".") -> Spec:
    """A :class:`Spec` from TOML text (``where`` names it in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise DataError(
            where, line=int(m.group(1)) if m else None, expected="TOML", found=str(exc)
        ) from None
    r = _Reader(text, where)
    top = {"name", "data", "sessions", "filters", "split", "models", "evaluation", "example"}
    for key in raw:
        if key not in top:
            raise r.error(None, None, key, f"a key among {', '.join(sorted(top))}", key)
    for key in ("data", "models"):
        if key not in raw:
            raise DataError(where, expected=f"a [{key}] section", found="none")
    name = raw.get("name", "study")
    if not isinstance(name, str):
        raise r.error(None, None, "name", "a string", name)
    if "sessions" not in raw and raw.get("evaluation", {}).get("task") != "rating":
        raise DataError(where, expected="a [[sessions]] section", found="none")
    data = _data(r, raw["data"])
    evaluation = _evaluation(r, raw.get("evaluation", {}))
    rating = evaluation.task == "rating"
    filters = _build(r, Filters, raw.get("filters", {}), "filters")
    if rating and "sessions" not in raw:
        raw["sessions"] = [{"label": "ratings", "session": "user"}]
    sessions = _sessions(r, raw["sessions"], filters)
    if rating and len(sessions) > 1:
        raise r.error("sessions", 1, None, "no session definitions for a rating study", "several")
    split = _split(r, raw.get("split", {}))
    models = _models(r, raw["models"], evaluation.task)
    example = _example(r, raw.get("example", {}))
    return Spec(data, sessions, split, models, evaluation, example, name, base, where)


def _data(r: _Reader, raw: Any) -> DataSpec:
    if not isinstance(raw, dict):
        raise r.error("data", None, None, "a table [data]", type(raw).__name__)
    raw = dict(raw)
    columns = raw.pop("columns", {})
    from sessionrec.datasets import ColumnMapping

    known = _fields(ColumnMapping)
    if not isinstance(columns, dict):
        raise r.error("data", None, "columns", "a table of column roles", columns)
    for k, v in columns.items():
        if k not in known:
            raise r.error("data", None, "columns", f"roles among {', '.join(known)}", k)
        if not isinstance(v, str):
            raise r.error("data", None, "columns", f"a column name for {k}", v)
    spec = _build(r, DataSpec, raw, "data")
    if spec.source.startswith("synth:"):
        from sessionrec.synthetic import PRESETS

        if spec.source.removeprefix("synth:") not in PRESETS:
            raise r.error("data", None, "source", f"synth:{' | synth:'.join(PRESETS)}", spec.source)
        if spec.synth_sessions is not None and spec.synth_sessions < 1:
            raise r.error("data", None, "synth_sessions", "at least 1", spec.synth_sessions)
    elif spec.synth_sessions is not None:
        raise r.error("data", None, "synth_sessions", "source = 'synth:PRESET'", spec.source)
    return dataclasses.replace(spec, columns=tuple(columns.items()))


def _sessions(r: _Reader, raw: Any, filters: Filters) -> tuple[SessionDef, ...]:
    if not isinstance(raw, list) or not raw:
        raise r.error("sessions", None, None, "one or more [[sessions]] tables", raw)
    out: list[SessionDef] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise r.error("sessions", i, None, "a [[sessions]] table", entry)
        entry = dict(entry)
        session = entry.pop("session", None)
        if not isinstance(session, str):
            raise r.error("sessions", i, "session", "user, column or a gap such as 1h", session)
        if session not in ("user", "column", "auto"):
            from sessionrec.prepare.sessionize import parse_duration

            try:
                parse_duration(session)
            except SessionrecError as exc:
                raise r.error("sessions", i, "session", "user, column or a gap", str(exc)) from None
        label = entry.pop("label", session)
        if not isinstance(label, str) or not label:
            raise r.error("sessions", i, "label", "a non-empty string", label)
        own = _build(r, Filters, entry, "sessions", i, **{})
        # a key the definition gives overrides the [filters] default
        merged = dataclasses.replace(filters, **{k: getattr(own, k) for k in entry})
        out.append(SessionDef(label, session, merged))
    labels = [d.label for d in out]
    dup = next((lab for lab in labels if labels.count(lab) > 1), None)
    if dup is not None:
        i = len(labels) - 1 - labels[::-1].index(dup)
        raise r.error("sessions", i, "label", "labels that differ", dup)
    return tuple(out)


def _split(r: _Reader, raw: Any) -> SplitSpec:
    split = _build(r, SplitSpec, raw, "split")
    if split.method not in SESSION_SPLITS:
        raise r.error("split", None, "method", " | ".join(SESSION_SPLITS), split.method)
    if split.slices < 1:
        raise r.error("split", None, "slices", "at least 1", split.slices)
    if split.slices > 1:
        if split.window_days is None or split.window_days <= 0:
            raise r.error("split", None, "window_days", "days per window (> 0) for slices", None)
        if split.step_days is not None and split.step_days <= 0:
            raise r.error("split", None, "step_days", "a positive number of days", split.step_days)
    for key in ("test_days", "valid_days"):
        if getattr(split, key) < 0:
            raise r.error("split", None, key, "days >= 0", getattr(split, key))
    for key in ("test_fraction", "valid_fraction"):
        if not 0 <= getattr(split, key) < 1:
            raise r.error("split", None, key, "a fraction in [0, 1)", getattr(split, key))
    return split


def _models(r: _Reader, raw: Any, task: str = "next-item") -> tuple[ModelSpec, ...]:
    from sessionrec import registry
    from sessionrec.models.base import make_config

    if not isinstance(raw, list) or not raw:
        raise r.error("models", None, None, "one or more [[models]] tables", raw)
    out: list[ModelSpec] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise r.error("models", i, None, "a [[models]] table", entry)
        allowed = {"name", "label", "params", "grid", "tune", "fit_on"}
        for key in entry:
            if key not in allowed:
                raise r.error("models", i, key, f"a key among {', '.join(sorted(allowed))}", key)
        name = entry.get("name")
        known = registry.names(task)
        if name not in known:
            raise r.error("models", i, "name", f"a {task} model ({', '.join(known)})", name)
        label = entry.get("label", name)
        if not isinstance(label, str) or not label:
            raise r.error("models", i, "label", "a non-empty string", label)
        params = entry.get("params", {})
        grid = entry.get("grid", {})
        if not isinstance(params, dict):
            raise r.error("models", i, "params", "a table of parameters", params)
        if not isinstance(grid, dict):
            raise r.error("models", i, "grid", "a table of parameter = [values]", grid)
        for key in ("seed",):
            if key in params or key in grid:
                raise r.error("models", i, "params", "seeds in [evaluation] seeds", key)
        both = sorted(set(params) & set(grid))
        if both:
            raise r.error("models", i, "grid", "parameters not also in params", both)
        for k, values in grid.items():
            if not isinstance(values, list) or not values:
                raise r.error("models", i, "grid", f"a non-empty list of values for {k}", values)
        cls = registry.model_class(name)
        combos = [params] + [{**params, k: v} for k, vs in grid.items() for v in vs]
        for combo in combos:
            try:
                make_config(cls.Config, combo, warn=False)
            except (SessionrecError, TypeError, ValueError) as exc:
                key = "grid" if set(combo) - set(params) else "params"
                raise r.error("models", i, key, f"parameters {name} accepts", str(exc)) from None
        tune = None
        if "tune" in entry:
            if task == "rating":
                raise r.error("models", i, "tune", "fixed params or a grid (rating)", "tune")
            if grid:
                raise r.error("models", i, "tune", "either a grid or a tune search", "both")
            tune = _build(r, TuneSpec, entry["tune"], "models", i)
            metric, _, k = tune.metric.partition("@")
            if metric not in ("recall", "mrr", "ndcg") or not k.isdigit():
                raise r.error("models", i, "tune", "metric recall@K, mrr@K or ndcg@K", tune.metric)
            if tune.trials < 1:
                raise r.error("models", i, "tune", "trials >= 1", tune.trials)
        fit_on = entry.get("fit_on", "train+valid")
        if fit_on not in FIT_ON:
            raise r.error("models", i, "fit_on", " | ".join(FIT_ON), fit_on)
        out.append(
            ModelSpec(
                name,
                label,
                tuple((k, _freeze(v)) for k, v in params.items()),
                tuple((k, _freeze(v)) for k, v in grid.items()),
                tune,
                fit_on,
            )
        )
    labels = [row for m in out for row, _ in m.settings()]
    dup = next((lab for lab in labels if labels.count(lab) > 1), None)
    if dup is not None:
        raise r.error("models", len(out) - 1, "label", "model labels that differ", dup)
    return tuple(out)


def _evaluation(r: _Reader, raw: Any) -> EvalSpec:
    if not isinstance(raw, dict):
        raise r.error("evaluation", None, None, "a table [evaluation]", raw)
    raw = dict(raw)
    lists: dict[str, Any] = {}
    for key in ("cutoffs", "targets", "seeds"):
        if key in raw:
            v = raw.pop(key)
            if not isinstance(v, list) or not v:
                raise r.error("evaluation", None, key, "a non-empty list", v)
            lists[key] = tuple(v)
    spec = _build(r, EvalSpec, raw, "evaluation")
    cutoffs = lists.get("cutoffs", spec.cutoffs)
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in cutoffs):
        raise r.error("evaluation", None, "cutoffs", "positive integers", list(cutoffs))
    if len(set(cutoffs)) != len(cutoffs):
        raise r.error("evaluation", None, "cutoffs", "values that do not repeat", list(cutoffs))
    targets = lists.get("targets", spec.targets)
    if any(t not in TARGETS for t in targets) or len(set(targets)) != len(targets):
        raise r.error("evaluation", None, "targets", "own and/or common", list(targets))
    seeds = lists.get("seeds", spec.seeds)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(
        seeds
    ):
        raise r.error("evaluation", None, "seeds", "distinct integers", list(seeds))
    if spec.n_boot < 1:
        raise r.error("evaluation", None, "n_boot", "at least 1", spec.n_boot)
    if spec.task not in ("next-item", "rating"):
        raise r.error("evaluation", None, "task", "next-item | rating", spec.task)
    if spec.sampled_negatives is not None and spec.sampled_negatives < 1:
        raise r.error("evaluation", None, "sampled_negatives", "at least 1", spec.sampled_negatives)
    if spec.sampled_by not in ("popularity", "uniform"):
        raise r.error("evaluation", None, "sampled_by", "popularity | uniform", spec.sampled_by)
    if spec.folds < 2:
        raise r.error("evaluation", None, "folds", "at least 2", spec.folds)
    if spec.ties not in ("conservative", "optimistic", "average"):
        raise r.error("evaluation", None, "ties", "conservative | optimistic | average", spec.ties)
    return dataclasses.replace(spec, cutoffs=cutoffs, targets=targets, seeds=seeds)


def _example(r: _Reader, raw: Any) -> ExampleSpec:
    if not isinstance(raw, dict):
        raise r.error("example", None, None, "a table [example]", raw)
    raw = dict(raw)
    items = raw.pop("items", [])
    if not isinstance(items, list) or any(
        isinstance(x, bool) or not isinstance(x, (int, str)) for x in items
    ):
        raise r.error("example", None, "items", "a list of item ids or titles", items)
    spec = _build(r, ExampleSpec, raw, "example")
    if spec.k < 1:
        raise r.error("example", None, "k", "at least 1", spec.k)
    return dataclasses.replace(spec, items=tuple(items))


__all__ = [
    "DataSpec",
    "EvalSpec",
    "ExampleSpec",
    "Filters",
    "ModelSpec",
    "SessionDef",
    "Spec",
    "SplitSpec",
    "TuneSpec",
    "load_spec",
    "parse_spec",
]
