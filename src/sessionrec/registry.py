"""One registry of every model, next-item and rating: its task, where it lives, its parameters
and its search space.

Every verb that takes ``--model NAME`` (train, tune, sweep, crossval, serve, `sessionrec
models`) and every reader of a model folder asks here; nothing else keeps a list of models.
Importing this module imports no model (and no torch): a model's module is imported when its
class is first asked for.

Two tasks (the families of ``fit``): ``next-item`` models are
:class:`~sessionrec.models.base.SessionModel`\\ s fit on sessions (some also serve ``top-n`` for a
user), ``rating`` models are :class:`~sessionrec.rating.base.RatingModel`\\ s fit on ratings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionrec.errors import ConfigError, DataError, UnknownNameError

if TYPE_CHECKING:
    import torch

    from sessionrec.models.base import SessionModel
    from sessionrec.rating.base import RatingModel

NEXT_ITEM = "next-item"
RATING = "rating"
TASKS = (NEXT_ITEM, RATING)


@dataclass(frozen=True)
class Parameter:
    """One parameter of a model's config dataclass, as ``--param name=value`` takes it.

    Attributes:
        name: the config field.
        type: the type in words (``int``, ``list of int``, ``int | str``).
        default: the default value (a tuple field's default is a tuple).
        aliases: old names still accepted with a deprecation warning (``epochs``, ``lr``).
    """

    name: str
    type: str
    default: Any
    aliases: tuple[str, ...] = ()

    @property
    def shown_default(self) -> str:
        """The default as ``--param`` takes it: JSON, except plain strings (``loss=bpr-max``)."""
        v = self.default
        if isinstance(v, str):
            return v
        return json.dumps(list(v) if isinstance(v, tuple) else v)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: the ``--model`` name (and the ``model`` of a saved folder's config.json).
        task: ``next-item`` or ``rating`` (which ``fit`` and which evaluation it takes).
        module, cls: where the class lives (imported on first use).
    """

    name: str
    task: str
    module: str
    cls: str

    def load_class(self) -> Any:
        """The model class (its module imported now)."""
        return getattr(importlib.import_module(self.module), self.cls)

    @property
    def config_class(self) -> type:
        """The model's frozen config dataclass (parameter names, types, defaults)."""
        return typing.cast(type, self.load_class().Config)

    @property
    def tasks(self) -> list[str]:
        """What the model can do (``next-item``, ``top-n``, ``rating``), from its class."""
        return sorted(self.load_class().tasks)

    def parameters(self) -> list[Parameter]:
        """The config's fields in declaration order, with types in words and old names."""
        from sessionrec.models.base import ALIASES, _type_name

        cfg = self.config_class
        hints = typing.get_type_hints(cfg)
        out = []
        for f in dataclasses.fields(cfg):
            factory: Any = f.default_factory
            default = f.default if f.default is not dataclasses.MISSING else factory()
            old = tuple(a for a, new in ALIASES.items() if new == f.name)
            # "or", not "|": the type goes into a Markdown table cell
            kind = _type_name(hints.get(f.name, Any)).replace(" | ", " or ")
            out.append(Parameter(f.name, kind, default, old))
        return out

    @property
    def space_file(self) -> Any:
        """The search space ``sessionrec tune`` ships for this model
        (``sessionrec/tuning/spaces/<name>.toml``, an importlib.resources Traversable), or
        None for a model without one (rating models: tune ranks next-item models)."""
        path = resources.files("sessionrec.tuning").joinpath("spaces", f"{self.name}.toml")
        return path if path.is_file() else None


def _spec(name: str, task: str, module: str, cls: str) -> tuple[str, ModelSpec]:
    return name, ModelSpec(name, task, module, cls)


#: Every model, one line each, in the order `sessionrec models` lists them.
MODELS: dict[str, ModelSpec] = dict(
    [
        _spec("pop", NEXT_ITEM, "sessionrec.models.pop", "Pop"),
        _spec("spop", NEXT_ITEM, "sessionrec.models.pop", "SPop"),
        _spec("bpr", NEXT_ITEM, "sessionrec.models.bpr", "BPR"),
        _spec("als", NEXT_ITEM, "sessionrec.models.als", "ALS"),
        _spec("markov", NEXT_ITEM, "sessionrec.models.markov", "Markov"),
        _spec("sr", NEXT_ITEM, "sessionrec.models.sr", "SR"),
        _spec("itemknn", NEXT_ITEM, "sessionrec.models.itemknn", "ItemKNN"),
        _spec("sknn", NEXT_ITEM, "sessionrec.models.sknn", "SKNN"),
        _spec("vsknn", NEXT_ITEM, "sessionrec.models.vsknn", "VSKNN"),
        _spec("gru4rec", NEXT_ITEM, "sessionrec.models.gru4rec", "GRU4Rec"),
        _spec("two-tower", NEXT_ITEM, "sessionrec.models.two_tower", "TwoTower"),
        _spec("sasrec", NEXT_ITEM, "sessionrec.models.sasrec", "SASRec"),
        _spec("repeatnet", NEXT_ITEM, "sessionrec.models.repeatnet", "RepeatNet"),
        _spec("baseline", RATING, "sessionrec.rating.baseline", "Baseline"),
        _spec("svd", RATING, "sessionrec.rating.svd", "SVD"),
        _spec("svdpp", RATING, "sessionrec.rating.svdpp", "SVDpp"),
        _spec("autorec", RATING, "sessionrec.rating.autorec", "AutoRec"),
    ]
)


def names(task: str | None = None) -> list[str]:
    """The registered names (of one task when given), in registry order."""
    return [n for n, s in MODELS.items() if task is None or s.task == task]


def spec(name: str, task: str | None = None) -> ModelSpec:
    """The registered model ``name`` (of ``task`` when given); an ``UnknownNameError`` listing
    the known names otherwise."""
    s = MODELS.get(name)
    if s is None or (task is not None and s.task != task):
        what = "model" if task in (None, NEXT_ITEM) else f"{task} model"
        raise UnknownNameError(what, name, names(task))
    return s


def task_of(name: str) -> str | None:
    """``next-item`` or ``rating`` for a registered name, None for an unknown one."""
    s = MODELS.get(name)
    return s.task if s is not None else None


def is_rating(name: str) -> bool:
    """Whether ``name`` is a registered rating model."""
    return task_of(name) == RATING


def model_class(name: str, task: str | None = None) -> Any:
    """The class of model ``name`` (imported now)."""
    return spec(name, task).load_class()


def create(
    name: str,
    params: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    *,
    task: str | None = None,
) -> SessionModel | RatingModel:
    """A new, untrained model ``name`` with ``params`` (unknown keys are rejected)."""
    return typing.cast("SessionModel | RatingModel",
                       model_class(name, task).from_params(params, device=device))  # fmt: skip


def folder_task(path: str | Path) -> str | None:
    """The task of the model a saved folder holds (its config.json's ``model``), None when
    that name is not registered. A missing or damaged config.json is a ``DataError``."""
    from sessionrec.models.base import read_model_config

    return task_of(read_model_config(path)["model"])


def load_model(
    path: str | Path, device: str | torch.device = "cpu", *, task: str | None = None
) -> SessionModel | RatingModel:
    """Load a saved model folder of any registered model (of ``task`` when given).

    Every model's ``trained_on`` holds what ``data_meta.json`` says of its training data, or
    None for a model saved without it (``Model.load_from``). A folder naming no registered model (or one
    of another task) is a ``DataError`` naming its config.json.
    """
    from sessionrec.models.base import read_model_config

    path = Path(path)
    name = read_model_config(path)["model"]
    try:
        s = spec(name, task)
    except UnknownNameError as exc:
        expected = {None: "a model name", NEXT_ITEM: "a next-item model name",
                    RATING: "a rating model name"}[task]  # fmt: skip
        raise DataError(path / "config.json", column="model", expected=expected,
                        found=str(exc)) from None  # fmt: skip
    return typing.cast("SessionModel | RatingModel", s.load_class().load_from(path, device=device))


__all__ = [
    "MODELS",
    "NEXT_ITEM",
    "RATING",
    "TASKS",
    "ModelSpec",
    "Parameter",
    "check_distributable",
    "create",
    "folder_task",
    "is_rating",
    "load_model",
    "model_class",
    "names",
    "spec",
    "task_of",
]


def _distributable(name: str) -> bool:
    return bool(getattr(model_class(name, spec(name).task), "supports_distributed", False))


def check_distributable(model_name: str) -> None:
    """Refuse, naming the models that do, a model that does not train as one rank of a
    process group."""
    if not _distributable(model_name):
        raise ConfigError(
            f"{model_name} does not train distributed; these do: "
            + ", ".join(n for n in names() if _distributable(n))
        )
