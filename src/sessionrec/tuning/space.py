"""Search spaces: which parameters ``sessionrec tune`` searches, over which values.

Every registered next-item model ships one space, ``sessionrec/tuning/spaces/<model>.toml``;
a TOML file given to ``tune --space`` overrides it parameter by parameter (a parameter the file
does not name keeps the shipped entry; to stop searching one, give it a fixed value). Entries:

    layers = { low = 64, high = 512, step = 32 }       # integers: suggest_int
    learning_rate = { low = 0.01, high = 0.25 }        # floats (as written): suggest_float
    learning_rate = { low = 0.0003, high = 0.01, log = true }  # a log scale (no step)
    loss = { choices = ["cross-entropy", "bpr-max"] }   # categorical
    n_epochs = 10                                       # fixed
    bpreg = { low = 0.0, high = 2.0, when = { loss = "bpr-max" } }

``when`` searches a parameter only when earlier ones take the given values; otherwise the
parameter keeps the model's default. Names and values are checked against the model's config
dataclass when the space is read, so a typo fails before the first trial, as one line naming the
file and the line.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sessionrec import registry
from sessionrec.errors import ConfigError, DataError
from sessionrec.models import model_class
from sessionrec.models.base import make_config

_KEYS = {"low", "high", "step", "log", "choices", "when"}
Scalar = bool | int | float | str


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) parameter.

    Attributes:
        name: the model config field.
        kind: ``int`` | ``float`` (a range), ``choice`` (categorical) or ``fixed``.
        low, high, step, log: the range (``int``/``float``).
        choices: the values of a ``choice``.
        value: the value of a ``fixed`` parameter.
        when: conditions on earlier parameters for this one to be searched.
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna ``trial``."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        assert self.low is not None and self.high is not None
        value = trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )
        # a stepped grid's points as written (0.15, not 0.15000000000000002)
        return round(value, 12) if self.step is not None else value

    def distribution(self) -> Any:
        """The Optuna distribution ``suggest`` draws from (not for ``fixed``)."""
        from optuna import distributions as d

        if self.kind == "choice":
            return d.CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return d.IntDistribution(
                int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return d.FloatDistribution(float(self.low), float(self.high), step=self.step, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        """As written in a space file (JSON-ready)."""
        if self.kind == "fixed":
            return {"value": list(self.value) if isinstance(self.value, tuple) else self.value}
        out: dict[str, Any] = (
            {"choices": list(self.choices)}
            if self.kind == "choice"
            else {"low": self.low, "high": self.high}
        )
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        if self.when:
            out["when"] = dict(self.when)
        return out


@dataclass(frozen=True)
class Space:
    """A model's search space: its parameters in the order they are suggested."""

    model: str
    params: tuple[Param, ...]
    sources: tuple[str, ...] = ()

    @property
    def searched(self) -> list[str]:
        """Names of the parameters that vary (not fixed)."""
        return [p.name for p in self.params if p.kind != "fixed"]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Every parameter's value for ``trial`` (fixed ones included; a parameter whose
        ``when`` does not hold is left out and keeps the model's default)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if all(values.get(k, _MISSING) == v for k, v in p.when.items()):
                values[p.name] = p.suggest(trial)
        return values

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}

    def to_toml(self) -> str:
        """The space as a TOML file ``--space`` reads back."""
        lines = [f"# search space of {self.model} (from {', '.join(self.sources)})"]
        for p in self.params:
            d = p.to_dict()
            if p.kind == "fixed":
                lines.append(f"{_key(p.name)} = {_toml(d['value'])}")
            else:
                body = ", ".join(f"{k} = {_toml(v)}" for k, v in d.items())
                lines.append(f"{_key(p.name)} = {{ {body} }}")
        return "\n".join(lines) + "\n"


_MISSING = object()


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in v.items()) + " }"
    return repr(v)


def shipped_space_path(model: str) -> Any:
    """The space file shipped for ``model`` (an importlib.resources Traversable; it may not
    exist: ``registry.spec(model).space_file`` is None then)."""
    return resources.files("sessionrec.tuning").joinpath("spaces", f"{model}.toml")


def load_space(model: str, path: str | Path | None = None) -> Space:
    """``model``'s shipped space, overridden parameter by parameter by the TOML file ``path``.

    Raises:
        UnknownNameError: ``model`` is not a registered next-item model.
        DataError: the file is not TOML, names a parameter the model does not have, or gives
            a value the model refuses (file, line and parameter in one line).
    """
    cls = model_class(model)  # unknown names: one line listing the known ones
    shipped = registry.spec(model).space_file
    if shipped is None:  # a model registered without a space: search nothing
        text, where = "", f"<no shipped space for {model}>"
    else:
        text, where = shipped.read_text(encoding="utf-8"), f"sessionrec/tuning/spaces/{model}.toml"
    params = _parse(cls, model, text, where)
    sources = [where]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(path, expected="a TOML search space file", found="no such file")
        override = _parse(cls, model, path.read_text(encoding="utf-8"), str(path))
        merged = dict(params)
        merged.update(override)  # a shipped name keeps its place; new names come last
        params = merged
        sources.append(str(path))
    _check_when(params, sources[-1])
    return Space(model, tuple(params.values()), tuple(sources))


