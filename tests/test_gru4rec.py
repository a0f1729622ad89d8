"""GRU4Rec: learns a planted pattern, is deterministic, saves and streams faithfully."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sessionrec.errors import ConfigError
from sessionrec.models import create, load_model
from sessionrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from sessionrec.prepare.data import SessionData

torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation

N_ITEMS = 12


def sessions_to_data(sessions: list[list[int]], n_items: int = N_ITEMS) -> SessionData:
    lengths = [len(s) for s in sessions]
    items = np.array([i for s in sessions for i in s], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    n = len(items)
    return SessionData(
        items=items,
        offsets=offsets,
        session_ids=np.arange(len(sessions), dtype=np.int64),
        timestamps=np.arange(n, dtype=np.int64) * 1_000_000,
        target=np.ones(n, dtype=bool),
        n_items=n_items,
    )


def cyclic(n_sessions: int, seed: int) -> list[list[int]]:
    """Sessions walking one of four 3-item cycles A→B→C→A."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sessions):
        g, start, length = rng.integers(0, 4), rng.integers(0, 3), rng.integers(3, 11)
        out.append([int(g * 3 + (start + t) % 3) for t in range(length)])
    return out


def recall_at_1(model: GRU4Rec, sessions: list[list[int]]) -> float:
    prefixes = [s[:i] for s in sessions for i in range(1, len(s))]
    nexts = torch.tensor([s[i] for s in sessions for i in range(1, len(s))])
    scores = model.score_sessions(prefixes)
    return float((scores.argmax(1) == nexts).float().mean())


BASE = {"layers": [32], "batch_size": 8, "n_epochs": 6, "learning_rate": 0.1, "seed": 1}


@pytest.mark.parametrize(
    "extra",
    [
        {"loss": "cross-entropy", "n_sample": 8},
        {"loss": "bpr-max", "n_sample": 16, "elu_param": 0.5, "momentum": 0.3, "bpreg": 0.5},
        {"loss": "top1-max", "n_sample": 16, "constrained_embedding": False, "embedding": 16},
        {"loss": "cross-entropy", "n_sample": -1, "constrained_embedding": False},  # one-hot
        {"loss": "cross-entropy", "n_sample": 0, "logq": 1.0, "layers": [24, 24]},
        {"loss": "cross-entropy", "n_sample": -1, "optimizer": "adam", "learning_rate": 0.01},
    ],
)
def test_learns_a_planted_cycle(extra: dict[str, object]) -> None:
    model = GRU4Rec.from_params({**BASE, **extra}).fit(sessions_to_data(cyclic(80, seed=11)))
    assert recall_at_1(model, cyclic(20, seed=12)) >= 0.95


def test_train_loss_falls_and_callback_can_stop() -> None:
    records: list[dict] = []
    model = GRU4Rec.from_params({**BASE, "n_sample": 8, "n_epochs": 5})
    model.fit(
        sessions_to_data(cyclic(80, 11)), callback=lambda r: records.append(r) or len(records) == 3
    )
    assert [r["epoch"] for r in records] == [1, 2, 3] and model.epochs_done == 3
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert all(r["events_per_second"] > 0 for r in records)


def test_same_seed_same_numbers_other_seed_differs() -> None:
    data = sessions_to_data(cyclic(40, 3))
    params = {**BASE, "n_epochs": 2, "n_sample": 8, "dropout_p_embed": 0.3, "dropout_p_hidden": 0.2}
    a = GRU4Rec.from_params(params).fit(data)
    b = GRU4Rec.from_params(params).fit(data)
    c = GRU4Rec.from_params({**params, "seed": 2}).fit(data)
    for k, v in a.state_arrays().items():
        assert torch.equal(v, b.state_arrays()[k]), k
    assert not torch.equal(a.state_arrays()["item.weight"], c.state_arrays()["item.weight"])


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    model = create("gru4rec", {**BASE, "n_epochs": 1, "layers": [8, 8]}).fit(
        sessions_to_data(cyclic(30, 5))
    )
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, GRU4Rec) and loaded.config == model.config
    prefixes = [[0, 1], [5], [9, 10, 11, 9]]
    assert torch.equal(loaded.score_sessions(prefixes), model.score_sessions(prefixes))


