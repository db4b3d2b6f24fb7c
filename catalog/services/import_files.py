"""Reading import files (JSON Lines or CSV) into raw rows without ever failing on their content.

Whatever a file holds, each record comes out as `(line, row)`: a dict of raw values for the
import's serializer, or `{"__error__": reason}` for a record that cannot be read (invalid
UTF-8, a field or line over the limits, broken JSON). Line numbers are the file's own,
counted from 1; a CSV record spanning lines (quoted newlines) is numbered by its first line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A field holds at most this many characters (a long description fits); a longer one makes its
# row a reject, not a crash. Physical lines are read in pieces of at most MAX_LINE_CHARS, so a
# file without newlines never has to sit in memory whole.
MAX_FIELD_CHARS = 1024 * 1024
MAX_LINE_CHARS = 8 * 1024 * 1024

Row = tuple[int, dict[str, Any]]

# Undecodable bytes come out of the "surrogateescape" decoder as U+DC80..U+DCFF; valid UTF-8
# never decodes to a surrogate.
_BAD_BYTES = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_FIELD_END = re.compile(r"[,\r\n]")
_NEWLINES = ("\n", "\r")


def rejected(reason: str) -> dict[str, Any]:
    return {"__error__": reason}


class _LineTooLong(Exception):
    pass


class _Lines:
    """A text file's physical lines, each under MAX_LINE_CHARS, numbered, bad bytes flagged.

    An over-long line is read through in pieces, dropped, and raises _LineTooLong. The CSV
    quoting state is followed line by line, so that after an error inside a record the rest
    of a quoted field can be skipped (`skip_quoted`).
    """

    def __init__(self, handle: io.TextIOBase) -> None:
        self.handle = handle
        self.number = 0
        self.reset()

    def reset(self) -> None:
        """Start a record: the flags below cover the lines handed out from here on."""
        self.first = 0  # the first line's number
        self.bad_bytes = False  # a line held invalid UTF-8
        self.state = "start"  # the csv parser's state after the lines so far

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self.first = self.first or self.number
        if self.number == 1:
            line = line.removeprefix("\ufeff")  # a UTF-8 byte order mark (Excel writes one)
        self.state = _csv_state(self.state, line)
        if len(line) > MAX_LINE_CHARS:
            self._skip_rest(line)
            raise _LineTooLong(f"a line is longer than {MAX_LINE_CHARS} characters")
        if _BAD_BYTES.search(line):
            self.bad_bytes = True
        return line

    def _skip_rest(self, piece: str) -> None:
        while not piece.endswith(_NEWLINES):
            piece = self.handle.readline(MAX_LINE_CHARS)
            if not piece:
                return
            self.state = _csv_state(self.state, piece)

    def skip_quoted(self) -> None:
        """After a CSV error mid-record: skip the lines that are still inside a quoted field,
        so that the rest of that field is never read as records of its own."""
        while self.state == "quoted":
            try:
                next(self)
            except StopIteration:
                return
            except _LineTooLong:
                pass


def _csv_state(state: str, text: str) -> str:
    """Where the csv module's parser (excel dialect, not strict) is after `text`.

    "start" (a field starts), "field" (in an unquoted field: quotes are literal),
    "quoted" (in a quoted field: newlines are data) or "quote" (a quote inside one).
    """
    i = 0
    while i < len(text):
        if state == "quoted":
            i = text.find('"', i)
            if i < 0:
                return "quoted"
            state, i = "quote", i + 1
        elif state == "field":
            end = _FIELD_END.search(text, i)
            if end is None:
                return "field"
            state, i = "start", end.end()
        else:  # "start" or "quote": a quote (re)opens quoting, a delimiter or newline ends
            char = text[i]
            state = "quoted" if char == '"' else "start" if char in ",\r\n" else "field"
            i += 1
    return state


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _open(path: Path) -> io.TextIOWrapper:
    # newline="": CSV sees quoted line breaks as they are; JSON Lines rows end at any of them.
    return path.open(encoding="utf-8", errors="surrogateescape", newline="")


def read_rows(path: Path) -> Iterator[Row]:
    """(line number, raw row) from a .jsonl/.json or .csv file; CSV images are `|`-separated."""
    reader = _csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows
    with _open(path) as handle:
        yield from reader(_Lines(handle))


def _jsonl_rows(lines: _Lines) -> Iterator[Row]:
    while True:
        lines.reset()
        try:
            text = next(lines)
        except StopIteration:
            return
        except _LineTooLong as exc:
            yield lines.number, rejected(str(exc))
            continue
        if lines.bad_bytes:
            yield lines.number, rejected("invalid UTF-8")
        elif text.strip():
            yield lines.number, _parse_json(text)


def _parse_json(text: str) -> dict[str, Any]:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return rejected(f"invalid JSON: {exc.msg}")
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        return rejected(f"invalid JSON: {exc}")
    except RecursionError:
        return rejected("invalid JSON: nested too deeply")
    if not isinstance(row, dict):
        return rejected("a row must be a JSON object")
    return _check_text(row)


def _check_text(row: dict[str, Any]) -> dict[str, Any]:
    """Refuse strings no database can store: a lone surrogate (a JSON `\\udc80` escape)."""
    for key, value in row.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and _SURROGATE.search(v) for v in values):
            return rejected(f"{key}: holds a lone surrogate, which is not a character")
    return row


def _csv_rows(lines: _Lines) -> Iterator[Row]:
    with _field_limit(MAX_FIELD_CHARS):
        reader = csv.reader(lines)
        header: list[str] | None = None
        while True:
            lines.reset()
            try:
                record = next(reader)
            except StopIteration:
                return
            except (csv.Error, _LineTooLong) as exc:
                line = lines.first or lines.number
                lines.skip_quoted()
                if header is None:
                    yield line, rejected(f"header: {_csv_reason(exc)}; nothing imported")
                    return
                yield line, rejected(_csv_reason(exc))
                continue
            line = lines.first
            if lines.bad_bytes:
                yield line, rejected("invalid UTF-8" + ("" if header else " in the header"))
                if header is None:
                    return
                continue
            if header is None:
                header = record
            elif record:  # blank lines are skipped, as csv.DictReader does
                yield line, _csv_row(header, record)


def _csv_reason(exc: Exception) -> str:
    if isinstance(exc, csv.Error) and "field limit" in str(exc):
        return f"a field is longer than {MAX_FIELD_CHARS} characters"
    return str(exc)


def _csv_row(header: list[str], record: list[str]) -> dict[str, Any]:
    # Missing trailing columns are absent (their defaults apply), extra ones are ignored.
    row: dict[str, Any] = dict(zip(header, record, strict=False))
    row["images"] = [p for p in (row.get("images") or "").split("|") if p.strip()]
    if "attributes" in row:  # a JSON object; an empty cell leaves them as they are
        text = row.pop("attributes").strip()
        if text:
            try:
                row["attributes"] = json.loads(text)
            except ValueError:
                row["attributes"] = text  # refused with the row's other reasons
    return row
