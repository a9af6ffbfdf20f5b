"""How a text file separates its columns: comma, tab, semicolon, pipe or runs of whitespace.

Exports from shops, spreadsheets and old data sets rarely agree: ``;`` with a decimal comma from a
European spreadsheet, tabs from a database dump, space-aligned columns from a 1990s text file. The
separator is sniffed from the first lines (the one that splits every line into the same number of
fields, the most fields winning; failing that, the one that splits most lines like the header, so a
ragged row among the first lines does not hide it), so no flag is needed. Runs of spaces become one
separator; such a file is read through a stream that rewrites each line as comma-separated text.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator
from pathlib import Path

WHITESPACE = "whitespace"
DELIMITERS = (",", "\t", ";", "|")
SAMPLE_BYTES = 64 * 1024
SAMPLE_LINES = 50
_SPACES = re.compile(rb"[ \t]+")


def open_text(path: Path) -> io.BufferedIOBase:
    """The file's bytes, gunzipped when it ends in .gz."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def sniff(path: Path) -> str:
    """The separator of ``path``: one of DELIMITERS, or WHITESPACE. A file of one column reads as ``,``."""
    with open_text(path) as handle:
        head = handle.read(SAMPLE_BYTES)
    lines = [line for line in head.splitlines()[:SAMPLE_LINES] if line.strip()]
    if len(lines) > 1 and len(head) == SAMPLE_BYTES:
        lines = lines[:-1]  # the last line may be cut off
    if not lines:
        return ","
    # Every line splitting into the same number of fields decides; failing that (a ragged row among the
    # first lines), the separator that splits more than half of the lines like the header does.
    return _consistent(lines, share=1.0) or _consistent(lines, share=0.5) or ","


def _consistent(lines: list[bytes], share: float) -> str | None:
    """The separator splitting the header into the most fields (>1) that ``share`` of the lines (all: 1.0,
    else more than it) split into as well; None when there is none."""
    def agrees(counts: list[int]) -> bool:
        same = sum(count == counts[0] for count in counts)
        return same == len(counts) if share >= 1.0 else same > share * len(counts)

    best, best_fields = None, 1
    for delimiter in DELIMITERS:
        counts = [_fields(line, delimiter.encode()) for line in lines]
        if agrees(counts) and counts[0] > best_fields:
            best, best_fields = delimiter, counts[0]
    if best is None:
        counts = [len(_SPACES.split(line.strip())) for line in lines]
        if counts[0] > 1 and agrees(counts):
            return WHITESPACE
    return best


def _fields(line: bytes, delimiter: bytes) -> int:
    """Fields of one line, a quoted field counting once (enough to compare candidates)."""
    return len(re.sub(rb'"[^"]*"', b"", line).split(delimiter))


class WhitespaceAsCommas(io.RawIOBase):
    """A readable stream of ``path`` with each line's runs of spaces and tabs turned into one comma."""

    def __init__(self, path: Path) -> None:
        self._source = open_text(path)
        self._lines: Iterator[bytes] = iter(self._source)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        parts, size = [self._pending], len(self._pending)
        while size < len(buffer):
            line = next(self._lines, None)
            if line is None:
                break
            if stripped := line.strip():
                part = b",".join(_SPACES.split(stripped)) + b"\n"
                parts.append(part)
                size += len(part)
        self._pending = b"".join(parts)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._source.close()
        super().close()
