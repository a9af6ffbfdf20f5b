"""Decoding replies into vectors: checked against a plain-dict reference, and Values read as the dict they stand for."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.online import codec
from feature_platform.online.vectors import OVERLAY_AS_OF, Values, VersionInfo, decode_replies

LAYOUT = ("a", "b", "c", "d")
INFO = VersionInfo("2025-03-18.abc", dt.date(2025, 3, 18), dt.datetime(2025, 3, 19), LAYOUT)
AS_OF = "2025-03-19T08:00:00"


def test_values_read_as_the_dict_they_stand_for():
    values = Values(("x", "y", "z"), {"x": 0, "y": 1, "z": 2}, [1, None, {"k": 2.5}])
    same = {"x": 1, "y": None, "z": {"k": 2.5}}
    assert values == same and same == values and dict(values) == same
    assert values["x"] == 1 and values["y"] is None and values.get("nope", 7) == 7 and values.get("y", 7) is None
    assert "z" in values and "nope" not in values and len(values) == 3 and list(values) == ["x", "y", "z"]
    assert list(values.items()) == list(same.items()) and list(values.values()) == list(same.values())
    assert ("x", 1) in values.items() and values.keys() == same.keys()
    assert values != {"x": 1, "y": None} and repr(values) == f"Values({same!r})"
    with pytest.raises(KeyError, match="nope"):
        values["nope"]


def reference(features, blob_values, overlay):
    """What decode_replies must give, built the obvious way: a dict per user."""
    wanted = list(dict.fromkeys(features)) if features is not None else list(LAYOUT)
    full = dict(zip(LAYOUT, blob_values, strict=True))
    vector = {name: full.get(name) for name in wanted}
    updated = [name for name in wanted if name in overlay and name in LAYOUT]
    for name in updated:
        vector[name] = overlay[name]
    return vector, tuple(updated)


values_ = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3))


@given(features=st.one_of(st.none(), st.lists(st.sampled_from([*LAYOUT, "unknown", "other"]), min_size=1)),
       blob_values=st.lists(values_, min_size=len(LAYOUT), max_size=len(LAYOUT)),
       overlay=st.dictionaries(st.sampled_from([*LAYOUT, "gone"]), values_, max_size=3),
       present=st.booleans())
def test_decoded_vectors_match_the_dict_reference(features, blob_values, overlay, present):
    replies = [codec.encode(blob_values) if present else None,
               {**{name.encode(): codec.encode([value]) for name, value in overlay.items()},
                **({OVERLAY_AS_OF.encode(): AS_OF.encode()} if overlay else {})},
               codec.encode(blob_values), {}]
    out = decode_replies(INFO, ["u1", "u2"], replies, features)
    plain, _ = reference(features, blob_values, {})
    assert out["u2"].values == plain and list(out["u2"].values) == list(plain) and out["u2"].updated_at is None
    if not present:
        assert out["u1"] is None
        return
    want, updated = reference(features, blob_values, overlay)
    assert out["u1"].values == want and list(out["u1"].values.items()) == list(want.items())
    assert out["u1"].updated_fields == updated
    assert out["u1"].updated_at == (dt.datetime.fromisoformat(AS_OF) if updated else None)


def test_a_vector_of_another_width_than_its_layout_is_an_error():
    with pytest.raises(ValueError, match="holds 3 values; version 2025-03-18.abc's layout has 4"):
        decode_replies(INFO, ["u1"], [codec.encode([1, 2, 3]), {}], None)
