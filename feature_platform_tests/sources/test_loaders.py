"""Finding and reading raw files: formats, folders, column aliases, and errors a person can act on."""

from __future__ import annotations

import gzip

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.sources import loaders
from feature_platform.sources.loaders import SourceError
from feature_platform.sources.schema import CUSTOMERS, EVENTS, REVIEWS


def test_reads_csv_parquet_gzip_and_a_folder_of_files(tmp_path):
    (tmp_path / "a").mkdir()
    pd.DataFrame({"user_id": ["u1"], "age": [3]}).to_parquet(tmp_path / "a" / "customers.parquet")
    assert loaders.load(tmp_path / "a", CUSTOMERS).data.num_rows == 1

    (tmp_path / "b").mkdir()
    with gzip.open(tmp_path / "b" / "customers.csv.gz", "wt") as fh:
        fh.write("user_id\nu1\nu2\n")
    assert loaders.load(tmp_path / "b", CUSTOMERS).data.num_rows == 2

    events = tmp_path / "c" / "events"
    events.mkdir(parents=True)
    (events / "2025-01.csv").write_text("user_id,timestamp\nu1,2025-01-01\n")
    pd.DataFrame({"user_id": [7], "timestamp": ["2025-02-01"]}).to_parquet(events / "2025-02.parquet")
    loaded = loaders.load(tmp_path / "c", EVENTS)
    assert loaded.data.column("user_id").to_pylist() == ["u1", "7"]  # int vs text: read as text
    assert loaded.data.column(loaders.SOURCE_FILE).to_pylist() == ["events/2025-01.csv", "events/2025-02.parquet"]


def test_absent_optional_table_is_none(tmp_path):
    assert loaders.load(tmp_path, REVIEWS) is None


def test_transactions_export_is_understood_through_aliases(tmp_path):
    (tmp_path / "events.csv").write_text("CustomerID,InvoiceDate,Revenue\n12345.0,2025-01-01 10:00,9.5\n")
    loaded = loaders.load(tmp_path, EVENTS)
    assert set(loaded.data.column_names) >= {"user_id", "timestamp", "amount"}
    assert "event_type" in loaded.absent_columns and "event_id" in loaded.absent_columns


def test_float_ids_from_pandas_become_integers(tmp_path):
    pq.write_table(pa.table({"customer_id": [12345.0, None], "date": ["2025-01-01", "2025-01-02"]}), tmp_path / "events.parquet")
    assert loaders.load(tmp_path, EVENTS).data.column("user_id").to_pylist() == [12345, None]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"events.csv": "user_id,timestamp\n1,2,3\n"}, "events.csv: cannot be read as CSV"),
        ({"events.parquet": "this is not parquet"}, "events.parquet: cannot be read as Parquet"),
        ({"events.csv": "user_id,timestamp\n", "events.parquet": ""}, "more than one input for events"),
        ({"events.csv": "user_id,amount\nu1,3\n"}, "required column(s) timestamp not found"),
        ({"events.csv": "user_id,ts,date\nu1,2025-01-01,2025-01-01\n"}, "all map to 'timestamp'"),
    ],
)
def test_unusable_files_fail_with_a_message_naming_file_and_problem(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loaders.load(tmp_path, EVENTS)


def test_empty_events_folder_is_an_error(tmp_path):
    (tmp_path / "events").mkdir()
    with pytest.raises(SourceError, match="folder has no"):
        loaders.load(tmp_path, EVENTS)
