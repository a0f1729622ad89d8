"""Distributed data parallel training over ``torch.distributed`` (gloo on CPU, NCCL on CUDA).

Each process (a *rank*) holds a full copy of the model and trains on its own shard of the
data; after every step the ranks combine their gradients, so that every rank applies the same
update and the copies stay equal bit for bit. `sessionrec train` started by ``torchrun``
joins the process group torchrun describes (``init_distributed``); in Python, call
``init_distributed`` in each process and hand its result to ``sessionrec.train(...,
distributed=...)``.

What the ranks share:

* **Dense gradients** (the GRU weights, every weight of a torch network) are summed in one
  flat all-reduce per step, as PyTorch's ``DistributedDataParallel`` does with its buckets.
  Window models (sasrec, repeatnet) weigh each rank's mean loss by its labelled positions, so
  the combined gradient is the mean over the union of the ranks' batches: two ranks at batch
  B/2 take the step one process takes at batch B when they hold the same windows. AutoRec's
  ranks know the observed count of every rank's rows of a step (each holds the whole rating
  matrix), divide their part of the masked squared error by it and sum plainly.
* **Row-sparse gradients** (GRU4Rec's item tables with sampled negatives): a step touches a
  few thousand of the catalogue's rows. ``rows="gather"`` (default) all-gathers the touched
  rows' indices and gradients and every rank sums them; ``rows="dense"`` writes them into a
  catalogue-sized buffer and all-reduces it with a count of touches per row (the row set of
  the update is the union of the ranks' rows either way). BENCHMARKS.md ("Distributed
  training") compares the two.
* **Decisions**: valid metrics are computed on rank 0 and broadcast, so early stopping and the
  best epoch agree everywhere; rank 0 alone writes the model folder, the history and the
  checkpoints, and a resumed run reads the checkpoint on rank 0 and broadcasts it.

Communication time and bytes are counted per rank (``Distributed.comm_seconds``,
``comm_bytes``) for the benchmarks.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from sessionrec.errors import ConfigError

log = logging.getLogger(__name__)

#: How GRU4Rec's row-sparse item-table gradients travel (see the module docstring).
ROWS = ("gather", "dense")

T = TypeVar("T")


@dataclass
class Distributed:
    """This process's place in a process group, and the collectives training uses.

    Attributes:
        rank: this process's rank (0 writes files).
        world_size: the number of processes.
        device: the device this rank trains on.
        rows: ``gather`` or ``dense``: how row-sparse gradients travel.
        comm_seconds: wall time spent in collectives so far.
        comm_bytes: bytes this rank handed to collectives so far.
    """

    rank: int
    world_size: int
    device: torch.device
    rows: str = "gather"
    comm_seconds: float = 0.0
    comm_bytes: int = 0
    comm_calls: int = 0
    _group: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rows not in ROWS:
            raise ConfigError(f"rows must be one of {', '.join(ROWS)}, not {self.rows!r}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- timing ---------------------------------------------------------------------------
    def _timed(self, nbytes: int, fn: Callable[[], T]) -> T:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.comm_seconds += time.perf_counter() - t0
        self.comm_bytes += nbytes
        self.comm_calls += 1
        return out

    # -- collectives ----------------------------------------------------------------------
    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` in place over the ranks (``sum`` or ``max``)."""
        import torch.distributed as dist

        red = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
        nbytes = tensor.numel() * tensor.element_size()
        self._timed(nbytes, lambda: dist.all_reduce(tensor, op=red, group=self._group))
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (equal shapes on every rank), in rank order."""
        import torch.distributed as dist

        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        nbytes = tensor.numel() * tensor.element_size()
        self._timed(nbytes, lambda: dist.all_gather(out, tensor, group=self._group))
        return out

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` on every rank with rank 0's (in place, same shapes)."""
        import torch.distributed as dist

        with torch.no_grad():  # (weights that require gradients are overwritten in place)
            for t in tensors:
                nbytes = t.numel() * t.element_size()
                self._timed(nbytes, partial(dist.broadcast, t, 0, group=self._group))

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` (anything picklable: records, decisions, small state)."""
        import torch.distributed as dist

        box: list[Any] = [obj if self.is_main else None]
        nbytes = len(pickle.dumps(obj)) if self.is_main else 0

        def send() -> None:
            dist.broadcast_object_list(box, 0, group=self._group)

        self._timed(nbytes, send)
        return box[0]

    def broadcast_arrays(self, arrays: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Rank 0's named arrays on every rank (the other ranks pass None)."""
        layout: list[tuple[str, tuple[int, ...], str]] = self.broadcast_object(
            [(k, tuple(v.shape), str(v.dtype)) for k, v in (arrays or {}).items()]
        )
        out: dict[str, torch.Tensor] = {}
        for name, shape, dtype in layout:
            if self.is_main:
                assert arrays is not None
                t = arrays[name].detach().to(self.device).contiguous().clone()
            else:
                t = torch.empty(shape, dtype=getattr(torch, dtype.split(".")[-1]),
                                device=self.device)  # fmt: skip
            self.broadcast_([t])
            out[name] = t
        return out

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (early stopping, pruning)."""
        t = torch.tensor([1.0 if (flag and self.is_main) else 0.0], device=self.device)
        self.all_reduce_(t)
        return bool(t.item() > 0)

    def max_int(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        return int(self.all_reduce_(t, "max").item())

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda":
            dist.barrier(group=self._group, device_ids=[self.device.index or 0])
        else:
            dist.barrier(group=self._group)

    # -- gradients ------------------------------------------------------------------------
    def sum_dense_(self, grads: Sequence[torch.Tensor], extra: Sequence[float] = ()) -> list[float]:
        """Sum ``grads`` over the ranks in place, in one flat all-reduce; ``extra`` numbers
        travel in the same buffer and their sums are returned."""
        if not grads and not extra:
            return []
        # float64 for numbers alone (an epoch's loss sum and event count stay exact)
        dtype = grads[0].dtype if grads else torch.float64
        numbers = torch.tensor(list(extra), dtype=dtype, device=self.device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [numbers]) if grads else numbers
        self.all_reduce_(flat)
        at = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[at : at + n].view_as(g))
            at += n
        return flat[at:].tolist()

    def average_gradients(
        self, params: Iterable[torch.nn.Parameter], weight: float, *, mean: bool = True
    ) -> float:
        """Combine the gradients of a mean loss over ``weight`` examples into the gradient of
        the mean over every rank's examples (a rank with none passes 0 and no gradients);
        ``mean=False``: the gradients of a summed loss, summed. Returns the examples of all
        ranks together."""
        ps = [p for p in params if p.requires_grad]
        grads = []
        for p in ps:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            elif mean and weight != 1:
                p.grad.mul_(weight)
            grads.append(p.grad)
        (total,) = self.sum_dense_(grads, [float(weight)])
        if mean and total > 0:
            for g in grads:
                g.div_(total)
        return total

    def sum_rows(
        self, tables: Sequence[tuple[torch.Tensor, torch.Tensor]], n_rows: Sequence[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Sum row-sparse gradients over the ranks.

        Args:
            tables: per item table, this rank's (k,) unique row indices and (k, ...) row
                gradients (k may be 0); the same tables in the same order on every rank.
            n_rows: each table's number of rows (the dense buffer's size).

        Returns:
            Per table, the union of the ranks' rows (sorted, unique) and their summed
            gradients; equal on every rank.
        """
        if self.rows == "dense":
            return self._sum_rows_dense(tables, n_rows)
        return self._sum_rows_gather(tables)

    def _sum_rows_gather(
        self, tables: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.device
        counts = torch.tensor([len(i) for i, _ in tables], dtype=torch.int64, device=dev)
        widths = [int(np.prod(g.shape[1:])) for _, g in tables]
        all_counts = torch.stack(self.all_gather(counts)).tolist()  # (W, T)
        n_idx = max(sum(c) for c in all_counts)
        n_val = max(sum(c * w for c, w in zip(cs, widths, strict=True)) for cs in all_counts)
        idx = torch.zeros(n_idx, dtype=torch.int64, device=dev)
        val = torch.zeros(n_val, dtype=torch.float32, device=dev)
        a = b = 0
        for (i, g), w in zip(tables, widths, strict=True):
            idx[a : a + len(i)] = i
            val[b : b + len(i) * w] = g.reshape(-1)
            a, b = a + len(i), b + len(i) * w
        idxs, vals = self.all_gather(idx), self.all_gather(val)
        out = []
        for t, ((_, g), w) in enumerate(zip(tables, widths, strict=True)):
            got_i, got_v = [], []
            for r in range(self.world_size):
                cs = all_counts[r]
                a = sum(cs[:t])
                b = sum(c * ww for c, ww in zip(cs[:t], widths[:t], strict=True))
                got_i.append(idxs[r][a : a + cs[t]])
                got_v.append(vals[r][b : b + cs[t] * w].view(cs[t], *g.shape[1:]))
            cat_i, cat_v = torch.cat(got_i), torch.cat(got_v)
            uniq, inv = torch.unique(cat_i, return_inverse=True)
            summed = cat_v.new_zeros((len(uniq), *g.shape[1:])).index_add_(0, inv, cat_v)
            out.append((uniq, summed))
        return out

    def _sum_rows_dense(
        self, tables: Sequence[tuple[torch.Tensor, torch.Tensor]], n_rows: Sequence[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        bufs, touched = [], []
        for (i, g), n in zip(tables, n_rows, strict=True):
            buf = g.new_zeros((n, *g.shape[1:])).index_add_(0, i, g)
            hit = torch.zeros(n, dtype=torch.float32, device=self.device).index_fill_(0, i, 1.0)
            bufs.append(buf)
            touched.append(hit)
        self.sum_dense_(bufs + touched)
        out = []
        for buf, hit in zip(bufs, touched, strict=True):
            rows = torch.nonzero(hit).squeeze(1)
            out.append((rows, buf.index_select(0, rows)))
        return out


def rank_seed(seed: int, dist: Distributed | None) -> int:
    """A seed for this rank's random streams (dropout, negative samples): ``seed`` itself on
    rank 0 and in one process, so a run without ranks keeps its numbers."""
    if dist is None or dist.rank == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**63, dist.rank]).generate_state(2, np.uint32)
               .view(np.uint64)[0] % 2**63)  # fmt: skip


def on_main(distributed: Distributed | None, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 (or in one process) and its result on every rank (reading a
    checkpoint, claiming the output folder); when it raises, every rank raises (rank 0 its
    own error, the others a ``ConfigError`` quoting it), so no rank waits on the others for
    ever."""
    if distributed is None:
        return fn()
    result: T | None = None
    error: Exception | None = None
    if distributed.is_main:
        try:
            result = fn()
        except Exception as exc:
            error = exc
    message = distributed.broadcast_object(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise ConfigError(f"rank 0: {message}")
    return distributed.broadcast_object(result)  # type: ignore[return-value]


def init_distributed(
    device: str | torch.device = "auto",
    *,
    local_rank: int = 0,
    rows: str = "gather",
    backend: Literal["gloo", "nccl", "auto"] = "auto",
) -> Distributed:
    """Join the process group described by ``torchrun``'s environment (``env://``: ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), or use the one already initialised.

    Args:
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available). On CUDA each rank takes
            the GPU ``local_rank``.
        local_rank: this process's rank on its machine (torchrun's ``LOCAL_RANK``).
        rows: how row-sparse gradients travel (``gather`` or ``dense``).
        backend: ``auto``: NCCL on CUDA, gloo on CPU.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed: distributed training "
                          "needs one")  # fmt: skip
    if rows not in ROWS:
        raise ConfigError(f"rows must be one of {', '.join(ROWS)}, not {rows!r}")
    kind = str(device)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, and torch sees no CUDA device")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    chosen = backend if backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(chosen, device_id=dev if dev.type == "cuda" else None)
    out = Distributed(dist.get_rank(), dist.get_world_size(), dev, rows)
    log.info("rank %d of %d on %s (%s)", out.rank, out.world_size, dev, dist.get_backend())
    return out


def shutdown_distributed() -> None:
    """Leave the process group (after training), all ranks together: a rank that tears its
    connections down while another still uses them makes gloo abort that other process
    ("terminate called without an active exception"), so the ranks meet at a barrier first."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError as exc:  # a rank is gone already: leave anyway
            log.warning("leaving the process group without the other ranks: %s", exc)
        finally:
            dist.destroy_process_group()


__all__ = [
    "ROWS",
    "Distributed",
    "init_distributed",
    "on_main",
    "rank_seed",
    "shutdown_distributed",
]
