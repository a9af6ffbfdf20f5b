"""Profile family: one-hot matching (case, whitespace, unknown, missing), fixed columns, a slow reference."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.registry import load_registry
from feature_platform_tests.features.helpers import snapshot
from feature_platform_tests.helpers import examples

D = dt.date(2025, 3, 31)
REGISTRY = load_registry()
ONE_HOT: list[str] = list(REGISTRY.family("profile").config["one_hot"])
VOCABULARIES = REGISTRY.vocabularies


def one_hot_columns(attr: str) -> list[str]:
    return [f"{attr}_{v}" for v in VOCABULARIES[attr]] + [f"{attr}__other", f"{attr}__missing"]


def hot(row: Mapping[str, Any], attr: str) -> list[str]:
    return [c for c in one_hot_columns(attr) if row[c] == 1]


@pytest.mark.parametrize(
    ("attr", "value", "column"),
    [
        ("location", "lisbon", "location_lisbon"),
        ("location", "Lisbon ", "location_lisbon"),
        ("location", "  LISBON\t", "location_lisbon"),
        ("location", "\nWarsaw\r\n", "location_warsaw"),
        ("location", "Lyon", "location__other"),
        ("location", "Lis bon", "location__other"),  # inner whitespace is part of the value
        ("location", None, "location__missing"),
        ("location", "", "location__missing"),
        ("location", " \t ", "location__missing"),
        ("gender", "Non_Binary", "gender_non_binary"),
        ("gender", "non-binary", "gender__other"),  # only case and outer whitespace are normalised
        ("loyalty_status", "GOLD", "loyalty_status_gold"),
        ("device", "Tablet", "device_tablet"),
        ("education", " PhD", "education_phd"),
        ("education", "high school", "education__other"),
    ],
)
def test_one_hot_matching(attr, value, column):
    row = snapshot("profile", D, users=[{"user_id": "u1", attr: value}])["u1"]
    assert hot(row, attr) == [column]


def test_age_and_premium_pass_through_and_may_be_null():
    rows = snapshot("profile", D, users=[
        {"user_id": "a", "age": 34, "premium": True},
        {"user_id": "b", "age": 0, "premium": False},
        {"user_id": "c"},
    ])
    assert [(rows[u]["age"], rows[u]["premium"]) for u in "abc"] == [(34, True), (0, False), (None, None)]


def test_columns_come_from_the_registry_not_the_data():
    """A partition where nobody has a known value still has every vocabulary column."""
    rows = snapshot("profile", D, users=[{"user_id": "u1", "location": "Lyon"}, {"user_id": "u2"}])
    expected = {"snapshot_date", "user_id", "age", "premium", *(c for a in ONE_HOT for c in one_hot_columns(a))}
    for row in rows.values():
        assert set(row) == expected
    assert sum(row["location_lisbon"] for row in rows.values()) == 0


def test_every_known_user_gets_a_row():
    users = [{"user_id": "early", "signup_date": dt.date(2025, 1, 1)}, {"user_id": "late", "signup_date": dt.date(2025, 4, 1)},
             {"user_id": "unknown_signup"}]
    assert sorted(snapshot("profile", D, users=users)) == ["early", "unknown_signup"]


# --- reference ------------------------------------------------------------------------------

def reference(users: list[dict]) -> dict[str, dict]:
    out = {}
    for user in users:
        row: dict[str, Any] = {"age": user.get("age"), "premium": user.get("premium")}
        for attr in ONE_HOT:
            raw = user.get(attr)
            value = raw.strip().lower() if raw is not None else ""
            for word in VOCABULARIES[attr]:
                row[f"{attr}_{word}"] = int(value == word)
            row[f"{attr}__other"] = int(value != "" and value not in VOCABULARIES[attr])
            row[f"{attr}__missing"] = int(value == "")
        out[user["user_id"]] = row
    return out


def _variant(word: str, draw: st.DrawFn) -> str:
    """``word`` with random letter case and random outer whitespace."""
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    cased = "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))
    pad = st.text(alphabet=" \t\n\r\f\v", max_size=3)
    return draw(pad) + cased + draw(pad)


@st.composite
def attribute_values(draw: st.DrawFn, attr: str) -> str | None:
    kind = draw(st.sampled_from(["known", "known", "unknown", "blank", "none"]))
    if kind == "known":
        return _variant(draw(st.sampled_from(VOCABULARIES[attr])), draw)
    if kind == "unknown":
        # another attribute's word, a near miss, or random text
        word = draw(st.one_of(
            st.sampled_from([w for a in ONE_HOT if a != attr for w in VOCABULARIES[a]]),
            st.sampled_from(VOCABULARIES[attr]).map(lambda w: w + "x"),
            st.text(alphabet="abcdefghij_- ", min_size=1, max_size=8),
        ))
        return _variant(word, draw)
    if kind == "blank":
        return draw(st.text(alphabet=" \t\n", max_size=3))
    return None


@st.composite
def profiles(draw: st.DrawFn) -> list[dict]:
    n = draw(st.integers(0, 6))
    users = []
    for i in range(n):
        user: dict[str, Any] = {
            "user_id": f"u{i}",
            "age": draw(st.none() | st.integers(0, 120)),
            "premium": draw(st.none() | st.booleans()),
        }
        for attr in ONE_HOT:
            user[attr] = draw(attribute_values(attr))
        users.append(user)
    return users


@settings(max_examples=examples(80))
@given(users=profiles())
def test_matches_reference_and_exactly_one_column_is_hot(users):
    fast = snapshot("profile", D, users=users)
    slow = reference(users)
    assert sorted(fast) == sorted(slow)
    for user_id, expected in slow.items():
        got = fast[user_id]
        assert {k: got[k] for k in expected} == expected, user_id
        for attr in ONE_HOT:
            assert sum(got[c] for c in one_hot_columns(attr)) == 1, (user_id, attr)
