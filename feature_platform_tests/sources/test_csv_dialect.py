"""Sniffing a text file's separator, and reading space-aligned columns as CSV."""

from __future__ import annotations

import gzip

import pyarrow.csv as pacsv
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.sources.csv_dialect import WHITESPACE, WhitespaceAsCommas, sniff


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("user_id,date,amount\nu1,2025-01-01,3.5\n", ",", id="comma"),
    pytest.param("user_id\tdate\tamount\nu1\t2025-01-01\t3.5\n", "\t", id="tab"),
    pytest.param("user_id;date;amount\nu1;01.02.2025;3,5\n", ";", id="semicolon-with-decimal-commas"),
    pytest.param("user_id|date|amount\nu1|2025-01-01|3.5\n", "|", id="pipe"),
    pytest.param("customer_id    date  n_items dollar_value\n00001 19970101 1  11.77\n", WHITESPACE, id="spaces"),
    pytest.param('user_id,text\nu1,"hello, world"\nu2,"a, b, c"\n', ",", id="quoted-commas-count-once"),
    pytest.param("user_id\nu1\nu2\n", ",", id="one-column"),
    pytest.param("", ",", id="empty"),
])
def test_sniff(tmp_path, text, expected):
    path = tmp_path / "events.csv"
    path.write_text(text)
    assert sniff(path) == expected


def test_a_gzipped_file_is_sniffed_through_the_compression(tmp_path):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(b"a\tb\n1\t2\n"))
    assert sniff(path) == "\t"


def test_space_aligned_columns_read_as_the_fields_of_each_line(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("customer_id    date  n_items dollar_value\n00001 19970101 1  11.77\n\n  00002\t19970112 5 77.00  \n")
    table = pacsv.read_csv(WhitespaceAsCommas(path), convert_options=pacsv.ConvertOptions(
        column_types={"customer_id": "string", "date": "string", "n_items": "string", "dollar_value": "string"}))
    assert table.to_pylist() == [
        {"customer_id": "00001", "date": "19970101", "n_items": "1", "dollar_value": "11.77"},
        {"customer_id": "00002", "date": "19970112", "n_items": "5", "dollar_value": "77.00"},
    ]


@given(st.lists(st.lists(st.text(alphabet="abcxyz0189.-", min_size=1, max_size=6), min_size=2, max_size=2),
                min_size=1, max_size=400),
       st.sampled_from([" ", "  ", "\t", " \t "]))
def test_whitespace_stream_equals_splitting_each_line(tmp_path_factory, rows, gap):
    """Against the obvious reference, whatever the read sizes: every line's fields joined by commas."""
    path = tmp_path_factory.mktemp("ws") / "events.csv"
    path.write_text("".join(gap.join(row) + "\n" for row in rows))
    stream = WhitespaceAsCommas(path)
    got = b""
    while chunk := stream.read(7):
        got += chunk
    assert got.decode() == "".join(",".join(row) + "\n" for row in rows)
