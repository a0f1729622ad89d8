"""Sessionize, filter and split an Events log into a PreparedData directory."""

from sessionrec.prepare.data import PARTS, PreparedData, SessionData
from sessionrec.prepare.filters import SupportFilter, filter_events, filter_recursive
from sessionrec.prepare.pipeline import PrepareConfig, prepare, prepare_frames, write_prepared
from sessionrec.prepare.sessionize import parse_duration, sessionize

__all__ = [
    "PARTS",
    "PrepareConfig",
    "PreparedData",
    "SessionData",
    "SupportFilter",
    "filter_events",
    "filter_recursive",
    "parse_duration",
    "prepare",
    "prepare_frames",
    "sessionize",
    "write_prepared",
]
