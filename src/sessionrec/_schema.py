"""Column names and dtypes of the Events contract (DESIGN.md), in one place."""

from __future__ import annotations

import polars as pl

USER = "user_id"
SESSION = "session_id"
ITEM = "item_id"
ITEM_IDX = "item_idx"
TIME = "timestamp"
RATING = "rating"
EVENT_TYPE = "event_type"
ROW = "row"

TITLE = "title"
YEAR = "year"
GENRES = "genres"

TIME_DTYPE = pl.Datetime("us", "UTC")

#: Columns every Events frame has, in this order; rating and event_type follow when present.
EVENT_COLUMNS = (USER, SESSION, ITEM, TIME, ROW)
OPTIONAL_EVENT_COLUMNS = (RATING, EVENT_TYPE)
#: Sort key that makes time order stable: ties in time keep source-row order.
TIME_ORDER = (TIME, ROW)
