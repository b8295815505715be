"""Which stored sessions have finished, decided from the database alone (read-only).

A session is finished when (docs/decisions.md, "When a session is finished"):

- ``session_change``: a newer session of the same car is stored;
- ``checkered``: its newest stored telemetry shows the checkered flag or the
  cool-down (``SessionState`` >= 5, or the ``SessionFlags`` checkered bit) and
  nothing new has been stored for ``settle_s`` (the last lap is in);
- ``idle``: nothing new has been stored for ``idle_s``.

"Nothing new" is the session's stored end (``sessions.last_time`` and its newest
chunk's end) not moving, as this process has seen it on the wall clock; after a
restart the clocks start again, so a finish is found at most ``idle_s`` late.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pitbox_appliance.storage.reader import (
    ChunkDecoder,
    MissingChannelSetError,
    SessionReader,
    SessionRow,
)

logger = logging.getLogger(__name__)

#: iRacing's ``irsdk_SessionState``: 5 checkered, 6 cool-down.
CHECKERED_STATE = 5
#: iRacing's ``irsdk_Flags`` checkered bit.
CHECKERED_FLAG = 0x0001
FLAG_CHANNELS = frozenset({"SessionState", "SessionFlags"})


@dataclass
class _Seen:
    signature: tuple[float | None, float | None]
    since: float
    checkered: bool | None = None  # None: not looked at for this signature


class FinishWatch:
    """Remembers each session's stored end and when it last moved."""

    def __init__(self, *, idle_s: float, settle_s: float) -> None:
        self.idle_s = idle_s
        self.settle_s = settle_s
        self._seen: dict[int, _Seen] = {}

    def finished(
        self, reader: SessionReader, sessions: list[SessionRow], now: float
    ) -> dict[int, str]:
        """Session id → why it is finished, for each stored session that is."""
        out: dict[int, str] = {}
        newest: dict[str, int] = {}
        for race in sessions:
            if race.id > newest.get(race.car, -1):
                newest[race.car] = race.id
        for race in sessions:
            if race.id != newest[race.car]:
                out[race.id] = "session_change"
                continue
            if race.last_time is None:
                continue  # no telemetry yet
            signature = (race.last_time, reader.last_chunk_end(race.id))
            seen = self._seen.get(race.id)
            if seen is None or seen.signature != signature:
                self._seen[race.id] = _Seen(signature, now)
                continue
            quiet = now - seen.since
            if quiet >= self.idle_s:
                out[race.id] = "idle"
            elif quiet >= self.settle_s:
                if seen.checkered is None:
                    seen.checkered = checkered(reader, race.id)
                if seen.checkered:
                    out[race.id] = "checkered"
        return out


def checkered(reader: SessionReader, session_id: int) -> bool:
    """Whether the session's newest stored telemetry shows the checkered flag."""
    end = reader.last_chunk_end(session_id)
    if end is None:
        return False
    try:
        dictionaries = reader.chunk_channel_sets(session_id)
    except MissingChannelSetError:
        return False
    decode = ChunkDecoder(dictionaries, FLAG_CHANNELS, reader=reader)
    for _chunk, batch in decode.batches(reader.chunks(session_id, start=end)):
        frames = batch.frames
        names = frames.dtype.names or ()
        if "SessionState" in names and np.any(
            frames["SessionState"].astype(np.int64) >= CHECKERED_STATE
        ):
            return True
        if "SessionFlags" in names and np.any(
            frames["SessionFlags"].astype(np.int64) & CHECKERED_FLAG
        ):
            return True
    return False
