"""`from feature_platform import FeatureStore`: online vectors and point-in-time data from a notebook."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pandas as pd
import pytest

from feature_platform import FeatureStore
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.serving.conftest import END, REGISTRY


@pytest.fixture
def store(served_data, tmp_path):
    with FeatureStore(copy_tree(served_data, tmp_path / "data")) as feature_store:
        yield feature_store


def test_online_vectors_are_the_served_snapshot_and_an_unknown_user_is_not_found(store):
    snapshot = user_vectors(OfflineStore(store.settings.data_dir), REGISTRY, END).to_pandas().set_index("user_id")
    known = list(snapshot.index[:3])
    frame = store.get_online_features([*known, "nobody"], ["total_events", "monetary_total"])
    assert list(frame.columns) == ["user_id", "found", "snapshot_date", "total_events", "monetary_total"]
    assert frame["user_id"].tolist() == [*known, "nobody"] and frame["found"].tolist() == [True] * 3 + [False]
    assert frame["snapshot_date"].iloc[0] == END
    for _, row in frame.iloc[:3].iterrows():
        assert row["total_events"] == snapshot.loc[row["user_id"], "total_events"]
    assert pd.isna(frame["total_events"].iloc[3])
    every = store.get_online_features(known[:1])  # no names: every online feature
    assert len(every.columns) > 50 and "churn_risk_score" in every.columns
    with pytest.raises(TypeError, match="list of ids"):
        store.get_online_features("u000001")


def test_historical_features_are_point_in_time_with_the_snapshot_used(store):
    user = store.get_online_features(["u000001"], ["total_events"])["user_id"].iloc[0]
    rows = pd.DataFrame({"user_id": [user, user], "timestamp": [dt.datetime(2025, 3, 12, 12), dt.datetime(2025, 3, 13, 0)],
                         "label": [0, 1]})
    frame = store.get_historical_features(rows, ["total_events"])
    assert frame["label"].tolist() == [0, 1]  # the rows come back as given, features appended
    # at 12:00 on the 12th the latest available snapshot is the 11th's; at 00:00 on the 13th, the 12th's
    assert frame["activity_snapshot_date"].tolist() == [dt.date(2025, 3, 11), dt.date(2025, 3, 12)]
    assert not frame["activity_snapshot_missing"].any()
    assert len(store.list_features("activity")) == len(REGISTRY.list_features("activity"))


def test_importing_the_package_stays_cheap():
    code = "import sys, feature_platform; print('pandas' in sys.modules, 'duckdb' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "False"]
