"""Small optimisers with row-sparse updates for item tables.

GRU4Rec touches only the rows of the items in a mini-batch (its targets, its inputs and the
shared samples). Updating just those rows, instead of materialising a dense gradient over the
whole catalogue, is what keeps a step cheap when the catalogue is large.

``AdagradNesterov`` is Adagrad whose scaled step drives a momentum, as in the CIKM 2018
GRU4Rec::

    acc  <- acc + g**2
    g'   <- g / sqrt(acc + eps)
    v    <- momentum * v - lr * g'
    p    <- p + momentum * v - lr * g'        (nesterov=True: Nesterov look-ahead)
    p    <- p + v                             (nesterov=False: heavy-ball)

The official PyTorch code's ``IndexedAdagradM`` is the heavy-ball form (its README says
Nesterov; its update adds the velocity itself). With momentum 0 both are plain Adagrad. Rows not in a mini-batch keep their accumulator and
velocity untouched ("lazy" updates).
"""

from __future__ import annotations

import math

import torch


class RowOptimizer:
    """Base: a set of named tensors updated in place, densely or by rows."""

    def __init__(self, params: dict[str, torch.Tensor], lr: float) -> None:
        self.params = params
        self.lr = float(lr)
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps = 0

    def step_dense(self, names: list[str], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def step_rows(self, name: str, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Update ``params[name][rows]`` with ``grad`` (len(rows), ...); rows are unique."""
        raise NotImplementedError

    def state_tensors(self) -> list[torch.Tensor]:
        """The live state tensors (to broadcast in place; ``state_dict`` may give copies)."""
        return [v for st in self.state.values() for v in st.values()]

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"{n}/{k}": v for n, st in self.state.items() for k, v in st.items()}
        out["__steps__"] = torch.tensor([self.steps], dtype=torch.int64)
        return out

    def load_state_dict(self, arrays: dict[str, torch.Tensor]) -> None:
        for key, value in arrays.items():
            if key == "__steps__":
                self.steps = int(value[0])
                continue
            name, kind = key.rsplit("/", 1)
            self.state[name][kind].copy_(value)


class AdagradNesterov(RowOptimizer):
    """Adagrad with Nesterov (default) or heavy-ball momentum (see the module docstring)."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        lr: float,
        momentum: float = 0.0,
        eps: float = 1e-6,
        *,
        nesterov: bool = True,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.eps = float(eps)
        # The accumulator starts at eps and so holds acc + eps: rsqrt reads it as it is (one
        # pass fewer per step). ``state_dict`` saves it so, as "acc_eps".
        for name, p in params.items():
            st = {"acc": torch.full_like(p, self.eps)}
            if self.momentum > 0:
                st["vel"] = torch.zeros_like(p)
            self.state[name] = st
        self._device = next(iter(params.values())).device if params else None
        self._consts: tuple[float, torch.Tensor, torch.Tensor] | None = None

    def _momentum_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """momentum and momentum − 1 as 0-d tensors (a Python float operand costs a tensor
        conversion per call), made again if ``momentum`` was changed."""
        if self._consts is None or self._consts[0] != self.momentum:
            m = self.momentum
            self._consts = (
                m,
                torch.tensor(m, device=self._device),
                torch.tensor(m - 1.0, device=self._device),
            )
        return self._consts[1], self._consts[2]

    def state_dict(self) -> dict[str, torch.Tensor]:
        # saved as held ("acc_eps"), so that a resumed run repeats an uninterrupted one bit
        # for bit; a checkpoint's "acc" (written before the accumulator held eps) is read too
        return {
            (f"{k[: -len('/acc')]}/acc_eps" if k.endswith("/acc") else k): v
            for k, v in super().state_dict().items()
        }

    def load_state_dict(self, arrays: dict[str, torch.Tensor]) -> None:
        older = [k for k in arrays if k.endswith("/acc")]
        super().load_state_dict(
            {(f"{k[: -len('/acc_eps')]}/acc" if k.endswith("/acc_eps") else k): v
             for k, v in arrays.items()}
        )  # fmt: skip
        for key in older:
            self.state[key[: -len("/acc")]]["acc"].add_(self.eps)

    def step_dense(self, names: list[str], grads: list[torch.Tensor]) -> None:
        # a loop of in-place ops with Scalar arguments: ``_foreach`` ops with a Python float
        # convert it to a tensor per list entry on CPU
        for name, g in zip(names, grads, strict=True):
            p, st = self.params[name], self.state[name]
            acc = st["acc"].addcmul_(g, g)
            inv = torch.rsqrt(acc)  # g / sqrt(acc + eps) as g · rsqrt: fused into addcmul
            if self.momentum > 0:
                vel = st["vel"].mul_(self._momentum_tensors()[0]).addcmul_(g, inv, value=-self.lr)
                if not self.nesterov:
                    p.add_(vel)
                    continue
                p.add_(vel, alpha=self.momentum)
            p.addcmul_(g, inv, value=-self.lr)

    def step_rows(self, name: str, rows: torch.Tensor, grad: torch.Tensor) -> None:
        # The state is written back by adding each row's change (``index_add_``): on CPU
        # ``index_copy_`` of the same rows takes twice as long.
        p = self.params[name]
        st = self.state[name]
        st["acc"].index_add_(0, rows, grad * grad)
        inv = st["acc"].index_select(0, rows).rsqrt_()
        if self.momentum > 0:
            m, m1 = self._momentum_tensors()
            vel = st["vel"].index_select(0, rows)
            # the change of the velocity: (momentum − 1) v − lr g / sqrt(acc + eps)
            change = torch.mul(vel, m1).addcmul_(grad, inv, value=-self.lr)
            st["vel"].index_add_(0, rows, change)
            vel.add_(change)
            if self.nesterov:
                vel = vel.mul_(m).addcmul_(grad, inv, value=-self.lr)
            p.index_add_(0, rows, vel)
        else:
            p.index_add_(0, rows, inv.mul_(grad), alpha=-self.lr)


class Adam(RowOptimizer):
    """Adam (Kingma & Ba, 2015); row updates are lazy like ``torch.optim.SparseAdam``."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        self.betas = betas
        self.eps = eps
        for name, p in params.items():
            self.state[name] = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}

    def begin_step(self) -> None:
        """Advance the step counter used by the bias corrections (once per mini-batch)."""
        self.steps += 1

    def _step_size(self) -> tuple[float, float]:
        b1, b2 = self.betas
        t = max(self.steps, 1)
        return self.lr / (1 - b1**t), math.sqrt(1 - b2**t)

    def step_dense(self, names: list[str], grads: list[torch.Tensor]) -> None:
        if not names:
            return
        b1, b2 = self.betas
        size, corr2 = self._step_size()
        params = [self.params[n] for n in names]
        m = [self.state[n]["m"] for n in names]
        v = [self.state[n]["v"] for n in names]
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, corr2)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, m, denom, value=-size)

    def step_rows(self, name: str, rows: torch.Tensor, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        size, corr2 = self._step_size()
        st = self.state[name]
        m = st["m"].index_select(0, rows).lerp_(grad, 1 - b1)
        v = st["v"].index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        st["m"].index_copy_(0, rows, m)
        st["v"].index_copy_(0, rows, v)
        self.params[name].index_add_(
            0, rows, m / (v.sqrt_().div_(corr2).add_(self.eps)), alpha=-size
        )


class RowSums:
    """Sums the gradients of repeated rows: ``(rows, grad) -> (unique rows, summed grad)``.

    A mini-batch's item rows repeat (popular items among the shared samples, an input that is
    also a target), and Adagrad's update is not additive, so repeated rows are summed first.
    ``torch.unique`` sorts; this marks each row's slot in an (n_rows,) scratch table instead
    (one scatter, one gather), in the order the rows first occur. Any device.
    """

    def __init__(self, n_rows: int, device: torch.device | str) -> None:
        self._slot = torch.zeros(n_rows, dtype=torch.int64, device=device)

    def __call__(self, rows: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        uniq, inverse = self.unique(rows)
        return uniq, grad.new_zeros((uniq.shape[0], *grad.shape[1:])).index_add_(0, inverse, grad)

    def unique(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct rows (in the order they first occur) and each entry's position among
        them (``uniq[inverse] == rows``)."""
        n = rows.shape[0]
        at = torch.arange(n, device=rows.device)
        self._slot.index_put_((rows,), at)  # of repeated rows, one position wins
        first = self._slot.index_select(0, rows)  # each entry's winning position
        keep = torch.nonzero(first == at).squeeze(1)
        uniq = rows.index_select(0, keep)
        compact = torch.empty_like(at)
        compact.index_put_((keep,), torch.arange(keep.shape[0], device=rows.device))
        return uniq, compact.index_select(0, first)


def make_optimizer(
    name: str,
    params: dict[str, torch.Tensor],
    lr: float,
    momentum: float,
    *,
    nesterov: bool = True,
) -> RowOptimizer:
    if name == "adagrad":
        return AdagradNesterov(params, lr, momentum, nesterov=nesterov)
    if name == "adam":
        return Adam(params, lr)
    raise ValueError(f"unknown optimizer {name!r}; known: adagrad, adam")
