# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Two-tower retrieval
#
# A two-tower model scores an item by the inner product of two vectors: a query tower reads
# the session (here a GRU over its last 10 items), a candidate tower embeds the item. Because
# the score is an inner product, the item vectors can be indexed once and searched quickly,
# which is what makes the architecture the standard first stage of large recommenders. This
# notebook trains one on MovieLens-100K's sessions, compares it with V-SKNN on the same
# predictions, and looks at what it learned. The site's build executes it.

# %%
import tempfile
from pathlib import Path

import polars as pl

import sessionrec as sr
from sessionrec.evaluation import paired_difference

runs = Path(tempfile.mkdtemp(prefix="sessionrec-two-tower-"))
data = sr.prepare(
    sr.load("ml-100k"), runs / "ml-100k", session="1h", min_session_length=2,
    min_item_support=5, split="time", test_days=21, valid_days=21,
)  # fmt: skip

# %% [markdown]
# ## Training
#
# The defaults: embeddings of 64, a projection after the GRU, both towers L2-normalised, an
# in-batch softmax at temperature 0.1 with the logQ correction (each in-batch negative is
# drawn in proportion to its popularity, which the correction undoes), accidental hits masked,
# Adam, batch 256. The default 10 epochs are cut to 4 here to keep the page quick. Fit on
# train, the valid part is scored after every epoch and the best epoch is kept.

# %%
tt = sr.train("two-tower", data, runs / "two-tower", params={"n_epochs": 4}, progress=False)
pl.read_ndjson(runs / "two-tower" / "history.jsonl")

# %% [markdown]
# ## Against V-SKNN, on the same predictions

# %%
vsknn = sr.train("vsknn", data, runs / "vsknn", progress=False)
res = {name: sr.evaluate(m, data.test, cutoffs=(20,), exclude_seen=True)
       for name, m in {"two-tower": tt, "vsknn": vsknn}.items()}  # fmt: skip
pl.DataFrame([{"model": n, "recall@20": round(r.metrics["recall@20"], 4),
               "mrr@20": round(r.metrics["mrr@20"], 4)} for n, r in res.items()])  # fmt: skip

# %%
paired_difference(res["two-tower"], res["vsknn"], data.test, "recall@20")

# %% [markdown]
# ## Recommending
#
# The query tower reads the session; the top items by inner product are the list. For a
# session of one movie that shows what the model learned follows it:

# %%
tt.recommend(["Star Wars (1977)"], k=10)

# %% [markdown]
# With tens of thousands of items or more, `sessionrec index MODEL --kind hnsw` builds an
# approximate (faiss HNSW) index over the item vectors and measures its recall against exact
# top-k; on ML-100K's 1,339 items exact search is faster
# ([approximate top-k](../guides/ann.md)).
