"""iRacing's live memory map, emulated in a file at 60 Hz from a recording or the simulator.

On Windows iRacing publishes telemetry in a named shared-memory map; pyirsdk reads the
same bytes from a file (``irsdk.IRSDK().startup(test_file=...)`` mmaps it). This module
writes that file the way the sim writes its map, so the live adapter runs unchanged on
Linux, in tests, the demo and benchmarks. The layout is the one of the two recorded
live dumps in ``../shared/data/iracing/live/`` (1,191,936 bytes, as pyirsdk's
``MEMMAPFILESIZE``):

====================  ==========================================================
offset                content
====================  ==========================================================
0                     header: ver 2, status, tickRate, sessionInfoUpdate,
                      sessionInfoLen (the 512 KiB area), sessionInfoOffset,
                      numVars, varHeaderOffset, numBuf 3, bufLen, 2 pad ints
48                    4 × varBuf {tickCount, bufOffset, pad[2]} (the 4th unused)
112                   session-info YAML (ISO-8859-1), NUL-terminated, 512 KiB area
524,400               variable headers, 144 bytes each, room for 4,096
1,114,224             three variable buffers, 0x6000 bytes apart
====================  ==========================================================

Each tick the writer fills the **oldest** buffer (tick ``n`` goes to buffer ``n % 3``)
and only then stores its ``tickCount``: a reader that takes the newest buffer never
sees it half written. The session-info text is rewritten between ticks and
``sessionInfoUpdate`` bumped after it. ``stop_sim`` clears the status flag and removes
the file (a reader's mapping stays valid, as a Windows handle keeps the map alive);
``start_sim`` writes a new file atomically (tick counts restart). Ticks are paced by
absolute deadlines (tick ``k`` is due at ``t0 + k / (tick_rate × speed)``), so sleeps
never accumulate drift. A writer a little late catches up, but never writes two ticks
less than half a period apart; one more than a period late (this process stalled,
which the real sim would not have) restarts its clock there and counts a stall,
rather than write a burst that no reader could follow.

Run it by hand next to the shim (``pitbox-shim --adapter iracing --memory-map FILE``)::

    python -m driver_pc.adapters.irsdk_emulator --ibt RECORDING.ibt --out FILE
    python -m driver_pc.adapters.irsdk_emulator --simulator --opponents 20 --out FILE
"""

from __future__ import annotations

import argparse
import json
import logging
import mmap
import os
import queue
import re
import signal
import struct
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal

import numpy as np

from driver_pc.adapters.base import Frames, SimAdapter
from driver_pc.adapters.ibt_file import HEADER, VAR_HEADER, IbtReader
from driver_pc.protocol.channels import ChannelSpec, frame_dtype

logger = logging.getLogger(__name__)

#: pyirsdk's ``MEMMAPFILESIZE``; both recorded live dumps are exactly this long.
MEMMAP_BYTES = 1164 * 1024
IRSDK_VERSION = 2
STATUS_CONNECTED = 1
VAR_BUF = struct.Struct("<ii8x")  # tickCount, bufOffset, pad[2]
VAR_BUF_OFFSET = 48
NUM_BUF = 3
SESSION_INFO_OFFSET = 112
SESSION_INFO_BYTES = 512 * 1024
VAR_HEADERS_OFFSET = SESSION_INFO_OFFSET + SESSION_INFO_BYTES
MAX_VARS = 4096
BUFFERS_OFFSET = VAR_HEADERS_OFFSET + MAX_VARS * VAR_HEADER.size
BUFFER_STRIDE = 0x6000
STATUS_AT = 4
INFO_UPDATE_AT = 12
_INT = struct.Struct("<i")
_UTF8_MARK = "---\nWeekendInfo:\n Encoding: UTF8"
_SUBSESSION = re.compile(r"^( SubSessionID: )(\S*)", re.M)


