# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # A session-based study on MovieLens-100K
#
# This notebook runs the whole job from a notebook: load a log, look at it, cut it into
# sessions, train GRU4Rec beside three baselines, evaluate them on the same predictions,
# test whether the differences are real, and recommend the next movies for a session given by
# title. The documentation site's build executes it from top to bottom, so every figure
# below was computed by the code above it.
#
# `import sessionrec` comes first: it lets torch's idle OpenMP threads sleep, which keeps a
# notebook as fast as the command line on a busy machine.

# %%
import tempfile
from pathlib import Path

import polars as pl

import sessionrec as sr

runs = Path(tempfile.mkdtemp(prefix="sessionrec-study-"))  # where this notebook writes

# %% [markdown]
# ## The log
#
# `sr.load("ml-100k")` reads MovieLens-100K from the cache, fetching it on first use. The
# events are one polars DataFrame with one schema for every source; titles, years and genres
# come along.

# %%
ds = sr.load("ml-100k")
ds.events.head()

# %%
ds.items.head()

# %% [markdown]
# `sr.explore` computes the statistics a session definition needs. In a notebook `ex` shows
# the whole report; here we read two of its numbers: how many sessions each inactivity gap
# would give, and the gap it suggests (the shortest from which doubling the gap would merge
# fewer than 5 % of the sessions).

# %%
ex = sr.explore(ds)
ex.summary["sessions"]["suggested_gap"]

# %%
ex.tables["candidate_gaps"]

# %% [markdown]
# ## Sessions, cleaned and split by time
#
# The acceptance protocol of these pages: a new session after an hour without a rating,
# sessions of at least 2 events and items of at least 5 (applied until nothing changes), and
# a time split: sessions ending in the last 21 days are test, the 21 days before valid.
# Valid and test keep only items known from training; `meta.json` counts every drop.

# %%
data = sr.prepare(
    ds, runs / "ml-100k", session="1h", min_session_length=2, min_item_support=5,
    split="time", test_days=21, valid_days=21,
)  # fmt: skip
pl.DataFrame(
    {
        "part": ["train", "valid", "test"],
        "sessions": [data.train.n_sessions, data.valid.n_sessions, data.test.n_sessions],
        "predictions": [data.train.n_predictions, data.valid.n_predictions,
                        data.test.n_predictions],
    }  # fmt: skip
)

# %% [markdown]
# ## Models
#
# Three baselines that take seconds — popularity, a first-order Markov chain and V-SKNN
# (session kNN with recency weights) — and GRU4Rec. GRU4Rec's defaults (one layer of 300, five
# epochs) take a few minutes on a laptop's CPU; to keep this page quick it trains a layer of
# 100 for three epochs. Every model is fit on train+valid: the
# settings were chosen before (the defaults on valid parts, never on test), so nothing is
# left to choose here.

# %%
models = {}
for name in ["pop", "markov", "vsknn"]:
    models[name] = sr.train(name, data, runs / name, fit_on="train+valid", progress=False)
models["gru4rec"] = sr.train(
    "gru4rec", data, runs / "gru4rec", fit_on="train+valid", progress=False,
    params={"layers": [100], "n_epochs": 3},
)  # fmt: skip

# %% [markdown]
# ## Evaluation
#
# Every test event after a session's first is predicted from its prefix, ranked against the
# whole catalogue, with ties counted against the model. MovieLens rates a movie once, so the
# session's own movies are left out of the ranking (`exclude_seen=True`).

# %%
results = {
    name: sr.evaluate(model, data.test, cutoffs=(10, 20), exclude_seen=True)
    for name, model in models.items()
}
pl.DataFrame(
    [
        {"model": name, "predictions": r.predictions,
         **{m: round(r.metrics[m], 4) for m in ("recall@20", "mrr@20", "ndcg@20", "coverage@20")}}
        for name, r in results.items()
    ]  # fmt: skip
).sort("recall@20", descending=True)

# %% [markdown]
# ## Is the difference real?
#
# 195 test sessions make wide intervals: each model's Recall@20 is uncertain by about ±0.03.
# Models scored on the same predictions compare much more tightly: the paired bootstrap
# resamples sessions, the same resample for both models.

# %%
from sessionrec.evaluation import bootstrap_interval, paired_difference

bootstrap_interval(results["vsknn"], data.test, ["recall@20", "mrr@20"])

# %%
paired_difference(results["gru4rec"], results["vsknn"], data.test, "recall@20")

# %% [markdown]
# ## Recommending by title
#
# Titles in, titles out: an entry is an id or a title with or without its year, in any case,
# with MovieLens' trailing article either way.

# %%
session = ["Toy Story", "Star Wars", "Fargo"]
models["gru4rec"].recommend(session, k=10)

# %%
models["vsknn"].recommend(session, k=10)

# %% [markdown]
# The same from a shell: `sessionrec prepare`, `sessionrec train`, `sessionrec compare` and
# `sessionrec recommend` ([getting started](../getting-started.md#from-a-shell)); the model
# folders written here serve over HTTP with `sessionrec serve`.
