"""Wire messages in: verify the envelope, drop duplicates, decompress and decode once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from driver_pc.protocol import codec as wire
from driver_pc.protocol.chains import ChainBook, StoredChain
from driver_pc.protocol.codec import (
    ChainState,
    Codec,
    DecodeError,
    chain_link,
    parse_body,
    with_base,
)
from driver_pc.protocol.live import LIVE_CHANNELS
from driver_pc.protocol.messages import (
    INT64_MAX,
    ChannelDictionary,
    InvalidMessage,
    Message,
    MessageType,
    TelemetryBatch,
    validate_message,
)
from pitbox_appliance.analysis.lap_inputs import INPUT_CHANNELS
from pitbox_appliance.core.handover import HANDOVER_CHANNELS
from pitbox_appliance.detectors import DETECTOR_CHANNELS
from pitbox_appliance.storage.reader import StoredChunk
from pitbox_appliance.strategy.engine import STRATEGY_CHANNELS

logger = logging.getLogger(__name__)

# What the core decodes of each batch: segmentation, live state, lap inputs, detectors
# and strategy. The full batch is stored as received, so nothing else is lost by not
# decoding it here; a delta's other columns are not even rebuilt (the chain states
# hold these columns alone).
DECODED_CHANNELS = frozenset(
    (
        *LIVE_CHANNELS,
        *INPUT_CHANNELS,
        *DETECTOR_CHANNELS,
        *STRATEGY_CHANNELS,
        *HANDOVER_CHANNELS,
        "CarIdxLapDistPct",
        "CarIdxPosition",
        "CarIdxOnPitRoad",
        "PlayerCarIdx",
        "LapDist",
    )
)


# Every batch must carry these: segmentation and storage are keyed on them.
REQUIRED_CHANNELS = ("SessionTime", "LapDistPct")
# Every float the core analyses must be a number of a sane size. Measured: none of the
# seven real recordings in ../shared/data has a single non-finite value in any channel;
# a NaN fuel level made the stint plan raise (found by test_ingest_property.py).
MAX_CHANNEL_MAGNITUDE = 1e15


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified envelope, not yet parsed: its sender, sequence number and kind."""

    source: str
    seq: int
    kind: MessageType
    compressed: bytes


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

    Two steps: ``open`` verifies the envelope (who sent it, is it new) and raises
    DecodeError (with a short ``reason``) for anything not authentic; ``parse``
    decodes the body and checks every field against the contract's limits, raising
    DecodeError or InvalidMessage (naming the field) for an authentic message that
    is malformed. ``accepted`` records a message once it is stored (or put aside as a
    dead letter), so the next one of that source must come after it. ``channels``:
    what a telemetry batch is decoded to (every batch must carry REQUIRED_CHANNELS).
    """

    def __init__(
        self,
        codec: Codec,
        last_seqs: dict[str, int],
        dictionaries: Iterable[ChannelDictionary] = (),
        stored: StoredChain | None = None,
        channels: frozenset[str] = DECODED_CHANNELS,
    ) -> None:
        self.codec = codec
        self.channels = channels | frozenset(REQUIRED_CHANNELS)
        self._last_seq = dict(last_seqs)
        self._dicts = {d.dict_id: d for d in dictionaries}
        # Delta-chained telemetry: the states a next batch builds on; ``stored`` gives
        # a source's stored chunks, to rebuild a base after a restart.
        self._stored = stored
        self._chains = ChainBook(stored)

    def decode(self, payload: bytes, topic_source: str | None = None) -> Decoded | None:
        """The message in ``payload``; None when it was seen before (a duplicate)."""
        opened = self.open(payload, topic_source)
        return self.parse(opened) if opened is not None else None

    def open(
        self, payload: bytes, topic_source: str | None = None, *, replay: bool = False
    ) -> Opened | None:
        """Verify the envelope; None for a duplicate (unless ``replay``).

        Raises DecodeError when the message is not an authentic one of ours.
        ``replay`` takes a message again whatever its sequence number (a dead letter
        being retried).
        """
        source, seq, kind, compressed = self.codec.open_compressed(payload)
        if topic_source is not None and topic_source != source:
            raise DecodeError(
                "source_mismatch",
                f"message of {source!r} on topic of {topic_source!r}",
            )
        if seq > INT64_MAX:  # not storable (SQLite INTEGER); shims count from 0
            raise DecodeError("bad_seq", f"sequence number {seq} out of range")
        if not replay and seq <= self._last_seq.get(source, -1):
            return None
        return Opened(source, seq, kind, compressed)

    def parse(self, opened: Opened) -> Decoded:
        """Decompress, decode and check an opened message.

        Raises DecodeError (undecodable body) or InvalidMessage (a field out of the
        contract's limits, named).
        """
        body = self.codec.decompress(opened.compressed)
        compressed = opened.compressed
        message: Message
        if opened.kind is MessageType.TELEMETRY:
            message, state, base = self._chains.decode(
                opened.source, opened.seq, body, self._dicts, self.channels
            )
            if state is not None:
                # Its values are right even if the batch ends up a dead letter (an
                # analysis fault): the next batch builds on it, and the chunk stored
                # after a gap carries its base (chunk_to_store).
                self._chains.remember(opened.source, state)
            if base is not None:
                compressed = ChainedPayload(
                    compressed, self._full_base(opened.source, base)
                )
        else:
            message = parse_body(opened.kind, body, self._dicts, self.channels)
        validate_message(message)
        if isinstance(message, TelemetryBatch):
            names = message.frames.dtype.names or ()
            for name in REQUIRED_CHANNELS:
                if name not in names:
                    raise InvalidMessage("TelemetryBatch.channels", f"no {name}")
            if _has_raw_columns(body):
                check_numbers(message.frames)
        return Decoded(opened.source, opened.seq, opened.kind, message, compressed)

    def _full_base(
        self, source: str, base: ChainState
    ) -> Callable[[], ChainState | None]:
        """The base of every column, rebuilt only if asked (a chunk stored with it)."""
        chains, dicts = self._chains, self._dicts
        if base.only is None:
            return lambda: base
        return lambda: chains.full_state(source, base.seq, dicts, base.key_seq)

    def accepted(self, source: str, seq: int, message: Message | None = None) -> None:
        """``seq`` of ``source`` is dealt with: anything up to it is a duplicate from now.

        A channel dictionary passed as ``message`` is known from now on.
        """
        self._last_seq[source] = max(seq, self._last_seq.get(source, -1))
        if isinstance(message, ChannelDictionary):
            self._dicts[message.dict_id] = message

    def reset_sequences(self, last_seqs: dict[str, int]) -> None:
        """Forget sequences not committed (after a rollback), so they are taken again."""
        self._last_seq = dict(last_seqs)
        # The chain states stay: a batch's decoded values do not depend on whether
        # it was committed, and the messages taken again build on them.

    def stored_batches(self, chunks: Iterable[StoredChunk]) -> Iterator[TelemetryBatch]:
        """Stored telemetry chunks decoded again, in the order given.

        A chunk whose dictionary is unknown is left out; a delta whose base is neither
        among the chunks before it nor in storage ends in DecodeError.
        """
        # A book of their own: the live streams' states stay as they are.
        chains = ChainBook(self._stored)
        for chunk in chunks:
            if chunk.dict_id not in self._dicts:
                continue
            body = self.codec.decompress(chunk.data)
            batch, state, _base = chains.decode(
                chunk.source, chunk.seq, body, self._dicts, self.channels
            )
            if state is not None:
                chains.remember(chunk.source, state)
            yield batch


class ChainedPayload(bytes):
    """A delta payload as received, with a way to the state it builds on (its base).

    ``full_base`` gives the base with every column (the core decodes only some), or
    None when it cannot be rebuilt.
    """

    full_base: Callable[[], ChainState | None]

    def __new__(
        cls, payload: bytes, full_base: Callable[[], ChainState | None]
    ) -> ChainedPayload:
        made = super().__new__(cls, payload)
        made.full_base = full_base
        return made


def chunk_to_store(payload: bytes, last_stored: int | None) -> bytes:
    """What to store of a telemetry payload, given its source's last stored chunk.

    As received, unless it is a delta on a batch that was not stored (another PC was
    driving, or the core restarted): then it goes in standalone, with its base's rows,
    so every stored chunk decodes from what is stored.
    """
    link = chain_link(payload)
    if link is None or link.standalone or link.base_seq == last_stored:
        return payload
    if isinstance(payload, ChainedPayload):
        base = payload.full_base()
        if base is not None:
            return with_base(payload, base)
        logger.warning(
            "telemetry chunk stored without its base (base %s not rebuilt): it decodes "
            "only after its stored predecessors",
            link.base_seq,
        )
    return payload


def check_numbers(frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
    """Every float of ``frames`` is finite and at most MAX_CHANNEL_MAGNITUDE.

    Raises InvalidMessage naming the channel (``TelemetryBatch.FuelLevel``).
    """
    for name in frames.dtype.names or ():
        column = frames[name]
        if column.dtype.base.kind != "f":
            continue
        bad = ~(np.isfinite(column) & (np.abs(column) <= MAX_CHANNEL_MAGNITUDE))
        if bad.any():
            frame = int(np.flatnonzero(bad.reshape(len(frames), -1).any(axis=1))[0])
            value = column[frame] if column.ndim == 1 else column[frame][bad[frame]][0]
            raise InvalidMessage(
                f"TelemetryBatch.{name}",
                f"frame {frame}: {float(value)!r} is not a number of a sane size "
                f"(finite, at most {MAX_CHANNEL_MAGNITUDE:g})",
            )


def _has_raw_columns(body: bytes) -> bool:
    """Whether a telemetry body carries a column as raw floats.

    Only those can hold a non-finite or huge value (the codec sends every other
    column as integers at its precision), so the full check runs only for them:
    it costs ~50 µs a batch, the scan of the column modes well under 1 µs.
    """
    return wire.has_raw_columns(body)
