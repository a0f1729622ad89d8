"""The model protocol every model implements, neural or not (DESIGN.md).

Streaming ``start / reset / step / score`` lets one evaluator and one recommender serve every
model: an RNN keeps its hidden state, kNN keeps the session's items, Markov keeps the last item.
The evaluator runs B sessions side by side; when a slot's session ends, the slot is ``reset``
and takes the next session, so what is measured is what is served.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import polars as pl
import torch

from sessionrec._io import atomic_path, load_weights, read_json_object, read_parquet, write_json
from sessionrec.errors import ConfigError, DataError, SessionrecError, UnknownNameError, one_line
from sessionrec.models._answer import check_k, resolve_items, top_k_frame
from sessionrec.prepare.data import SessionData, read_trained_on

FORMAT = "sessionrec.model/1"
C = TypeVar("C")

#: Called by ``fit`` after each epoch with a record (epoch, train_loss, ...); returning True
#: asks the model to stop early.
EpochCallback = Callable[[dict[str, Any]], bool | None]


#: The parameter that names a preset (``--param preset=NAME``); not a config field.
PRESET_KEY = "preset"

#: Old parameter names, still accepted (scripts, saved model folders) → the one vocabulary every
#: model uses: GRU4Rec's official names (``n_epochs``, ``learning_rate``).
ALIASES: dict[str, str] = {"epochs": "n_epochs", "lr": "learning_rate"}


def presets(cls: type) -> dict[str, dict[str, Any]]:
    """The named presets of a config class: ``PRESETS`` (a class variable), name → values."""
    return dict(getattr(cls, "PRESETS", {}))


def make_config(cls: type[C], params: dict[str, Any] | None, *, warn: bool = True) -> C:
    """Build a frozen config dataclass from ``params``, rejecting unknown keys by name and
    values of the wrong type or range by name, type and value (``check_param``).

    ``params["preset"]`` names one of the class's ``PRESETS`` (e.g. ``session-rec`` for
    ``vsknn``): its values are the starting point, and the other ``params`` override them
    (defaults < preset < explicit values). The saved config holds the resolved values.

    An old name of ``ALIASES`` is renamed, with a ``FutureWarning`` when ``warn`` (saved model
    folders and checkpoints written before the rename load silently).
    """
    params = dict(params or {})
    if PRESET_KEY in params:
        name = params.pop(PRESET_KEY)
        known = presets(cls)
        if name not in known:
            raise UnknownNameError(
                f"preset of {cls.__name__}", str(name), list(known) or ["(none)"]
            )
        params = {**known[name], **params}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for old, new in ALIASES.items():
        if old in params and old not in names and new in names:
            if new in params:
                raise ConfigError(f"{old} and {new} are the same parameter: give {new} only")
            if warn:
                warnings.warn(
                    f"parameter {old!r} is deprecated, use {new!r} (one vocabulary for every "
                    "model: `sessionrec models` lists them)",
                    FutureWarning,
                    stacklevel=3,
                )
            params[new] = params.pop(old)
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(names))}"
        )
    hints = typing.get_type_hints(cls)
    for name in list(params):
        params[name] = check_param(name, hints.get(name, Any), params[name])
        _check_range(name, params[name])
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:  # a model's own checks that are not ConfigErrors
        raise ConfigError(f"invalid parameters for {cls.__name__}: {exc}") from None


#: Ranges shared by name across models (a model checks the rest in its ``__post_init__``):
#: sizes of at least 1, counts and rates of at least 0 (a rate of 0 freezes the weights: a
#: diagnostic), a softmax temperature above 0.
_AT_LEAST = {"factors": 1, "dim": 1, "batch_size": 1, "context_length": 1, "layers": 1,
             "hidden": 1, "epochs": 0, "n_epochs": 0, "extra_negatives": 0, "threads": 0,
             "weight_decay": 0, "l2": 0, "lr": 0, "learning_rate": 0}  # fmt: skip
_ABOVE_ZERO = ("temperature",)


def _check_range(name: str, value: Any) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        low = _AT_LEAST.get(name)
        if low is not None and v < low:
            raise ConfigError(f"parameter {name}: expected at least {low}, found {value!r}")
        if name in _ABOVE_ZERO and v <= 0:
            raise ConfigError(f"parameter {name}: expected a number above 0, found {value!r}")


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def check_param(name: str, kind: Any, value: Any) -> Any:
    """``value`` as the declared type ``kind`` of parameter ``name``, or a ConfigError naming
    the parameter, its type and the value.

    Booleans take true/false/1/0/yes/no; integers take whole numbers (``2.0`` but not ``2.5``);
    numbers must be finite; ``tuple[int, ...]`` takes a list of integers or one integer.
    """

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"parameter {name} ({_type_name(kind)}): expected {expected}, found {value!r}"
        )

    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return check_param(name, option, value)
            except ConfigError:
                continue
        raise bad(" or ".join(_type_name(o) for o in options))
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise bad("one of " + ", ".join(map(repr, choices)))
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        raise bad("true or false (true/false, 1/0, yes/no)")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise bad("a whole number")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise bad("a finite number")
            return float(value)
        raise bad("a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad("text")
    if origin is tuple:
        args = typing.get_args(kind)
        item = args[0] if args else Any
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # one number: a tuple of one (layers=224)
        if not isinstance(value, (list, tuple)):
            raise bad(_type_name(kind))
        try:
            return tuple(check_param(name, item, v) for v in value)
        except ConfigError:
            raise bad(_type_name(kind)) from None
    return value


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is tuple:  # said in words: brackets read as markup in terminals
        args = typing.get_args(kind)
        return f"list of {_type_name(args[0]) if args else 'values'}"
    if isinstance(kind, type) and not typing.get_args(kind):
        return kind.__name__
    return str(kind).replace("typing.", "")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here")
    return torch.device(device)


class Model(ABC):
    """The base of every model, next-item and rating: its config and device, its item table,
    what it was trained on, and the model folder it is saved to and loaded from.

    A model folder is ``config.json`` (``format``, ``model``, the task's own keys, ``config``),
    ``weights.safetensors`` (``state_arrays``) and Parquet tables (``folder_tables``). One
    ``save`` writes it and one ``load_from`` reads and checks it for every model; a task says
    only what its own keys, arrays and tables are and how one cheap probe checks that they fit
    (``check_loaded``). ``recommend`` is the one entry to a top-k list with titles: the task
    decides what is asked (a session, a user) and what ranks the items (``_recommend``).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    #: Tasks the model supports: "next-item", "top-n" (for a user), "rating".
    tasks: ClassVar[frozenset[str]] = frozenset()
    #: The ``format`` tag of the folder's config.json.
    FORMAT: ClassVar[str] = FORMAT

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.device = resolve_device(device)
        self.items: pl.DataFrame | None = None  # item ids + titles, set by training
        #: The data it was trained on (path, fit_on, fingerprint): set by training, and read
        #: back from the folder's data_meta.json by ``load_from``.
        self.trained_on: dict[str, Any] | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **kw: Any) -> Self:
        return cls(make_config(cls.Config, params), **kw)

    # -- the model folder -------------------------------------------------------------------
    @abstractmethod
    def state_arrays(self) -> dict[str, torch.Tensor]:
        """The learned arrays to persist (tensors, saved with safetensors)."""

    @abstractmethod
    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_arrays`` returned."""

    @abstractmethod
    def folder_record(self) -> dict[str, Any]:
        """The task's own keys of config.json, beside ``format``, ``model`` and ``config``."""

    @abstractmethod
    def read_folder_record(self, record: dict[str, Any], path: Path) -> None:
        """Restore what ``folder_record`` wrote from config.json's ``record`` (a bad value is a
        ``DataError`` naming ``path / "config.json"``)."""

    @abstractmethod
    def folder_tables(self) -> dict[str, pl.DataFrame]:
        """The folder's Parquet tables: file name → table."""

    @abstractmethod
    def read_folder_tables(self, path: Path) -> None:
        """Restore what ``folder_tables`` wrote (a damaged file is a ``DataError`` naming it)."""

    @abstractmethod
    def check_loaded(self, record: dict[str, Any]) -> None:
        """One cheap probe after loading: raise (ValueError, RuntimeError, ...) when the arrays
        do not fit config.json's ``record``."""

    def folder_summary(self, record: dict[str, Any]) -> str:
        """What config.json says the arrays must fit, in a few words (for errors)."""
        return self.name

    @property
    def weights_device(self) -> str:
        """Where ``load_from`` puts the arrays it reads."""
        return str(self.device)

    def save(self, path: str | Path) -> Path:
        """Write weights.safetensors, the tables and config.json into ``path``, each file
        atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {k: v.detach().contiguous().cpu() for k, v in self.state_arrays().items()}
        with atomic_path(path / "weights.safetensors") as tmp:
            save_file(arrays, str(tmp))
        for file, table in self.folder_tables().items():
            with atomic_path(path / file) as tmp:
                table.write_parquet(tmp)
        write_json(
            path / "config.json",
            {
                "format": self.FORMAT,
                "model": self.name,
                **self.folder_record(),
                "config": dataclasses.asdict(self.config),
            },
        )
        return path

    @classmethod
    def load_from(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        """Load a model folder; a damaged file ends in a ``DataError`` naming it. The model's
        ``trained_on`` holds what the folder's data_meta.json says of its training data, or
        None for a folder saved without it (``model.save``)."""
        path = Path(path)
        cfg = read_model_config(path)
        try:
            config: Any = make_config(cls.Config, cfg["config"], warn=False)
        except ConfigError as exc:
            raise DataError(
                path / "config.json", expected=f"valid {cls.name} parameters", found=str(exc)
            ) from None
        model = cls(config, device=device)
        model.read_folder_record(cfg, path)
        model.read_folder_tables(path)
        arrays = load_weights(path / "weights.safetensors", device=model.weights_device)
        try:
            model.load_state_arrays(arrays)
            model.check_loaded(cfg)
        except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
            raise DataError(
                path / "weights.safetensors",
                expected=f"arrays that fit config.json ({model.folder_summary(cfg)})",
                found=one_line(exc),
            ) from None
        model.trained_on = read_trained_on(path)
        return model

    # -- recommending -----------------------------------------------------------------------
    def recommend(
        self, query: Any, /, k: int = 10, *, exclude_seen: bool = True, index: Any = None
    ) -> pl.DataFrame:
        """The top-``k`` items for ``query``, best first, with titles where known.

        What ``query`` is and what ranks the items is the task's: a session of item ids or
        titles for a next-item model (``SessionModel.recommend``), a user id for a rating
        model (``RatingModel.recommend``). ``exclude_seen`` leaves out the items the query
        already holds (the session's, the user's rated ones); ``index`` (``sessionrec.ann``)
        searches the model's item vectors instead of scoring every item, where the task can.
        """
        check_k(k)
        return self._recommend(query, k, exclude_seen=exclude_seen, index=index)

    @abstractmethod
    def _recommend(self, query: Any, k: int, *, exclude_seen: bool, index: Any) -> pl.DataFrame:
        """``recommend`` after ``k`` was checked."""


class SessionModel(Model):
    """Base class of every next-item model (the ``Model`` of a session).

    Subclasses set ``name`` and ``Config`` (a frozen dataclass), implement ``fit``, the streaming
    methods and ``state_arrays`` / ``load_state_arrays`` (what save/load persist).

    State is model-specific and opaque to callers; ``score`` returns ``(B, n_items)`` float
    scores on ``self.device``, higher is better.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    tasks: ClassVar[frozenset[str]] = frozenset({"next-item"})
    #: False for models that by design cannot learn which item follows which (pop, spop):
    #: the shared contract tests (tests/test_model_contract.py) then skip the planted cyclic
    #: A→B→C→A test. A model may also define ``test_params`` (a dict of small parameters
    #: for those tests, e.g. few epochs).
    learns_order: ClassVar[bool] = True

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        self.n_items = 0

    # -- training ---------------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        """Learn from ``train``; ``valid`` may drive early stopping (through ``callback``)."""

    # -- streaming protocol -----------------------------------------------------------------
    @abstractmethod
    def start(self, batch_size: int) -> Any:
        """A state for ``batch_size`` empty sessions."""

    @abstractmethod
    def reset(self, state: Any, mask: torch.Tensor) -> Any:
        """Empty the sessions where ``mask`` (B,) is True."""

    @abstractmethod
    def step(self, state: Any, items: torch.Tensor) -> Any:
        """Append one event per slot: ``items`` (B,) item indices."""

    @abstractmethod
    def score(self, state: Any) -> torch.Tensor:
        """(B, n_items) scores for the next item of each slot's session."""

    def score_rows(self, state: Any, rows: torch.Tensor) -> torch.Tensor:
        """(R, n_items) scores of the slots ``rows`` (R,) only: ``score(state)[rows]``.

        The evaluator asks for the slots it predicts at this step; a model whose cost grows
        with the number of slots (session kNN) overrides this to skip idle slots.
        """
        return self.score(state)[rows]

    def top_k(
        self, state: Any, row: int, k: int, exclude: Sequence[int] | None = None
    ) -> tuple[list[int], list[float]]:
        """The ``k`` best next items of slot ``row`` and their scores, best first, items in
        ``exclude`` left out: ``top_of_scores(score_rows(state, [row])[0], k, exclude)``.

        What a live service needs per event. A model that knows its scores are mostly a fixed
        background (session kNN: the popularity tie-break of the items no neighbour holds)
        overrides this to rank only the candidates, with the same answer.
        """
        rows = torch.tensor([row], device=self.device)
        return top_of_scores(self.score_rows(state, rows)[0], k, exclude)

    def top_k_many(
        self, state: Any, ks: Sequence[int], excludes: Sequence[Sequence[int] | None]
    ) -> list[tuple[list[int], list[float]]]:
        """``top_k`` of slots 0 .. len(ks) − 1, slot ``r`` with ``ks[r]`` and ``excludes[r]``.

        A model that ranks with the base ``top_k`` scores all the slots in one ``score_rows``
        (a live service answering several sessions at once reads the item weights once); a
        model with its own ``top_k`` is asked slot by slot. The rows of one product equal the
        row-by-row ones up to the float rounding of the product (a few units in the last
        place, and only for products of one to three rows on MKL).
        """
        asks = list(enumerate(zip(ks, excludes, strict=True)))
        if type(self).top_k is not SessionModel.top_k:
            return [self.top_k(state, r, k, ex) for r, (k, ex) in asks]
        scores = self.score_rows(state, torch.arange(len(ks), device=self.device))
        return [top_of_scores(scores[r], k, ex) for r, (k, ex) in asks]

    def join_states(self, states: Sequence[Any]) -> Any | None:
        """One state whose slots are the given states' slots, in order; None when the model's
        state is not rows of tensors (then a service steps its sessions one by one).

        The default joins a (B, ...) tensor or a plain tuple of them along the rows, which is
        what ``start`` makes for every model whose state is one row per session."""
        first = states[0]
        if isinstance(first, torch.Tensor):
            return torch.cat(list(states))
        if type(first) is tuple and all(isinstance(t, torch.Tensor) for t in first):
            return tuple(torch.cat([s[j] for s in states]) for j in range(len(first)))
        return None

    def split_state(self, state: Any, n: int) -> list[Any]:
        """The ``n`` one-slot states of a state ``join_states`` made (copies: a kept slot
        does not hold the whole batch in memory)."""
        if isinstance(state, torch.Tensor):
            return [state[r : r + 1].clone() for r in range(n)]
        return [tuple(t[r : r + 1].clone() for t in state) for r in range(n)]

    # -- the model folder: n_items in config.json, items.parquet beside the weights ------
    def folder_record(self) -> dict[str, Any]:
        return {"n_items": self.n_items}

    def read_folder_record(self, record: dict[str, Any], path: Path) -> None:
        n_items = record.get("n_items")
        if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 0:
            raise DataError(path / "config.json", column="n_items",
                            expected="a non-negative integer", found=repr(n_items))  # fmt: skip
        self.n_items = n_items

    def folder_tables(self) -> dict[str, pl.DataFrame]:
        return {} if self.items is None else {"items.parquet": self.items}

    def read_folder_tables(self, path: Path) -> None:
        if (path / "items.parquet").exists():
            self.items = read_parquet(path / "items.parquet")
            if self.items.height != self.n_items:
                raise DataError(path / "items.parquet",
                                expected=f"{self.n_items:,} items (config.json)",
                                found=f"{self.items.height:,} rows")  # fmt: skip

    def check_loaded(self, record: dict[str, Any]) -> None:
        n_items = record["n_items"]
        if self.n_items != n_items:
            raise ValueError(f"arrays over {self.n_items:,} items, config.json {n_items:,}")
        if n_items:  # one step and one score: shapes that disagree fail here, not later
            scores = self.score_sessions([[0]])
            if tuple(scores.shape) != (1, n_items):
                raise ValueError(f"scores of shape {tuple(scores.shape)}")

    def folder_summary(self, record: dict[str, Any]) -> str:
        return f"{self.name}, {record['n_items']:,} items"

    # -- convenience ------------------------------------------------------------------------
    @torch.no_grad()
    def score_sessions(self, sessions: Sequence[Sequence[int]]) -> torch.Tensor:
        """(len(sessions), n_items) next-item scores after each whole session (item indices).

        Sessions of equal length are stepped together as one batch. The scores keep the
        model's dtype (float64 for the baselines' exact popularity tie-break).
        """
        out: torch.Tensor | None = None
        by_length: dict[int, list[int]] = {}
        for i, s in enumerate(sessions):
            by_length.setdefault(len(s), []).append(i)
        for length, rows in by_length.items():
            state = self.start(len(rows))
            seqs = torch.tensor([list(sessions[i]) for i in rows], dtype=torch.long).view(
                len(rows), length
            )
            for t in range(length):
                state = self.step(state, seqs[:, t].to(self.device))
            scores = self.score(state)
            if out is None:
                out = torch.empty(
                    len(sessions), self.n_items, dtype=scores.dtype, device=self.device
                )
            out[torch.tensor(rows, device=self.device)] = scores.to(out.dtype)
        if out is None:
            return torch.empty(0, self.n_items, device=self.device)
        return out

    def recommend(
        self,
        session: Sequence[int | str],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        index: Any = None,
    ) -> pl.DataFrame:
        """Top-``k`` next items for one session of item ids or titles, with titles.

        ``index``: a ``sessionrec.ann.ItemIndex`` of this model's item vectors to search
        instead of scoring every item (``ItemIndex.session_scores``). Returns columns rank,
        item_id, title, year, genres (where known), score and item_idx.
        """
        return super().recommend(session, k, exclude_seen=exclude_seen, index=index)

    def _recommend(self, query: Any, k: int, *, exclude_seen: bool, index: Any) -> pl.DataFrame:
        session: Sequence[int | str] = query
        if self.items is None:
            raise SessionrecError("the model has no item table; train it through sessionrec.train")
        idx = resolve_items(self.items, session)
        if not idx:
            raise SessionrecError("the session is empty: give at least one item")
        if index is not None:
            scores = index.session_scores(self, idx, k, exclude_seen=exclude_seen)
            return top_k_frame(scores, k, self.items)
        scores = self.score_sessions([idx])[0]
        return top_k_frame(scores, k, self.items, exclude=idx if exclude_seen else ())


