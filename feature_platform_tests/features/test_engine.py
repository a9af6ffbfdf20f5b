"""The engine around the families: tiles that see one day, blocks of users, the offline store's tiles."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.features.engine import (
    MemoryTiles,
    MissingTilesError,
    StoreTiles,
    compute_snapshots,
    has_tiles,
    tiles_from_tables,
    write_tiles,
)
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
from feature_platform.sources.generator import GeneratorConfig, generate

REGISTRY = load_registry()
END = dt.date(2025, 3, 10)
DAYS = [END - dt.timedelta(days=k) for k in range(19, -1, -1)]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """40 users x 20 days of generated raw tables."""
    root = tmp_path_factory.mktemp("engine")
    generate(GeneratorConfig(users=40, days=20, end_date=END, seed=2), root)
    return {name: pq.read_table(root / f"{name}.parquet") for name in ("events", "customers", "reviews", "listings")}


@pytest.mark.parametrize("name", ["activity", "lead", "engagement", "affinity", "lifetime"])
def test_a_tile_is_the_same_computed_alone_or_in_a_batch(raw, name):
    family = REGISTRY.family(name)
    batch = tiles_from_tables(family, DAYS, raw["events"], raw["reviews"], raw["listings"])
    for day in (DAYS[0], DAYS[9], END):
        alone = tiles_from_tables(family, [day], raw["events"], raw["reviews"], raw["listings"])
        assert alone[day].equals(batch[day]) and batch[day].num_rows > 0, day


@pytest.mark.parametrize("name", ["activity", "lead", "engagement", "affinity", "lifetime", "profile"])
@pytest.mark.parametrize(("block_users", "workers"), [(7, 2), (25, 2), (7, 1)])  # chunked, in step, one thread
def test_blocks_of_users_give_the_same_snapshots_as_one_block(raw, name, block_users, workers):
    family = REGISTRY.family(name)
    tiles = MemoryTiles(tiles_from_tables(family, DAYS, raw["events"], raw["reviews"], raw["listings"])) \
        if has_tiles(family) else None
    days = DAYS[-3:]
    whole = list(compute_snapshots(REGISTRY, family, raw["customers"], tiles, days, workers=1))
    blocks = list(compute_snapshots(REGISTRY, family, raw["customers"], tiles, days, block_users=block_users,
                                    workers=workers))
    assert [(d, n) for d, _, n in blocks] == [(d, n) for d, _, n in whole]
    for (_, a, _), (_, b, _) in zip(whole, blocks, strict=True):
        assert a.equals(b)


def test_snapshots_refuse_days_with_raw_events_but_no_tiles(raw, tmp_path):
    store = OfflineStore(tmp_path)
    store.write("raw/customers", raw["customers"])
    store.write("raw/listings", raw["listings"])
    by_day: dict[dt.date, list[dict]] = {d: [] for d in DAYS}
    for row in raw["events"].to_pylist():
        by_day.setdefault(row["timestamp"].date(), []).append(row)
    for day in DAYS:
        store.write("raw/events", pa.Table.from_pylist(by_day[day], raw["events"].schema), partition=day.isoformat())
    family = REGISTRY.family("lead")
    list(write_tiles(store, family, DAYS[5:]))  # the first five days are never tiled
    with pytest.raises(MissingTilesError, match=rf"tiles/lead has no tiles for {DAYS[0]} \.\. {DAYS[4]} \(5 days\)"):
        list(compute_snapshots(REGISTRY, family, raw["customers"], StoreTiles(store), [END]))
    list(write_tiles(store, family, DAYS[:5]))
    [(_, snapshot, known)] = compute_snapshots(REGISTRY, family, raw["customers"], StoreTiles(store), [END])
    assert snapshot.num_rows == known == raw["customers"].num_rows
