"""Telemetry chunks → one Parquet file: a column per channel element, floats as decimals at their stated precision.

Column layout (also in ``docs/cloud.md``):

- ``source`` (string, dictionary-encoded): the shim that sent the row; a session can
  have several (every PC of a team car streams into the same session).
- one column per channel; an array channel of ``n`` elements becomes ``n`` columns
  ``<Name>_<i>`` (zero-padded), which keeps per-column delta coding and statistics
  and needs no list functions in SQL.
- integers (``INT`` → int32, ``BITFIELD`` → uint32, ``CHAR`` → uint8) are stored as
  they are; ``BOOL`` → boolean. Lossless.
- floats are stored as the integer number of quanta (the channel's stated
  precision, ``ChannelSpec.quantum``): where the quantum is ``10**-k`` (all of them
  today) the column is a Parquet ``DECIMAL(18, k)`` on INT64, so every engine reads
  the true value with no scaling step; otherwise an INT64 of quanta with the quantum
  in the field metadata (``pitbox.quantum``). The error is at most half a quantum.
- numeric columns use ``DELTA_BINARY_PACKED`` then zstd: ~0.4 byte per value on a
  real recording, against ~4 for the ``.ibt`` itself.

A value that the column cannot hold exactly (NaN, ±inf, a float beyond 10**18
quanta, a boolean other than 0/1, an integer out of range) is stored as null there
and kept exactly in ``telemetry_exceptions`` (row, column, value as float64), so
nothing is silently lost. Channels missing from a source's dictionary are null.

Rows are in chunk order (chunk start time, then source), each source's rows in time
order. The file is written row group by row group, so a 24 h session never has to
fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driver_pc.protocol.channels import ChannelKind, ChannelSpec
from driver_pc.protocol.messages import ChannelDictionary

# Values buffered before a row group is written (x 8 bytes of working memory).
ROW_GROUP_VALUES = 8_000_000
MAX_ROW_GROUP_ROWS = 262_144
ZSTD_LEVEL = 9
DECIMAL_PRECISION = 18  # INT64 physical type; a fixed precision keeps schemas stable
_DECIMAL_LIMIT = 10**DECIMAL_PRECISION
_INT64_LIMIT = 2.0**62  # well inside int64 after float rounding

_INT_TYPES: dict[ChannelKind, pa.DataType] = {
    ChannelKind.CHAR: pa.uint8(),
    ChannelKind.INT: pa.int32(),
    ChannelKind.BITFIELD: pa.uint32(),
}
_NUMPY_OF: dict[ChannelKind, type[np.integer[Any]]] = {
    ChannelKind.CHAR: np.uint8,
    ChannelKind.INT: np.int32,
    ChannelKind.BITFIELD: np.uint32,
}

FrameObserver = Callable[[str, np.ndarray[Any, np.dtype[np.void]]], None]


@dataclass(frozen=True, slots=True)
class TelemetryColumn:
    """How one channel element is stored."""

    name: str
    spec: ChannelSpec
    index: int | None
    storage: str  # "int" | "bool" | "decimal" | "scaled"
    scale: int | None = None

    @property
    def quantum(self) -> float | None:
        return self.spec.quantum

    @property
    def arrow_type(self) -> pa.DataType:
        if self.storage == "bool":
            return pa.bool_()
        if self.storage == "int":
            return _INT_TYPES[self.spec.kind]
        if self.storage == "decimal":
            assert self.scale is not None
            return pa.decimal64(DECIMAL_PRECISION, self.scale)
        return pa.int64()

    def describe(self) -> dict[str, Any]:
        """The column as the manifest and the file metadata describe it."""
        return {
            "column": self.name,
            "channel": self.spec.name,
            "index": self.index,
            "kind": self.spec.kind.name.lower(),
            "unit": self.spec.unit,
            "quantum": self.quantum,
            "storage": self.storage,
            "type": str(self.arrow_type),
            "description": self.spec.description,
        }

    def arrow_field(self) -> pa.Field:
        meta = {
            "pitbox.channel": self.spec.name,
            "pitbox.kind": self.spec.kind.name.lower(),
            "pitbox.unit": self.spec.unit,
            "pitbox.storage": self.storage,
        }
        if self.index is not None:
            meta["pitbox.index"] = str(self.index)
        if self.quantum is not None:
            meta["pitbox.quantum"] = repr(self.quantum)
        return pa.field(self.name, self.arrow_type, nullable=True, metadata=meta)


def plan_columns(spec: ChannelSpec) -> list[TelemetryColumn]:
    """The stored columns of one channel (one per array element)."""
    if spec.quantum is None:
        storage = "bool" if spec.kind is ChannelKind.BOOL else "int"
        scale = None
    else:
        scale = decimal_scale(spec.quantum)
        storage = "decimal" if scale is not None else "scaled"
    if spec.count == 1:
        return [TelemetryColumn(spec.name, spec, None, storage, scale)]
    width = len(str(spec.count - 1))
    return [
        TelemetryColumn(f"{spec.name}_{i:0{width}d}", spec, i, storage, scale)
        for i in range(spec.count)
    ]


def decimal_scale(quantum: float) -> int | None:
    """``k`` if ``quantum == 10**-k`` for 0 <= k <= 18, else None."""
    if quantum <= 0 or not math.isfinite(quantum):
        return None
    k = round(-math.log10(quantum))
    if 0 <= k <= DECIMAL_PRECISION and math.isclose(quantum, 10.0**-k, rel_tol=1e-9):
        return k
    return None


@dataclass
class TelemetryResult:
    """What was written: row and value counts, columns, time span."""

    rows: int = 0
    columns: list[TelemetryColumn] = field(default_factory=list)
    exceptions: int = 0
    first_time: float | None = None
    last_time: float | None = None
    sources: set[str] = field(default_factory=set)
    tick_rates: set[int] = field(default_factory=set)

    @property
    def values(self) -> int:
        """Stored telemetry values (rows x channel columns; ``source`` not counted)."""
        return self.rows * len(self.columns)


class TelemetryWriter:
    """Streams decoded batches into ``telemetry.parquet`` and ``telemetry_exceptions.parquet``."""

    def __init__(self, dictionaries: Iterable[ChannelDictionary]) -> None:
        self._columns: dict[str, TelemetryColumn] = {}
        for dictionary in dictionaries:
            for spec in dictionary.channels:
                for col in plan_columns(spec):
                    known = self._columns.get(col.name)
                    # The first dictionary that names a column decides how it is
                    # stored; later ones are converted to it.
                    if known is None:
                        self._columns[col.name] = col
        if "source" in self._columns:
            raise ValueError("a channel named 'source' clashes with the source column")
        self.result = TelemetryResult(columns=list(self._columns.values()))
        for dictionary in dictionaries:
            self.result.tick_rates.add(dictionary.tick_rate)
        self._batches: list[tuple[str, np.ndarray[Any, np.dtype[np.void]]]] = []
        self._pending_rows = 0
        self._exc_rows: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        self._exc_cols: list[str] = []
        self._exc_counts: list[int] = []
        self._exc_values: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        n = max(1, len(self._columns))
        self._group_rows = max(1024, min(MAX_ROW_GROUP_ROWS, ROW_GROUP_VALUES // n))
        self._writer: pq.ParquetWriter | None = None

    @property
    def schema(self) -> pa.Schema:
        source = pa.dictionary(pa.int32(), pa.string())
        fields = [pa.field("source", source, nullable=False)]
        fields += [c.arrow_field() for c in self._columns.values()]
        return pa.schema(fields)

    def open(self, path: Path) -> None:
        numeric = {
            c.name: "RLE" if c.storage == "bool" else "DELTA_BINARY_PACKED"
            for c in self._columns.values()
        }
        self._writer = pq.ParquetWriter(
            path,
            self.schema,
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            use_dictionary=["source"],
            column_encoding=numeric,
            store_decimal_as_integer=True,
            data_page_version="2.0",
            write_statistics=True,
        )

    def add(self, source: str, frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
        """Append a batch of decoded frames (a record array with the source's channels).

        Batches are only buffered here; they are converted a row group at a time,
        which costs a few numpy calls per column instead of a few per batch.
        """
        n = len(frames)
        if n == 0:
            return
        self._batches.append((source, frames))
        self._pending_rows += n
        if self._pending_rows >= self._group_rows:
            self._flush()

    def close(self, exceptions_path: Path) -> bool:
        """Finish the files; True if an exceptions file was written."""
        self._flush()
        assert self._writer is not None
        self._writer.close()
        if not self._exc_cols:
            return False
        table = pa.table(
            {
                "row": pa.array(np.concatenate(self._exc_rows), pa.int64()),
                "column": pa.array(np.repeat(self._exc_cols, self._exc_counts)),
                "value": pa.array(np.concatenate(self._exc_values), pa.float64()),
            }
        )
        pq.write_table(table, exceptions_path, compression="zstd")
        return True

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        assert self._writer is not None
        pending: dict[str, list[pa.Array]] = {name: [] for name in self._columns}
        base = self.result.rows
        for frames in _runs(self._batches):
            self._convert(frames, base, pending)
            base += len(frames)
        names = sorted({source for source, _ in self._batches})
        self.result.sources.update(names)
        codes = {name: i for i, name in enumerate(names)}
        indices = np.repeat(
            np.array([codes[s] for s, _ in self._batches], dtype=np.int32),
            [len(f) for _, f in self._batches],
        )
        sources = pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(names))
        arrays = [sources] + [pa.concat_arrays(pending[name]) for name in self._columns]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.result.rows += self._pending_rows
        self._pending_rows = 0
        self._batches = []

    def _convert(
        self,
        frames: np.ndarray[Any, np.dtype[np.void]],
        base: int,
        pending: dict[str, list[pa.Array]],
    ) -> None:
        """Frames of one channel layout → an Arrow array per stored column."""
        n = len(frames)
        names = set(frames.dtype.names or ())
        for col in self._columns.values():
            if col.spec.name not in names:
                pending[col.name].append(pa.nulls(n, col.arrow_type))
                continue
            values = frames[col.spec.name]
            if col.index is not None:
                values = values.reshape(n, -1)[:, col.index]
            array, bad = _to_arrow(col, values)
            pending[col.name].append(array)
            if bad is not None:
                self._exception(base, col.name, bad, values)
        if "SessionTime" in names and n:
            times = frames["SessionTime"]
            t0, t1 = float(times.min()), float(times.max())
            first, last = self.result.first_time, self.result.last_time
            self.result.first_time = t0 if first is None else min(first, t0)
            self.result.last_time = t1 if last is None else max(last, t1)

    def _exception(
        self,
        base: int,
        column: str,
        bad: np.ndarray[Any, np.dtype[np.bool_]],
        values: np.ndarray[Any, Any],
    ) -> None:
        rows = np.flatnonzero(bad)
        self._exc_rows.append(rows.astype(np.int64) + base)
        self._exc_cols.append(column)
        self._exc_counts.append(len(rows))
        self._exc_values.append(np.asarray(values[rows], dtype=np.float64))
        self.result.exceptions += len(rows)


def _runs(
    batches: list[tuple[str, np.ndarray[Any, np.dtype[np.void]]]],
) -> Iterator[np.ndarray[Any, np.dtype[np.void]]]:
    """Consecutive batches with the same channel layout, concatenated."""
    run: list[np.ndarray[Any, np.dtype[np.void]]] = []
    for _source, frames in batches:
        if run and frames.dtype != run[0].dtype:
            yield _concat(run)
            run = []
        run.append(frames)
    if run:
        yield _concat(run)


def _concat(
    arrays: list[np.ndarray[Any, np.dtype[np.void]]],
) -> np.ndarray[Any, np.dtype[np.void]]:
    """``np.concatenate`` of same-dtype record arrays, minus its dtype promotion.

    For structured dtypes numpy promotes field by field for every array, which
    costs more than the copy itself.
    """
    out = np.empty(sum(len(a) for a in arrays), dtype=arrays[0].dtype)
    pos = 0
    for array in arrays:
        out[pos : pos + len(array)] = array
        pos += len(array)
    return out


def _to_arrow(
    col: TelemetryColumn, values: np.ndarray[Any, Any]
) -> tuple[pa.Array, np.ndarray[Any, np.dtype[np.bool_]] | None]:
    """The column's Arrow array and a mask of values it could not hold (or None)."""
    if col.storage == "bool":
        bad = (values != 0) & (values != 1)
        return _masked(values != 0, col.arrow_type, bad)
    if col.storage == "int":
        target = _NUMPY_OF[col.spec.kind]
        if values.dtype == target:
            return pa.array(values, col.arrow_type), None
        info = np.iinfo(target)
        as_float = values.astype(np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~(
                np.isfinite(as_float)
                & (as_float >= info.min)
                & (as_float <= info.max)
                & (np.rint(as_float) == as_float)
            )
        return _masked(np.where(bad, 0, as_float).astype(target), col.arrow_type, bad)
    quantum = col.quantum
    assert quantum is not None
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(values.astype(np.float64) / quantum)
        limit = _DECIMAL_LIMIT if col.storage == "decimal" else _INT64_LIMIT
        bad = ~(np.abs(scaled) < limit)  # also catches NaN
    ints = np.where(bad, 0, scaled).astype(np.int64)
    mask = bad if bad.any() else None
    quanta = pa.array(ints, pa.int64(), mask=mask)
    if col.storage == "decimal":
        quanta = pa.Array.from_buffers(
            col.arrow_type, len(quanta), quanta.buffers(), quanta.null_count
        )
    return quanta, (bad if mask is not None else None)


def _masked(
    values: np.ndarray[Any, Any],
    arrow_type: pa.DataType,
    bad: np.ndarray[Any, np.dtype[np.bool_]],
) -> tuple[pa.Array, np.ndarray[Any, np.dtype[np.bool_]] | None]:
    if not bad.any():
        return pa.array(values, arrow_type), None
    return pa.array(values, arrow_type, mask=bad), bad
