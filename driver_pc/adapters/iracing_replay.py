"""iRacing replay adapters: ``.ibt`` disk files (streamed) and live memory dumps."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import Field

from driver_pc.adapters.base import (
    AdapterOptions,
    AdapterUnavailableError,
    Frames,
    SimAdapter,
    register_adapter,
)
from driver_pc.adapters.ibt_file import IbtError, IbtReader
from driver_pc.protocol.channels import ChannelKind, ChannelSpec, frame_dtype
from driver_pc.protocol.session_info import (
    decode_session_bytes,
    parse_session_info,
    track_info,
)


class ReplayOptions(AdapterOptions):
    """Options of the replay adapters (``ibt``, ``dump``)."""

    path: str = Field(alias="file", min_length=1, description="the recording to replay")
    speed: float = Field(1.0, description="replay speed, 0 = fastest")
    session_key: str | None = Field(None, description="override the session key")


def file_session_key(path: Path, info_text: str) -> str:
    """Session key of a recording: the sim's subsession and session number when known."""
    try:
        info = parse_session_info(info_text)
        sub = track_info(info)["subsession_id"]
    except ValueError:
        sub = 0
    digest = hashlib.sha1(path.name.encode() + info_text[:4096].encode()).hexdigest()[
        :12
    ]
    return f"ir-{sub}-{digest}" if sub else f"file-{digest}"


def dated_session_info(info_text: str, start_date: int) -> str:
    """``info_text`` with ``WeekendOptions.Date`` from the file's start, where the sim left it out.

    iRacing builds before 2016 wrote no date into the session info; the ``.ibt`` disk
    header still holds when the session started (UNIX time). Without it a 2015 recording
    would be filed under the season it was imported in.
    """
    if start_date <= 0:
        return info_text
    lines = info_text.split("\n")
    try:
        at = lines.index(" WeekendOptions:")
    except ValueError:
        return info_text
    for line in lines[at + 1 :]:
        if not line.startswith("  "):
            break
        if line.startswith("  Date:"):
            return info_text
    day = dt.datetime.fromtimestamp(start_date, dt.UTC).date().isoformat()
    return "\n".join([*lines[: at + 1], f"  Date: {day}", *lines[at + 1 :]])


