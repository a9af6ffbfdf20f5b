"""Profile family, per day: the one-hot select of the product module over the users known at D."""

from __future__ import annotations

import pyarrow as pa

from feature_platform.features.profile import one_hot_sql
from feature_platform_tests.features.reference.base import SnapshotContext


def compute(ctx: SnapshotContext) -> pa.Table:
    select, params = one_hot_sql(list(ctx.config["one_hot"]))
    return ctx.sql(f"SELECT u.user_id, {select}\nFROM users u", **params).to_arrow_table()
