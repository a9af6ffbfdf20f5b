"""An online version records the family versions of the snapshot files it was pushed from; a push of an older
release (no record) reads as unrecorded."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from feature_platform.online.vectors import VersionInfo
from feature_platform_tests.online.conftest import standalone_store
from feature_platform_tests.online.test_store import D1, D2, marked


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.redis)])
def online_store(request, tmp_path):
    yield from standalone_store(request.param, request, tmp_path)


def test_a_push_records_its_family_versions_with_the_version(online_store):
    versions = {"activity": "1.1.0", "engagement": None, "derived": "1.0.0"}  # None: that file recorded none
    result = online_store.push(marked(1), D1, family_versions=versions)
    assert result.served
    served = online_store.current()
    assert served is not None and served.family_versions == versions
    assert online_store.status()["family_versions"] == versions
    raw = online_store.client.hget(online_store.version_key(result.version), "family_versions")
    assert json.loads(raw) == versions


def test_a_push_without_versions_reads_as_unrecorded(online_store):
    online_store.push(marked(1), D1, family_versions={"activity": "1.1.0"})
    result = online_store.push(marked(2), D2)  # as an older release pushed
    assert online_store.version_info(result.version).family_versions is None
    assert online_store.current().version == result.version


@pytest.mark.parametrize(("raw", "expected"), [
    ({}, None),
    ({"family_versions": '{"activity": "1.1.0", "lead": null}'}, {"activity": "1.1.0", "lead": None}),
])
def test_version_metadata_parses_the_record(raw, expected):
    info = VersionInfo.from_hash("v", {"snapshot_date": "2025-03-01", "computed_at": "2025-03-02T00:00:00",
                                       "layout": "[]", **raw})
    assert info.family_versions == expected and info.snapshot_date == dt.date(2025, 3, 1)