@pytest.mark.parametrize(
    "extra", [{}, {"constrained_embedding": False, "embedding": 6}, {"layers": [8, 8]}]
)
def test_inference_reads_the_input_projection_table_and_follows_the_weights(
    extra: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step at inference reads the first layer's input projection from a table over every
    item; the table must follow in-place updates of the weights (more training), and a model
    without it (one-hot input, or a table over the size cap) must step as before."""
    model = GRU4Rec.from_params({**BASE, "n_epochs": 1, **extra})
    model.fit(sessions_to_data(cyclic(20, 5)))
    items = torch.tensor([0, 4, 7, 11])

    def stepped() -> torch.Tensor:
        return model.step(model.step(model.start(4), items), items.flip(0))[-1]

    with_table = stepped()
    assert model._table is not None
    monkeypatch.setattr("sessionrec.models.gru4rec._INPUT_TABLE_MAX_BYTES", 0)
    assert model._input_table() is None
    torch.testing.assert_close(with_table, stepped(), rtol=0, atol=1e-6)
    source = "item.weight" if model._input_mode == "shared" else "embed.weight"
    for name in (source, "gru0.w_ih", "gru0.b_ih"):  # as the optimisers do: in place
        monkeypatch.undo()
        before = stepped()
        with torch.no_grad():
            model.params[name][:4].add_(0.25)
        after = stepped()
        assert not torch.allclose(after, before), name
        monkeypatch.setattr("sessionrec.models.gru4rec._INPUT_TABLE_MAX_BYTES", 0)
        torch.testing.assert_close(after, stepped(), rtol=0, atol=1e-6)


def test_one_hot_input_has_no_table() -> None:
    model = GRU4Rec.from_params({**BASE, "n_epochs": 1, "constrained_embedding": False})
    model.fit(sessions_to_data(cyclic(10, 5)))
    assert model._input_table() is None


def test_streaming_reset_zeroes_the_state() -> None:
    model = GRU4Rec.from_params({**BASE, "n_epochs": 1}).fit(sessions_to_data(cyclic(20, 5)))
    state = model.step(model.start(2), torch.tensor([0, 4]))
    state = model.reset(state, torch.tensor([False, True]))
    assert torch.count_nonzero(state[0][1]) == 0 and torch.count_nonzero(state[0][0]) > 0
    state = model.step(state, torch.tensor([1, 7]))
    torch.testing.assert_close(model.score(state), model.score_sessions([[0, 1], [7]]))


def test_config_names_and_checks() -> None:
    cfg = GRU4RecConfig(layers=224)  # type: ignore[arg-type]
    assert cfg.layers == (224,)
    for bad in ({"loss": "bpr"}, {"dropout_p_hidden": 1.0}, {"optimizer": "sgd"}, {"layers": []}):
        with pytest.raises(ConfigError):
            GRU4Rec.from_params(bad)
    with pytest.raises(ConfigError):
        GRU4Rec.from_params({"hidden_size": 10})


def test_init_is_uniform_within_glorot_bound() -> None:
    model = GRU4Rec.from_params({"layers": [20], "constrained_embedding": False, "embedding": 10})
    model._init_params(50)
    w = model.params["gru0.w_hh"]
    bound = (6 / 40) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert model.params["embed.weight"].abs().max() <= (6 / 60) ** 0.5


def test_each_pair_weighs_one_over_batch_size_when_slots_are_idle() -> None:
    """A step with k of B slots active must give the gradient of the loss summed over the k
    rows divided by B, not of their mean: otherwise the last steps of an epoch, where a few
    long sessions fill a handful of slots, take full-size steps (the ML-100K accuracy bug).
    A first Adagrad step leaves g**2 in the accumulator, so it shows the gradient's scale."""

    def first_step_accumulator(batch_size: int) -> torch.Tensor:
        model = GRU4Rec.from_params({**BASE, "n_sample": 4, "batch_size": batch_size})
        model._init_params(N_ITEMS)
        model._opt = model._make_optimizer()
        inp, tgt = torch.tensor([1, 2]), torch.tensor([2, 3])
        hidden = list(model.start(2))
        log_pop = torch.zeros(N_ITEMS)
        gen = torch.Generator().manual_seed(0)
        model._train_step(inp, tgt, torch.tensor([5, 6, 7, 8]), hidden, gen, log_pop)
        return model._opt.state["gru0.w_ih"]["acc"] - model._opt.eps

    full = first_step_accumulator(2)  # both slots active: the mean over the rows
    idle = first_step_accumulator(8)  # the same two rows with 6 of 8 slots idle
    assert float(full.abs().max()) > 0
    torch.testing.assert_close(idle, full * (2 / 8) ** 2)


# -- the written-out backward against autograd --------------------------------------------------


def _autograd_step(
    model: GRU4Rec,
    inp: torch.Tensor,
    tgt: torch.Tensor,
    samples: torch.Tensor | None,
    hidden: list[torch.Tensor],
    gen: object,
    log_pop: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The step as autograd computes it (the implementation before the written-out backward):
    the leaves are gathered rows and the dense weights, the loss is ``ranking_loss`` over the
    ELU scores, repeated rows are summed with ``torch.unique``."""
    import torch.nn.functional as F

    from sessionrec.training.losses import bpr_max, ranking_loss
    from sessionrec.training.optim import Adam

    cfg, p, opt = model.config, model.params, model._opt
    assert opt is not None
    if isinstance(opt, Adam):
        opt.begin_step()
    n, full, mode = inp.shape[0], cfg.n_sample < 0, model._input_mode
    rows: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def gather(name: str, idx: torch.Tensor) -> torch.Tensor:
        leaf = p[name].detach().index_select(0, idx).requires_grad_()
        rows.append((name, idx, leaf))
        return leaf

    x = None
    if full:
        out_w, out_b, pos = p["item.weight"], p["item.bias"], tgt
    else:
        out_idx = tgt if samples is None else torch.cat([tgt, samples])
        pos = torch.arange(n)
        if mode == "shared":
            both = gather("item.weight", torch.cat([inp, out_idx]))
            x, out_w = both[:n], both[n:]
        else:
            out_w = gather("item.weight", out_idx)
        out_b = gather("item.bias", out_idx)
    if x is None and mode != "shared":
        x = gather("embed.weight" if mode == "embedding" else "onehot.weight", inp)
    new, out = model._forward(inp, hidden, gen, train=True, x=x)  # type: ignore[arg-type]
    scores = torch.addmm(out_b, out, out_w.t())
    xe = cfg.loss == "cross-entropy"
    if cfg.elu_param > 0 and (cfg.elu_for_cross_entropy or not xe):
        scores = F.elu(scores, alpha=cfg.elu_param)
    log_q = None
    if xe and cfg.logq > 0:
        log_q = cfg.logq * model._log_q(log_pop, None if full else out_idx, n)
    if cfg.loss == "bpr-max":
        loss = bpr_max(scores, pos, cfg.bpreg)
    else:
        loss = ranking_loss(cfg.loss, scores, pos, bpreg=cfg.bpreg, log_q=log_q)
    dense = [k for k, v in p.items() if v.requires_grad]
    leaves = [leaf for _, _, leaf in rows] + [p[k] for k in dense]
    grads = torch.autograd.grad(loss * (n / cfg.batch_size), leaves)
    with torch.no_grad():
        summed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for (name, idx, _), g in zip(rows, grads[: len(rows)], strict=True):
            uniq, inv = torch.unique(idx, return_inverse=True)
            summed[name] = (uniq, g.new_zeros((uniq.shape[0], *g.shape[1:])).index_add_(0, inv, g))
        model._apply(summed, dense, list(grads[len(rows) :]))
    return loss.detach(), [h.detach() for h in new]


WRITTEN_OUT = [
    {"loss": "bpr-max", "elu_param": 0.5, "bpreg": 1.5, "momentum": 0.4,
     "dropout_p_embed": 0.3, "dropout_p_hidden": 0.2},
    {"loss": "bpr-max", "elu_param": 0.0, "bpreg": 0.0, "momentum_type": "heavy-ball",
     "momentum": 0.4, "hidden_dropout_placement": "state", "dropout_p_hidden": 0.3},
    {"loss": "cross-entropy", "logq": 1.0, "logq_correction": "sampling", "elu_param": 0.5,
     "elu_for_cross_entropy": False, "layers": [6, 5], "dropout_p_hidden": 0.2},
    {"loss": "cross-entropy", "elu_param": 0.5, "n_sample": -1, "momentum": 0.2},
    {"loss": "cross-entropy", "n_sample": -1, "constrained_embedding": False, "embedding": 4,
     "optimizer": "adam", "dropout_p_embed": 0.2},
    {"loss": "top1-max", "elu_param": 0.5, "constrained_embedding": False, "embedding": 0,
     "layers": [5, 6], "dropout_p_embed": 0.3, "dropout_p_hidden": 0.1},
    {"loss": "bpr-max", "n_sample": 0, "constrained_embedding": False, "embedding": 5,
     "elu_param": 1.0, "bpreg": 1.0},
]  # fmt: skip


@pytest.mark.parametrize("extra", WRITTEN_OUT)
def test_written_out_backward_takes_autograds_steps(extra: dict[str, object]) -> None:
    """Three steps of the written-out step and of autograd from the same weights, masks and
    samples leave the same weights and optimiser state, losses and hidden states, for every
    input mode, loss, layer count, dropout placement and optimiser; rows repeat among the
    inputs, the targets and the samples, and two of five slots are idle."""
    from sessionrec.models.gru4rec import _mask_source

    params = {"layers": [6], "batch_size": 5, "n_sample": 4, "learning_rate": 0.1, "seed": 3}
    params.update(extra)  # type: ignore[arg-type]
    models = [GRU4Rec.from_params(params) for _ in range(2)]
    for m in models:
        m._init_params(N_ITEMS)
        m._opt = m._make_optimizer()
    inp, tgt = torch.tensor([1, 2, 2]), torch.tensor([2, 3, 5])
    samples = None if models[0].config.n_sample <= 0 else torch.tensor([3, 5, 5, 1])
    log_pop = torch.log(torch.arange(1.0, N_ITEMS + 1) / 78.0)
    hidden = [list(m.start(3)) for m in models]
    gens = [_mask_source(7, torch.device("cpu")) for _ in models]
    for _ in range(3):
        got = models[0]._train_step(inp, tgt, samples, hidden[0], gens[0], log_pop)
        want = _autograd_step(models[1], inp, tgt, samples, hidden[1], gens[1], log_pop)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        for a, b in zip(got[1], want[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        hidden = [got[1], want[1]]
    a, b = models[0]._opt, models[1]._opt
    assert a is not None and b is not None
    for k, v in models[1].params.items():
        torch.testing.assert_close(models[0].params[k], v.detach(), rtol=1e-5, atol=1e-6)
    for k, v in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def _bpr_max_closed_form(
    z: torch.Tensor, pos: torch.Tensor, lam: float, elu: float, scale: float
) -> tuple[float, np.ndarray]:
    """BPR-max's row-mean loss and ``scale ×`` its row-sum gradient in float64, written from
    the formulas row by row: w the softmax over the negatives, σ_j = sigmoid(r − s_j),
    hit = Σ w σ (+ 1e-24), reg = Σ w s²; dL/ds_j = w_j (1 − σ_j² / hit + λ (s_j² + 2 s_j −
    reg)) for the negatives, (Σ w σ² − hit) / hit for the positive."""
    x = z.double().numpy()
    s = np.where(x > 0, x, elu * np.expm1(x)) if elu else x
    losses, grad = [], np.zeros_like(s)
    for i, p in enumerate(pos.tolist()):
        neg = np.arange(s.shape[1]) != p
        e = np.exp(s[i, neg] - s[i, neg].max())
        w = e / e.sum()
        sig = 1.0 / (1.0 + np.exp(s[i, neg] - s[i, p]))
        hit = (w * sig).sum() + 1e-24
        reg = (w * s[i, neg] ** 2).sum()
        losses.append(lam * reg - np.log(hit))
        grad[i, neg] = w * (1 - sig**2 / hit + lam * (s[i, neg] ** 2 + 2 * s[i, neg] - reg))
        grad[i, p] = ((w * sig**2).sum() - hit) / hit
    slope = np.where(x > 0, 1.0, elu * np.exp(x)) if elu else 1.0
    return float(np.mean(losses)), grad * slope * scale


def test_bpr_max_gradient_holds_at_extreme_scores() -> None:
    """The shared exponential of the written-out BPR-max (softmax terms turned into the
    sigmoids') stays finite and equal to the closed form where a row's positive scores far
    below or far above its negatives. (Autograd through ``bpr_max`` gives 0 for the first
    row's positive: its sigmoids fall under the loss's 1e-24 floor; the closed form gives
    the limit, −1 per row.) The closed form itself is checked against autograd at ordinary
    scores."""
    from sessionrec.training.losses import bpr_max, loss_and_grad

    ordinary = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = torch.tensor([0, 3, 5, 1])
    for elu in (0.0, 0.5):
        leaf = ordinary.clone().requires_grad_()
        s = torch.nn.functional.elu(leaf, alpha=elu) if elu else leaf
        (want_ordinary,) = torch.autograd.grad(bpr_max(s, rows, 0.5) * 4 * 0.25, leaf)
        _, closed = _bpr_max_closed_form(ordinary, rows, 0.5, elu, 0.25)
        np.testing.assert_allclose(closed, want_ordinary.numpy(), rtol=1e-9, atol=1e-12)

    z = torch.tensor([[-150.0, 0.0, 1.0, 2.0], [120.0, 0.0, -3.0, 1.0], [0.5, 0.2, -0.1, 0.3]])
    pos = torch.tensor([0, 0, 2])
    for elu in (0.0, 0.5):
        want_loss, want = _bpr_max_closed_form(z, pos, 0.5, elu, 0.25)
        got_loss, got = loss_and_grad("bpr-max", z, pos, scale=0.25, bpreg=0.5, elu=elu)
        assert torch.isfinite(got).all()
        if elu == 0:  # (with the ELU, −150 scores −0.5: not extreme)
            assert float(got[0, 0]) == pytest.approx(-0.25)
        assert float(got_loss) == pytest.approx(want_loss, rel=1e-5)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)
