"""The live path: each car's newest frame from its driving PC, decoded off the ingest thread.

Ingest stores, segments, analyses and commits; a commit (or a checkpoint's fsync on a
busy SD card) can hold it for hundreds of milliseconds. The pit wall must not wait for
that. So the core's live thread reads every shim message a second time, as it arrives:
``LivePeek`` verifies it with its own ``WireDecoder`` (its own sequence and dictionary
state, so it never touches ingest's), decodes telemetry, and hands back the newest
values of the live channels. The live thread lays those over the car's state
(``LiveCar.fresh``) only when they come from the PC that ingest elected to drive and
are newer than what ingest has; everything else of the state (laps, strategy,
predictions) still comes from ingest. Nothing here is stored or acknowledged: a
message the live path cannot read (a dictionary it has not seen yet, a gap) is only
counted, and ingest remains the authority.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from driver_pc.protocol.codec import Codec, DecodeError
from driver_pc.protocol.live import LIVE_CHANNELS
from driver_pc.protocol.messages import (
    ChannelDictionary,
    InvalidMessage,
    MessageType,
    TelemetryBatch,
)
from pitbox_appliance.core.decode import WireDecoder

logger = logging.getLogger(__name__)

#: Messages waiting for the live thread; beyond, the oldest are not peeked (ingest
#: still has them all). 4 cars × 3 PCs × 20 batches/s: one second.
LIVE_QUEUE = 256

_PEEKED = (MessageType.TELEMETRY, MessageType.CHANNELS)


@dataclass(frozen=True, slots=True)
class Fresh:
    """The newest live values of one PC's batch, for the car's live state."""

    source: str
    session_key: str
    values: dict[str, float]

    @property
    def session_time(self) -> float:
        return self.values["SessionTime"]


class LivePeek:
    """Reads each shim message for its live values only; never raises on a bad one."""

    def __init__(
        self,
        codec: Codec,
        last_seqs: dict[str, int],
        dictionaries: Iterable[ChannelDictionary] = (),
    ) -> None:
        # Only the live channels are decoded (their columns alone are rebuilt).
        self._decoder = WireDecoder(
            codec, last_seqs, dictionaries, channels=frozenset(LIVE_CHANNELS)
        )
        self.peeked = 0
        self.skipped: Counter[str] = Counter()  # reason → messages not read

    def peek(
        self,
        payload: bytes,
        topic_source: str | None,
        wanted: Callable[[str], bool] | None = None,
    ) -> Fresh | None:
        """The live values of ``payload`` if it is new telemetry; None otherwise.

        ``wanted(source)`` False: the telemetry of that PC is not decoded at all (a PC
        standing by, whose values the pit wall does not show). Its chain is then not
        followed here, so when it is elected the live path takes it from its next
        keyframe (at most 2 s; ingest's values show meanwhile).
        """
        try:
            opened = self._decoder.open(payload, topic_source)
            if opened is None or opened.kind not in _PEEKED:
                return None
            if (
                wanted is not None
                and opened.kind is MessageType.TELEMETRY
                and not wanted(opened.source)
            ):
                self.skipped["standing_by"] += 1
                return None
            decoded = self._decoder.parse(opened)
        except DecodeError as exc:
            self.skipped[exc.reason] += 1
            return None
        except InvalidMessage:
            self.skipped["invalid"] += 1
            return None
        except Exception:
            # Whatever a message does here, ingest (its own fault domain) deals with
            # it; the live thread must not die of it and take the core down with it.
            self.skipped["error"] += 1
            if self.skipped["error"] == 1:
                logger.exception("live path: a message could not be read")
            return None
        message = decoded.message
        self._decoder.accepted(decoded.source, decoded.seq, message)
        if not isinstance(message, TelemetryBatch) or not len(message.frames):
            return None
        frames = message.frames
        # The newest row as Python values in one call (a field read of a numpy
        # record costs ~2 us each).
        last = dict(zip(frames.dtype.names or (), frames[-1].tolist(), strict=True))
        self.peeked += 1
        return Fresh(
            decoded.source,
            message.session_key,
            {name: float(last[name]) for name in LIVE_CHANNELS if name in last},
        )
