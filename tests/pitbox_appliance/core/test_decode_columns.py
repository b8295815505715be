"""The core and the live path decode only the channels they read; what they store stays whole."""

from __future__ import annotations

import os

import numpy as np
import zstandard

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.chains import ChainBook
from driver_pc.protocol.codec import Codec, chain_link, decompress_body
from driver_pc.protocol.live import LIVE_CHANNELS
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch
from pitbox_appliance.core.decode import (
    DECODED_CHANNELS,
    ChainedPayload,
    WireDecoder,
    chunk_to_store,
)
from pitbox_appliance.core.live_path import LivePeek

SOURCE = "car1-pc1"
KEY = os.urandom(32)


def _wire() -> tuple[list[bytes], list[TelemetryBatch], ChannelDictionary]:
    codec = Codec(KEY)
    messages = list(
        ShimPipeline(
            RaceSimulatorAdapter(laps=1, speed=0, seed=3, opponents=15)
        ).messages()
    )[:150]
    dictionary = next(m for m in messages if isinstance(m, ChannelDictionary))
    wire = [codec.encode(SOURCE, seq, m) for seq, m in enumerate(messages)]
    return wire, [m for m in messages if isinstance(m, TelemetryBatch)], dictionary


def test_the_core_rebuilds_its_channels_only_and_stores_chunks_that_decode_whole() -> (
    None
):
    wire, _sent, dictionary = _wire()
    decoder = WireDecoder(Codec(KEY), {})
    reference = Codec(KEY)  # decodes every column, in order
    stored_alone = 0
    for payload in wire:
        opened = decoder.open(payload, SOURCE)
        assert opened is not None
        decoded = decoder.parse(opened)
        decoder.accepted(decoded.source, decoded.seq, decoded.message)
        whole = reference.decode(payload, {dictionary.dict_id: dictionary}).message
        if not isinstance(decoded.message, TelemetryBatch):
            continue
        assert isinstance(whole, TelemetryBatch)
        names = decoded.message.frames.dtype.names or ()
        assert set(names) == DECODED_CHANNELS & {c.name for c in dictionary.channels}
        for name in names:
            assert (
                decoded.message.frames[name].tobytes() == whole.frames[name].tobytes()
            )
        if not isinstance(decoded.compressed, ChainedPayload):
            continue
        # As if its base was not stored (another PC was driving): stored with its
        # base's every column, it decodes alone to the whole batch.
        link = chain_link(decoded.compressed)
        assert link is not None
        chunk = chunk_to_store(decoded.compressed, None)
        assert chain_link(chunk).carries_base  # type: ignore[union-attr]
        body = decompress_body(zstandard.ZstdDecompressor(), chunk)
        alone, _s, _b = ChainBook().decode(
            SOURCE, decoded.seq, body, {dictionary.dict_id: dictionary}
        )
        assert alone.frames.tobytes() == whole.frames.tobytes()
        stored_alone += 1
    assert stored_alone > 100


def test_the_live_path_gives_the_newest_values_of_a_whole_decode() -> None:
    wire, _sent, dictionary = _wire()
    live = LivePeek(Codec(KEY), {})
    reference = Codec(KEY)
    fresh_count = 0
    for payload in wire:
        fresh = live.peek(payload, SOURCE)
        whole = reference.decode(payload, {dictionary.dict_id: dictionary}).message
        if fresh is None:
            continue
        assert isinstance(whole, TelemetryBatch)
        last = whole.frames[-1]
        expected = {
            name: float(last[name])
            for name in LIVE_CHANNELS
            if name in (whole.frames.dtype.names or ())
        }
        assert fresh.values == expected
        assert np.isfinite(fresh.session_time)
        fresh_count += 1
    assert fresh_count > 100
    assert not live.skipped
