"""The model protocol every model implements, neural or not (DESIGN.md).

Streaming ``start / reset / step / score`` lets one evaluator and one recommender serve every
model: an RNN keeps its hidden state, kNN keeps the session's items, Markov keeps the last item.
The evaluator runs B sessions side by side; when a slot's session ends, the slot is ``reset``
and takes the next session, so what is measured is what is served.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import polars as pl
import torch

from sessionrec._io import atomic_path, write_json
from sessionrec.errors import ConfigError, DataError, UnknownNameError
from sessionrec.prepare.data import SessionData

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
    """Build a frozen config dataclass from ``params``, rejecting unknown keys by name.

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
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in params and isinstance(params[f.name], list) and "tuple" in str(f.type):
            params[f.name] = tuple(params[f.name])
    return cls(**params)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here")
    return torch.device(device)


class SessionModel(ABC):
    """Base class of every model.

    Subclasses set ``name`` and ``Config`` (a frozen dataclass), implement ``fit``, the streaming
    methods and ``state_arrays`` / ``load_state_arrays`` (what save/load persist).

    State is model-specific and opaque to callers; ``score`` returns ``(B, n_items)`` float
    scores on ``self.device``, higher is better.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    #: Tasks the model supports: "next-item", "top-n" (for a user), "rating".
    tasks: ClassVar[frozenset[str]] = frozenset({"next-item"})
    #: False for models that by design cannot learn which item follows which (pop, spop):
    #: the shared contract tests (tests/test_model_contract.py) then skip the planted cyclic
    #: A→B→C→A test. A model may also define ``test_params`` (a dict of small parameters
    #: for those tests, e.g. few epochs).
    learns_order: ClassVar[bool] = True

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.device = resolve_device(device)
        self.n_items = 0
        self.items: pl.DataFrame | None = None  # item_idx ↔ item_id + titles, set by training

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **kw: Any) -> Self:
        return cls(make_config(cls.Config, params), **kw)

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

    # -- persistence ------------------------------------------------------------------------
    @abstractmethod
    def state_arrays(self) -> dict[str, torch.Tensor]:
        """The learned arrays to persist (tensors, saved with safetensors)."""

    @abstractmethod
    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_arrays`` returned."""

    def save(self, path: str | Path) -> Path:
        """Write config.json, weights.safetensors and items.parquet into ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {k: v.detach().contiguous().cpu() for k, v in self.state_arrays().items()}
        with atomic_path(path / "weights.safetensors") as tmp:
            save_file(arrays, str(tmp))
        if self.items is not None:
            with atomic_path(path / "items.parquet") as tmp:
                self.items.write_parquet(tmp)
        write_json(
            path / "config.json",
            {
                "format": FORMAT,
                "model": self.name,
                "n_items": self.n_items,
                "config": dataclasses.asdict(self.config),
            },
        )
        return path

    @classmethod
    def load_from(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        from safetensors.torch import load_file

        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        model = cls(make_config(cls.Config, cfg["config"], warn=False), device=device)
        model.n_items = int(cfg["n_items"])
        model.load_state_arrays(
            load_file(str(path / "weights.safetensors"), device=str(model.device))
        )
        if (path / "items.parquet").exists():
            model.items = pl.read_parquet(path / "items.parquet")
        return model

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
        instead of scoring every item. Returns columns rank, item_id, title, year, genres
        (where known) and score.
        """
        from sessionrec.recommend import recommend

        return recommend(self, session, k, exclude_seen=exclude_seen, index=index)


def check_session_data(data: SessionData, n_items: int, where: str = "data") -> None:
    if data.n_items != n_items:
        raise DataError(where, expected=f"{n_items} items", found=f"{data.n_items}")
