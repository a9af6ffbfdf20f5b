"""The server's request and response bodies (and the id and name rules), as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from feature_platform.sources.entity_ids import canonical_id
from feature_platform.sources.schema import MAX_MONEY, MAX_SHORT_TEXT, MAX_TEXT, USER_ID_PATTERN

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,127}$"
# Field limits of request bodies (README, "Feature server"): the id and text rules are raw ingestion's
# (sources/schema.py); event amounts as ingestion bounds them; feature values.
MAX_AMOUNT = MAX_MONEY  # the same bound as raw ingestion: an event the server accepts always lands
MAX_FEATURE_VALUE = 1e12

UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, description="A user id: letters, digits and _.:@-")]
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="A user id: letters, digits and _.:@-")]
ShortText = Annotated[str, Field(max_length=MAX_SHORT_TEXT, pattern=r"^[^\x00-\x1f\x7f]*$")]  # no control characters
MessageText = Annotated[str, Field(max_length=MAX_TEXT, pattern=r"^[^\x00]*$")]  # newlines yes, NUL no
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]


def _number_id_as_text(value: Any) -> Any:
    """A JSON number id as its canonical text (``42`` and ``42.0`` are ``"42"``, sources/entity_ids.py), which
    the id pattern then checks; a fraction, a bool or null is refused here. Text is left to the pattern alone,
    as every route checks it (the pattern admits no whitespace to trim, so such text is canonical already)."""
    return value if isinstance(value, str) else canonical_id(value)


# A user id a batch read may give as a JSON integer too (an export's ids often are numbers); the OpenAPI
# schema shows both forms, the model holds the canonical text.
_IdText = Annotated[str, Field(pattern=USER_ID_PATTERN)]
UserIdOrNumber = Annotated[
    _IdText,
    BeforeValidator(_number_id_as_text, json_schema_input_type=_IdText | Annotated[int, Field(ge=0)]),
    Field(description='A user id: letters, digits and _.:@-, or a whole number (42 is "42")'),
]


def _bounded(value: Any) -> Any:
    """A feature value as JSON gives it, numbers finite and within +-MAX_FEATURE_VALUE, texts within MAX_TEXT."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        if not -MAX_FEATURE_VALUE <= value <= MAX_FEATURE_VALUE:  # NaN compares false: refused too
            raise ValueError(f"numbers must be finite and within +-{MAX_FEATURE_VALUE:g}")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"texts must be at most {MAX_TEXT} characters")
    elif isinstance(value, list):
        for item in value:
            _bounded(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _bounded(key)
            _bounded(item)
    return value


FeatureInput = Annotated[Any, AfterValidator(_bounded)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequest(Strict):
    user_ids: list[UserIdOrNumber] = Field(min_length=1, description=(
        "Users to read; at most FP_MAX_BATCH. A whole number reads the user of its decimal text (42 is \"42\"); "
        "results name users by that text."))
    features: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, description="Registry feature names; all online features when absent.")
    version: str | None = Field(default=None, max_length=200, description="An online version; the served one when absent.")
    defaults: bool = Field(default=False, description="Unknown users get the registry defaults instead of found=false.")


PREDICT_DEFAULTS = ("A user in no online or offline snapshot is scored on the registry defaults (feature_source "
                    "`default`) instead of a 404.")
IMPUTED = ("The model's features that reached it as null, in the model's order: missing from the served vector "
           "(status `missing`), a registry default that is null (an unknown user served defaults), or left out of "
           "`features`. The model's imputer filled them, so the prediction rests less on this user's data. A "
           "default that is a value (e.g. 0) is given as that value and is not listed; `feature_source` says "
           "where the values came from.")


class ChurnRequest(Strict):
    user_id: UserId | None = None
    features: dict[Annotated[str, Field(pattern=NAME_PATTERN)], FeatureInput] | None = Field(
        default=None, description="Feature values to score instead of a stored user; missing ones are null. "
                                  f"Numbers finite within +-{MAX_FEATURE_VALUE:g}, texts at most {MAX_TEXT:,} characters.")
    defaults: bool = Field(default=False, description=f"With user_id: {PREDICT_DEFAULTS}")

    @model_validator(mode="after")
    def one_of(self) -> ChurnRequest:
        if (self.user_id is None) == (self.features is None):
            raise ValueError("give exactly one of user_id or features")
        if self.defaults and self.user_id is None:
            raise ValueError("defaults applies to a user_id, not to given features (missing ones are null)")
        return self


class ContactContext(Strict):
    device: Annotated[str, Field(max_length=64)] | None = None
    hour: int | None = Field(default=None, ge=0, le=23)
    day_of_week: int | None = Field(default=None, ge=0, le=6, description="0 = Monday")


class ContactRequest(Strict):
    user_id: UserId
    listing_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(min_length=1)
    context: ContactContext = Field(default_factory=ContactContext)
    defaults: bool = Field(default=False, description=PREDICT_DEFAULTS)


class EventsRequest(Strict):
    events: list[dict[str, Any]] = Field(
        min_length=1, description=f"Raw events in the raw events schema; at most FP_MAX_BATCH. event_id and user_id "
                                  f"follow the user id rule, message_text has at most {MAX_TEXT:,} characters (no NUL), "
                                  f"other texts {MAX_SHORT_TEXT} (no control characters), 0 <= amount <= {MAX_AMOUNT:g}.")


class FeatureValue(BaseModel):
    value: Any = None
    status: str = Field(description="present | stale | missing | computed | default")
    source: str = Field(description="online | offline | computed | default")


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
    on_demand: str | None = Field(default=None, description="Only when computing the user on demand did not "
                                  "answer: timeout (over FP_ON_DEMAND_BUDGET_MS; retry, the result is being "
                                  "cached), limit (over FP_ON_DEMAND_MAX_USERS users in this request) or error "
                                  "(the computation failed; the server's log says why)")


class BatchResponse(BaseModel):
    results: list[FeatureVector]


class Problem(BaseModel):
    detail: Any


class ChurnPrediction(BaseModel):
    user_id: str | None = Field(description="The user scored; null when `features` were given")
    probability: float
    model: str
    model_version: str
    feature_source: str = Field(description="online | offline | default | request")
    snapshot_version: str | None
    imputed: list[str] = Field(description=IMPUTED)


class RankedListing(BaseModel):
    listing_id: str
    probability: float
    rank: int
    known: bool = Field(description="false: not in raw/listings, its inputs were null")


class ViewContext(BaseModel):
    device: str | None
    hour: int
    day_of_week: int


class ContactPrediction(BaseModel):
    user_id: str
    model: str
    model_version: str
    context: ViewContext
    feature_source: str = Field(description="online | offline | default")
    imputed: list[str] = Field(description=IMPUTED)
    listings: list[RankedListing] = Field(description="Highest probability first")
