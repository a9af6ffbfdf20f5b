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


def test_a_1990s_space_aligned_export_reads_with_its_dates_money_and_unused_columns_named(tmp_path):
    """customer id, YYYYMMDD date, number of items, dollar value, columns aligned with spaces."""
    (tmp_path / "events.csv").write_text(
        "customer_id    date  n_items dollar_value\n00001 19970101 1  11.77\n00002 19970112 5  77.00\n")
    loaded = loaders.load(tmp_path, EVENTS)
    assert loaded.data.select(["user_id", "timestamp", "amount"]).to_pylist() == [
        {"user_id": "00001", "timestamp": "1997-01-01T00:00:00.000000", "amount": "11.77"},
        {"user_id": "00002", "timestamp": "1997-01-12T00:00:00.000000", "amount": "77.00"},
    ]
    assert loaded.unmapped == {"events.csv": ["n_items"]}
    assert loaded.time_formats == {"events.csv": {"timestamp": "YYYYMMDD"}}


@pytest.mark.parametrize("money", ["dollar_value", "Dollar Value", "sales", "price_total", "order-total"])
def test_common_money_names_are_the_amount(tmp_path, money):
    (tmp_path / "events.csv").write_text(f"customer,date,{money}\nc1,2025-01-01,3.5\n")
    assert loaders.load(tmp_path, EVENTS).data.column("amount").to_pylist() == ["3.5"]


def test_a_headerless_file_is_refused_with_what_to_add(tmp_path):
    (tmp_path / "events.csv").write_text("00001 19970101 1 11.77\n00002 19970112 5 77.00\n")
    with pytest.raises(SourceError, match=r"the first line \['00001', '19970101', '1', '11.77'\] looks like data.*"
                                          r"add a header line naming the columns \(at least user_id, timestamp\)"):
        loaders.load(tmp_path, EVENTS)


def test_a_missing_user_column_lists_the_files_columns_and_the_names_tried(tmp_path):
    (tmp_path / "events.csv").write_text("shopper,date,amount\nx,2025-01-01,3\n")
    with pytest.raises(SourceError) as error:
        loaders.load(tmp_path, EVENTS)
    assert "required column(s) user_id not found; the columns are ['shopper', 'date', 'amount']" in str(error.value)
    assert "user_id: user_id, customer_id, customerid" in str(error.value)
