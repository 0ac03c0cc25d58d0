"""Load a pool of unlabelled rows (JSONL, CSV or Parquet) into columns: a float32 feature matrix,
an array of row hashes, and display records built only for the rows that are served or written.

A clean CSV file with an id column is read column by column (``csvfast.py``); any other file,
and any CSV file that reader declines, is read here row by row, keeping no row's fields. Every
problem with the file is a PoolError carrying the path and the 1-based physical line, so the
CLI can print ``path:line: message`` and the user can jump straight to the bad row.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from retrain_loop import csvfast
from retrain_loop.hashing import stable_hash
from retrain_loop.lines import Lines, scan
from retrain_loop.records import RESERVED, FileRecords, display

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
_DEFAULT_ID = "id"
# Every task carries its row's fields to the page: a 10-million-character cell would be a 10 MB
# task. Longer text belongs in a file the row names (as images do).
MAX_FIELD = 100_000
_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON can spell them; UTF-8 cannot carry them
_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how JSON spells one
# Finite in float64 but inf once squeezed into X, which would poison every model downstream.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_JSON_NUMBER_TYPES = {int, float}  # exact types: bool is an int subclass but not a JSON number
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}

# First and last physical line, the row's fields, and whether a field may be too long or not text.
Row = tuple[int, int, dict[str, Any], bool]


class PoolError(ValueError):
    """A pool file that cannot be used; ``line`` is None for problems with the file as a whole."""

    def __init__(self, path: Any, line: int | None, message: str):
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}: {message}" if line is None else f"{path}:{line}: {message}")

    def __reduce__(self):  # the default would replay only the formatted text into __init__
        return (type(self), (self.path, self.line, self.message))


@dataclass(eq=False)  # arrays make field-wise == ambiguous; identity is what callers mean
class Pool:
    """A pool's rows as columns. ``tasks[i]`` is row ``i``'s display record (a dict with its
    ``_input_hash``), built when asked for; ``columns`` names the records' fields."""

    path: Path
    tasks: Sequence[dict] = field(repr=False)
    X: np.ndarray = field(repr=False)
    features: list[str]
    id_column: str | None
    input_hashes: np.ndarray = field(repr=False)
    columns: list[str] | None = None
    _order: np.ndarray = field(init=False, repr=False)  # row indices by hash
    _sorted: np.ndarray = field(init=False, repr=False)  # the hashes, sorted

    def __post_init__(self) -> None:
        if not len(self.tasks) == len(self.X) == len(self.input_hashes):
            raise ValueError("tasks, X and input_hashes must have one entry per row")
        self.input_hashes = np.asarray(self.input_hashes, dtype=np.int64)
        self._order = np.argsort(self.input_hashes, kind="stable")
        self._sorted = self.input_hashes[self._order]
        if (self._sorted[1:] == self._sorted[:-1]).any():  # astronomically rare; never answer wrongly
            raise PoolError(self.path, None, "two rows share an input hash")
        if self.columns is None:
            self.columns = [c for c in (self.tasks[0] if len(self.tasks) else {})
                            if c != "_input_hash"]

    def __len__(self) -> int:
        return len(self.input_hashes)

    def index_of(self, input_hash: int) -> int | None:
        try:
            key = operator.index(input_hash)  # numpy ints yes, 1.5 or "12" no
        except TypeError:
            return None
        if not -(2**63) <= key < 2**63 or len(self._sorted) == 0:
            return None
        pos = int(np.searchsorted(self._sorted, key))
        if pos < len(self._sorted) and self._sorted[pos] == key:
            return int(self._order[pos])
        return None

    def indices_of(self, input_hashes: np.ndarray) -> np.ndarray:
        """``index_of`` for an int64 array at once: -1 where no row has the hash."""
        hashes = np.asarray(input_hashes, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(len(hashes), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, hashes), len(self._sorted) - 1)
        return np.where(self._sorted[pos] == hashes, self._order[pos], -1)


def load_pool(
    path: str | Path,
    features: list[str] | None = None,
    id_column: str | None = _DEFAULT_ID,
    exclude: tuple[str, ...] = (),
) -> Pool:
    """Read a pool file. ``exclude`` names columns that are never default features (a label)."""
    path = Path(path)
    suffix = path.suffix.lower()
    is_csv = suffix == ".csv"
    if suffix in PARQUET_SUFFIXES:
        if not path.exists():
            raise PoolError(path, None, "file not found")
        from retrain_loop.parquet import load_parquet
        return load_parquet(path, features, id_column, exclude)
    if not is_csv and suffix not in _JSONL_SUFFIXES:
        kind = repr(path.suffix) if path.suffix else "without a suffix"
        raise PoolError(path, None, f"unsupported file type {kind}; use .jsonl, .ndjson, .csv "
                        "or .parquet")
    if not path.exists():
        raise PoolError(path, None, "file not found")
    try:
        if is_csv:
            def resolve(where, header, first):
                return _resolve_columns(path, where, header, first, features, id_column, True,
                                        exclude)
            fast, lines = csvfast.read(path, id_column, resolve)
            if fast is not None:
                records = FileRecords(path, fast["starts"], fast["ends"], fast["header"],
                                      fast["hashes"])
                columns = [c for c in fast["header"] if c not in RESERVED]
                return Pool(path, records, fast["X"], fast["features"], fast["id_column"],
                            fast["hashes"], columns)
        else:
            lines = scan(path)
        return read_exact(path, lines, features, id_column, exclude)
    except UnicodeDecodeError:
        raise PoolError(path, None, "file is not UTF-8 text") from None
    except OSError as e:
        raise PoolError(path, None, f"cannot read file: {e.strerror or e}") from e


