"""User shards: the hash against a plain reference, the split of users, and sharded snapshots combined equal to
the snapshots computed at once, byte for byte once written."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.config import ConfigError, Settings
from feature_platform.features.engine import StoreTiles, compute_snapshots
from feature_platform.features.shards import Shard, combine, fnv1a_64, shard_of, shards
from feature_platform.offline.store import OfflineStore, atomic_write_parquet
from feature_platform.registry import load_registry

REGISTRY = load_registry()


def reference_fnv1a_64(text: str) -> int:
    """FNV-1a 64 as its definition reads: for each byte, xor it in, then multiply by the prime modulo 2**64."""
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x100000001B3) % 2**64
    return value


def test_the_hash_is_fnv1a_64_on_its_published_test_vectors():
    assert fnv1a_64(pa.array(["", "a", "foobar"])).tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C,
                                                                0x85944171F73967E8]


@given(st.lists(st.text(max_size=40), max_size=60), st.integers(0, 5))
def test_the_hash_equals_the_reference_for_any_text_also_sliced_and_chunked(texts, cut):
    expected = [reference_fnv1a_64(t) for t in texts]
    assert fnv1a_64(pa.array(texts, pa.string())).tolist() == expected
    assert fnv1a_64(pa.array(["x"] * cut + texts, pa.large_string()).slice(cut)).tolist() == expected  # an offset
    chunked = pa.chunked_array([texts[:cut], texts[cut:]], pa.string())
    assert fnv1a_64(chunked).tolist() == expected


def test_every_user_is_in_exactly_one_shard_and_shards_are_balanced():
    users = pa.array([f"u{i:06d}" for i in range(100_000)])
    of = shard_of(users, 8)
    assert of.min() == 0 and of.max() == 7
    masks = np.stack([s.mask(users) for s in shards(8)])
    assert (masks.sum(axis=0) == 1).all()  # one shard each
    sizes = masks.sum(axis=1)
    assert abs(sizes - 12_500).max() < 12_500 * 0.03, sizes
    assert shard_of(users, 1).tolist() == [0] * len(users)
    assert of[:3].tolist() == [reference_fnv1a_64(u) % 8 for u in ("u000000", "u000001", "u000002")]


def test_a_shard_outside_its_count_or_a_null_id_is_refused():
    with pytest.raises(ValueError, match="index in 0 .. 3"):
        Shard(4, 4)
    with pytest.raises(ValueError, match="must be >= 1"):
        shard_of(pa.array(["u1"]), 0)
    with pytest.raises(ValueError, match="cannot be null"):
        fnv1a_64(pa.array(["u1", None]))
    with pytest.raises(ValueError, match="no shard snapshots"):
        combine([])


@pytest.mark.parametrize("family", [f.name for f in REGISTRY.families.values() if not f.derived])
def test_each_familys_snapshots_computed_by_shard_and_combined_are_the_unsharded_ones_byte_for_byte(
        sample_world, family, tmp_path):
    store = OfflineStore(sample_world.data)
    customers = store.read_table("raw/customers")
    days = [sample_world.end - dt.timedelta(days=1), sample_world.end]
    spec = REGISTRY.family(family)
    whole = list(compute_snapshots(REGISTRY, spec, customers, StoreTiles(store), days))
    parts = [list(compute_snapshots(REGISTRY, spec, shard.select(customers), StoreTiles(store), days))
             for shard in shards(3)]
    assert all(part[0][1].num_rows > 0 for part in parts)  # three real shards, not one shard and two empty
    for index, (day, snapshot, known) in enumerate(whole):
        pieces = [part[index] for part in parts]
        assert [p[0] for p in pieces] == [day] * 3 and sum(p[2] for p in pieces) == known
        combined = combine([p[1] for p in pieces])
        assert combined.equals(snapshot)
        atomic_write_parquet(snapshot, tmp_path / f"whole-{day}.parquet")
        atomic_write_parquet(combined, tmp_path / f"combined-{day}.parquet")
        assert (tmp_path / f"whole-{day}.parquet").read_bytes() == (tmp_path / f"combined-{day}.parquet").read_bytes()


def test_the_shard_count_comes_from_fp_shards_and_is_bounded():
    assert Settings.from_env({}).shards == 1
    assert Settings.from_env({"FP_SHARDS": "8"}).shards == 8
    for bad in ("0", "1025"):
        with pytest.raises(ConfigError, match=r"FP_SHARDS must be in 1 \.\. 1024, got"):
            Settings.from_env({"FP_SHARDS": bad})


def test_shards_with_few_or_no_users_combine_to_the_unsharded_snapshot(sample_world):
    """More shards than it takes: some hold a user or two, some none, and they still add up."""
    store = OfflineStore(sample_world.data)
    customers = store.read_table("raw/customers")
    spec = REGISTRY.family("activity")
    [(_, whole, known)] = compute_snapshots(REGISTRY, spec, customers, StoreTiles(store), [sample_world.end])
    parts = [next(compute_snapshots(REGISTRY, spec, shard.select(customers), StoreTiles(store), [sample_world.end]))
             for shard in shards(80)]
    assert 0 in {p[1].num_rows for p in parts} and sum(p[2] for p in parts) == known
    assert combine([p[1] for p in parts]).equals(whole)
