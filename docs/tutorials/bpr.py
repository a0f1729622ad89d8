# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # BPR from implicit feedback, and why sampled metrics mislead
#
# Top-N recommendation for users: every rating is a signal that the user watched the movie,
# and the model ranks the movies a user has not watched yet. This notebook builds the classic
# protocol — a 10-core of MovieLens-100K, each user's last 10 % of ratings held out — trains
# BPR (through the `implicit` library, the `cf` extra) beside popularity, and scores them two
# ways: against the full catalogue, and against 100 sampled negatives, the protocol many papers
# report. The site's build executes it.

# %%
import tempfile
from pathlib import Path

import polars as pl

import sessionrec as sr

runs = Path(tempfile.mkdtemp(prefix="sessionrec-bpr-"))

# %% [markdown]
# ## A 10-core, split per user in time
#
# `session="user"` makes each user's whole history one "session". The recursive filters,
# applied until nothing changes, give exactly the 10-core: every user and every item with at
# least 10 ratings. `split="user-time"` holds out the last 10 % of each user's ratings; the
# earlier ones travel with them as context, fed to the model but not predicted.

# %%
data = sr.prepare(
    sr.load("ml-100k"), runs / "core10", session="user", min_user_events=10,
    min_item_support=10, min_session_length=10, split="user-time", test_fraction=0.1,
    valid_fraction=0.0,
)  # fmt: skip
data.meta["counts"]

# %% [markdown]
# ## Training
#
# BPR with `implicit`'s defaults (100 factors, 100 epochs, learning rate 0.01), on the
# user × item matrix. A user's list is scored by the mean of the factors of the items in the
# user's history.

# %%
bpr = sr.train("bpr", data, runs / "bpr", params={"rows": "user"}, progress=False)
pop = sr.train("pop", data, runs / "pop", progress=False)

# %% [markdown]
# ## Full ranking against sampled negatives
#
# Full ranking places each held-out movie among every movie the user has not rated; the
# sampled protocol among 100 movies drawn in proportion to their popularity. The sampled
# figures are several times larger, and they do not shrink every model alike: popularity
# suffers most from popularity-drawn negatives. Rankings of close models can flip between the
# two (Krichene & Rendle, "On sampled metrics for item recommendation", KDD 2020), which is why
# sessionrec ranks the full catalogue unless asked.

# %%
rows = []
for name, model in {"bpr": bpr, "pop": pop}.items():
    for protocol in ("every", "sampled"):
        r = sr.evaluate(
            model, data.test, cutoffs=(10,), exclude_seen=True, protocol=protocol,
            negative_sampling="popularity",
        )  # fmt: skip
        rows.append({"model": name, "protocol": protocol, "predictions": r.predictions,
                     "hr@10": round(r.metrics["recall@10"], 4),
                     "ndcg@10": round(r.metrics["ndcg@10"], 4)})  # fmt: skip
pl.DataFrame(rows)

# %% [markdown]
# ## Recommending for a user
#
# A user is a session of the movies they rated: the model ranks everything else.

# %%
first = data.test.items[data.test.offsets[0] : data.test.offsets[1]]  # the first test user
ids = data.items.filter(pl.col("item_idx").is_in(first.tolist()))["item_id"].to_list()
bpr.recommend(ids, k=10)