def _parse(cls: Any, model: str, text: str, where: str) -> dict[str, Param]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(where, expected="a TOML search space", found=str(exc)) from None
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    out: dict[str, Param] = {}
    for name, entry in raw.items():
        line = _line_of(text, name)
        if name not in fields:
            raise DataError(
                where,
                line=line,
                expected=f"a parameter of {model} ({', '.join(fields) or 'it has none'})",
                found=repr(name),
            )
        ftype = str(fields[name].type)
        param = _param(name, entry, ftype, where, line)
        _check_values(cls, model, param, where, line)
        out[name] = param
    return out


def _param(name: str, entry: Any, ftype: str, where: str, line: int | None) -> Param:
    def bad(expected: str, found: Any) -> DataError:
        return DataError(where, line=line, column=name, expected=expected, found=found)

    if not isinstance(entry, dict):
        if isinstance(entry, list) and not ftype.startswith("tuple"):
            raise bad("a value, { low, high } or { choices = [...] }", f"the list {entry}")
        if not _fits(ftype, entry):
            raise bad(f"a {ftype} value", repr(entry))
        return Param(name, "fixed", value=tuple(entry) if isinstance(entry, list) else entry)
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise bad(f"keys among {', '.join(sorted(_KEYS))}", ", ".join(unknown))
    when = entry.get("when", {})
    if not isinstance(when, dict):
        raise bad("when = { parameter = value }", repr(when))
    if "choices" in entry:
        if set(entry) - {"choices", "when"}:
            raise bad("choices alone (no low/high/step/log)", ", ".join(sorted(entry)))
        choices = entry["choices"]
        if not isinstance(choices, list) or not choices:
            raise bad("a non-empty list of choices", repr(choices))
        for c in choices:
            if isinstance(c, (list, dict)) or not _fits(ftype, c):
                raise bad(f"choices of type {ftype}", repr(c))
        return Param(name, "choice", choices=tuple(choices), when=when)
    if "low" not in entry or "high" not in entry:
        raise bad("{ low, high } or { choices = [...] }", "neither")
    low, high, step, log = entry["low"], entry["high"], entry.get("step"), entry.get("log", False)
    numbers = [v for v in (low, high, step) if v is not None]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
        raise bad("numbers for low, high and step", repr(numbers))
    is_int = all(isinstance(v, int) for v in numbers)
    if ftype in ("int", "tuple[int, ...]") and not is_int:
        raise bad("integer low, high and step (the parameter is an int)", repr(numbers))
    if ftype not in ("int", "float", "tuple[int, ...]"):
        raise bad("choices (the parameter is not a number)", "a range")
    if not low < high:
        raise bad("low < high", f"{low} and {high}")
    if step is not None and step <= 0:
        raise bad("a positive step", repr(step))
    if not isinstance(log, bool) or (log and (step is not None or low <= 0)):
        raise bad("log = true with low > 0 and no step", f"log {log!r}, low {low}, step {step}")
    kind = "int" if is_int and ftype != "float" else "float"
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Param(name, kind, low=low, high=high, step=step, log=log, when=when)


def _fits(ftype: str, v: Any) -> bool:
    if ftype == "bool":
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if ftype == "int":
        return isinstance(v, int)
    if ftype == "float":
        return isinstance(v, (int, float))
    if ftype == "str":
        return isinstance(v, str)
    if ftype.startswith("tuple"):
        return isinstance(v, int) or (isinstance(v, list) and all(_fits("int", x) for x in v))
    return True


def _check_values(cls: Any, model: str, p: Param, where: str, line: int | None) -> None:
    """Build the model's config at the space's edges: a value it refuses fails now."""
    if p.kind == "fixed":
        values = [p.value]
    elif p.kind == "choice":
        values = list(p.choices)
    else:
        values = [p.low, p.high]
    for v in values:
        try:
            make_config(cls.Config, {p.name: list(v) if isinstance(v, tuple) else v})
        except (ConfigError, TypeError, ValueError) as exc:
            raise DataError(
                where, line=line, column=p.name, expected=f"values {model} accepts", found=str(exc)
            ) from None


def _check_when(params: Mapping[str, Param], where: str) -> None:
    seen: set[str] = set()
    for p in params.values():
        for k in p.when:
            if k not in seen:
                raise DataError(
                    where,
                    column=p.name,
                    expected=f"when to name a parameter listed before {p.name!r}",
                    found=repr(k),
                )
        seen.add(p.name)


def _line_of(text: str, name: str) -> int | None:
    pattern = re.compile(rf"""^\s*(\[\s*)?(["']?){re.escape(name)}\2\s*(=|\])""")
    for i, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return i
    return None


def tunable_models() -> list[str]:
    """The registered next-item models (every one ships a space)."""
    return registry.names(registry.NEXT_ITEM)


__all__ = ["Param", "Space", "load_space", "shipped_space_path", "tunable_models"]
