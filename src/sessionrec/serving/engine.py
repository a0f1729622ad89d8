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
from there. The stored events are the session's latest (at most ``max_events``; past that the
store drops the oldest quarter at once, so a long session is rebuilt once per quarter of the
cap, not at every event), and the state always equals the model's state after exactly those
events, so a rebuilt state equals the one it replaces.
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
from sessionrec.serving.catalog import ServedModel, folder_problems, model_info
from sessionrec.serving.state import Append, SessionRecord, SessionStore

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
    #: whether the session's items were left out of the list (said in every answer)
    exclude_seen: bool = True


@dataclass(frozen=True)
class Event:
    """One session event to apply: ``idx`` is the item's index under ``model``."""

    session_id: str
    model: ServedModel
    idx: int
    k: int
    exclude_seen: bool
    event_id: str | None = None


#: what ``Engine.add_events`` gives for each event: the list and whether the event was
#: appended, or the error that stopped it
EventResult = tuple[Recommendation, bool] | Exception

#: the most sessions one batched model call takes (a bound on the joined state's memory)
MAX_BATCH = 64


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
        self._reloading = threading.Lock()  # one reload at a time: SIGHUP and /admin/reload
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
        the old models); cached states of the old models are rebuilt on next use.

        Reloads run one at a time, so two that overlap (a SIGHUP during POST /admin/reload)
        cannot interleave their generation numbers or swap in the older load last."""
        with self._reloading:
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
        (out,) = self.add_events([Event(session_id, sm, idx, k, exclude_seen, event_id)])
        if isinstance(out, Exception):
            raise out
        return out

    def add_events(self, events: Sequence[Event]) -> list[EventResult]:
        """Apply several events (in order) and answer each, as ``add_event`` one after the
        other would; an event that fails gets its error and the others go on.

        What a live service does with the events that arrive together: their appends are
        one store transaction (or round trip), and the sessions of a model whose state is
        rows of tensors (``join_states``) take their step and their scores as one batch, so
        the weights are read once for all of them. Events of the same session go in
        successive rounds, each answered from the session as it stood after that event.
        """
        out: list[EventResult | None] = [None] * len(events)
        with self._lock:
            for part in _rounds(events):
                self._add_round([events[i] for i in part], part, out)
        assert all(r is not None for r in out)
        return out  # type: ignore[return-value]

    def _add_round(
        self, events: list[Event], where: list[int], out: list[EventResult | None]
    ) -> None:
        """Events of distinct sessions: append all, step and rank each model's together."""
        now = time.time()
        appends = [
            Append(
                e.session_id,
                str(e.model.id_of_idx[e.idx]),
                now,
                e.event_id,
                self._records.get(e.session_id),
            )
            for e in events
        ]
        todo: list[tuple[int, Event, SessionRecord, bool]] = []
        for i, e, res in zip(where, events, self.store.append_many(appends), strict=True):
            if isinstance(res, Exception):
                out[i] = res
            else:
                self._remember(e.session_id, res[0])
                todo.append((i, e, res[0], res[1]))
        # by the served model object: across a reload, old and new ones share a name
        by_model: dict[int, list[tuple[int, Event, SessionRecord, bool]]] = {}
        for t in todo:
            by_model.setdefault(id(t[1].model), []).append(t)
        for group in by_model.values():
            sm = group[0][1].model
            for start in range(0, len(group), MAX_BATCH):
                chunk = group[start : start + MAX_BATCH]
                entries = self._sync_many(sm, [(t[1].session_id, t[2]) for t in chunk])
                ready = []
                for (i, e, rec, applied), entry in zip(chunk, entries, strict=True):
                    if isinstance(entry, Exception):
                        out[i] = entry
                    else:
                        ready.append((i, e, rec, applied, entry))
                recs = self._recommend_many(
                    sm,
                    [(rec, entry, e.k, e.exclude_seen) for _, e, rec, _, entry in ready],
                )
                for (i, _, _, applied, _), r in zip(ready, recs, strict=True):
                    out[i] = r if isinstance(r, Exception) else (r, applied)

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
        return self._advance(session_id, sm, rec, *self._resume(session_id, sm, rec))

    def _advance(
        self,
        session_id: str,
        sm: ServedModel,
        rec: SessionRecord,
        state: Any,
        idx: list[int],
        todo: tuple[str, ...],
    ) -> _Entry:
        """Step ``state`` (None: a new one) through the events ``todo``, one by one."""
        model = sm.model
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
        return self._keep(session_id, sm, rec, state, idx)

    def _resume(
        self, session_id: str, sm: ServedModel, rec: SessionRecord
    ) -> tuple[Any, list[int], tuple[str, ...]]:
        """The cached state that ``rec`` continues (None: none, start afresh), its item
        indices, and the stored events it lacks."""
        entry = self._states.get((session_id, sm.name))
        if (
            entry is not None
            and entry.generation == sm.generation
            and entry.epoch == rec.epoch
            and entry.first_seq == rec.first_seq
            and entry.total <= rec.total
        ):
            return entry.state, list(entry.idx), rec.items[entry.total - rec.first_seq :]
        if entry is not None or rec.total > 1:
            self.rebuilds += 1
        return None, [], rec.items

    def _keep(
        self, session_id: str, sm: ServedModel, rec: SessionRecord, state: Any, idx: list[int]
    ) -> _Entry:
        key = (session_id, sm.name)
        entry = _Entry(sm.generation, rec.epoch, rec.first_seq, rec.total, state, idx)
        self._states[key] = entry
        self._states.move_to_end(key)
        while len(self._states) > self.cache_size:
            self._states.popitem(last=False)
        return entry

    def _sync_many(
        self, sm: ServedModel, sessions: list[tuple[str, SessionRecord]]
    ) -> list[_Entry | Exception]:
        """``_sync`` of distinct sessions of one model, stepped together: the sessions with
        as many events to step (one past their cached state, usually; all the kept events of
        those being rebuilt) take each step as one batch. A model whose states do not join
        (and a lone session) is stepped session by session; a batch that fails is redone
        session by session, so that an error stays with its session."""
        resumed = [self._resume(sid, sm, rec) for sid, rec in sessions]
        out: list[_Entry | Exception | None] = [None] * len(sessions)
        groups: dict[int, list[tuple[int, list[int]]]] = {}  # steps → (row, item indices)
        for r, (_, _, todo) in enumerate(resumed):
            known = [sm.idx_of_id[i] for i in todo if i in sm.idx_of_id]
            groups.setdefault(len(known), []).append((r, known))
        model = sm.model
        for length, group in groups.items():
            if len(group) < 2 or length == 0:
                continue
            try:
                with torch.inference_mode():
                    starts = [resumed[r][0] for r, _ in group]
                    joined = model.join_states([model.start(1) if s is None else s for s in starts])
                    if joined is None:
                        break  # the model's states do not join: one by one, below
                    steps = torch.tensor([known for _, known in group], device=model.device)
                    for t in range(length):
                        joined = model.step(joined, steps[:, t])
                    states = model.split_state(joined, len(group))
            except Exception:
                log.exception("a batched model step failed; stepping its sessions one by one")
                continue
            for (r, known), state in zip(group, states, strict=True):
                (sid, rec), idx = sessions[r], resumed[r][1]
                out[r] = self._keep(sid, sm, rec, state, [*idx, *known])
                self.steps += length
        for r, (sid, rec) in enumerate(sessions):
            if out[r] is None:
                try:
                    out[r] = self._advance(sid, sm, rec, *resumed[r])
                except Exception as exc:
                    out[r] = exc
        return out  # type: ignore[return-value]

    def _recommend(
        self, rec: SessionRecord | None, sm: ServedModel, entry: _Entry, k: int, exclude_seen: bool
    ) -> Recommendation:
        with torch.inference_mode():
            top, values = sm.model.top_k(entry.state, 0, k, entry.idx if exclude_seen else None)
        because = sm.because(entry.idx, top) if sm.is_knn else None
        return Recommendation(rec, sm, top, values, because, entry.idx, exclude_seen)

    def _recommend_many(
        self, sm: ServedModel, todo: list[tuple[SessionRecord, _Entry, int, bool]]
    ) -> list[Recommendation | Exception]:
        """``_recommend`` of several sessions of one model: ranked together
        (``top_k_many``) when their states join, else (or when that fails) one by one."""
        model = sm.model
        if len(todo) > 1:
            try:
                with torch.inference_mode():
                    joined = model.join_states([t[1].state for t in todo])
                    if joined is not None:
                        tops = model.top_k_many(
                            joined,
                            [t[2] for t in todo],
                            [t[1].idx if t[3] else None for t in todo],
                        )
                        return [
                            Recommendation(
                                rec,
                                sm,
                                top,
                                values,
                                sm.because(entry.idx, top) if sm.is_knn else None,
                                entry.idx,
                                excl,
                            )
                            for (rec, entry, _, excl), (top, values) in zip(todo, tops, strict=True)
                        ]
            except Exception:
                log.exception("batched ranking failed; ranking its sessions one by one")
        out: list[Recommendation | Exception] = []
        for rec, entry, k, exclude_seen in todo:
            try:
                out.append(self._recommend(rec, sm, entry, k, exclude_seen))
            except Exception as exc:
                out.append(exc)
        return out


def _rounds(events: Sequence[Event]) -> list[list[int]]:
    """The events' positions in rounds with at most one event per session, each session's
    events in their order (its n-th event in round n)."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(events):
        n = seen.get(e.session_id, 0)
        seen[e.session_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


def describe_models(engine: Engine) -> list[dict[str, Any]]:
    out = []
    for name, sm in engine.models.items():
        info = model_info(sm.path, sm.model)  # read now: evaluate runs may come later
        info["problems"] = [*folder_problems(sm.path, sm.loaded_files), *info["problems"]]
        out.append(
            {
                "name": name,
                "default": name == engine.default,
                "path": str(sm.path),
                "generation": sm.generation,
                **info,
            }
        )
    return out


def folder_report(engine: Engine) -> dict[str, list[str]]:
    """Each served model's folder problems (``folder_problems``), models without none left
    out: what ``/readyz``, ``/metrics`` and the log say of folders damaged after loading."""
    out = {}
    for name, sm in engine.models.items():
        found = folder_problems(sm.path, sm.loaded_files)
        if found:
            out[name] = found
    return out