@dataclass(frozen=True, slots=True)
class RowLayout:
    """Where each channel sits in one variable buffer (a row of the sim)."""

    channels: tuple[ChannelSpec, ...]
    offsets: tuple[int, ...]
    row_bytes: int
    tick_rate: int = 60

    @classmethod
    def packed(
        cls, channels: tuple[ChannelSpec, ...], tick_rate: int = 60
    ) -> RowLayout:
        """The channels back to back, as ``frame_dtype`` packs them."""
        dtype = frame_dtype(list(channels))
        fields: dict[str, Any] = dict(dtype.fields or {})
        offsets = tuple(int(fields[c.name][1]) for c in channels)
        return cls(channels, offsets, dtype.itemsize, tick_rate)

    @property
    def dtype(self) -> np.dtype[np.void]:
        """A record of one row at the layout's offsets."""
        return np.dtype(
            {
                "names": [c.name for c in self.channels],
                "formats": [frame_dtype([c])[c.name] for c in self.channels],
                "offsets": list(self.offsets),
                "itemsize": self.row_bytes,
            }
        )


class EmulatorSource(ABC):
    """What the emulator plays: a row layout, session info, and rows in time order."""

    layout: RowLayout
    name: str = "source"

    @abstractmethod
    def chunks(self) -> Iterator[Frames]:
        """Consecutive rows (of ``layout.dtype``), a chunk at a time."""

    @property
    @abstractmethod
    def session_info_update(self) -> int:
        """Changes whenever the source's session info changes."""

    @abstractmethod
    def session_info_text(self) -> str:
        """The source's current session-info YAML."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files."""


