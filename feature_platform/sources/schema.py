"""The raw-input contract: which files, which columns, which types, which values are valid.

Everything that reads raw data (the generator's writer, validation, the Dagster raw assets, the
feature families) takes its column names and types from here, so the contract lives in one place.
Timestamps are naive UTC throughout the platform (``timestamp[us]``): one convention, no session
time-zone surprises in DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "add_to_cart",
    "purchase",
    "login",
    "email_open",
    "email_click",
    "form_submit",
    "support_ticket",
    "discount_request",
    "message_in",
    "message_out",
    "campaign_sent",
    "campaign_opened",
    "campaign_clicked",
    "listing_viewed",
    "listing_contact_clicked",
    "listing_favorited",
    "impression",
)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool = False
    description: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawTable:
    """One raw input: its file stem, its columns and whether the platform can run without it."""

    name: str
    columns: tuple[Column, ...]
    key: str
    optional: bool
    description: str = ""
    # The key is made from file and row ("events.csv:17") when the file has no key column.
    derive_key: bool = False
    # Columns that get a value when the file does not have them at all (e.g. a transactions-only
    # file has no event_type: every row is a purchase).
    defaults_when_absent: dict[str, str] = field(default_factory=dict)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}; columns: {self.column_names}")


TS = pa.timestamp("us")
# Finite bounds on numeric inputs, so that no sum, mean or ratio of them downstream overflows (a lifetime
# total of 10^6 purchases at the bound is 1e18, far from float64's 1.8e308). Outside: quarantined.
MAX_MONEY = 1e12  # |amount|, |price| in the currency's unit: a trillion
MAX_COUNT = 10_000  # image_count
# Ids and texts: the same rules at ingest, at `events push`, on `POST /events` and on every read, so nothing
# lands that the server would refuse to read back. A user id is letters, digits and _.:@- (at most 128,
# starting with a letter or digit: safe in a URL path and a Redis key); other ids and short texts (event,
# session, listing ids; channels) at most MAX_SHORT_TEXT characters without control characters; message texts
# at most MAX_TEXT characters without NUL.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
MAX_SHORT_TEXT = 128
MAX_TEXT = 4_096
# Names exports give the customer of an event.
USER_ALIASES = ("customer_id", "customerid", "client_id", "lead_id", "customer", "client", "user", "cust_id",
                "customer_number", "customer_no", "member_id", "account_id", "buyer_id", "shopper_id")
# Names shops, tills and data sets give the money of a purchase (matched like every alias: any case,
# spaces or dashes for underscores).
MONEY_ALIASES = ("value", "revenue", "total", "price", "dollar_value", "dollars", "price_total", "total_price",
                 "sales", "sales_amount", "sale_amount", "order_value", "order_total", "total_amount", "spend",
                 "monetary_value", "gross_amount", "line_total")

CUSTOMERS = RawTable(
    name="customers",
    key="user_id",
    optional=False,
    description="One row per user (customer or lead) with profile attributes.",
    columns=(
        Column("user_id", pa.string(), True, "User identifier.", ("customer_id", "customerid", "client_id", "lead_id", "id")),
        Column("age", pa.int32(), False, "Age in years, 0-120."),
        Column("gender", pa.string(), False, "Free text; the profile family maps it to a fixed vocabulary."),
        Column("premium", pa.bool_(), False, "Paying/premium member (true/false, 1/0, yes/no)."),
        Column("loyalty_status", pa.string(), False, "bronze, silver, gold, platinum."),
        Column("device", pa.string(), False, "Main device: mobile, desktop, tablet."),
        Column("location", pa.string(), False, "City."),
        Column("education", pa.string(), False, "high_school, bachelor, master, phd."),
        Column("signup_date", pa.date32(), False, "Date the user signed up (not in the future).", ("created_at", "signup")),
    ),
)

EVENTS = RawTable(
    name="events",
    key="event_id",
    optional=False,
    derive_key=True,
    description="One row per user event; lands as daily partitions by timestamp (UTC).",
    defaults_when_absent={"event_type": "purchase"},
    columns=(
        Column("event_id", pa.string(), True, "Unique event id; derived from file and row when the file has none.", ("id", "transaction_id", "invoice_id", "invoiceno")),
        Column("user_id", pa.string(), True, "User the event belongs to.", USER_ALIASES),
        Column("event_type", pa.string(), True, f"One of: {', '.join(EVENT_TYPES)}. Absent column: every row is a purchase.", ("type", "event")),
        Column("timestamp", TS, True, "When it happened, UTC (ISO 8601; an offset is converted to UTC).", ("ts", "event_time", "event_timestamp", "date", "datetime", "invoice_date", "invoicedate", "created_at")),
        Column("session_id", pa.string(), False, "Web/app session."),
        Column("channel", pa.string(), False, "web, app, email, sms, chat."),
        Column("amount", pa.float64(), False, "Money amount (purchases), 0 to 1e12 (MAX_MONEY).", MONEY_ALIASES),
        Column("listing_id", pa.string(), False, "Listing the event is about (listing_* and impression events)."),
        Column("conversation_id", pa.string(), False, "Conversation (message_in/message_out)."),
        Column("campaign_id", pa.string(), False, "Campaign (campaign_* events)."),
        Column("message_text", pa.string(), False, "Message text (message_in/message_out)."),
    ),
)

REVIEWS = RawTable(
    name="reviews",
    key="review_id",
    optional=True,
    derive_key=True,
    description="Product/service reviews written by users.",
    columns=(
        Column("review_id", pa.string(), True, "Unique review id; derived from file and row when absent."),
        Column("user_id", pa.string(), True, "Author.", ("customer_id", "customerid")),
        Column("rating", pa.int32(), True, "Stars, integer 1-5.", ("stars", "score")),
        Column("text", pa.string(), False, "Review text; may be empty.", ("review", "review_text", "body")),
        Column("timestamp", TS, True, "When it was written, UTC.", ("ts", "date", "created_at")),
    ),
)

LISTINGS = RawTable(
    name="listings",
    key="listing_id",
    optional=True,
    description="Listings (items/ads) users view, contact and favourite.",
    columns=(
        Column("listing_id", pa.string(), True, "Unique listing id.", ("id",)),
        Column("category_id", pa.string(), False, "Category.", ("category",)),
        Column("city", pa.string(), False, "City of the listing."),
        Column("price", pa.float64(), False, "Asking price, 0 to 1e12 (MAX_MONEY)."),
        Column("is_premium", pa.bool_(), False, "Premium (promoted) listing."),
        Column("image_count", pa.int32(), False, "Number of images, 0 to 10,000 (MAX_COUNT)."),
    ),
)

RAW_TABLES: dict[str, RawTable] = {t.name: t for t in (CUSTOMERS, EVENTS, REVIEWS, LISTINGS)}

# Accepted file formats, by suffix. A table may also be a folder of such files (events/).
FILE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".csv.gz")
