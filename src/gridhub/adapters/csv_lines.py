"""CSV read one physical line at a time, in bounded memory: shared by the CSV imports.

Both CSV imports (meter history, :mod:`gridhub.adapters.csv_history`, and the device registry,
:mod:`gridhub.adapters.registry_csv`) read their files the same way: one line at a time, no line
held beyond :data:`MAX_LINE_BYTES`, one physical line per record (a quoted field may hold the
delimiter but not a line break, which keeps line numbers and the raw bytes kept for a rejected
row exact), the delimiter guessed from the header and column names matched loosely.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, TextIO

from gridhub.errors import InvalidRequest

__all__ = [
    "MAX_LINE_BYTES",
    "CsvLine",
    "LineSplitter",
    "column_key",
    "read_header",
    "read_lines",
    "sniff_delimiter",
]

MAX_LINE_BYTES = 64 * 1024
"""Longest accepted line (UTF-8 bytes, without its line ending): the size limit of N3."""


class CsvLine(NamedTuple):
    """One physical line: its 1-based number and text without the line ending.

    ``oversized`` lines keep only their first :data:`MAX_LINE_BYTES` characters; the rest was
    skipped unread into memory.
    """

    number: int
    text: str
    oversized: bool

    @property
    def raw(self) -> bytes:
        """The line's bytes as kept for a dead letter: at most :data:`MAX_LINE_BYTES`."""
        return _encode(self.text)[:MAX_LINE_BYTES]


def read_lines(data: Iterable[str] | TextIO) -> Iterator[CsvLine]:
    """Yield the lines of ``data``, flagging those longer than :data:`MAX_LINE_BYTES`.

    From a file (anything with ``readline``) a line is read in bounded pieces, so a file without
    line breaks cannot exhaust memory; an iterable of strings already holds its lines.
    """
    readline = getattr(data, "readline", None)
    pieces = _bounded(readline, MAX_LINE_BYTES) if callable(readline) else _given(data)
    for number, (line, cut) in enumerate(pieces, start=1):
        text = line.rstrip("\r\n")
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark from spreadsheet exports
        if cut or _too_long(text, MAX_LINE_BYTES):
            yield CsvLine(number, text[:MAX_LINE_BYTES], True)
        else:
            yield CsvLine(number, text, False)


def _given(lines: Iterable[str]) -> Iterator[tuple[str, bool]]:
    for line in lines:
        yield line, False


def _bounded(readline: Callable[[int], str], limit: int) -> Iterator[tuple[str, bool]]:
    size = limit + 2  # room for the content plus "\r\n"
    while line := readline(size):
        if len(line) < size or line.endswith("\n"):
            yield line, False
            continue
        rest = line  # longer than the limit: skip to the end of the line without keeping it
        while rest and not rest.endswith("\n"):
            rest = readline(limit)
        yield line, True


def _too_long(text: str, limit: int) -> bool:
    # A character takes at most 4 UTF-8 bytes: encode only lines that might be too long.
    return len(text) > limit or (4 * len(text) > limit and len(_encode(text)) > limit)


def _encode(text: str) -> bytes:
    # surrogateescape gives back the original bytes of a file decoded with that handler; any
    # other lone surrogate is spelt out rather than fail the import.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


class _OneLine:
    """An iterator holding at most one line, so a csv reader never reads past it."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line: str | None = None

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        line, self.line = self.line, None
        if line is None:
            raise StopIteration
        return line


class LineSplitter:
    """Split single lines into fields with the csv module's quoting rules.

    One reader is reused for every line (creating one per line costs more than parsing it), fed
    one line at a time: a quote left open at the end of a line is an error, not a reason to read
    on into the next record.
    """

    __slots__ = ("_feed", "_reader", "delimiter")

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self._feed = _OneLine()
        self._reader = csv.reader(self._feed, delimiter=delimiter, strict=True)

    def split(self, text: str) -> list[str]:
        """Fields of one line; raises :class:`csv.Error` on broken quoting."""
        self._feed.line = text
        return next(self._reader, [])

    def is_blank(self, line: CsvLine) -> bool:
        """True for a line with no data: empty, or only delimiters as spreadsheets leave."""
        return not line.oversized and not line.text.strip(' \t"' + self.delimiter)


def sniff_delimiter(header: str) -> str:
    """``;`` or ``,``, whichever splits the header into more columns.

    Continental spreadsheets write ``;`` (the comma being their decimal mark); column names never
    hold either, so counting them in the header is a safer guess than ``csv.Sniffer``.
    """
    return ";" if header.count(";") > header.count(",") else ","


def column_key(name: str) -> str:
    """Header name folded for matching: ``hardwareId``, ``HardwareID``, ``hardware_id`` agree."""
    return name.strip().replace("_", "").lower()


def read_header(lines: Iterator[CsvLine]) -> tuple[list[str], LineSplitter]:
    """The column names of the first non-empty line, and a splitter for its delimiter."""
    for line in lines:
        if line.oversized:
            raise InvalidRequest(f"line {line.number}: header longer than {MAX_LINE_BYTES} bytes")
        if not line.text.strip():
            continue
        splitter = LineSplitter(sniff_delimiter(line.text))
        try:
            names = [name.strip() for name in splitter.split(line.text)]
        except csv.Error as exc:
            raise InvalidRequest(f"line {line.number}: header is not valid CSV: {exc}") from None
        return names, splitter
    raise InvalidRequest("the CSV file is empty: no header line")
