"""Sparse-matrix plumbing shared by the non-neural baselines (not model logic).

Matrices are kept as CSR components (``indptr``, ``indices``, ``data``): built with numpy at
fit time, persisted as three tensors, and read at score time with vectorised torch gathers so
the same code runs on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class CSR:
    """A (n_rows, n_cols) sparse matrix in CSR form, as torch tensors.

    Attributes:
        indptr: (n_rows+1,) int64 row starts.
        indices: (nnz,) int64 column of each entry, sorted within a row.
        data: (nnz,) float32 values.
        n_cols: number of columns.
    """

    indptr: torch.Tensor
    indices: torch.Tensor
    data: torch.Tensor
    n_cols: int

    @property
    def n_rows(self) -> int:
        return int(self.indptr.numel()) - 1

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    @classmethod
    def from_numpy(
        cls,
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        n_cols: int,
        device: torch.device | str = "cpu",
    ) -> CSR:
        return cls(
            torch.as_tensor(np.ascontiguousarray(indptr, dtype=np.int64), device=device),
            torch.as_tensor(np.ascontiguousarray(indices, dtype=np.int64), device=device),
            torch.as_tensor(np.ascontiguousarray(data, dtype=np.float32), device=device),
            n_cols,
        )

    def to(self, device: torch.device | str) -> CSR:
        return CSR(
            self.indptr.to(device), self.indices.to(device), self.data.to(device), self.n_cols
        )

    def arrays(self, prefix: str) -> dict[str, torch.Tensor]:
        """``{prefix}_indptr/_indices/_data`` plus ``{prefix}_shape`` (for state_arrays)."""
        return {
            f"{prefix}_indptr": self.indptr,
            f"{prefix}_indices": self.indices,
            f"{prefix}_data": self.data,
            f"{prefix}_shape": torch.tensor([self.n_rows, self.n_cols], dtype=torch.int64),
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, torch.Tensor], prefix: str, device: torch.device | str
    ) -> CSR:
        return cls(
            arrays[f"{prefix}_indptr"].to(device, torch.int64),
            arrays[f"{prefix}_indices"].to(device, torch.int64),
            arrays[f"{prefix}_data"].to(device, torch.float32),
            int(arrays[f"{prefix}_shape"][1]),
        )

    def torch_csr(self) -> torch.Tensor:
        """As a ``torch.sparse_csr_tensor`` (for sparse @ dense products)."""
        return torch.sparse_csr_tensor(
            self.indptr, self.indices, self.data, size=(self.n_rows, self.n_cols)
        )

    def row_sums(self) -> torch.Tensor:
        """(n_rows,) sum of each row."""
        rows = torch.repeat_interleave(
            torch.arange(self.n_rows, device=self.indptr.device), self.indptr.diff()
        )
        out = torch.zeros(self.n_rows, device=self.data.device)
        return out.index_add_(0, rows, self.data)

    def gather_rows(
        self, rows: torch.Tensor, weights: torch.Tensor | None = None, n_out: int | None = None
    ) -> torch.Tensor:
        """Dense weighted sums of rows: ``out[b] = Σ_j weights[b, j] · M[rows[b, j]]``.

        Args:
            rows: (B,) or (B, J) int64 row indices; negative entries are skipped.
            weights: same shape as ``rows`` (default 1).
            n_out: B (default ``rows.shape[0]``).

        Returns:
            (B, n_cols) float32 dense tensor.
        """
        rows2 = rows.view(rows.shape[0], -1)
        b_count = rows2.shape[0] if n_out is None else n_out
        w2 = (
            torch.ones(rows2.shape, device=self.data.device)
            if weights is None
            else weights.reshape(rows2.shape).float()
        )
        out = torch.zeros(b_count, self.n_cols, device=self.data.device)
        valid = rows2 >= 0
        b_idx = torch.arange(rows2.shape[0], device=rows2.device).unsqueeze(1).expand_as(rows2)
        r, b, w = rows2[valid], b_idx[valid], w2[valid]
        if r.numel() == 0:
            return out
        flat, owner = expand_rows(self.indptr, r)
        out.index_put_((b[owner], self.indices[flat]), self.data[flat] * w[owner], accumulate=True)
        return out


def expand_rows(indptr: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry positions of the given CSR rows, vectorised.

    Args:
        indptr: (n_rows+1,) CSR row starts.
        rows: (R,) row indices.

    Returns:
        ``flat`` (N,) positions into indices/data, and ``owner`` (N,) the position in ``rows``
        each entry belongs to.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), lengths)
    # position within its row = global position − start of the owner's block in the output
    block_start = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(owner.numel(), device=rows.device) - block_start[owner]
    return starts[owner] + within, owner


def csr_from_coo(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray | None,
    shape: tuple[int, int],
    *,
    binary: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR components from coordinate triples, summing duplicates (or setting them to 1).

    Returns:
        indptr (n_rows+1,), indices (nnz,) sorted within rows, data (nnz,) float64.
    """
    n_rows, n_cols = shape
    key = rows.astype(np.int64) * n_cols + cols.astype(np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    data: np.ndarray
    if binary:
        data = np.ones(len(uniq))
    elif values is None:
        data = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    else:
        data = np.bincount(inverse, weights=values, minlength=len(uniq))
    r = uniq // n_cols
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    return indptr, (uniq % n_cols).astype(np.int64), data


def top_k_per_row(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``k`` largest entries of each CSR row (ties: lower column first); k ≤ 0 keeps all."""
    if k <= 0:
        return indptr, indices, data
    n_rows = len(indptr) - 1
    row = torch.as_tensor(np.repeat(np.arange(n_rows), np.diff(indptr)))
    # two stable sorts = lexicographic (row, −value); entries come in (row, column) order, so
    # equal values keep the lower column first
    by_value = torch.sort(torch.as_tensor(-data), stable=True).indices
    order = by_value[torch.sort(row[by_value], stable=True).indices].numpy()
    row_np = row.numpy()
    rank = np.arange(len(order)) - indptr[row_np[order]]
    keep = np.sort(order[rank < k])  # back to (row, column) order
    new_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_np[keep], minlength=n_rows), out=new_indptr[1:])
    return new_indptr, indices[keep], data[keep]


def successor_pairs(data: SessionData, max_distance: int) -> tuple[np.ndarray, ...]:
    """All (earlier item, later item, distance) pairs within a session, distance ≤ max_distance.

    Returns:
        (a, b, d): three (P,) int64 arrays.
    """
    sess = np.repeat(np.arange(data.n_sessions), data.lengths)
    a_parts, b_parts, d_parts = [], [], []
    for d in range(1, max_distance + 1):
        if d >= len(data.items):
            break
        same = sess[:-d] == sess[d:]
        a_parts.append(data.items[:-d][same])
        b_parts.append(data.items[d:][same])
        d_parts.append(np.full(int(same.sum()), d, dtype=np.int64))
    if not a_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(d_parts)


def popularity_tiebreak(counts: np.ndarray) -> np.ndarray:
    """(n_items,) float64 in (0, 1): the popularity rank of each item, scaled (most popular
    highest; equal counts: the lower index higher).

    ``with_tiebreak`` adds it below the resolution of a model's scores, so that items the model
    scores equally — typically the many items it gives 0 — are ordered by training popularity
    rather than left tied (conservative tie handling would rank the target below all of them).
    A rank rather than the raw count keeps distinct counts distinct after scaling.
    """
    n = len(counts)
    order = np.lexsort((-np.arange(n), counts))  # ascending count; ties: lower index higher
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n)
    return (rank + 1) / (n + 1)


def tiebreak_tensor(values: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``popularity_tiebreak`` ranks on ``device``: float64, float32 on MPS (no float64)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    return torch.as_tensor(values).to(device, dtype)


#: float32's smallest exponent (frexp convention) below which the spacing of float32 values
#: stays 2**-149 (subnormals)
_MIN_EXP32 = -125


def with_tiebreak(scores: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
    """Order equal float32 scores by ``tiebreak``, exactly, without reordering distinct ones.

    Returns the float64 scores ``s + r · ulp32(s) / 4``: ``s`` the float32 score, ``r`` in
    (0, 1) the item's scaled popularity rank, ``ulp32(s)`` the spacing of float32 values at
    ``s`` (from its binary exponent; 2**-149 at and below the subnormals). The added term is
    below a quarter of the gap to the next float32 value (up or down), so two distinct float32
    scores keep their order; equal scores differ by their ranks. float64 resolves ``r`` to 27
    bits, so this is exact for catalogues below 2**27 items.

    Why not ``s + ε · r`` in float32: above a score of about 8, ``ε = 1e-6`` is below float32's
    resolution, distinct items tie, and conservative ranking counts every tie against the target
    (issue 8 measured Markov 15–24 % low). On Apple's MPS (no float64) the scores stay float32
    with an approximate tie-break, ``s + r · 2**-24 · max(|s|, 1)``, which can still leave
    ties (or tie two adjacent float32 scores).

    Args:
        scores: (B, n_items) float32 scores.
        tiebreak: (n_items,) float64 ranks in (0, 1) (``popularity_tiebreak``).

    Returns:
        (B, n_items) float64 scores (float32 on MPS).
    """
    if scores.device.type == "mps":
        s32 = scores.float()
        return s32 + tiebreak.float() * (2.0**-24) * s32.abs().clamp_min(1.0)
    s = scores.to(torch.float64)
    _, exp = torch.frexp(s)
    exp = torch.where(s == 0, _MIN_EXP32, exp.clamp_min(_MIN_EXP32))
    # ulp32(s) = 2**(exp - 24); a quarter of it, times r, scaled exactly by a power of two
    r = tiebreak.to(s.device, torch.float64).expand_as(s)
    return s + torch.ldexp(r, exp - 26)
