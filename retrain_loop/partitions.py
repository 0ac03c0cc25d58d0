"""A pool's partitions, as Dask workers read and score them (``dask_scoring.py``).

The partitions are the host's own view of the file: a CSV pool's rows by the byte spans its
load found (so a quoted line break or a blank line cuts no row in two, which byte blocks of
``dask.dataframe.read_csv`` would), a Parquet pool's row groups as its footer counts them. Each
partition's pool rows are known before it is read, so its probabilities can land at the right
rows in whatever order they arrive. A worker that reads other rows or other values than the
host loaded (the file changed) fails the partition: the file's size and the row count are
checked here, and the host compares a fingerprint of the features read with its own. A pool
that is not a CSV or Parquet file (JSONL, a DataFrame, an array) has partitions of the host's X
(``host``), sent to the workers.

Nothing here needs Dask: a worker calls ``score_part``, and so can anyone.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .models import label_probabilities
from .pool import PARQUET_SUFFIXES, Pool, PoolError
from .records import FileRecords
from .refit import PREDICT_SLICE

# Rows per partition of a CSV pool, or at least, in row groups, of a Parquet one: enough that
# a task's scheduling (milliseconds) is small beside its scoring, few enough to spread evenly.
PARTITION_ROWS = 262_144
FINGERPRINT_STEP = 1009  # rows between those a fingerprint keeps whole (a prime: no stride)


@dataclass(frozen=True)
class Source:
    """What the workers read: ``kind`` ``csv`` or ``parquet`` (the file at ``path``), or ``host``
    (partitions sent from the host's X)."""

    kind: str
    path: str
    features: tuple[str, ...]
    header: tuple[str, ...] = ()  # a CSV file's columns
    size: int = -1  # the file's size in bytes when the partitions were planned


@dataclass(frozen=True)
class Part:
    """Pool rows ``start`` to ``stop``; ``span`` is where they are: a CSV file's byte offsets
    (begin, end), or a Parquet file's row-group indices."""

    start: int
    stop: int
    span: tuple[int, ...] = ()

    def __len__(self) -> int:
        return self.stop - self.start


def plan(pool: Pool, rows: int | None = None) -> tuple[Source, list[Part]]:
    """The partitions a pool is scored in (``rows`` rows each, default ``PARTITION_ROWS``), and
    what the workers read them from."""
    rows = rows or PARTITION_ROWS
    path, features = pool.path, tuple(pool.features)
    records = pool.tasks
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES and path.is_file():
        return _parquet_plan(pool, rows)
    if suffix == ".csv" and isinstance(records, FileRecords) and records.header is not None:
        source = Source("csv", str(path), features, tuple(records.header), _size(path))
        starts, ends = records.starts, records.ends
        return source, [Part(a, min(a + rows, len(pool)),
                             (int(starts[a]), int(ends[min(a + rows, len(pool)) - 1])))
                        for a in range(0, len(pool), rows)]
    return (Source("host", str(path), features),
            [Part(a, min(a + rows, len(pool))) for a in range(0, len(pool), rows)])


def _parquet_plan(pool: Pool, rows: int) -> tuple[Source, list[Part]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = pool.path
    try:
        counts = [group.num_rows for group in _row_groups(pq.ParquetFile(path).metadata)]
    except (pa.ArrowException, OSError) as e:
        raise PoolError(path, None, f"the file changed after it was loaded: {e}") from None
    if sum(counts) != len(pool):
        raise PoolError(path, None, f"the file changed after it was loaded: it has "
                        f"{sum(counts)} rows, the pool {len(pool)}")
    parts, groups, start = [], [], 0
    for i, n in enumerate(counts):  # whole row groups: a worker reads no group another reads
        groups.append(i)
        stop = start + sum(counts[g] for g in groups)
        if stop - start >= rows or i == len(counts) - 1:
            parts.append(Part(start, stop, tuple(groups)))
            groups, start = [], stop
    source = Source("parquet", str(path), tuple(pool.features), size=_size(path))
    return source, parts


def _row_groups(metadata: Any) -> list[Any]:
    return [metadata.row_group(i) for i in range(metadata.num_row_groups)]


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as e:
        raise PoolError(path, None, f"cannot read file: {e.strerror or e}") from None


def fingerprint(X: np.ndarray) -> np.ndarray:
    """The features' bits summed as 64-bit words (wrapping), then those of every
    ``FINGERPRINT_STEP``-th row: any value changed changes the sum, rows moved change the
    sample. Integer sums are the same in any order and run at memory speed (a 262,144 x 8
    partition in 0.14 ms, where a float64 column sum takes 4 ms)."""
    bits = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32)
    words = bits.reshape(-1)
    even = len(words) - len(words) % 2
    total = words[:even].view(np.uint64).sum() + words[even:].sum(dtype=np.uint64)
    return np.concatenate([[total], bits[::FINGERPRINT_STEP].ravel().astype(np.uint64)])


def probabilities(model: Any, X: np.ndarray, n_labels: int) -> np.ndarray:
    """``label_probabilities`` in slices of ``PREDICT_SLICE`` rows, whose intermediates stay in
    cache. LightGBM scores each row on its own, so its result is the same to the bit however
    the rows are cut; a model that multiplies in float32 through BLAS (logistic regression on
    float32 features) may differ in the last place between cuts."""
    if len(X) <= PREDICT_SLICE:
        return label_probabilities(model, X, n_labels)
    proba = np.empty((len(X), n_labels), dtype=np.float64)
    for a in range(0, len(X), PREDICT_SLICE):
        proba[a:a + PREDICT_SLICE] = label_probabilities(model, X[a:a + PREDICT_SLICE], n_labels)
    return proba


def read_part(source: Source, part: Part) -> np.ndarray:
    """A partition's features, as float32 rows, read from the file (on a worker)."""
    path = Path(source.path)
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise PoolError(path, None, f"a Dask worker cannot read the file ({e.strerror or e}); "
                        "the workers read the pool themselves, so it must be at this path on "
                        "every worker") from None
    if size != source.size:
        raise changed(source, part, f"its size is {size} bytes, not {source.size}")
    try:
        X = _read_csv(source, part) if source.kind == "csv" else _read_parquet(source, part)
    except OSError as e:
        raise changed(source, part, f"cannot read it: {e.strerror or e}") from None
    if len(X) != len(part):
        raise changed(source, part, f"they are {len(X)} rows now")
    return X


def _read_csv(source: Source, part: Part) -> np.ndarray:
    import pandas as pd

    begin, end = part.span
    with open(source.path, "rb") as f:
        f.seek(begin)
        data = f.read(end - begin)
    features = list(source.features)
    try:  # as csvfast reads the whole file, so the values are the same to the bit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = pd.read_csv(io.BytesIO(data), header=None, names=list(source.header),
                                index_col=False, usecols=features,
                                dtype=dict.fromkeys(features, np.float32), engine="c",
                                na_filter=False, skip_blank_lines=True, encoding="utf-8")
    except (ValueError, OverflowError, pd.errors.ParserError) as e:
        raise changed(source, part, f"they no longer parse: {e}") from None
    return np.ascontiguousarray(frame[features].to_numpy(dtype=np.float32))


