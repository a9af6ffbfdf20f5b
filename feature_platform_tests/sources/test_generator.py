"""The sample-data generator: contract (schemas, ids, window), determinism, CSV output, and the signal
the downstream churn/contact models rely on (checked against the evaluation-only truth file)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from feature_platform.sources.generator import GenerationSummary, GeneratorConfig, generate
from feature_platform.sources.schema import CUSTOMERS, EVENT_TYPES, EVENTS, LISTINGS, REVIEWS

END = dt.date(2025, 6, 30)
TABLES = {"customers": CUSTOMERS, "events": EVENTS, "reviews": REVIEWS, "listings": LISTINGS}
SMALL = GeneratorConfig(users=300, days=40, end_date=END, seed=7)
# Signal tests need enough users for stable rates; they run on two seeds so margins are not tuned to one.
SIGNAL_SEEDS = (7, 2024)
POSITIVE_WORDS = {"great", "love", "excellent", "fantastic", "perfect", "happy", "amazing", "wonderful", "superb", "helpful"}
NEGATIVE_WORDS = {"terrible", "worst", "awful", "disappointed", "horrible", "broken", "rude", "poor", "waste", "overpriced"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    return generate(SMALL, tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module", params=SIGNAL_SEEDS, ids=lambda s: f"seed{s}")
def signal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    config = GeneratorConfig(users=2500, days=60, end_date=END, seed=request.param)
    out = generate(config, tmp_path_factory.mktemp(f"signal{request.param}")).out_dir
    frames = {name: pq.read_table(out / f"{name}.parquet").to_pandas() for name in TABLES}
    frames["truth"] = pq.read_table(out / "_truth" / "users.parquet").to_pandas()
    frames["start"] = pd.Timestamp(config.start_date)
    return frames


def _files(out: Path, ext: str) -> dict[str, Path]:
    files = {name: out / f"{name}.{ext}" for name in TABLES}
    files["truth"] = out / "_truth" / "users.parquet"
    return files


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(small: GenerationSummary, tmp_path: Path) -> None:
    again = generate(SMALL, tmp_path)
    for name, path in _files(small.out_dir, "parquet").items():
        assert path.read_bytes() == _files(again.out_dir, "parquet")[name].read_bytes(), name
    assert again.rows == small.rows


def test_other_seed_gives_other_data(small: GenerationSummary, tmp_path: Path) -> None:
    other = generate(GeneratorConfig(users=300, days=40, end_date=END, seed=8), tmp_path)
    for name in ("customers", "events", "reviews", "listings"):
        assert (small.out_dir / f"{name}.parquet").read_bytes() != (other.out_dir / f"{name}.parquet").read_bytes(), name


def test_no_temp_files_left(small: GenerationSummary) -> None:
    leftovers = [p.name for p in small.out_dir.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []


# --- the raw contract ---------------------------------------------------------------------------


def test_schemas_match_contract(small: GenerationSummary) -> None:
    for name, table in TABLES.items():
        schema = pq.read_schema(small.out_dir / f"{name}.parquet")
        assert schema.remove_metadata() == table.arrow_schema, name
        assert small.rows[name] == pq.read_metadata(small.out_dir / f"{name}.parquet").num_rows


def test_events_respect_contract(small: GenerationSummary) -> None:
    ev = pq.read_table(small.out_dir / "events.parquet").to_pandas()
    listings = pq.read_table(small.out_dir / "listings.parquet").to_pandas()
    customers = pq.read_table(small.out_dir / "customers.parquet").to_pandas()
    window_start = pd.Timestamp(SMALL.start_date)
    window_end = pd.Timestamp(END + dt.timedelta(days=1))

    assert set(ev.event_type) <= set(EVENT_TYPES)
    assert {"page_view", "purchase", "listing_viewed", "message_in", "campaign_sent"} <= set(ev.event_type)
    assert ev.timestamp.min() >= window_start and ev.timestamp.max() < window_end
    assert ev.event_id.is_unique and ev.event_id.str.fullmatch(r"e\d{10}").all()
    assert set(ev.user_id) <= set(customers.user_id)
    purchase = ev.event_type == "purchase"
    assert ev.amount[purchase].notna().all() and (ev.amount[purchase] >= 0).all()
    assert ev.amount[~purchase].isna().all()
    listing_event = ev.event_type.str.startswith("listing_") | (ev.event_type == "impression")
    assert ev.listing_id[listing_event].notna().all() and ev.listing_id[~listing_event].isna().all()
    assert set(ev.listing_id.dropna()) <= set(listings.listing_id)
    message = ev.event_type.str.startswith("message_")
    assert ev.conversation_id[message].notna().all() and ev.message_text[message].str.len().gt(0).all()
    assert ev.conversation_id[~message].isna().all() and ev.message_text[~message].isna().all()
    campaign = ev.event_type.str.startswith("campaign_")
    assert ev.campaign_id[campaign].str.fullmatch(r"cmp_\d{4}_\d{2}").all() and ev.campaign_id[~campaign].isna().all()
    assert set(ev.channel) <= {"web", "app", "email", "sms", "chat"}


def test_sessions_are_short_and_single_user(small: GenerationSummary) -> None:
    ev = pq.read_table(small.out_dir / "events.parquet", columns=["user_id", "session_id", "timestamp"]).to_pandas()
    sessions = ev.dropna(subset=["session_id"]).groupby("session_id").agg(users=("user_id", "nunique"), first=("timestamp", "min"), last=("timestamp", "max"))
    assert (sessions.users == 1).all()
    minutes = (sessions["last"] - sessions["first"]).dt.total_seconds() / 60
    assert minutes.max() < 45 and 1 < minutes.median() < 15


def test_reviews_customers_listings_respect_contract(small: GenerationSummary) -> None:
    reviews = pq.read_table(small.out_dir / "reviews.parquet").to_pandas()
    assert reviews.review_id.is_unique and reviews.rating.between(1, 5).all()
    assert reviews.timestamp.max() < pd.Timestamp(END + dt.timedelta(days=1))
    customers = pq.read_table(small.out_dir / "customers.parquet").to_pandas()
    assert customers.user_id.is_unique
    assert (customers.signup_date.dropna() <= END).all()
    listings = pq.read_table(small.out_dir / "listings.parquet").to_pandas()
    assert len(listings) >= 50 and listings.listing_id.is_unique and (listings.price >= 0).all()
    assert listings.image_count.between(0, 20).all() and listings.category_id.nunique() == 8


def test_csv_output_has_same_rows(small: GenerationSummary, tmp_path: Path) -> None:
    csv = generate(GeneratorConfig(users=300, days=40, end_date=END, seed=7, file_format="csv"), tmp_path)
    assert csv.rows == small.rows
    for name, table in TABLES.items():
        data = pacsv.read_csv(tmp_path / f"{name}.csv")
        assert data.column_names == table.column_names, name
        assert data.num_rows == small.rows[name], name


@pytest.mark.parametrize("bad", [{"file_format": "json"}, {"users": 0}, {"days": 0}])
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(end_date=END, **bad)  # type: ignore[arg-type]


def test_tiny_window_without_campaign_day(tmp_path: Path) -> None:
    summary = generate(GeneratorConfig(users=5, days=2, end_date=dt.date(2025, 6, 29)), tmp_path)  # Sat-Sun
    assert summary.rows["customers"] == 5 and summary.start_date == dt.date(2025, 6, 28)


# --- signal --------------------------------------------------------------------------------------


def _daily_counts(ev: pd.DataFrame, truth: pd.DataFrame, start: pd.Timestamp, days: int) -> np.ndarray:
    """(users in truth order, days) event counts."""
    row = pd.Series(np.arange(len(truth)), index=truth.user_id)[ev.user_id].to_numpy()
    day = ((ev.timestamp - start) // pd.Timedelta(days=1)).to_numpy()
    counts = np.zeros((len(truth), days))
    np.add.at(counts, (row, day), 1)
    return counts


def test_churners_slow_down_before_churning(signal: dict[str, pd.DataFrame]) -> None:
    truth, ev, start = signal["truth"], signal["events"], signal["start"]
    counts = _daily_counts(ev[ev.event_type.isin(["page_view", "login"])], truth, start, 60)
    churn_day = ((pd.to_datetime(truth.churn_date) - start) // pd.Timedelta(days=1)).to_numpy()
    stayed = ~truth.churned.to_numpy()
    late_churners = np.nonzero(truth.churned.to_numpy() & (churn_day >= 28))[0]
    assert len(late_churners) > 50
    before, same_days_stayers, early = [], [], []
    for u in late_churners:  # loop over ~hundreds of users in a test is fine
        d = int(churn_day[u])
        before.append(counts[u, d - 14 : d].mean())
        early.append(counts[u, :14].mean())
        same_days_stayers.append(counts[stayed, d - 14 : d].mean())
    assert np.mean(before) < 0.5 * np.mean(same_days_stayers)
    assert np.mean(before) < 0.7 * np.mean(early)


def test_churners_complain_and_ignore_campaigns(signal: dict[str, pd.DataFrame]) -> None:
    truth, ev = signal["truth"], signal["events"]
    churned = ev.user_id.isin(truth.user_id[truth.churned])
    active_days = ev.groupby("user_id").timestamp.apply(lambda t: t.dt.normalize().nunique())
    complaints = ev[ev.event_type.isin(["support_ticket", "discount_request"])].groupby("user_id").size()
    rate = (complaints.reindex(active_days.index, fill_value=0) / active_days).rename("rate")
    is_churner = rate.index.isin(truth.user_id[truth.churned])
    assert rate[is_churner].mean() > 1.5 * rate[~is_churner].mean()

    sent = ev[(ev.event_type == "campaign_sent")]
    opened = ev[(ev.event_type == "campaign_opened")]
    open_rate_churned = (opened.user_id.isin(truth.user_id[truth.churned])).sum() / sent.user_id.isin(truth.user_id[truth.churned]).sum()
    open_rate_stayed = (~opened.user_id.isin(truth.user_id[truth.churned])).sum() / (~sent.user_id.isin(truth.user_id[truth.churned])).sum()
    assert open_rate_churned < 0.75 * open_rate_stayed
    negative = ev.message_text.str.contains("disappointed|worst|terrible|awful|rude", na=False) & (ev.event_type == "message_in")
    assert negative[churned].sum() / max(churned.sum(), 1) > 2 * negative[~churned].sum() / (~churned).sum()


def test_lapsing_users_churn_most(signal: dict[str, pd.DataFrame]) -> None:
    rate = signal["truth"].groupby("segment").churned.mean()
    assert rate["lapsing"] > 0.6 and rate["loyal"] < 0.05 and rate["lapsing"] > rate["casual"] > rate["loyal"]
    assert 0.12 < signal["truth"].churned.mean() < 0.40


def test_contacts_follow_category_preference(signal: dict[str, pd.DataFrame]) -> None:
    ev, truth, listings = signal["events"], signal["truth"], signal["listings"]
    views = ev[ev.event_type.isin(["listing_viewed", "listing_contact_clicked"])][["user_id", "event_type", "listing_id", "session_id"]]
    views = views.merge(listings[["listing_id", "category_id"]], on="listing_id").merge(truth[["user_id", "top_category"]], on="user_id")
    views["preferred"] = views.category_id == views.top_category
    per_group = views.groupby(["preferred", "event_type"]).size().unstack()
    contact_rate = per_group["listing_contact_clicked"] / per_group["listing_viewed"]
    assert contact_rate[True] > 1.5 * contact_rate[False]
    overall = per_group["listing_contact_clicked"].sum() / per_group["listing_viewed"].sum()
    assert 0.05 <= overall <= 0.15
    assert views.preferred[views.event_type == "listing_viewed"].mean() > 0.4  # browsing is biased too


def test_review_wording_agrees_with_rating(signal: dict[str, pd.DataFrame]) -> None:
    reviews = signal["reviews"].dropna(subset=["text"])
    words = reviews.text.str.lower().map(lambda t: re.findall(r"[a-z]+", t))
    score = words.map(lambda ws: sum(w in POSITIVE_WORDS for w in ws) - sum(w in NEGATIVE_WORDS for w in ws))
    by_rating = score.groupby(reviews.rating).mean()
    assert by_rating[5] > 0.5 and by_rating[1] < -0.5 and by_rating[5] > by_rating[3] > by_rating[1]
    assert np.corrcoef(score, reviews.rating)[0, 1] > 0.6
    assert 0.25 < len(signal["reviews"]) / len(signal["customers"]) < 1.0  # ~0.3-0.6 per user over 60 days


def test_events_cluster_around_preferred_hour(signal: dict[str, pd.DataFrame]) -> None:
    ev, truth = signal["events"], signal["truth"]
    views = ev[ev.event_type == "page_view"].merge(truth[["user_id", "preferred_hour"]], on="user_id")
    hour = views.timestamp.dt.hour + views.timestamp.dt.minute / 60
    gap = np.abs(hour - views.preferred_hour)
    circular = np.minimum(gap, 24 - gap)  # uniform hours would give a mean of 6
    per_user = circular.groupby(views.user_id).mean()
    assert per_user.median() < 2.5


def test_weekend_factor_shapes_the_week(signal: dict[str, pd.DataFrame]) -> None:
    ev, truth = signal["events"], signal["truth"]
    logins = ev[ev.event_type.isin(["page_view", "login"])].merge(truth[["user_id", "weekend_factor"]], on="user_id")
    weekend = logins.timestamp.dt.day_of_week >= 5
    # 60 days ending on a Monday: 17 weekend days, 43 weekdays.
    share = weekend.groupby(logins.weekend_factor > 1.3).mean()
    low_share = weekend[logins.weekend_factor < 0.77].mean()
    assert share[True] > 1.3 * low_share
