"""Reading a CSV file into a table of strings with the line numbers users see in an editor.

What is accepted (documented in README "Input data rules"):
* encoding: UTF-8 by default (a UTF-8 byte-order mark is ignored); anything else is an error naming
  the line and byte, unless `encoding` names the file's encoding (e.g. latin-1);
* line endings: LF, CRLF or CR, identically;
* delimiter: given, or detected from the header line as the most frequent of `, ; TAB |` (ties go to
  the comma). `csv.Sniffer` is not used: on files with decimal commas (`1,5;2,0`) it picks the comma;
* blank rows (empty, whitespace or only delimiters) are skipped; cells and names are stripped of
  surrounding whitespace; quotes are removed (`"1.5"` is the number 1.5);
* columns with an empty name and no values (a trailing delimiter) are dropped.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

from vaeok.core.errors import UserError

DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class Table:
    """A CSV file as strings: header names, data rows, and the file line of each row."""

    header: tuple[str, ...]
    rows: list[list[str]]
    lines: list[int]
    delimiter: str

    def column(self, name: str) -> list[str]:
        """The cells of one column, in row order."""
        j = self.header.index(name)
        return [row[j] for row in self.rows]


def delimiter_name(delimiter: str) -> str:
    """Human name of a delimiter ('comma', 'semicolon', ... or the character quoted)."""
    return _DELIMITER_NAMES.get(delimiter, repr(delimiter))


def read_table(path: str | Path, encoding: str = "utf-8", delimiter: str | None = None,
               what: str = "data.path") -> Table:
    """Read a CSV file as a Table of stripped strings; UserError naming the file and line on any problem.

    `what` names the option the path came from (for the file-not-found message).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{what}: {p} is a directory, not a CSV file")
    if not p.is_file():
        raise UserError(f"{what}: file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UserError(f"{p}: cannot read: {exc.strerror or exc}") from None
    text = decode(raw, encoding, p)
    if not text.strip():
        raise UserError(f"{p}: the file is empty (expected a header line and data rows)")
    delimiter = detect_delimiter(text) if delimiter is None else delimiter_char(delimiter)
    return _parse(text, delimiter, p)


def delimiter_char(delimiter: str) -> str:
    """A delimiter given as a character or by name (comma, semicolon, tab, pipe); UserError otherwise."""
    named = {name: char for char, name in _DELIMITER_NAMES.items()}
    char = named.get(delimiter.lower(), delimiter) if delimiter.lower() != "\\t" else "\t"
    if len(char) != 1 or char in "\r\n\"":
        raise UserError(f"data.delimiter must be one character (not a quote or newline) or one of "
                        f"{', '.join(named)}, got {delimiter!r}")
    return char


def decode(raw: bytes, encoding: str, path: Path) -> str:
    """Bytes to text: UTF-8 (BOM ignored) or the given encoding; UserError naming line and byte."""
    codec = text_codec(encoding)
    if codec == "utf-8" and raw.startswith(_UTF16_BOMS):
        raise UserError(f"{path}: the file is UTF-16 encoded (Excel 'Unicode Text'); save it as "
                        "'CSV UTF-8' or set data.encoding=utf-16")
    if not codec.startswith("utf-16") and not codec.startswith("utf-32") and b"\x00" in raw:
        line = raw[:raw.index(b"\x00")].count(b"\n") + 1
        raise UserError(f"{path}: line {line} contains a NUL byte; this is not a text CSV file")
    try:
        text = raw.decode("utf-8-sig" if codec == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        byte = raw[exc.start:exc.start + 1].hex()
        raise UserError(f"{path}: line {line} is not valid {encoding} (byte 0x{byte} at offset {exc.start}); "
                        "save the file as UTF-8 or set data.encoding to its encoding, e.g. data.encoding=latin-1"
                        ) from None
    return text.removeprefix("\ufeff")  # a BOM under a non-UTF-8 codec name (e.g. utf-16)


def text_codec(encoding: str) -> str:
    """The normalised name of a text encoding (e.g. 'latin-1' -> 'iso8859-1'); UserError if unknown."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise UserError(f"data.encoding: unknown text encoding '{encoding}'")
    return info.name


def detect_delimiter(text: str) -> str:
    """The most frequent of `, ; TAB |` on the first non-blank line (the header); comma if none."""
    header = next((ln for ln in text.splitlines() if ln.strip()), "")
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # max keeps the first on ties: comma wins
    return best if counts[best] else ","


def _blank(row: list[str]) -> bool:
    return all(not cell.strip() for cell in row)


def _parse(text: str, delimiter: str, p: Path) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for record in reader:
            if _blank(record):
                continue
            cells = [c.strip() for c in record]
            if header is None:
                header, header_line = cells, reader.line_num
                continue
            rows.append(cells)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise UserError(f"{p}: line {reader.line_num}: cannot parse as CSV: {exc}") from None
    assert header is not None  # text is not blank
    while len(header) > 1 and not header[-1]:  # trailing delimiter(s) on the header line
        header.pop()
    keep = _kept_columns(header, rows, lines, delimiter, p, header_line)
    rows = [[row[j] for j in keep] for row in rows]
    return Table(tuple(header[j] for j in keep), rows, lines, delimiter)


def _kept_columns(header: list[str], rows: list[list[str]], lines: list[int], delimiter: str, p: Path,
                  header_line: int) -> list[int]:
    """Indices of real columns: nameless empty columns are dropped; a ragged row (fields beyond the
    header's that are not empty, e.g. trailing delimiters), or a nameless column with values, is an
    error naming its line."""
    width = len(header)
    for row, line in zip(rows, lines):
        if len(row) < width or (len(row) > width and any(row[width:])):
            raise UserError(f"{p}: line {line} has {len(row)} fields but the header (line {header_line}) has "
                            f"{width} ({delimiter_name(delimiter)}-separated); check for a missing or extra "
                            "delimiter, or unquoted text containing one")
    keep = []
    for j, name in enumerate(header):
        if name:
            keep.append(j)
            continue
        filled = next((line for row, line in zip(rows, lines) if row[j]), None)
        if filled is not None:
            raise UserError(f"{p}: column {j + 1} has no name in the header but has values (line {filled}); "
                            "name it, or remove it if it is a row index")
    return keep