def top_of_scores(
    scores: torch.Tensor, k: int, exclude: Sequence[int] | None = None
) -> tuple[list[int], list[float]]:
    """Top-``k`` item indices and scores of one (n_items,) vector, ``exclude`` masked out —
    as ``top_k_frame`` ranks them: NaN is never served, and fewer than
    ``k`` items come back when fewer have a finite score.

    ``torch.topk`` ranks NaN above every number, so when the plain top ``k`` are all finite
    the vector held no NaN and at least ``k`` finite scores, and the answer is the one the
    full cleaning gives; otherwise that runs."""
    s = scores.detach()  # the model's dtype: the kNN baselines' float64 tie-break stays exact
    if exclude:
        s = s.clone()
        s[torch.tensor(list(exclude), dtype=torch.long, device=s.device)] = -torch.inf
    if 0 < k <= s.numel():
        top = torch.topk(s, k)
        values = top.values.cpu().tolist()
        if all(math.isfinite(v) for v in values):
            return top.indices.cpu().tolist(), values
    return _top_cleaned(s, k)


def _top_cleaned(s: torch.Tensor, k: int) -> tuple[list[int], list[float]]:
    s = s.masked_fill(torch.isnan(s), -torch.inf)  # NaN is never served (as recommend)
    top = torch.topk(s, min(k, int(torch.isfinite(s).sum())))
    return top.indices.cpu().tolist(), top.values.cpu().tolist()


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a model directory, checked: a JSON object naming its ``model`` and
    holding its ``config``; anything else is a ``DataError`` naming the file."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise DataError(
            path,
            expected="a model directory with config.json (from `sessionrec train`)",
            found="no config.json" if path.is_dir() else "no such directory",
        )
    cfg = read_json_object(cfg_path)
    from sessionrec._formats import check_format

    check_format(cfg_path, cfg.get("format"), ("sessionrec.model", "sessionrec.rating-model"))
    if not isinstance(cfg.get("model"), str):
        raise DataError(
            cfg_path, column="model", expected="a model name", found=repr(cfg.get("model"))
        )
    if not isinstance(cfg.get("config"), dict):
        raise DataError(cfg_path, column="config", expected="an object of parameters",
                        found=repr(cfg.get("config")))  # fmt: skip
    return cfg


def check_session_data(data: SessionData, n_items: int, where: str = "data") -> None:
    if data.n_items != n_items:
        raise DataError(where, expected=f"{n_items} items", found=f"{data.n_items}")