class _Pacer:
    """Sleeps so that ticks are released at the pace their SessionTime says."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._t0: float | None = None
        self._wall0 = 0.0

    def wait(self, session_time: float) -> None:
        if self.speed <= 0:
            return
        if self._t0 is None:
            self._t0, self._wall0 = session_time, time.monotonic()
            return
        due = self._wall0 + (session_time - self._t0) / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@register_adapter("ibt", options=ReplayOptions)
class IbtReplayAdapter(SimAdapter):
    """Replays an ``.ibt`` file at ``speed`` × real time (0 = as fast as possible)."""

    def __init__(
        self, path: str, speed: float = 1.0, session_key: str | None = None
    ) -> None:
        try:
            self._reader = IbtReader(path)
        except IbtError as exc:
            raise AdapterUnavailableError(str(exc)) from None
        self.tick_rate = self._reader.layout.tick_rate
        info = self._reader.session_info_text()
        self._key = session_key or file_session_key(Path(path), info)
        self._info = dated_session_info(info, self._reader.layout.session_start_date)
        self._pacer = _Pacer(speed)
        self._chunk = 1 if speed > 0 else 600

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self._reader.channels

    @property
    def session_key(self) -> str:
        return self._key

    @property
    def record_count(self) -> int:
        return self._reader.layout.record_count

    @property
    def session_info_update(self) -> int:
        return 1

    def session_info_text(self) -> str:
        return self._info

    def ticks(self) -> Iterator[Frames]:
        for rows in self._reader.rows(chunk=self._chunk if self._chunk > 1 else 60):
            if self._chunk == 1:
                for i in range(len(rows)):
                    self._pacer.wait(float(rows["SessionTime"][i]))
                    yield rows[i : i + 1]
            else:
                yield rows

    def close(self) -> None:
        self._reader.close()


def _check_buffer_count(path: str) -> None:
    """Refuse a dump whose header declares a silly number of buffers, before pyirsdk.

    pyirsdk builds one object per declared buffer as it opens the file; a damaged count
    of millions hung it (found by fuzzing). iRacing uses 3 (at most 4).
    """
    with open(path, "rb") as dump:
        head = dump.read(48)
    if len(head) < 48:
        raise ValueError(f"{len(head)} bytes is shorter than a dump header")
    (num_buf,) = struct.unpack_from("<i", head, 32)
    if not 0 < num_buf <= 4:
        raise ValueError(f"damaged header: {num_buf} buffers declared")


#: iRacing declares ~330 live variables; more than this is a damaged header.
MAX_DUMP_VARS = 4096


@register_adapter("dump", options=ReplayOptions)
class LiveDumpAdapter(SimAdapter):
    """Replays a live shared-memory dump through pyirsdk's ``IRSDK(test_file=...)``.

    A dump holds the sim's ring of variable buffers at one moment: each distinct buffer
    is one tick. Opponent ``CarIdx*`` arrays are only present in live data like this.
    """

    def __init__(
        self, path: str, speed: float = 1.0, session_key: str | None = None
    ) -> None:
        import irsdk

        self._ir = irsdk.IRSDK()
        try:
            _check_buffer_count(path)
            ok = self._ir.startup(test_file=path)
        except (OSError, ValueError) as exc:
            raise AdapterUnavailableError(f"{path}: cannot open dump ({exc})") from None
        if not ok:
            raise AdapterUnavailableError(f"{path}: not a live iRacing memory dump")
        try:
            self._read_layout()
        except (struct.error, ValueError, TypeError, KeyError, OverflowError) as exc:
            self._ir.shutdown()
            raise AdapterUnavailableError(f"{path}: damaged dump ({exc})") from None
        self._key = session_key or file_session_key(Path(path), self._info)
        self._pacer = _Pacer(speed)

    def _read_layout(self) -> None:
        """Channels, row layout and session info from the dump's headers.

        Every declared count and offset is checked against the file's size first:
        pyirsdk trusts them, and a damaged ``num_vars`` of millions made it build
        millions of variable headers (a hang and unbounded memory; found by fuzzing).
        """
        header = self._ir._header
        size = len(self._ir._shared_mem)
        if not 0 < header.num_vars <= MAX_DUMP_VARS:
            raise ValueError(f"{header.num_vars} variables declared")
        if header.var_header_offset + header.num_vars * 144 > size:
            raise ValueError("variable table runs past the end of the file")
        if not 0 < header.buf_len <= size or not 0 < header.num_buf <= 4:
            raise ValueError(f"{header.num_buf} buffers of {header.buf_len} bytes")
        if header.session_info_offset + header.session_info_len > size:
            raise ValueError("session info runs past the end of the file")
        self.tick_rate = header.tick_rate or 60
        chans: list[ChannelSpec] = []
        offsets: list[int] = []
        for vh in self._ir._var_headers:
            chans.append(
                ChannelSpec(vh.name, ChannelKind(vh.type), vh.count, vh.unit, vh.desc)
            )
            offsets.append(vh.offset)
        self._channels = tuple(chans)
        self._dtype = np.dtype(
            {
                "names": [c.name for c in chans],
                "formats": [frame_dtype([c])[c.name] for c in chans],
                "offsets": offsets,
                "itemsize": header.buf_len,
            }
        )
        raw = self._ir._shared_mem[
            header.session_info_offset : header.session_info_offset
            + header.session_info_len
        ]
        self._info = decode_session_bytes(bytes(raw))

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self._channels

    @property
    def session_key(self) -> str:
        return self._key

    @property
    def session_info_update(self) -> int:
        return int(self._ir._header.session_info_update)

    def session_info_text(self) -> str:
        return self._info

    def ticks(self) -> Iterator[Frames]:
        packed = frame_dtype(list(self._channels))
        seen: set[int] = set()
        for buf in sorted(self._ir._header.var_buf, key=lambda b: b.tick_count):
            if buf.tick_count in seen or buf.tick_count <= 0:
                continue
            seen.add(buf.tick_count)
            try:
                view = np.frombuffer(
                    self._ir._shared_mem,
                    dtype=self._dtype,
                    count=1,
                    offset=buf._buf_offset,
                )
            except ValueError as exc:  # a buffer offset beyond the end of the file
                raise AdapterUnavailableError(f"damaged dump: {exc}") from None
            row = np.empty(1, dtype=packed)
            for name in packed.names or ():
                row[name] = view[name]
            if "SessionTime" in (packed.names or ()):
                self._pacer.wait(float(row["SessionTime"][0]))
            yield row

    def close(self) -> None:
        self._ir.shutdown()
