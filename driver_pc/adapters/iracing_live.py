"""iRacing live adapter: the sim's shared memory through pyirsdk, on Windows or from a memory-map file."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from driver_pc.adapters.base import (
    AdapterOptions,
    AdapterUnavailableError,
    Frames,
    SimAdapter,
    register_adapter,
)
from driver_pc.protocol.channels import ChannelKind, ChannelSpec, frame_dtype
from driver_pc.protocol.session_info import (
    SessionInfoError,
    current_driver,
    decode_session_bytes,
    parse_session_info,
    track_info,
)

logger = logging.getLogger(__name__)

#: Sleep between two looks at the tick counts when polling a file (Linux).
POLL_S = 0.001
#: No new tick for this long while the status says connected: the sim is gone
#: (a crashed sim leaves its last state behind; a live one ticks at 60 Hz).
STALL_S = 2.0
#: After a tick, the share of the recent gap between ticks that polling sleeps through
#: in one go before it looks every ``POLL_S`` (a tick is safe for two periods; the
#: rest is margin for a busy machine).
QUIET_SHARE = 0.5
#: Pause between two attempts to find the sim.
RETRY_S = 0.25
#: Ticks read but not yet taken by the pipeline (60 s at 60 Hz); beyond, ticks drop.
QUEUE_TICKS = 3600
#: iRacing declares ~330 variables; more is a damaged header.
MAX_VARS = 4096


class IRacingLiveOptions(AdapterOptions):
    """Options of the live iRacing adapter."""

    memory_map: str | None = Field(
        None,
        description="read iRacing's memory map from this file and poll it instead of "
        "waiting on the Windows event (Linux: a file the emulator writes, python -m "
        "driver_pc.adapters.irsdk_emulator)",
    )
    wait_s: float = Field(
        0.0,
        ge=0.0,
        description="seconds to wait for the sim at start (0: give up at once)",
    )


@dataclass(slots=True)
class LiveStats:
    """What the live adapter has read, lost and lived through."""

    ticks_read: int = 0
    #: Ticks the sim wrote that never reached the pipeline (gaps in the tick count).
    missed_ticks: int = 0
    #: Buffers rewritten while being copied (dropped; also counted as missed).
    torn_reads: int = 0
    #: Ticks read but dropped because the pipeline fell a whole queue behind.
    dropped_ticks: int = 0
    connects: int = 0
    sim_gone: int = 0
    session_changes: int = 0
    #: The sim's tick count of the last row handed out.
    last_tick: int = 0
    #: Longest the reader went without looking at the tick counts while connected
    #: (a tick is safe for two periods, 33 ms; longer means the process was starved).
    max_look_gap_s: float = 0.0


@dataclass(slots=True)
class _Tick:
    """One variable buffer as copied out of the map, with the session info it belongs to."""

    tick: int
    raw: bytes
    update: int
    text: str | None  # the session info, when it changed since the previous tick


@register_adapter("iracing", options=IRacingLiveOptions)
class IRacingLiveAdapter(SimAdapter):
    r"""Live telemetry of the local iRacing sim.

    On Windows a reader thread waits on ``Local\\IRSDKDataValidEvent`` (pyirsdk's
    ``_wait_valid_data_event``, at most 32 ms) rather than sleeping. With
    ``memory_map`` (Linux: the emulator's file) it polls the buffers' tick counts every
    ``poll_s`` instead; everything else is the same code. Each tick newer than the last
    one read is copied out of the two newest of the three rotating buffers (the third
    is the one the sim writes next) and checked against its tick count after the copy,
    as iRacing's own ``irsdk_getNewData`` does; gaps are counted in :attr:`stats`.

    The reader runs on its own thread and queues what it copies, so the pipeline may
    take a while (parsing a 60-car session info takes tens of milliseconds) without a
    tick being overwritten unread.

    ``ticks()`` ends when the sim goes away (status flag off, tick counts back to
    zero, or no tick for ``stall_s``) or when the session changes (a new session key
    in updated session info). :meth:`wait_for_session` then finds the sim again and
    ``ticks()`` goes on with the next session.
    """

    follows_sim = True

    def __init__(
        self,
        memory_map: str | None = None,
        wait_s: float = 0.0,
        poll_s: float = POLL_S,
        stall_s: float = STALL_S,
        queue_ticks: int = QUEUE_TICKS,
    ) -> None:
        if memory_map is None and sys.platform != "win32":
            raise AdapterUnavailableError(
                "iracing: live telemetry needs Windows (iRacing's shared memory), or "
                "--memory-map FILE (a memory-map file such as the emulator's); "
                "use the 'ibt', 'dump' or 'simulator' adapter here"
            )
        import irsdk

        self._irsdk: Any = irsdk
        self.memory_map = memory_map
        self.poll_s = poll_s
        self.stall_s = stall_s
        self.queue_ticks = queue_ticks
        self.stats = LiveStats()
        self._conn: _Connection | None = None
        self._pending: _Tick | None = None
        self._info: tuple[int, str] = (0, "")
        self._keys: dict[int, str] = {}
        self._key = "ir-0-car0"
        self._closed = False
        if not self.wait_for_session(wait_s):
            where = memory_map or "iRacing's shared memory"
            raise AdapterUnavailableError(
                f"iracing: the sim is not running (nothing ticks in {where})"
            )

    # ---- the adapter contract -------------------------------------------------------
    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self._conn.channels if self._conn is not None else ()

    @property
    def session_key(self) -> str:
        update, text = self._info
        key = self._keys.get(update)
        if key is None:
            key = self._keys[update] = _session_key(text) or self._key
        self._key = key
        return key

    @property
    def session_info_update(self) -> int:
        return self._info[0]

    def session_info_text(self) -> str:
        return self._info[1]

    def ticks(self) -> Iterator[Frames]:
        conn = self._conn
        if conn is None or self._closed:
            return
        stream_key = self.session_key
        while True:
            item, self._pending = self._pending, None
            if item is None:
                item = conn.next_tick()
                if item is None:
                    self._lost(conn)
                    return
            if item.text is not None and item.update != self._info[0]:
                self._info = (item.update, item.text)
                if self.session_key != stream_key:
                    self.stats.session_changes += 1
                    logger.warning(
                        "iracing: session changed (%s -> %s)",
                        stream_key,
                        self.session_key,
                    )
                    self._pending = item  # the first tick of the next session
                    return
            self.stats.ticks_read += 1
            self.stats.last_tick = item.tick
            yield conn.unpack(item.raw)

    def wait_for_session(self, timeout: float) -> bool:
        """Find the sim (again) within ``timeout`` seconds; True when ``ticks()`` may go on.

        Immediately True after a session change (the sim never went away); after the
        sim went away, True once it ticks again, with the channels and session info of
        what it now runs.
        """
        if self._closed:
            return False
        if self._conn is not None:
            if self._conn.alive:
                return True
            self._conn.close()
            self._conn = None
        deadline = time.monotonic() + timeout
        while not self._closed:
            conn = self._connect(max(deadline, time.monotonic() + self.stall_s))
            if conn is not None:
                self._conn, self._pending = conn, None
                self._info = conn.info
                self._keys.clear()  # a new map counts its updates from 1 again
                self.stats.connects += 1
                logger.info(
                    "iracing: connected to %s (%d channels, session %s)",
                    self.memory_map or "the sim",
                    len(conn.channels),
                    self.session_key,
                )
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))
        return False

    def camera_switch(self, car_number: str, group: int, camera: int) -> str:
        if self.memory_map is not None or self._conn is None:
            raise AdapterUnavailableError(
                "iracing: camera control needs the sim on Windows (broadcast messages)"
            )
        self._conn.ir.cam_switch_num(car_number, group, camera)
        return f"iRacing camera: car #{car_number}, group {group}, camera {camera}"

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()

    # ---- helpers ----------------------------------------------------------------------
    def _connect(self, deadline: float) -> _Connection | None:
        """Open the map and wait (until ``deadline``) for a tick newer than the newest."""
        if self.memory_map is None and not _sim_running(self._irsdk.SIM_STATUS_URL):
            return None  # (pyirsdk would print a line for every attempt)
        ir = self._irsdk.IRSDK()
        try:
            if self.memory_map is not None:
                ok = ir.startup(test_file=self.memory_map)
            else:
                ok = ir.startup()
        except (OSError, ValueError):  # no file yet, or an empty one
            ok = False
        if not ok:
            ir.shutdown()
            return None
        try:
            conn = _Connection(self, ir)
        except ValueError as exc:
            logger.warning("iracing: unusable memory map: %s", exc)
            ir.shutdown()
            return None
        if not conn.wait_first_tick(deadline):
            ir.shutdown()
            return None
        conn.start()
        return conn

    def _lost(self, conn: _Connection) -> None:
        conn.close()
        if not self._closed:
            self.stats.sim_gone += 1
            logger.warning("iracing: the sim is gone (%s); waiting for it", conn.why)


class _Connection:
    """One mapping of the sim: its layout, and the thread that copies ticks out of it."""

    def __init__(self, adapter: IRacingLiveAdapter, ir: Any) -> None:
        self.adapter = adapter
        self.ir = ir
        self.file_mode = adapter.memory_map is not None
        self.stats = adapter.stats
        header = ir._header
        self._mem = ir._shared_mem
        size = len(self._mem)
        if not 0 < header.num_vars <= MAX_VARS:
            raise ValueError(f"{header.num_vars} variables declared")
        if header.var_header_offset + header.num_vars * 144 > size:
            raise ValueError("variable headers run past the end of the map")
        if not 0 < header.num_buf <= 4 or header.buf_len <= 0:
            raise ValueError(f"{header.num_buf} buffers of {header.buf_len} bytes")
        if header.session_info_offset + header.session_info_len > size:
            raise ValueError("session info runs past the end of the map")
        self.buffers = list(header.var_buf)
        for buf in self.buffers:
            if buf._buf_offset + header.buf_len > size:
                raise ValueError("a variable buffer runs past the end of the map")
        self.header = header
        self.buf_len = int(header.buf_len)
        chans = [
            ChannelSpec(v.name, ChannelKind(v.type), v.count, v.unit, v.desc)
            for v in ir._var_headers
        ]
        self.channels: tuple[ChannelSpec, ...] = tuple(chans)
        view = np.dtype(
            {
                "names": [c.name for c in chans],
                "formats": [frame_dtype([c])[c.name] for c in chans],
                "offsets": [v.offset for v in ir._var_headers],
                "itemsize": self.buf_len,
            }
        )
        self.packed: np.dtype[np.void] = frame_dtype(chans)
        # Byte positions of the packed row in the sim's row: one gather per tick.
        fields: dict[str, Any] = dict(view.fields or {})
        self._gather = np.concatenate(
            [
                np.arange(int(fields[n][1]), int(fields[n][1]) + fields[n][0].itemsize)
                for n in view.names or ()
            ]
        )
        self.info = self._read_info()
        self.why = ""
        self._last = 0
        self._queue: queue.Queue[_Tick | None] = queue.Queue(adapter.queue_ticks)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._read, name="iracing-reader", daemon=True
        )

    @property
    def alive(self) -> bool:
        return not self._done.is_set()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._done.set()
        self.ir.shutdown()

    def unpack(self, raw: bytes) -> Frames:
        """The sim's row as a packed one-row record array of ``channels``."""
        data = np.frombuffer(raw, np.uint8)[self._gather]
        row: Frames = data.view(self.packed)
        return row

    def next_tick(self) -> _Tick | None:
        """The next tick read; None once the sim is gone or the adapter closed."""
        while True:
            try:
                return self._queue.get(timeout=0.25)
            except queue.Empty:
                if self._done.is_set() or self.adapter._closed:
                    return None

    def wait_first_tick(self, deadline: float) -> bool:
        """Wait for a tick newer than the map's newest now: the sim is alive."""
        start = self._newest()
        while True:
            if not self._connected():
                return False
            newest = self._newest()
            if newest != start:
                # Start with the newest complete buffer; older ones are history.
                self._last = newest - 1
                return True
            if time.monotonic() >= deadline:
                return False
            self._wait()

    # ---- the reader thread ----------------------------------------------------------
    def _read(self) -> None:
        try:
            self._copy_ticks()
        except Exception as exc:
            logger.exception("iracing: reader failed")
            self.why = f"reader failed: {exc}"
        finally:
            self._done.set()
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass

    def _copy_ticks(self) -> None:
        mem, header, bufs = self._mem, self.header, self.buffers
        stats, n_buf, buf_len = self.stats, len(self.buffers), self.buf_len
        last = delivered = self._last
        update = self.info[0]
        text: str | None = None
        seen = time.monotonic()
        # Polling: after a tick, sleep through half the gap the last ticks came at,
        # then look every poll_s (each 1 ms sleep costs ~30 µs of CPU here: this
        # halves it, and leaves 1.5 periods of the two a tick is safe for).
        gaps: deque[float] = deque(maxlen=4)
        quiet_until = 0.0
        looked = seen
        while not self._stop.is_set():
            look = time.monotonic()
            blind = look - looked  # since the reader last looked
            stats.max_look_gap_s = max(stats.max_look_gap_s, blind)
            looked = look
            ticks = [b.tick_count for b in bufs]
            newest = max(ticks)
            if newest < last:
                self.why = "tick counts went back: the sim restarted"
                return
            if newest == last:
                if not self._connected():
                    self.why = "status flag off"
                    return
                if time.monotonic() - seen > self.adapter.stall_s:
                    self.why = f"no tick for {self.adapter.stall_s:.1f} s"
                    return
                self._wait(quiet_until - time.monotonic())
                continue
            now = time.monotonic()
            gaps.append((now - seen) / (newest - last))
            seen = now
            quiet_until = now + QUIET_SHARE * min(gaps)
            if header.session_info_update != update:
                update, text = self._read_info()
            for tick, i in sorted((t, i) for i, t in enumerate(ticks) if t > last):
                last = tick
                if n_buf > 2 and tick <= newest - (n_buf - 1):
                    continue  # the buffer the sim writes next: not safe to copy
                offset = bufs[i]._buf_offset
                raw = mem[offset : offset + buf_len]
                if bufs[i].tick_count != tick:
                    stats.torn_reads += 1
                    continue
                if delivered and tick > delivered + 1:
                    stats.missed_ticks += tick - delivered - 1
                    logger.warning(
                        "iracing: missed ticks %d..%d (nothing read for %.0f ms)",
                        delivered + 1,
                        tick - 1,
                        blind * 1000,
                    )
                delivered = tick
                try:
                    self._queue.put_nowait(_Tick(tick, raw, update, text))
                    text = None
                except queue.Full:
                    stats.dropped_ticks += 1

    def _read_info(self) -> tuple[int, str]:
        """The session info and its update count, re-read if it changed meanwhile."""
        header, mem = self.header, self._mem
        while True:
            update = int(header.session_info_update)
            start = header.session_info_offset
            end = mem.find(b"\0", start, start + header.session_info_len)
            raw = mem[start : end if end >= 0 else start + header.session_info_len]
            if header.session_info_update == update:
                return update, decode_session_bytes(raw)

    def _newest(self) -> int:
        return max(int(b.tick_count) for b in self.buffers)

    def _connected(self) -> bool:
        if self.file_mode:
            return bool(
                self.header.status & self.adapter._irsdk.StatusField.status_connected
            )
        return bool(self.ir.is_connected)

    def _wait(self, quiet_s: float = 0.0) -> None:
        """Until the sim may have written a tick: the Windows event, or a sleep.

        Polling sleeps ``poll_s``, or the rest of ``quiet_s`` when that is longer.
        """
        if self.file_mode:
            time.sleep(max(self.adapter.poll_s, quiet_s))
        else:
            self.ir._wait_valid_data_event()


def _sim_running(url: str) -> bool:
    """Whether iRacing's local status page says the sim runs (pyirsdk's own check)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return "running:1" in reply.read().decode("utf-8", "replace")
    except OSError:
        return False


def _session_key(text: str) -> str | None:
    """``ir-<subsession>-car<number>`` from session info; None if it cannot be read."""
    try:
        info = parse_session_info(text)
    except SessionInfoError as exc:
        logger.warning("iracing: session info unreadable: %s", exc)
        return None
    sub = track_info(info)["subsession_id"]
    driver = current_driver(info)
    car = driver.car_number if driver else "0"
    return f"ir-{sub}-car{car}"
