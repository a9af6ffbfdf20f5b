"""The server's request and response bodies (and the id and name rules), as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,127}$"

UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, description="A user id: letters, digits and _.:@-")]
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="A user id: letters, digits and _.:@-")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequest(Strict):
    user_ids: list[UserId] = Field(min_length=1, description="Users to read; at most FP_MAX_BATCH.")
    features: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, description="Registry feature names; all online features when absent.")
    version: str | None = Field(default=None, max_length=200, description="An online version; the served one when absent.")
    defaults: bool = Field(default=False, description="Unknown users get the registry defaults instead of found=false.")


class ChurnRequest(Strict):
    user_id: UserId | None = None
    features: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Any] | None = Field(
        default=None, description="Feature values to score instead of a stored user; missing ones are null.")

    @model_validator(mode="after")
    def one_of(self) -> ChurnRequest:
        if (self.user_id is None) == (self.features is None):
            raise ValueError("give exactly one of user_id or features")
        return self


class ContactContext(Strict):
    device: Annotated[str, Field(max_length=64)] | None = None
    hour: int | None = Field(default=None, ge=0, le=23)
    day_of_week: int | None = Field(default=None, ge=0, le=6, description="0 = Monday")


class ContactRequest(Strict):
    user_id: UserId
    listing_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(min_length=1)
    context: ContactContext = Field(default_factory=ContactContext)


class EventsRequest(Strict):
    events: list[dict[str, Any]] = Field(min_length=1, description="Raw events in the raw events schema.")


class FeatureValue(BaseModel):
    value: Any = None
    status: str = Field(description="present | stale | missing | default")
    source: str = Field(description="online | offline | default")


class SnapshotInfo(BaseModel):
    version: str | None
    snapshot_date: str | None
    computed_at: str | None
    updated_at: str | None
    updated_fields: list[str]


class FeatureVector(BaseModel):
    user_id: str
    found: bool
    source: str
    snapshot: SnapshotInfo
    features: dict[str, FeatureValue]


class BatchResponse(BaseModel):
    results: list[FeatureVector]


class Problem(BaseModel):
    detail: Any
