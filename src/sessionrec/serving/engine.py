"""The served models, the session store and the cache of streaming states between them.

A live session is its list of events in the store (the truth, shared by every worker) plus, in
this process, a cache of each model's streaming state after those events. An event appends to
the store, then advances the cached state by exactly the events it has not seen: one
``model.step`` in the usual case (GRU4Rec: one GRU step from the stored hidden state; kNN: the
item list grows by one), never a replay of the session.

Streaming states are *rebuilt*, not stored: when the cache has no state for a session (after a
restart, even ``kill -9``; after eviction from the cache; after a hot reload swapped the model;
when another worker's events or the ``max_events`` window changed the session under it), the
state is rebuilt once by stepping through the session's stored events, and stepping resumes
from there. The stored events are the latest ``max_events``, and the state always equals the
model's state after exactly those events, so a rebuilt state equals the one it replaces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sessionrec.errors import UnknownNameError
from sessionrec.serving.catalog import ServedModel, model_info
from sessionrec.serving.state import SessionRecord, SessionStore

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    generation: int
    epoch: str
    first_seq: int
    total: int
    state: Any
    idx: list[int]  # the session's item indices under this model (its known items)


@dataclass(frozen=True)
class Recommendation:
    session: SessionRecord | None
    model: ServedModel
    idx: list[int]
    scores: list[float]
    because: list[list[int]] | None
    seen: list[int]


def load_served(path: str | Path, generation: int, device: str = "cpu") -> ServedModel:
    """Load one model folder for serving."""
    from sessionrec.models import load_model

    path = Path(path)
    model = load_model(path, device=device)
    return ServedModel(
        name=path.resolve().name,
        path=path,
        model=model,
        generation=generation,
    )


class Engine:
    """Models by name (the first is the default), the store, and the state cache."""

    def __init__(
        self,
        model_dirs: Sequence[str | Path],
        store: SessionStore,
        *,
        device: str = "cpu",
        cache_size: int = 100_000,
    ) -> None:
        self.model_dirs = [Path(p) for p in model_dirs]
        self.device = device
        self.store = store
        self.cache_size = cache_size
        self._generation = 0
        self.models = self._load_all()
        self.default = next(iter(self.models))
        self._states: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        self._lock = threading.RLock()
        self.rebuilds = 0
        self.steps = 0

    def _load_all(self) -> dict[str, ServedModel]:
        models: dict[str, ServedModel] = {}
        for p in self.model_dirs:
            self._generation += 1
            sm = load_served(p, self._generation, self.device)
            if sm.name in models:
                raise UnknownNameError(
                    "model folder name (two served folders share it)", sm.name, list(models)
                )
            models[sm.name] = sm
        return models

    def reload(self) -> list[str]:
        """Load every folder again and swap them in at once (requests in flight finish on
        the old models); cached states of the old models are rebuilt on next use."""
        fresh = self._load_all()
        self.models = fresh  # one assignment: atomic for readers
        return list(fresh)

    def model(self, name: str | None) -> ServedModel:
        models = self.models
        if name is None or name == "":
            return models[self.default]
        try:
            return models[name]
        except KeyError:
            raise UnknownNameError("model", name, list(models)) from None

    # -- sessions ---------------------------------------------------------------------------
    def add_event(
        self,
        session_id: str,
        sm: ServedModel,
        idx: int,
        k: int,
        exclude_seen: bool,
        event_id: str | None = None,
    ) -> tuple[Recommendation, bool]:
        now = time.time()
        with self._lock:
            known = self._records.get(session_id)
            rec, applied = self.store.append(
                session_id, str(sm.id_of_idx[idx]), now, event_id=event_id, known=known
            )
            self._remember(session_id, rec)
            entry = self._sync(session_id, sm, rec)
            return self._recommend(rec, sm, entry, k, exclude_seen), applied

    def recommendations(
        self, session_id: str, sm: ServedModel, k: int, exclude_seen: bool
    ) -> Recommendation | None:
        with self._lock:
            rec = self.store.get(session_id, time.time())
            if rec is None:
                return None
            self._remember(session_id, rec)
            entry = self._sync(session_id, sm, rec)
            return self._recommend(rec, sm, entry, k, exclude_seen)

    def get(self, session_id: str) -> SessionRecord | None:
        return self.store.get(session_id, time.time())

    def delete(self, session_id: str) -> bool:
        with self._lock:
            self._records.pop(session_id, None)
            for name in list(self.models):
                self._states.pop((session_id, name), None)
            return self.store.delete(session_id)

    def stateless(
        self, sm: ServedModel, idx: list[int], k: int, exclude_seen: bool
    ) -> Recommendation:
        with torch.inference_mode():
            state = sm.model.start(1)
            for i in idx:
                state = sm.model.step(state, sm.index_tensor(i))
        entry = _Entry(sm.generation, "", 0, len(idx), state, idx)
        return self._recommend(None, sm, entry, k, exclude_seen)

    def expire(self) -> int:
        n = self.store.expire(time.time())
        with self._lock:
            cutoff = time.time() - self.store.ttl
            old = [s for s, r in self._records.items() if r.updated < cutoff]
            for s in old:
                del self._records[s]
            gone = set(old)
            for key in [key for key in self._states if key[0] in gone]:
                del self._states[key]
        return n

    # -- internals --------------------------------------------------------------------------
    def _remember(self, session_id: str, rec: SessionRecord) -> None:
        self._records[session_id] = rec
        self._records.move_to_end(session_id)
        while len(self._records) > self.cache_size:
            self._records.popitem(last=False)

    def _sync(self, session_id: str, sm: ServedModel, rec: SessionRecord) -> _Entry:
        """The model's state after exactly ``rec``'s events: the cached one advanced by the
        events it lacks, or rebuilt from the stored events."""
        key = (session_id, sm.name)
        entry = self._states.get(key)
        model = sm.model
        if (
            entry is not None
            and entry.generation == sm.generation
            and entry.epoch == rec.epoch
            and entry.first_seq == rec.first_seq
            and entry.total <= rec.total
        ):
            todo = rec.items[entry.total - rec.first_seq :]
            state, idx = entry.state, list(entry.idx)
        else:
            todo = rec.items
            state, idx = None, []
            if entry is not None or rec.total > 1:
                self.rebuilds += 1
        with torch.inference_mode():
            if state is None:
                state = model.start(1)
            for item in todo:
                i = sm.idx_of_id.get(item)
                if i is None:  # an item this model does not know (another vocabulary)
                    continue
                state = model.step(state, sm.index_tensor(i))
                idx.append(i)
                self.steps += 1
        entry = _Entry(sm.generation, rec.epoch, rec.first_seq, rec.total, state, idx)
        self._states[key] = entry
        self._states.move_to_end(key)
        while len(self._states) > self.cache_size:
            self._states.popitem(last=False)
        return entry

    def _recommend(
        self, rec: SessionRecord | None, sm: ServedModel, entry: _Entry, k: int, exclude_seen: bool
    ) -> Recommendation:
        with torch.inference_mode():
            top, values = sm.model.top_k(entry.state, 0, k, entry.idx if exclude_seen else None)
        because = sm.because(entry.idx, top) if sm.is_knn else None
        return Recommendation(rec, sm, top, values, because, entry.idx)


def describe_models(engine: Engine) -> list[dict[str, Any]]:
    out = []
    for name, sm in engine.models.items():
        out.append(
            {
                "name": name,
                "default": name == engine.default,
                "path": str(sm.path),
                "generation": sm.generation,
                **model_info(sm.path, sm.model),  # read now: evaluate runs may come later
            }
        )
    return out