def _read_parquet(source: Source, part: Part) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .parquet import _matrix

    try:
        file = pq.ParquetFile(source.path)
        names = file.schema_arrow.names
        missing = [name for name in source.features if name not in names]
        if missing:
            raise changed(source, part, f"it has no column {missing[0]!r}")
        table = file.read_row_groups(list(part.span), columns=list(source.features))
    except pa.ArrowException as e:
        raise changed(source, part, f"cannot read it as Parquet: {e}") from None
    try:  # the host's own conversion (integers through float64), so the values are the same
        return _matrix(Path(source.path), table, list(source.features))
    except PoolError as e:
        raise changed(source, part, e.message) from None


def changed(source: Source, part: Part, why: str) -> PoolError:
    """The error of a partition read otherwise than the host loaded it, saying ``why``."""
    return PoolError(source.path, None, f"the file changed after it was loaded (rows "
                     f"{part.start + 1}-{part.stop}: {why}); load it again")


def score_part(source: Source, part: Part, model: Any, n_labels: int,
               X: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A partition's probabilities (a worker's task), and the fingerprint of the features it
    read (None for features sent from the host)."""
    if X is not None:
        return probabilities(model, X, n_labels), None
    X = read_part(source, part)
    return probabilities(model, X, n_labels), fingerprint(X)
