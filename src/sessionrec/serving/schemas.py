"""The JSON bodies of the HTTP API: requests (strict: a value of another JSON type is
refused, not coerced), answers and errors, as the OpenAPI schema shows them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

SESSION_ID = r"^[A-Za-z0-9_.:@-]{1,128}$"
MAX_K = 1000

SessionPath = Annotated[str, Path(pattern=SESSION_ID, description="Any id the client picks.")]
K = Annotated[int, Query(ge=1, le=MAX_K)]
ModelName = Annotated[str | None, Query(max_length=200)]


def _encodable(v: str | None) -> str | None:
    if v is not None:
        v.encode("utf-8")  # lone surrogates cannot be stored: 422, not 500
    return v


class EventIn(BaseModel):
    # strict: a JSON value of another type is refused, not coerced (true is not item 1)
    model_config = ConfigDict(extra="forbid", strict=True)
    item: int | Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="An item id or a title (resolved as `sessionrec recommend` does)."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="How many recommendations to return.")
    exclude_seen: bool = Field(
        True,
        description="Leave the session's items out of the list (the default, as `sessionrec "
        "recommend` and the web page; false keeps them rankable).",
    )
    model: str | None = Field(None, max_length=200, description="A served model's name.")
    event_id: str | None = Field(
        None,
        pattern=SESSION_ID,
        description="Optional client id of this event: a retried request with the same id "
        "is not applied twice.",
    )

    @field_validator("item", "model")
    @classmethod
    def _utf8(cls, v: Any) -> Any:
        return _encodable(v) if isinstance(v, str) else v


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    items: list[int | Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        min_length=1, max_length=1000, description="The session: item ids or titles, oldest first."
    )
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = Field(True, description="Leave the given items out of the list.")
    model: str | None = Field(None, max_length=200)

    @field_validator("items")
    @classmethod
    def _utf8(cls, v: list[Any]) -> list[Any]:
        for x in v:
            if isinstance(x, str):
                _encodable(x)
        return v

    @field_validator("model")
    @classmethod
    def _utf8_model(cls, v: str | None) -> str | None:
        return _encodable(v)


class ItemOut(BaseModel):
    item_id: int | str
    title: str | None
    year: int | None
    genres: list[str]


class RecommendationOut(BaseModel):
    rank: int
    item_id: int | str
    title: str | None
    year: int | None
    genres: list[str]
    score: float
    because: list[ItemOut] | None = Field(
        None, description="kNN models: the session's items that led to this one."
    )


class EventOut(BaseModel):
    session_id: str
    model: str
    events: int = Field(description="Every event the session received (the cap included).")
    kept: int = Field(
        description="The latest events kept (at most --max-session-events), which the list "
        "is ranked from."
    )
    exclude_seen: bool = Field(description="Whether the session's items were left out.")
    applied: bool = Field(description="False when event_id was already recorded.")
    recommendations: list[RecommendationOut]


class RecommendationsOut(BaseModel):
    session_id: str | None
    model: str
    events: int
    kept: int
    exclude_seen: bool = Field(description="Whether the session's items were left out.")
    recommendations: list[RecommendationOut]


class SessionOut(BaseModel):
    session_id: str
    events: int = Field(description="Every event the session received.")
    kept: int = Field(description="The latest events kept, listed in items.")
    items: list[ItemOut]
    created: float
    updated: float
    expires_at: float


class ItemsOut(BaseModel):
    items: list[ItemOut]


class ModelsOut(BaseModel):
    default: str
    models: list[dict[str, Any]]


class Status(BaseModel):
    status: str
    detail: str | None = None


class NotReady(BaseModel):
    status: str
    detail: str = Field(description="Why the service is not ready.")


class ErrorOut(BaseModel):
    detail: Any = Field(description="What is wrong, in one line.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Invalid requests: each field's error (location, message, type)."
    )
    closest: list[str] | None = None
    candidates: list[str] | None = None


class ReloadOut(BaseModel):
    status: str
    models: list[str]
    seconds: float


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "Unknown session, item (with the closest titles) or model.",
    },
    413: {"model": ErrorOut, "description": "Request body too large."},
    422: {"model": ErrorOut, "description": "Invalid request."},
    503: {
        "model": ErrorOut,
        "description": "The session store is unavailable: nothing was stored; retry.",
    },
}
