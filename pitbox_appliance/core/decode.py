"""Wire messages in: verify the envelope, drop duplicates, decompress and decode once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from driver_pc.protocol.codec import Codec, DecodeError, decode_batch, parse_body
from driver_pc.protocol.live import LIVE_CHANNELS
from driver_pc.protocol.messages import (
    ChannelDictionary,
    Message,
    MessageType,
    TelemetryBatch,
)
from pitbox_appliance.analysis.lap_inputs import INPUT_CHANNELS
from pitbox_appliance.detectors import DETECTOR_CHANNELS
from pitbox_appliance.strategy.engine import STRATEGY_CHANNELS

# What the core decodes of each batch: segmentation, live state, lap inputs, detectors
# and strategy. The full batch is stored as received, so nothing else is lost by not
# decoding it here.
DECODED_CHANNELS = frozenset(
    (
        *LIVE_CHANNELS,
        *INPUT_CHANNELS,
        *DETECTOR_CHANNELS,
        *STRATEGY_CHANNELS,
        "CarIdxLapDistPct",
        "CarIdxPosition",
        "CarIdxOnPitRoad",
        "PlayerCarIdx",
        "LapDist",
    )
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One verified, new message: its sender, sequence number, kind and content."""

    source: str
    seq: int
    kind: MessageType
    message: Message
    compressed: bytes  # the body as received (telemetry is stored as it came)


class WireDecoder:
    """Verifies and decodes wire messages; remembers channel dictionaries and sequences.

    ``decode`` raises DecodeError (with a short ``reason``) for anything it cannot
    accept and returns None for a duplicate; ``accepted`` records a message once it
    is stored, so the next one of that source must come after it.
    """

    def __init__(
        self,
        codec: Codec,
        last_seqs: dict[str, int],
        dictionaries: Iterable[ChannelDictionary] = (),
    ) -> None:
        self.codec = codec
        self._last_seq = dict(last_seqs)
        self._dicts = {d.dict_id: d for d in dictionaries}

    def decode(self, payload: bytes, topic_source: str | None = None) -> Decoded | None:
        """The message in ``payload``; None when it was seen before (a duplicate)."""
        source, seq, kind, compressed = self.codec.open_compressed(payload)
        if topic_source is not None and topic_source != source:
            raise DecodeError(
                "source_mismatch",
                f"message of {source!r} on topic of {topic_source!r}",
            )
        if seq <= self._last_seq.get(source, -1):
            return None
        body = self.codec.decompress(compressed)
        message = parse_body(kind, body, self._dicts, DECODED_CHANNELS)
        if isinstance(message, ChannelDictionary):
            self._dicts[message.dict_id] = message
        return Decoded(source, seq, kind, message, compressed)

    def accepted(self, source: str, seq: int) -> None:
        """``seq`` of ``source`` is stored: anything up to it is a duplicate from now."""
        self._last_seq[source] = seq

    def reset_sequences(self, last_seqs: dict[str, int]) -> None:
        """Forget sequences not committed (after a rollback), so they are taken again."""
        self._last_seq = dict(last_seqs)

    def stored_batch(self, dict_id: int, data: bytes) -> TelemetryBatch | None:
        """A stored telemetry chunk decoded again; None if its dictionary is unknown."""
        if dict_id not in self._dicts:
            return None
        body = self.codec.decompress(data)
        return decode_batch(body, self._dicts, DECODED_CHANNELS)
