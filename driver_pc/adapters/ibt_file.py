"""Reading and writing iRacing ``.ibt`` disk telemetry: streamed, bounds-checked, numpy views.

Layout (irsdk_defines.h): a 112-byte header, a 32-byte disk sub-header, 144-byte variable
headers, the session-info YAML (ISO-8859-1) and then fixed-size rows, one per tick.
pyirsdk's ``IBT`` reads one value at a time through ``struct``; we read the same layout
as a numpy record view over an mmap, so a multi-GB file is never loaded whole.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from driver_pc.protocol.channels import ChannelKind, ChannelSpec, frame_dtype

HEADER = struct.Struct("<10i8x")  # version..buf_len, then 2 ints padding
VAR_BUF = struct.Struct("<iii4x")
DISK_HEADER = struct.Struct("<qddii")
VAR_HEADER = struct.Struct("<iii?3x32s64s32s")
HEADER_BYTES = 112
DISK_HEADER_OFFSET = 112
VAR_HEADER_OFFSET = 144
MAX_VARS = 4096
_ITEM_BYTES = {0: 1, 1: 1, 2: 4, 3: 4, 4: 4, 5: 8}


class IbtError(ValueError):
    """A file is not a readable .ibt; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class IbtLayout:
    """Where things are in one .ibt file."""

    tick_rate: int
    channels: tuple[ChannelSpec, ...]
    offsets: tuple[int, ...]
    row_bytes: int
    data_offset: int
    record_count: int
    session_info_offset: int
    session_info_len: int
    session_start_date: int
    lap_count: int


