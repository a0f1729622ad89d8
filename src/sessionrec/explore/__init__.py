"""Explore an Events log before preparing it: counts, lengths, gaps and a suggested session
gap, activity over time, the popularity long tail, bursty and heavy users, ratings.

>>> ex = sr.explore(sr.load("ml-100k"))
>>> ex.summary["sessions"]["suggested_gap"]
>>> ex.save("runs/ml-100k-explore")   # PNG plots, report.md, report.html, summary.json
"""

from sessionrec.explore.exploration import Exploration, explore
from sessionrec.explore.stats import CANDIDATE_GAPS, SUGGEST_RULE

__all__ = ["CANDIDATE_GAPS", "SUGGEST_RULE", "Exploration", "explore"]
