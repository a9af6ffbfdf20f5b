"""Date and time formats of text columns beyond ISO 8601, recognised per file and rewritten to ISO.

Validation parses ISO 8601 (``1997-01-01``, ``1997-01-01T10:00:00+02:00``). Real exports also carry
``19970101``, ``01/31/1997``, ``31.01.1997``, ``1997/01/31`` or Unix epochs. A file's format is decided
once, from the first values of the column, for the whole file: day/month order by evidence (a first
field above 12 means day first, a second above 12 month first; with no evidence a ``.`` means day
first, a ``/`` or ``-`` month first, and the choice is reported as assumed). Values of the recognised
format are rewritten to ISO text; any other value is left as it came, so validation refuses it with
its own text. Nothing is guessed row by row: ``03/04/1997`` means the same day in every row of a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

# What the error for a column that does not parse lists as tried.
FORMATS_TRIED = ("ISO 8601 (YYYY-MM-DD, optionally with a time and an offset)", "YYYYMMDD", "YYYYMMDDHHMMSS",
                 "YYYY/MM/DD", "DD/MM/YYYY and MM/DD/YYYY (also with . or -, optionally with HH:MM[:SS])",
                 "Unix epoch seconds or milliseconds")
SAMPLE_VALUES = 20_000
_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}")
_DAY_MONTH = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")
_TIMES = ("", " %H:%M:%S", " %H:%M", "T%H:%M:%S", "T%H:%M")


@dataclass(frozen=True)
class TimeFormat:
    """A recognised non-ISO format: ``strptime`` patterns tried in order, or an epoch unit."""

    label: str  # as shown to the user, e.g. "DD/MM/YYYY"
    patterns: tuple[str, ...] = ()
    epoch_unit: str | None = None  # "s" or "ms"
    assumed: bool = False  # day/month order chosen without evidence

    def describe(self) -> str:
        return f"{self.label} (day/month order assumed: no value tells)" if self.assumed else self.label


def _simple(label: str, pattern: str, regex: str) -> tuple[re.Pattern[str], TimeFormat]:
    return re.compile(regex), TimeFormat(label, tuple(pattern + t for t in _TIMES))


_FIXED = (
    (re.compile(r"^\d{8}$"), TimeFormat("YYYYMMDD", ("%Y%m%d",))),
    (re.compile(r"^\d{14}$"), TimeFormat("YYYYMMDDHHMMSS", ("%Y%m%d%H%M%S",))),
    _simple("YYYY/MM/DD", "%Y/%m/%d", r"^\d{4}/\d{1,2}/\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"),
    (re.compile(r"^\d{9,10}(?:\.\d+)?$"), TimeFormat("Unix epoch seconds", epoch_unit="s")),
    (re.compile(r"^\d{12,13}$"), TimeFormat("Unix epoch milliseconds", epoch_unit="ms")),
)


def detect(values: pa.Array | pa.ChunkedArray) -> TimeFormat | None:
    """The non-ISO format most of the first values follow, or None (ISO, or nothing recognisable)."""
    sample = [v.strip() for v in pc.drop_null(values).slice(0, SAMPLE_VALUES).to_pylist() if v and v.strip()]
    if not sample or sum(bool(_ISO.match(v)) for v in sample) * 2 > len(sample):
        return None
    best, best_count = None, 0
    for regex, fmt in _FIXED:
        count = sum(bool(regex.match(v)) for v in sample)
        if count > best_count:
            best, best_count = fmt, count
    day_month = [m for v in sample if (m := _DAY_MONTH.match(v))]
    if len(day_month) > best_count:
        best, best_count = _day_month_format(day_month), len(day_month)
    return best if best_count * 2 > len(sample) else None


def _day_month_format(matches: list[re.Match[str]]) -> TimeFormat:
    separator = matches[0].group(2)
    first_max = max(int(m.group(1)) for m in matches)
    second_max = max(int(m.group(3)) for m in matches)
    if first_max > 12:
        day_first, assumed = True, False
    elif second_max > 12:
        day_first, assumed = False, False
    else:
        day_first, assumed = separator == ".", True
    order = ("%d", "%m") if day_first else ("%m", "%d")
    label = "DD{0}MM{0}YYYY" if day_first else "MM{0}DD{0}YYYY"
    pattern = f"{order[0]}{separator}{order[1]}{separator}%Y"
    return TimeFormat(label.format(separator), tuple(pattern + t for t in _TIMES), assumed=assumed)


def to_iso(values: pa.Array | pa.ChunkedArray, fmt: TimeFormat) -> pa.ChunkedArray:
    """``values`` (text) with every value of ``fmt`` rewritten as ISO 8601 text; others unchanged."""
    values = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    text = pc.utf8_trim_whitespace(values)
    if fmt.epoch_unit is not None:
        number = _to_float(text)
        scale = 1_000_000 if fmt.epoch_unit == "s" else 1_000
        parsed = pc.cast(pc.cast(pc.multiply(number, scale), pa.int64(), safe=False), pa.timestamp("us"))
    else:
        parsed = None
        for pattern in fmt.patterns:
            attempt = pc.strptime(text, format=pattern, unit="us", error_is_null=True)
            parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    iso = pc.strftime(parsed, format="%Y-%m-%dT%H:%M:%S")
    return pc.coalesce(iso, values)


def _to_float(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Numbers of the text; anything else null."""
    numeric = pc.match_substring_regex(text, r"^\d+(\.\d+)?$")
    return pc.cast(pc.if_else(numeric, text, pa.scalar(None, pa.string())), pa.float64())