def read_exact(path: Path, lines: Lines, features, id_column, exclude=()) -> Pool:
    """Read the file row by row: the reader for every file, and the one that says what is wrong."""
    is_csv = path.suffix.lower() == ".csv"
    # utf-8-sig because spreadsheet exports often start with a BOM that would rename column 1
    with path.open(encoding="utf-8-sig", newline="" if is_csv else None) as f:
        if is_csv:
            return _build(path, lines, *_csv_rows(path, f), features, id_column, is_csv,
                          exclude)
        return _build(path, lines, None, 0, _jsonl_rows(path, f), features, id_column,
                      is_csv, exclude)


def _jsonl_rows(path: Path, f) -> Iterator[Row]:
    for line, text in enumerate(f, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:  # not only JSONDecodeError: ints too long for int() land here too
            msg = f"{e.msg} (column {e.pos + 1})" if isinstance(e, json.JSONDecodeError) else e
            raise PoolError(path, line, f"invalid JSON: {msg}") from None
        if not isinstance(obj, dict):
            kind = _JSON_TYPES.get(type(obj), "number")
            raise PoolError(path, line, f"expected a JSON object, got a JSON {kind}")
        risky = len(text) > MAX_FIELD or ("\\u" in text and _ESCAPE.search(text) is not None)
        yield line, line, obj, risky


def _csv_rows(path: Path, f) -> tuple[list[str] | None, int, Iterator[Row]]:
    # csv.reader rather than DictReader: DictReader skips blank lines internally, which would hide
    # where a record starts, and silently pads or folds rows whose field count is wrong.
    reader = csv.reader(f)

    def records() -> Iterator[tuple[int, int, list[str]]]:
        while True:
            start = reader.line_num + 1  # first physical line, even for multi-line quoted fields
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise PoolError(path, reader.line_num, f"malformed CSV: {e}") from None
            if record:
                yield start, reader.line_num, record

    it = records()
    header_line, _, header = next(it, (0, 0, None))
    if header is not None and len(set(header)) != len(header):  # dict(zip()) would drop one
        twice = next(name for i, name in enumerate(header) if name in header[:i])
        raise PoolError(path, header_line, f"column {twice!r} appears twice in the header")

    def rows() -> Iterator[Row]:
        for line, end, record in it:
            if len(record) != len(header):
                msg = f"row has {len(record)} fields, header has {len(header)}"
                raise PoolError(path, line, msg)
            yield line, end, dict(zip(header, record)), sum(map(len, record)) > MAX_FIELD

    return header, header_line, rows()


def _build(path: Path, lines: Lines, header, header_line, rows, features, id_column, is_csv,
           exclude=()) -> Pool:
    """Read the rows one at a time, keeping their features, hashes and lines, not their fields
    (unless the file's lines cannot be found again by byte offset: lone carriage returns)."""
    first = next(rows, None)
    if first is None:
        raise PoolError(path, None, "no rows")
    columns = header if header is not None else list(first[2])
    where = header_line if is_csv else first[0]
    id_col, feats = _resolve_columns(path, where, columns, first[2], features, id_column, is_csv,
                                     exclude)

    values = array("d")
    hashes: list[int] = []
    spans = array("q")  # first and last line of each row
    keep = lines.lone_cr  # offsets of such lines would not match Python's line numbers
    tasks: list[dict] = []
    seen: dict[str, None] = {}  # every field name, in the order first seen
    id_lines: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for line, end, cells, risky in chain([first], rows):
        try:  # fast path for clean rows; _feature is only there to say exactly what is wrong
            raw = [cells[name] for name in feats]
            if not is_csv and not set(map(type, raw)) <= _JSON_NUMBER_TYPES:
                raise TypeError
            row = list(map(float, raw))
            total = sum(row)
            clean = total - total == 0.0 and max(map(abs, row)) <= _FLOAT32_MAX
        except (KeyError, TypeError, ValueError, OverflowError):
            clean = False
        values.extend(row if clean else [_feature(path, line, n, cells, is_csv) for n in feats])
        if risky:  # only a long row can hold a long field; only an escape can spell a surrogate
            _check_fields(path, line, cells, is_csv)
        if not seen.keys() >= cells.keys():
            seen.update(dict.fromkeys(k for k in cells if k not in RESERVED))
        if id_col is not None:
            row_id = _id_string(path, line, id_col, cells)
            if row_id in id_lines:
                msg = f"duplicate id {row_id!r} (first seen on line {id_lines[row_id]})"
                raise PoolError(path, line, msg)
            id_lines[row_id] = line
            h = stable_hash({"id": row_id})
        else:
            show = display(cells, is_csv)
            h = stable_hash(show)
            # Real datasets (iris) repeat rows; the k-th copy still needs its own stable identity.
            k = repeats[h] = repeats.get(h, 0) + 1
            if k >= 2:
                h = stable_hash({"row": show, "repeat": k})
        hashes.append(h)
        spans.extend((line, end))
        if keep:
            tasks.append(display(cells, is_csv) | {"_input_hash": h})

    X = np.frombuffer(values, dtype=np.float64).reshape(len(hashes), len(feats))
    X = X.astype(np.float32)
    hash_array = np.array(hashes, dtype=np.int64)
    if keep:
        return Pool(path, tasks, X, feats, id_col, hash_array, list(seen))
    span = np.frombuffer(spans, dtype=np.int64).reshape(-1, 2)
    starts = lines.bounds[span[:, 0] - 1]
    ends = lines.text_ends[span[:, 1] - 1]
    records = FileRecords(path, starts, ends, header, hash_array)
    return Pool(path, records, X, feats, id_col, hash_array, list(seen))


def _check_fields(path: Path, line: int, cells: dict[str, Any], is_csv: bool) -> None:
    for name, value in cells.items():
        if name in RESERVED or not isinstance(value, str):
            continue
        if len(value) > MAX_FIELD:
            raise PoolError(path, line, f"field {name!r} is {len(value):,} characters long; a "
                            f"task field may have at most {MAX_FIELD:,}")
        if not is_csv and _SURROGATE.search(value):
            raise PoolError(path, line, f"field {name!r} holds a lone surrogate "
                            "(\\ud800-\\udfff), which is not text")


def _resolve_columns(path, where, columns, first_row, features, id_column, is_csv, exclude=()):
    if id_column is not None and id_column in columns:
        id_col = id_column
    elif id_column is not None and id_column != _DEFAULT_ID:
        # Only the default may quietly go missing; an explicit choice that matches nothing is a typo.
        raise PoolError(path, where, f"id column {id_column!r} not found; columns are {columns}")
    else:
        id_col = None
    if features is not None:
        if isinstance(features, str) or not features or len(set(features)) != len(features):
            raise PoolError(path, None, f"features must be distinct column names, got {features!r}")
        missing = [name for name in features if name not in columns]
        if is_csv and missing:  # JSONL rows may differ, so each row is checked as it is read
            raise PoolError(path, where, f"missing feature column {missing[0]!r}")
        return id_col, list(features)
    feats = [
        c
        for c in columns
        if c and c != id_col and c not in exclude and not c.startswith("_")
        and _number(first_row[c], is_csv) is not None
    ]
    if not feats:
        msg = "no numeric columns in the first row to use as features; pass --features to name them"
        raise PoolError(path, None, msg)
    return id_col, feats


def _number(value: Any, is_csv: bool) -> float | None:
    """The value as a float (maybe NaN or inf), or None when it is not a number at all."""
    try:
        return float(value) if is_csv or type(value) in _JSON_NUMBER_TYPES else None
    except ValueError:
        return None
    except OverflowError:  # JSON ints have no size limit
        return math.inf


def _feature(path: Path, line: int, name: str, cells: dict, is_csv: bool) -> float:
    if name not in cells:
        raise PoolError(path, line, f"missing feature column {name!r}")
    value = cells[name]
    x = _number(value, is_csv)
    if x is None:
        raise PoolError(path, line, f"feature {name!r} is not a number: {value!r}")
    if not math.isfinite(x):
        raise PoolError(path, line, f"feature {name!r} is NaN or infinite")
    if abs(x) > _FLOAT32_MAX:
        raise PoolError(path, line, f"feature {name!r} is too large for float32: {value!r}")
    return x


def _id_string(path: Path, line: int, id_col: str, cells: dict) -> str:
    value = cells.get(id_col)
    if value is None or (isinstance(value, str) and not value.strip()):
        what = "missing" if id_col not in cells else "empty"
        raise PoolError(path, line, f"{what} id in column {id_col!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        # str(1.0) and a CSV's "1" would hash apart, so only spellings that agree are allowed.
        raise PoolError(path, line, f"id must be a string or an integer, not {value!r}")
    return str(value)