class IbtReader:
    """Streams the rows of an .ibt file as numpy record arrays of the file's channels."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise IbtError(f"{self.path}: cannot open ({exc.strerror})") from None
        try:
            size = self.path.stat().st_size
            if size < VAR_HEADER_OFFSET:
                raise IbtError(
                    f"{self.path}: {size} bytes is too short for an .ibt header"
                )
            self._mem = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self.layout = _read_layout(self.path, self._mem)
        except BaseException:
            self._file.close()
            raise
        self.dtype = np.dtype(
            {
                "names": [c.name for c in self.layout.channels],
                "formats": [frame_dtype([c])[c.name] for c in self.layout.channels],
                "offsets": list(self.layout.offsets),
                "itemsize": self.layout.row_bytes,
            }
        )
        self.packed_dtype = frame_dtype(list(self.layout.channels))

    def __enter__(self) -> IbtReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._mem.closed:
            self._mem.close()
        self._file.close()

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self.layout.channels

    def session_info_text(self) -> str:
        """The session-info YAML, decoded as ISO-8859-1 as iRacing writes it."""
        start = self.layout.session_info_offset
        raw = self._mem[start : start + self.layout.session_info_len]
        return raw.rstrip(b"\0").decode("latin-1")

    def rows(self, chunk: int = 600) -> Iterator[np.ndarray[Any, np.dtype[np.void]]]:
        """Consecutive packed record arrays of at most ``chunk`` rows each."""
        lay = self.layout
        for start in range(0, lay.record_count, chunk):
            n = min(chunk, lay.record_count - start)
            view = np.frombuffer(
                self._mem,
                dtype=self.dtype,
                count=n,
                offset=lay.data_offset + start * lay.row_bytes,
            )
            packed = np.empty(n, dtype=self.packed_dtype)
            for name in self.packed_dtype.names or ():
                packed[name] = view[name]
            yield packed

    def column(self, name: str) -> np.ndarray[Any, Any]:
        """One channel over the whole file (a copy)."""
        lay = self.layout
        view = np.frombuffer(
            self._mem, dtype=self.dtype, count=lay.record_count, offset=lay.data_offset
        )
        return np.array(view[name])


def _read_layout(path: Path, mem: mmap.mmap) -> IbtLayout:
    size = len(mem)
    (
        version,
        _status,
        tick_rate,
        _siu,
        si_len,
        si_off,
        num_vars,
        vh_off,
        num_buf,
        buf_len,
    ) = HEADER.unpack_from(mem, 0)
    if version not in (1, 2):
        raise IbtError(
            f"{path}: header version {version} is not an iRacing telemetry file"
        )
    if not 0 < num_vars <= MAX_VARS:
        raise IbtError(f"{path}: {num_vars} variables declared, expected 1..{MAX_VARS}")
    if not 1 <= num_buf <= 4 or not 0 < buf_len <= 1 << 20:
        raise IbtError(
            f"{path}: bad buffer description ({num_buf} buffers of {buf_len} bytes)"
        )
    if not 0 < tick_rate <= 3600:
        raise IbtError(f"{path}: tick rate {tick_rate} out of range")
    if vh_off < VAR_HEADER_OFFSET or vh_off + num_vars * VAR_HEADER.size > size:
        raise IbtError(f"{path}: variable headers lie outside the file (truncated?)")
    if si_off < 0 or si_len < 0 or si_off + si_len > size:
        raise IbtError(f"{path}: session info lies outside the file (truncated?)")
    _tick, data_offset, _begin = VAR_BUF.unpack_from(mem, 48)
    start_date, _t0, _t1, lap_count, record_count = DISK_HEADER.unpack_from(
        mem, DISK_HEADER_OFFSET
    )
    if data_offset < VAR_HEADER_OFFSET or data_offset > size:
        raise IbtError(f"{path}: data offset {data_offset} lies outside the file")
    available = (size - data_offset) // buf_len
    if record_count < 0 or record_count > available:
        raise IbtError(
            f"{path}: header promises {record_count} records but the file holds "
            f"{available} (truncated or corrupt)"
        )
    channels: list[ChannelSpec] = []
    offsets: list[int] = []
    seen: set[str] = set()
    for i in range(num_vars):
        kind, offset, count, _as_time, name_b, desc_b, unit_b = VAR_HEADER.unpack_from(
            mem, vh_off + i * VAR_HEADER.size
        )
        name = name_b.split(b"\0", 1)[0].decode("latin-1")
        if kind not in _ITEM_BYTES or not 0 < count <= 1024:
            raise IbtError(f"{path}: variable {name!r} has type {kind} count {count}")
        if offset < 0 or offset + count * _ITEM_BYTES[kind] > buf_len:
            raise IbtError(
                f"{path}: variable {name!r} lies outside the {buf_len}-byte row"
            )
        if not name or name in seen:
            raise IbtError(
                f"{path}: variable {i} has an empty or repeated name {name!r}"
            )
        seen.add(name)
        channels.append(
            ChannelSpec(
                name,
                ChannelKind(kind),
                count,
                unit_b.split(b"\0", 1)[0].decode("latin-1"),
                desc_b.split(b"\0", 1)[0].decode("latin-1"),
            )
        )
        offsets.append(offset)
    return IbtLayout(
        tick_rate,
        tuple(channels),
        tuple(offsets),
        buf_len,
        data_offset,
        record_count,
        si_off,
        si_len,
        start_date,
        lap_count,
    )


class IbtWriter:
    """Writes an .ibt file in iRacing's layout, readable by pyirsdk and by iRacing tools."""

    def __init__(
        self,
        path: str | Path,
        channels: list[ChannelSpec],
        session_info: str,
        tick_rate: int = 60,
        start_date: int = 0,
    ) -> None:
        self.path = Path(path)
        self.channels = channels
        self.dtype = frame_dtype(channels)
        self._info = session_info.encode("latin-1", errors="replace") + b"\0"
        self._tick_rate = tick_rate
        self._start_date = start_date
        self._first_time = 0.0
        self._last_time = 0.0
        self._records = 0
        self._laps = 0
        self._file = self.path.open("wb")
        vh_bytes = len(channels) * VAR_HEADER.size
        self._info_offset = VAR_HEADER_OFFSET + vh_bytes
        self._data_offset = self._info_offset + len(self._info)
        self._file.write(b"\0" * self._data_offset)

    def write(self, frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
        """Append packed rows (of this writer's dtype)."""
        if len(frames) == 0:
            return
        rows = np.ascontiguousarray(frames.astype(self.dtype, copy=False))
        self._file.write(rows.tobytes())
        if self._records == 0 and "SessionTime" in self.dtype.names:  # type: ignore[operator]
            self._first_time = float(rows["SessionTime"][0])
        if "SessionTime" in self.dtype.names:  # type: ignore[operator]
            self._last_time = float(rows["SessionTime"][-1])
        if "Lap" in self.dtype.names:  # type: ignore[operator]
            self._laps = max(self._laps, int(rows["Lap"].max()))
        self._records += len(rows)

    def close(self) -> None:
        """Write the headers now that the record count is known."""
        f = self._file
        f.seek(0)
        f.write(
            HEADER.pack(
                2,
                1,
                self._tick_rate,
                1,
                len(self._info),
                self._info_offset,
                len(self.channels),
                VAR_HEADER_OFFSET,
                1,
                self.dtype.itemsize,
            )
        )
        f.seek(48)
        f.write(VAR_BUF.pack(self._records, self._data_offset, self._records))
        f.seek(DISK_HEADER_OFFSET)
        f.write(
            DISK_HEADER.pack(
                self._start_date,
                self._first_time,
                self._last_time,
                self._laps,
                self._records,
            )
        )
        f.seek(VAR_HEADER_OFFSET)
        for ch in self.channels:
            assert self.dtype.fields is not None
            offset = self.dtype.fields[ch.name][1]
            f.write(
                VAR_HEADER.pack(
                    int(ch.kind),
                    offset,
                    ch.count,
                    False,
                    ch.name.encode("latin-1")[:31],
                    ch.description.encode("latin-1")[:63],
                    ch.unit.encode("latin-1")[:31],
                )
            )
        f.write(self._info)
        f.close()
