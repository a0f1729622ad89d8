"""Synthetic session logs with a known next-item process, and the Bayes-optimal model for them.

Real logs cannot say how good a figure is: Recall@20 of 0.25 may be near the best possible or
far from it. A log drawn from a known process can. Each session here has a latent **intent**
k (drawn from a prior π); the intent owns a subset S_k of the catalogue (popular items belong
to many intents, as in real catalogues) and a Markov chain over it:

- the first item is drawn from ``(1-ε)·s_k + ε·pop`` (s_k: the intent's entry distribution,
  Zipf-shaped over S_k; pop: the catalogue's Zipf popularity, the noise every log has);
- each next item from ``(1-ε)·T_k[prev] + ε·pop``, where ``T_k[prev]`` is a sparse row over
  S_k (``fanout`` successors, Dirichlet weights) when ``prev`` ∈ S_k, and s_k otherwise;
- the session length is 2 + a negative binomial with the preset's mean (long tail).

``OracleModel`` knows the process: it keeps each session's posterior over intents and scores
every item by its predictive probability ``P(next | prefix) = Σ_k P(k | prefix)·P(next | k,
last)``. Ranking by that probability maximises the expected Recall@k and MRR@k of every
prediction (for one target, sorting by probability maximises any metric that decreases with
the rank), so its figures are the **ceiling** for the log, and a model's figures can be stated
as a share of it (``benchmarks/synthetic_ceiling.py``).

The generated log is an ordinary table (``session_id``, ``user_id``, ``item_id``, ``timestamp``
in Unix seconds; ``SyntheticLog.save`` writes it as ``log.parquet``) that goes through
``prepare`` like any other log; prepare with
``min_item_support=1`` and ``session="column"`` so that no event of a session is dropped (a
dropped event would change the prefix the oracle conditions on; items of valid/test that train
never saw are still dropped, which the noise term ε keeps harmless).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import torch

from sessionrec.errors import ConfigError, DataError
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class SyntheticSpec:
    """The shape of a synthetic log.

    Attributes:
        n_items: catalogue size.
        n_intents: number of latent intents.
        items_per_intent: |S_k|, drawn without replacement by popularity.
        fanout: successors per item within an intent's chain (sparser = more predictable).
        n_sessions: sessions in the log.
        mean_length: mean session length (at least 2 events per session).
        dispersion: negative-binomial shape of the length beyond 2 (smaller = longer tail).
        zipf: exponent of the catalogue popularity (and of the intents' prior).
        noise: ε, the share of events drawn from global popularity instead of the intent.
        concentration: Dirichlet concentration of the chain rows (smaller = more peaked).
        days: the log spans this many days (session starts uniform in time).
        seed: everything is drawn from this seed.
    """

    n_items: int = 2000
    n_intents: int = 30
    items_per_intent: int = 100
    fanout: int = 6
    n_sessions: int = 20000
    mean_length: float = 5.0
    dispersion: float = 1.0
    zipf: float = 1.0
    noise: float = 0.05
    concentration: float = 0.5
    days: int = 90
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "n_items >= 2": self.n_items >= 2,
            "n_intents >= 1": self.n_intents >= 1,
            "1 <= items_per_intent <= n_items": 1 <= self.items_per_intent <= self.n_items,
            "1 <= fanout <= items_per_intent": 1 <= self.fanout <= self.items_per_intent,
            "n_sessions >= 1": self.n_sessions >= 1,
            "mean_length > 2": self.mean_length > 2,
            "dispersion > 0": self.dispersion > 0,
            "zipf >= 0": self.zipf >= 0,
            "0 < noise < 1": 0 < self.noise < 1,
            "concentration > 0": self.concentration > 0,
            "days >= 1": self.days >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"synthetic spec: {', '.join(bad)} does not hold")


#: Differently shaped logs: short e-commerce clicks over a larger catalogue, long media
#: sessions over a small one (MovieLens-like), and few broad intents with weak chains.
PRESETS: dict[str, SyntheticSpec] = {
    "ecommerce": SyntheticSpec(
        n_items=4000, n_intents=60, items_per_intent=80, fanout=5, n_sessions=30000,
        mean_length=4.0, dispersion=0.8, zipf=1.0, noise=0.05, concentration=0.4, days=60,
    ),
    "media": SyntheticSpec(
        n_items=1500, n_intents=20, items_per_intent=150, fanout=8, n_sessions=6000,
        mean_length=14.0, dispersion=1.5, zipf=0.9, noise=0.08, concentration=0.6, days=180,
    ),
    "broad": SyntheticSpec(
        n_items=2500, n_intents=8, items_per_intent=400, fanout=20, n_sessions=15000,
        mean_length=6.0, dispersion=1.0, zipf=1.1, noise=0.15, concentration=1.0, days=90,
    ),
}  # fmt: skip


@dataclass
class Process:
    """The generating process (all arrays float64 / int64, generator item indices 0..n-1).

    Attributes:
        prior: (K,) π, the intents' prior.
        pop: (n,) global popularity (the noise distribution).
        entry: (K, n) s_k, each intent's entry distribution (zero outside S_k).
        subset: (K, m) the items of each S_k.
        chain: (K, m, m) T_k over positions in S_k, rows summing to 1.
        noise: ε.
    """

    prior: np.ndarray
    pop: np.ndarray
    entry: np.ndarray
    subset: np.ndarray
    chain: np.ndarray
    noise: float

    @property
    def n_items(self) -> int:
        return int(self.pop.shape[0])

    def position(self) -> np.ndarray:
        """(K, n) the position of each item in S_k, -1 outside."""
        K, m = self.subset.shape
        pos = np.full((K, self.n_items), -1, dtype=np.int64)
        pos[np.arange(K)[:, None], self.subset] = np.arange(m)[None, :]
        return pos

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "prior": self.prior,
            "pop": self.pop,
            "entry": self.entry,
            "subset": self.subset,
            "chain": self.chain,
            "noise": np.array([self.noise]),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Process:
        return cls(
            prior=np.asarray(a["prior"], np.float64),
            pop=np.asarray(a["pop"], np.float64),
            entry=np.asarray(a["entry"], np.float64),
            subset=np.asarray(a["subset"], np.int64),
            chain=np.asarray(a["chain"], np.float64),
            noise=float(np.asarray(a["noise"]).reshape(-1)[0]),
        )


@dataclass
class SyntheticLog:
    """A generated log: ``events`` (session_id, user_id, item_id, timestamp), its process and
    each session's intent (``intents[session_id]``; None for a log saved before they were)."""

    spec: SyntheticSpec
    process: Process
    events: pl.DataFrame
    intents: np.ndarray | None = None

    def save(self, path: str | Path, *, overwrite: bool = False, layout: str = "parquet") -> Path:
        """The log, ``process.npz`` (arrays only, no pickle) and ``spec.json``, into a new or
        empty folder (or, with ``overwrite``, one an earlier ``save`` wrote).

        ``layout``: ``parquet`` writes ``log.parquet``; ``yoochoose`` writes
        ``yoochoose-clicks.dat`` as the RecSys Challenge 2015 file is laid out (see
        :func:`yoochoose_clicks`), which ``sessionrec.load`` reads as YOOCHOOSE.
        """
        from sessionrec._io import output_dir, write_json

        if layout not in LAYOUTS:
            from sessionrec.errors import UnknownNameError

            raise UnknownNameError("layout", layout, list(LAYOUTS))
        path = Path(path)
        intents = self.intents
        with output_dir(path, overwrite=overwrite, verb="data synth") as tmp:
            if layout == "parquet":
                self.events.write_parquet(tmp / "log.parquet")
            else:
                clicks, ids = yoochoose_clicks(self.events)
                clicks.write_csv(tmp / YOOCHOOSE_CLICKS, include_header=False)
                if intents is not None:  # indexed by the file's session ids (from 1)
                    renumbered = np.full(len(intents) + 1, -1, dtype=np.int64)
                    renumbered[ids] = intents
                    intents = renumbered
            with (tmp / "process.npz").open("wb") as f:
                np.savez_compressed(f, **self.process.arrays())  # type: ignore[arg-type]
            write_json(tmp / "spec.json", {**dataclasses.asdict(self.spec), "layout": layout})
            if intents is not None:
                with (tmp / "intents.npy").open("wb") as f:
                    np.save(f, intents, allow_pickle=False)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SyntheticLog:
        path = Path(path)
        try:
            fields = json.loads((path / "spec.json").read_text())
            fields.pop("layout", None)
            spec = SyntheticSpec(**fields)
            with np.load(path / "process.npz", allow_pickle=False) as z:
                process = Process.from_arrays({k: z[k] for k in z.files})
            if (path / "log.parquet").exists() or not (path / YOOCHOOSE_CLICKS).exists():
                events = pl.read_parquet(path / "log.parquet", glob=False)
            else:
                events = _read_yoochoose(path)
            intents = (
                np.load(path / "intents.npy", allow_pickle=False)
                if (path / "intents.npy").exists()
                else None
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                path, expected="a synthetic log folder (spec.json, process.npz, log.parquet "
                f"or {YOOCHOOSE_CLICKS})", found=f"{type(exc).__name__}: {exc}",
            ) from None  # fmt: skip
        return cls(spec, process, events, intents)


#: How ``SyntheticLog.save`` writes the log.
LAYOUTS = ("parquet", "yoochoose")
YOOCHOOSE_CLICKS = "yoochoose-clicks.dat"


def yoochoose_clicks(events: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The log as YOOCHOOSE's clicks file has it: no user, session ids from 1 in the order the
    sessions start (as in the real file), ISO-8601 UTC times with milliseconds and a ``Z``,
    the item id and a category (``0``, the real file's most common value).

    Returns:
        The frame (session_id, timestamp, item_id, category) in session then time order, and
        (n_sessions,) the new id of each old session id (indexed by the old id).
    """
    starts = events.group_by("session_id").agg(pl.col("timestamp").min().alias("start"))
    starts = starts.sort(["start", "session_id"]).with_row_index("new", offset=1)
    n_old = int(events["session_id"].to_numpy().max()) + 1
    ids = np.zeros(n_old, dtype=np.int64)
    ids[starts["session_id"].to_numpy()] = starts["new"].to_numpy()
    clicks = (
        events.join(starts.select("session_id", "new"), on="session_id", how="left")
        .sort(["new", "timestamp"], maintain_order=True)
        .select(
            pl.col("new").cast(pl.Int64).alias("session_id"),
            pl.from_epoch(pl.col("timestamp"), time_unit="s")
            .dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            .alias("timestamp"),
            pl.col("item_id"),
            pl.lit("0").alias("category"),
        )
    )
    return clicks, ids


def _read_yoochoose(path: Path) -> pl.DataFrame:
    from sessionrec.datasets.yoochoose import load_yoochoose

    ev = load_yoochoose(path / YOOCHOOSE_CLICKS).events
    return ev.select(
        pl.col("session_id"),
        pl.col("session_id").alias("user_id"),
        pl.col("item_id"),
        pl.col("timestamp").dt.epoch("s").alias("timestamp"),
    )


def _zipf(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) Zipf weights 1/r^s over a random order of the n entries, summing to 1."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    w = w[rng.permutation(n)]
    return w / w.sum()


def make_process(spec: SyntheticSpec) -> Process:
    """Draw the intents, their item subsets, entry distributions and chains."""
    rng = np.random.default_rng([spec.seed, 1])
    K, n, m, f = spec.n_intents, spec.n_items, spec.items_per_intent, spec.fanout
    pop = _zipf(n, spec.zipf, rng)
    prior = _zipf(K, spec.zipf, rng)
    subset = np.stack([rng.choice(n, m, replace=False, p=pop) for _ in range(K)])  # by pop
    entry = np.zeros((K, n))
    chain = np.zeros((K, m, m))
    w = pop[subset] ** 0.5  # (K, m): an intent's popular items are entered more often
    w /= w.sum(1, keepdims=True)
    entry[np.arange(K)[:, None], subset] = w
    # f successors per (intent, item), drawn without replacement in proportion to w (Gumbel
    # top-f), with Dirichlet weights (normalised Gamma draws).
    keys = np.log(w)[:, None, :] + rng.gumbel(size=(K, m, m))
    succ = np.argpartition(-keys, f - 1, axis=2)[:, :, :f]  # (K, m, f)
    g = rng.gamma(spec.concentration, size=(K, m, f)) + 1e-12
    np.put_along_axis(chain, succ, g / g.sum(2, keepdims=True), axis=2)
    return Process(prior=prior, pop=pop, entry=entry, subset=subset, chain=chain, noise=spec.noise)


def _sample_rows(
    table: np.ndarray,
    rows: np.ndarray | tuple[np.ndarray, ...],
    rng: np.random.Generator,
    chunk_bytes: int = 1 << 26,
) -> np.ndarray:
    """One index per row of ``table[rows]`` (R, n) by the inverse CDF.

    The rows are gathered a chunk at a time (``chunk_bytes`` of float64 at most), so a log of
    millions of sessions over thousands of items does not hold an (R, n) array; one uniform
    is drawn per row in order, so the draws do not depend on the chunking.
    """
    index = rows if isinstance(rows, tuple) else (rows,)
    n_rows, width = len(index[0]), table.shape[-1]
    step = max(1, chunk_bytes // (8 * width))
    out = np.empty(n_rows, dtype=np.int64)
    for lo in range(0, n_rows, step):
        probs = table[tuple(ix[lo : lo + step] for ix in index)]
        cdf = np.cumsum(probs, axis=1)
        u = rng.random(len(probs))[:, None] * cdf[:, -1:]
        out[lo : lo + step] = np.minimum((u > cdf).sum(1), width - 1)
    return out


def generate(spec: SyntheticSpec | str = "ecommerce", **overrides: Any) -> SyntheticLog:
    """Generate a log: a preset name (``PRESETS``) or a spec, with fields overridden by name.

    All sessions advance together, one position per round (vectorised, no loop per event).
    """
    if isinstance(spec, str):
        if spec not in PRESETS:
            from sessionrec.errors import UnknownNameError

            raise UnknownNameError("synthetic preset", spec, list(PRESETS))
        spec = PRESETS[spec]
    if overrides:
        names = {f.name for f in dataclasses.fields(SyntheticSpec)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown synthetic spec field(s) {', '.join(unknown)}")
        spec = dataclasses.replace(spec, **overrides)
    proc = make_process(spec)
    rng = np.random.default_rng([spec.seed, 2])
    N, eps = spec.n_sessions, spec.noise
    extra = spec.mean_length - 2.0
    p_nb = spec.dispersion / (spec.dispersion + extra)
    lengths = 2 + rng.negative_binomial(spec.dispersion, p_nb, N)
    intents = rng.choice(spec.n_intents, N, p=proc.prior)
    pos = proc.position()
    cols: list[np.ndarray] = []
    prev = np.full(N, -1, dtype=np.int64)
    for t in range(int(lengths.max())):
        alive = np.flatnonzero(lengths > t)
        k, last = intents[alive], prev[alive]
        noisy = rng.random(len(alive)) < eps
        cur = np.empty(len(alive), dtype=np.int64)
        cur[noisy] = rng.choice(spec.n_items, int(noisy.sum()), p=proc.pop)
        rest = np.flatnonzero(~noisy)
        p_last = pos[k[rest], last[rest]] if t > 0 else np.full(len(rest), -1)
        in_chain = rest[p_last >= 0]
        if len(in_chain):
            rows = (k[in_chain], p_last[p_last >= 0])  # rows of the (K, m, m) chains
            cur[in_chain] = proc.subset[k[in_chain], _sample_rows(proc.chain, rows, rng)]
        enter = rest[p_last < 0]
        if len(enter):
            cur[enter] = _sample_rows(proc.entry, k[enter], rng)
        prev[alive] = cur
        col = np.full(N, -1, dtype=np.int64)
        col[alive] = cur
        cols.append(col)
    grid = np.stack(cols, axis=1)  # (N, T) item per session and position, -1 after the end
    sess, posn = np.nonzero(grid >= 0)
    start = rng.random(N) * spec.days * 86400.0
    gaps = np.cumsum(rng.exponential(60.0, grid.shape), axis=1)  # ~1 min between events
    base = 1_600_000_000 + start[sess] + gaps[sess, posn]
    order = np.lexsort((posn, sess))
    events = pl.DataFrame(
        {
            "session_id": sess[order].astype(np.int64),
            "user_id": sess[order].astype(np.int64),
            "item_id": grid[sess, posn][order].astype(np.int64) + 1,  # ids from 1
            "timestamp": np.floor(base[order]).astype(np.int64),  # Unix seconds
        }
    )
    return SyntheticLog(spec, proc, events, intents.astype(np.int64))


@dataclass(frozen=True)
class OracleConfig:
    """The oracle has no hyperparameters: it knows the process."""


class OracleModel(SessionModel):
    """The Bayes-optimal next-item model of a synthetic log (module docstring).

    State per slot: the log-posterior over intents (K,) and the last item (generator index,
    -1 before the first event). Scores are float64 predictive probabilities over the model's
    vocabulary (the prepared data's ``item_idx``, mapped to generator items through
    ``items.item_id``).
    """

    name: ClassVar[str] = "oracle"
    Config: ClassVar[type] = OracleConfig

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        self.process: Process | None = None
        self.gen_of_idx: torch.Tensor | None = None

    @classmethod
    def for_data(
        cls, process: Process, items: pl.DataFrame, device: str | torch.device = "cpu"
    ) -> Self:
        """The oracle over a PreparedData's vocabulary (``items``: item_idx, item_id)."""
        model = cls(device=device)
        model.items = items
        model._set(process, items.sort("item_idx")["item_id"].to_numpy().astype(np.int64) - 1)
        return model

    def _set(self, process: Process, gen_of_idx: np.ndarray) -> None:
        if gen_of_idx.min() < 0 or gen_of_idx.max() >= process.n_items:
            raise DataError(
                None, expected=f"item ids 1..{process.n_items} of the synthetic log",
                found=f"ids {gen_of_idx.min() + 1}..{gen_of_idx.max() + 1}",
            )  # fmt: skip
        dev, f64 = self.device, torch.float64
        self.process = process
        self.n_items = len(gen_of_idx)
        self.gen_of_idx = torch.as_tensor(gen_of_idx, device=dev)
        eps = process.noise
        self._log_prior = torch.as_tensor(np.log(process.prior), dtype=f64, device=dev)
        self._pop = torch.as_tensor(process.pop, dtype=f64, device=dev)
        self._entry = torch.as_tensor(process.entry, dtype=f64, device=dev)  # (K, n)
        self._subset = torch.as_tensor(process.subset, device=dev)  # (K, m)
        self._chain = torch.as_tensor(process.chain, dtype=f64, device=dev)  # (K, m, m)
        self._pos = torch.as_tensor(process.position(), device=dev)  # (K, n)
        self._eps = eps

    def fit(
        self, train: SessionData, valid: SessionData | None = None, *,
        callback: EpochCallback | None = None,
    ) -> Self:  # fmt: skip
        if self.process is None:
            raise ConfigError("an OracleModel is built with OracleModel.for_data(process, items)")
        return self

    # -- streaming ----------------------------------------------------------------------------
    def start(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        logw = self._log_prior.expand(batch_size, -1).clone()
        return logw, torch.full((batch_size,), -1, dtype=torch.long, device=self.device)

    def reset(
        self, state: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logw, last = state[0].clone(), state[1].clone()
        logw[mask] = self._log_prior
        last[mask] = -1
        return logw, last

    def _next_given_intent(self, last: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """(B, K) P(cur | intent k, last) without the noise term (last = -1: entry)."""
        K = self._pos.shape[0]
        ks = torch.arange(K, device=self.device)
        entry = self._entry[:, cur].T  # (B, K)
        safe_last = last.clamp(min=0)
        p_last = self._pos[:, safe_last].T  # (B, K)
        p_cur = self._pos[:, cur].T
        in_chain = (p_last >= 0) & (last >= 0)[:, None]
        trans = self._chain[ks[None, :], p_last.clamp(min=0), p_cur.clamp(min=0)]  # (B, K)
        trans = torch.where(p_cur >= 0, trans, torch.zeros_like(trans))
        return torch.where(in_chain, trans, entry)

    def step(
        self, state: tuple[torch.Tensor, torch.Tensor], items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.gen_of_idx is not None
        logw, last = state
        cur = self.gen_of_idx[items.to(self.device)]
        lik = (1 - self._eps) * self._next_given_intent(last, cur) + self._eps * self._pop[cur][
            :, None
        ]
        logw = logw + torch.log(lik)
        logw = logw - torch.logsumexp(logw, dim=1, keepdim=True)
        return logw, cur

    def score(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, n_items) float64 P(next item | the session so far)."""
        assert self.gen_of_idx is not None
        logw, last = state
        B = logw.shape[0]
        w = torch.exp(logw)  # (B, K)
        K, m = self._subset.shape
        p_last = self._pos[:, last.clamp(min=0)].T  # (B, K)
        in_chain = (p_last >= 0) & (last >= 0)[:, None]
        w_in = w * in_chain
        probs = (w - w_in) @ self._entry  # (B, n): intents whose chain the last item left
        rows = self._chain[torch.arange(K, device=self.device)[None, :], p_last.clamp(min=0)]
        vals = (rows * w_in[:, :, None]).reshape(B, K * m)  # (B, K·m)
        probs.scatter_add_(1, self._subset.reshape(1, K * m).expand(B, -1), vals)
        probs = (1 - self._eps) * probs + self._eps * self._pop[None, :]
        return probs[:, self.gen_of_idx]

    # -- persistence --------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, torch.Tensor]:
        assert self.process is not None and self.gen_of_idx is not None
        out = {k: torch.as_tensor(v) for k, v in self.process.arrays().items()}
        out["gen_of_idx"] = self.gen_of_idx.cpu()
        return out

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        a = {k: v.cpu().numpy() for k, v in arrays.items()}
        self._set(Process.from_arrays(a), a["gen_of_idx"].astype(np.int64))


def estimate_process(
    log: SyntheticLog, data: SessionData, gen_of_idx: np.ndarray, smoothing: float
) -> Process:
    """The log's process with its probabilities estimated from the counts of ``data``.

    Told what no learner is told: the intent of every session of ``data``, each intent's item
    set S_k and the noise rate. Only the probabilities are learned: the intents' prior, the
    popularity, the entry distributions over S_k and the chains within S_k (count +
    ``smoothing`` per cell of S_k, normalised). ``OracleModel`` over the result is the best
    count model for this much data: a reference for what a learner could reach, not a bound.

    Args:
        log: the generated log (with ``intents``).
        data: sessions of ``log`` (``session_ids`` are the generator's session indices).
        gen_of_idx: the generator item of each item index of ``data`` (``item_id - 1``).
        smoothing: added to every count of an entry or chain cell within S_k.
    """
    if log.intents is None:
        raise ConfigError("estimate_process needs the sessions' intents (a log from generate)")
    proc = log.process
    K, m = proc.subset.shape
    n = proc.n_items
    pos = proc.position()
    lengths = np.diff(data.offsets)
    k = np.repeat(log.intents[data.session_ids], lengths)  # intent of every event
    g = gen_of_idx[data.items]
    first = np.zeros(len(g), dtype=bool)
    first[data.offsets[:-1][lengths > 0]] = True
    prev = np.where(first, -1, np.roll(g, 1))
    p_cur = pos[k, g]
    p_prev = np.where(prev >= 0, pos[k, np.maximum(prev, 0)], -1)
    entry_ev = (p_cur >= 0) & (p_prev < 0)
    chain_ev = (p_cur >= 0) & (p_prev >= 0)
    entry_counts = np.zeros((K, m))
    np.add.at(entry_counts, (k[entry_ev], p_cur[entry_ev]), 1.0)
    chain = np.zeros((K, m, m))
    np.add.at(chain, (k[chain_ev], p_prev[chain_ev], p_cur[chain_ev]), 1.0)
    chain += smoothing
    chain /= chain.sum(2, keepdims=True)
    entry_counts += smoothing
    entry = np.zeros((K, n))
    entry[np.arange(K)[:, None], proc.subset] = entry_counts / entry_counts.sum(1, keepdims=True)
    prior = np.bincount(log.intents[data.session_ids], minlength=K) + 1.0
    pop = np.bincount(g, minlength=n) + 1.0
    return Process(
        prior=prior / prior.sum(), pop=pop / pop.sum(), entry=entry, subset=proc.subset,
        chain=chain, noise=proc.noise,
    )  # fmt: skip


def ceiling(log: SyntheticLog, data: Any, split: str = "test", **evaluate_kw: Any) -> Any:
    """The oracle's ``EvalResult`` on ``data``'s ``split`` (a PreparedData of ``log.events``)."""
    from sessionrec.evaluation import evaluate
    from sessionrec.prepare.data import PreparedData

    if not isinstance(data, PreparedData):
        data = PreparedData(data)
    oracle = OracleModel.for_data(log.process, data.items)
    return evaluate(oracle, data.part(split), **evaluate_kw)


__all__ = [
    "PRESETS",
    "OracleModel",
    "Process",
    "SyntheticLog",
    "SyntheticSpec",
    "ceiling",
    "estimate_process",
    "generate",
    "make_process",
]