class IbtSource(EmulatorSource):
    """A disk recording's rows, byte for byte, from ``start_s`` for ``duration_s``.

    ``loop`` starts again at ``start_s`` after the end (SessionTime jumps back then).
    """

    def __init__(
        self,
        path: str | Path,
        start_s: float = 0.0,
        duration_s: float | None = None,
        loop: bool = False,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.name
        with IbtReader(self.path) as reader:
            lay = reader.layout
            self.layout = RowLayout(
                lay.channels, lay.offsets, lay.row_bytes, lay.tick_rate
            )
            self._text = reader.session_info_text()
            times = reader.column("SessionTime")
        self._data_offset = lay.data_offset
        first = int(np.searchsorted(times, times[0] + start_s)) if len(times) else 0
        last = len(times)
        if duration_s is not None:
            last = min(last, first + round(duration_s * lay.tick_rate))
        self.first, self.last = first, last
        self.loop = loop
        self._file: BinaryIO = self.path.open("rb")
        self._mem = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def chunks(self) -> Iterator[Frames]:
        while True:
            yield from self._one_pass()
            if not self.loop or self.last <= self.first:
                return

    def rows(self) -> Frames:
        """Every row of one pass, for comparing with what a reader got."""
        return np.concatenate(list(self._one_pass()))

    def _one_pass(self, size: int = 600) -> Iterator[Frames]:
        dtype = self.layout.dtype
        for start in range(self.first, self.last, size):
            n = min(size, self.last - start)
            offset = self._data_offset + start * self.layout.row_bytes
            # A copy: no view of the mmap may outlive close().
            yield np.frombuffer(self._mem, dtype, n, offset).copy()

    @property
    def session_info_update(self) -> int:
        return 1

    def session_info_text(self) -> str:
        return self._text

    def close(self) -> None:
        if not self._mem.closed:
            self._mem.close()
        self._file.close()


class AdapterSource(EmulatorSource):
    """Any adapter's ticks (the race simulator: live-shaped, with ``CarIdx*`` arrays).

    Give the adapter unpaced (``speed=0``): the emulator does the pacing. With
    ``skip_s``/``duration_s`` only that stretch of ``SessionTime`` is played.
    """

    def __init__(
        self, adapter: SimAdapter, skip_s: float = 0.0, duration_s: float | None = None
    ) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.layout = RowLayout.packed(adapter.channels, adapter.tick_rate)
        self.skip_s = skip_s
        self.duration_s = duration_s

    def chunks(self) -> Iterator[Frames]:
        dtype = self.layout.dtype
        window: tuple[float, float] | None = None
        trim = self.skip_s > 0 or self.duration_s is not None
        for rows in self.adapter.ticks():
            if rows.dtype != dtype:
                rows = _repack(rows, dtype)
            if trim:
                t = rows["SessionTime"]
                if window is None:
                    start = float(t[0]) + self.skip_s
                    window = (start, start + (self.duration_s or float("inf")))
                rows = rows[(t >= window[0] - 1e-9) & (t < window[1] - 1e-9)]
                if float(t[-1]) >= window[1] - 1e-9:
                    if len(rows):
                        yield rows
                    return
                if not len(rows):
                    continue
            yield rows

    @property
    def session_info_update(self) -> int:
        return self.adapter.session_info_update

    def session_info_text(self) -> str:
        return self.adapter.session_info_text()

    def close(self) -> None:
        self.adapter.close()


@dataclass(slots=True)
class EmulatorStats:
    """What the emulator has written, and how well it kept its clock."""

    ticks_written: int = 0
    #: The current file's last tick count (restarts at 0 with each ``start_sim``).
    tick_count: int = 0
    session_info_update: int = 0
    sim_starts: int = 0
    sim_stops: int = 0
    session_changes: int = 0
    #: Most a tick was written after its deadline.
    max_late_s: float = 0.0
    #: Times the writer was more than a period late and restarted its clock, and
    #: the time lost so (the emulated sim ran that much slower than real time).
    stalls: int = 0
    stalled_s: float = 0.0
    #: Times the source could not deliver a row by its deadline.
    source_waits: int = 0


class IRacingMemoryEmulator:
    """Writes iRacing's live memory map into ``path`` at ``tick_rate × speed`` Hz.

    ``start()`` starts the sim and the writer thread; ``stop_sim``/``start_sim``,
    ``change_session`` and ``update_session_info`` act between two ticks (from any
    thread). When the source ends the sim stops (``on_end="stop"``: status off, file
    removed) or stays up without new ticks (``"hold"``); ``finished`` is set then.
    """

    def __init__(
        self,
        path: str | Path,
        source: EmulatorSource,
        *,
        speed: float = 1.0,
        on_end: Literal["stop", "hold"] = "stop",
    ) -> None:
        if speed <= 0:
            raise ValueError("emulator: speed must be > 0 (the sim runs in real time)")
        self.path = Path(path)
        self.speed = speed
        self.on_end = on_end
        self.stats = EmulatorStats()
        #: Set when the source has been played to its end.
        self.finished = threading.Event()
        self._lock = threading.RLock()
        self._mem: mmap.mmap | None = None
        self._feed = _Feed(source)
        self._info_len = 0
        self._stride = BUFFER_STRIDE
        self._subsession: int | None = None
        self._unique_bump = 0
        self._text_override: str | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------
    def start(self) -> IRacingMemoryEmulator:
        """Start the sim (write the file) and the 60 Hz writer.

        Waits (up to 30 s) for the source's first rows first: a simulator computes
        ahead, and the sim loads before it ticks.
        """
        self._feed.ready.wait(30)
        self.start_sim()
        self._writer = threading.Thread(
            target=self._run, name="irsdk-emulator", daemon=True
        )
        self._writer.start()
        return self

    def close(self) -> None:
        """Stop writing, remove the file and close the source."""
        self._closing.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
        self.stop_sim()
        self._feed.close()

    def __enter__(self) -> IRacingMemoryEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- what a test or a bench does to the sim ------------------------------------
    @property
    def running(self) -> bool:
        """Whether the sim is up (the file exists, status connected)."""
        return self._mem is not None

    @property
    def layout(self) -> RowLayout:
        return self._feed.source.layout

    def stop_sim(self, remove: bool = True) -> None:
        """The sim exits: status flag off, then (``remove``) the file goes away."""
        with self._lock:
            mem, self._mem = self._mem, None
            if mem is None:
                return
            _INT.pack_into(mem, STATUS_AT, 0)
            mem.close()
            if remove:
                self.path.unlink(missing_ok=True)
            self.stats.sim_stops += 1
        logger.info("emulated sim stopped (%s)", self.path)

    def start_sim(self, source: EmulatorSource | None = None) -> None:
        """The sim starts (again): a new file, tick counts from 0, status connected.

        With ``source`` it plays that from now on (a new layout, as after the sim
        loaded another car); otherwise the old source goes on where it paused.
        """
        with self._lock:
            if self._mem is not None:
                raise RuntimeError("emulated sim is already running")
            if source is not None:
                self._feed.close()
                self._feed = _Feed(source)
                self._subsession, self._unique_bump = None, 0
                self._text_override = None
                self.finished.clear()
            self._mem = self._create_file()
            self.stats.sim_starts += 1
            self.stats.tick_count = 0
        self._wake.set()
        logger.info("emulated sim started (%s)", self.path)

    def change_session(self, subsession_id: int | None = None) -> int:
        """A new session in the same sim; returns the new subsession id.

        The session info gets ``SubSessionID`` (default: the current one + 1), the rows
        ``SessionUniqueID`` + 1, and ``SessionInfoUpdate`` is bumped.
        """
        with self._lock:
            current = self._subsession
            if current is None:
                found = _SUBSESSION.search(self._feed.text)
                current = (
                    int(found.group(2)) if found and found.group(2).isdigit() else 0
                )
            self._subsession = current + 1 if subsession_id is None else subsession_id
            self._unique_bump += 1
            self._text_override = None
            self.stats.session_changes += 1
            self._publish_info()
            return self._subsession

    def update_session_info(self, text: str | None = None) -> int:
        """New session info mid-session; returns the bumped ``SessionInfoUpdate``.

        ``text`` replaces the info (until the next session change or source update);
        without it the current text is written again.
        """
        with self._lock:
            if text is not None:
                self._text_override = text
            self._publish_info()
            return self.stats.session_info_update

    def session_info_text(self) -> str:
        """The session info as the file holds it now."""
        with self._lock:
            return self._current_text()

    def wait_ticks(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` ticks have been written in all; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.stats.ticks_written < count:
            if time.monotonic() > deadline or self.finished.is_set():
                return self.stats.ticks_written >= count
            time.sleep(0.005)
        return True

    # ---- the writer ----------------------------------------------------------------
    def _run(self) -> None:
        feed: _Feed | None = None
        chunk: Frames | None = None
        pos = 0
        due: float | None = None
        last_write = 0.0
        while not self._closing.is_set():
            with self._lock:
                live = self._mem is not None and not self.finished.is_set()
                if self._feed is not feed:
                    feed, chunk, due = self._feed, None, None
            if not live or feed is None:
                due = None
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            period = 1.0 / (feed.source.layout.tick_rate * self.speed)
            if chunk is None or pos >= len(chunk):
                got = feed.next(timeout=0.1)
                if got is None:
                    self.stats.source_waits += 1
                    continue
                if got is _END:
                    self._end()
                    continue
                chunk, text = got
                pos = 0
                if text is not None:
                    with self._lock:
                        self._text_override = None
                        self._publish_info()
            now = time.monotonic()
            if due is None:
                due = now
            # Never two ticks closer than half a period: a reader keeps up.
            at = max(due, last_write + period / 2)
            if at > now:
                time.sleep(at - now)
                now = time.monotonic()
            late = now - due
            self.stats.max_late_s = max(self.stats.max_late_s, late)
            if late > period:
                # This process stalled (not the sim's doing): restart the clock
                # here rather than write a burst of overdue ticks.
                self.stats.stalls += 1
                self.stats.stalled_s += late
                due = now
            with self._lock:
                if self._mem is None or self._feed is not feed:
                    continue  # the sim stopped while we slept: keep the row for later
                self._write_tick(chunk[pos : pos + 1])
            last_write = time.monotonic()
            pos += 1
            due += period

    def _end(self) -> None:
        logger.info("emulator: %s played to its end", self._feed.source.name)
        self.finished.set()
        if self.on_end == "stop":
            self.stop_sim()

    def _write_tick(self, row: Frames) -> None:
        mem = self._mem
        assert mem is not None
        if self._unique_bump and "SessionUniqueID" in (row.dtype.names or ()):
            row = row.copy()
            row["SessionUniqueID"] += self._unique_bump
        tick = self.stats.tick_count + 1
        index = tick % NUM_BUF
        offset = BUFFERS_OFFSET + index * self._stride
        mem[offset : offset + row.dtype.itemsize] = row.tobytes()
        # Only now does the buffer become the newest: a reader never sees it torn.
        _INT.pack_into(mem, VAR_BUF_OFFSET + index * 16, tick)
        self.stats.tick_count = tick
        self.stats.ticks_written += 1

    # ---- the file ------------------------------------------------------------------
    def _create_file(self) -> mmap.mmap:
        layout = self._feed.source.layout
        if len(layout.channels) > MAX_VARS:
            raise ValueError(f"emulator: {len(layout.channels)} channels > {MAX_VARS}")
        self._stride = max(BUFFER_STRIDE, -(-layout.row_bytes // 4096) * 4096)
        size = max(MEMMAP_BYTES, BUFFERS_OFFSET + NUM_BUF * self._stride)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w+b") as f:
            f.truncate(size)
            mem = mmap.mmap(f.fileno(), size)
        HEADER.pack_into(
            mem,
            0,
            IRSDK_VERSION,
            STATUS_CONNECTED,
            layout.tick_rate,
            0,
            SESSION_INFO_BYTES,
            SESSION_INFO_OFFSET,
            len(layout.channels),
            VAR_HEADERS_OFFSET,
            NUM_BUF,
            layout.row_bytes,
        )
        for i in range(NUM_BUF):
            VAR_BUF.pack_into(
                mem, VAR_BUF_OFFSET + i * 16, 0, BUFFERS_OFFSET + i * self._stride
            )
        for i, (ch, offset) in enumerate(
            zip(layout.channels, layout.offsets, strict=True)
        ):
            VAR_HEADER.pack_into(
                mem,
                VAR_HEADERS_OFFSET + i * VAR_HEADER.size,
                int(ch.kind),
                offset,
                ch.count,
                False,
                ch.name.encode("latin-1")[:31],
                ch.description.encode("latin-1", errors="replace")[:63],
                ch.unit.encode("latin-1", errors="replace")[:31],
            )
        self._info_len = 0
        self.stats.session_info_update = 0
        self._publish_info(mem)
        # Readers see a complete map or none: the name appears only now.
        os.replace(tmp, self.path)
        return mem

    def _current_text(self) -> str:
        if self._text_override is not None:
            return self._text_override
        text = self._feed.text
        if self._subsession is not None:
            sub = str(self._subsession)
            if _SUBSESSION.search(text):
                text = _SUBSESSION.sub(lambda m: m.group(1) + sub, text, count=1)
            else:
                text = text.replace(
                    "WeekendInfo:\n", f"WeekendInfo:\n SubSessionID: {sub}\n", 1
                )
        return text

    def _publish_info(self, mem: mmap.mmap | None = None) -> None:
        """Write the current session info, then bump ``SessionInfoUpdate``."""
        mem = mem or self._mem
        if mem is None:
            return
        text = self._current_text()
        encoding = "utf-8" if text.startswith(_UTF8_MARK) else "latin-1"
        data = text.encode(encoding, errors="replace")
        if len(data) >= SESSION_INFO_BYTES:
            raise ValueError(
                f"emulator: session info of {len(data)} bytes does not fit the "
                f"{SESSION_INFO_BYTES}-byte area"
            )
        start = SESSION_INFO_OFFSET
        tail = max(self._info_len - len(data), 0) + 1  # clear the old text's rest
        mem[start : start + len(data)] = data
        mem[start + len(data) : start + len(data) + tail] = b"\0" * tail
        self._info_len = len(data)
        self.stats.session_info_update += 1
        _INT.pack_into(mem, INFO_UPDATE_AT, self.stats.session_info_update)


_END = object()


class _Feed:
    """Reads a source ahead on its own thread, so the writer never waits for it.

    The race simulator computes 600 ticks at a time (tens of ms); the writer must
    not miss its 16.7 ms deadlines meanwhile.
    """

    def __init__(self, source: EmulatorSource, depth: int = 4) -> None:
        self.source = source
        self.text = source.session_info_text()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        #: Set once the queue is full (or the source ended): reading ahead is done.
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, name="irsdk-emulator-source", daemon=True
        )
        self._thread.start()

    def next(self, timeout: float) -> Any:
        """``(chunk, new text or None)``, ``_END``, or None when nothing came in time."""
        try:
            got = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if got is not _END and got[1] is not None:
            self.text = got[1]
        return got

    def _produce(self) -> None:
        seen = self.source.session_info_update
        try:
            for chunk in self.source.chunks():
                update = self.source.session_info_update
                text = self.source.session_info_text() if update != seen else None
                seen = update
                if not self._put((chunk, text)):
                    return
        except Exception:
            logger.exception("emulator: the source %s failed", self.source.name)
        self._put(_END)

    def _put(self, item: Any) -> bool:
        if item is _END:
            self.ready.set()
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                self.ready.set()
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.source.close()


def _repack(rows: Frames, dtype: np.dtype[np.void]) -> Frames:
    out = np.zeros(len(rows), dtype=dtype)
    for name in dtype.names or ():
        out[name] = rows[name]
    return out


# ---- command line ----------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m driver_pc.adapters.irsdk_emulator``: play a source into a file."""
    from driver_pc.protocol.logs import setup_logging

    args = _parser().parse_args(argv)
    setup_logging(logging.INFO)
    # The writer must meet 60 Hz deadlines while the source computes ahead on
    # another thread (the simulator: ~50 ms per 600 ticks): hand the GIL over every
    # 1 ms instead of 5.
    sys.setswitchinterval(0.001)
    source: EmulatorSource
    if args.ibt is not None:
        source = IbtSource(
            args.ibt, start_s=args.start_s, duration_s=args.duration_s, loop=args.loop
        )
    else:
        from driver_pc.adapters.simulator import RaceSimulatorAdapter

        source = AdapterSource(
            RaceSimulatorAdapter(
                laps=args.laps, speed=0, seed=args.seed, opponents=args.opponents
            ),
            skip_s=args.start_s,
            duration_s=args.duration_s,
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    events = sorted(_event(e) for e in args.event)
    emulator = IRacingMemoryEmulator(args.out, source, speed=args.speed)
    started = time.monotonic()
    emulator.start()
    try:
        while not stop.is_set() and not emulator.finished.is_set():
            elapsed = time.monotonic() - started
            if args.minutes is not None and elapsed >= args.minutes * 60:
                break
            while events and events[0][0] <= elapsed:
                _apply(emulator, events.pop(0)[1])
            stop.wait(0.05)
    finally:
        emulator.close()
    stats = asdict(emulator.stats) | {"wall_s": time.monotonic() - started}
    logger.info("emulator done: %s", stats)
    if args.stats is not None:
        Path(args.stats).write_text(json.dumps(stats, indent=1) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driver_pc.adapters.irsdk_emulator",
        description=(__doc__ or "").splitlines()[0],
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--ibt", type=Path, help="replay this .ibt recording")
    what.add_argument(
        "--simulator", action="store_true", help="play PitBox's race simulator"
    )
    parser.add_argument("--out", type=Path, required=True, help="memory-map file")
    parser.add_argument("--speed", type=float, default=1.0, help="× real time")
    parser.add_argument("--loop", action="store_true", help="replay the .ibt forever")
    parser.add_argument(
        "--start-s", type=float, default=0.0, help="skip this much SessionTime first"
    )
    parser.add_argument(
        "--duration-s", type=float, help="play this much SessionTime (default: all)"
    )
    parser.add_argument("--laps", type=int, default=200, help="simulator: race laps")
    parser.add_argument("--opponents", type=int, default=0, help="simulator: cars")
    parser.add_argument("--seed", type=int, default=1, help="simulator: seed")
    parser.add_argument("--minutes", type=float, help="stop after this long")
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="SECONDS:KIND",
        help="at SECONDS after the start: update (session info), session (change), "
        "restart (sim stops, back 2 s later); repeatable",
    )
    parser.add_argument("--stats", type=Path, help="write the final stats as JSON")
    return parser


def _event(text: str) -> tuple[float, str]:
    at, _, kind = text.partition(":")
    if kind not in ("update", "session", "restart"):
        raise SystemExit(f"--event {text}: kind must be update, session or restart")
    return float(at), kind


def _apply(emulator: IRacingMemoryEmulator, kind: str) -> None:
    logger.info("emulator event: %s", kind)
    if kind == "update":
        emulator.update_session_info()
    elif kind == "session":
        emulator.change_session()
    else:
        emulator.stop_sim()
        time.sleep(2.0)
        emulator.start_sim()


if __name__ == "__main__":
    sys.exit(main())
