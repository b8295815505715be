"""Delta-chained telemetry: keyframes, lost and reordered batches, bases from storage, hostile bodies."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import zstandard

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.chains import ChainBook
from driver_pc.protocol.codec import (
    Codec,
    DecodeError,
    chain_link,
    decode_batch,
    decompress_body,
    encode_batch,
    with_base,
)
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch

SOURCE = "car1-pc1"


@pytest.fixture(scope="module")
def stream() -> tuple[ChannelDictionary, list[TelemetryBatch]]:
    messages = list(
        ShimPipeline(
            RaceSimulatorAdapter(laps=1, speed=0, seed=2, opponents=7)
        ).messages()
    )
    dictionary = next(m for m in messages if isinstance(m, ChannelDictionary))
    batches = [m for m in messages if isinstance(m, TelemetryBatch)][:90]
    return dictionary, batches


def _payloads(
    batches: list[TelemetryBatch], keyframe_every: int = 10
) -> tuple[Codec, list[tuple[int, bytes]]]:
    codec = Codec(os.urandom(32), keyframe_every=keyframe_every)
    out = []
    for seq, batch in enumerate(batches, 100):
        _s, _q, _k, payload = codec.open_compressed(codec.encode(SOURCE, seq, batch))
        out.append((seq, payload))
    return codec, out


def _exact(a: TelemetryBatch, b: TelemetryBatch) -> None:
    for ch in a.channels:
        x, y = a.frames[ch.name].astype(float), b.frames[ch.name].astype(float)
        if ch.quantum is None:
            assert np.array_equal(x, y), ch.name
        else:
            tol = ch.quantum / 2 + np.spacing(np.abs(y).astype(np.float32)).astype(
                float
            )
            assert np.all(np.abs(x - y) <= tol), ch.name


def test_keyframes_and_deltas_decode_in_order_within_quantum(stream) -> None:
    dictionary, batches = stream
    codec, payloads = _payloads(batches)
    links = [chain_link(p) for _s, p in payloads]
    assert [link.base_seq is None for link in links if link][:11] == [True] + [
        False
    ] * 9 + [True]
    book = ChainBook()
    for (seq, payload), sent in zip(payloads, batches, strict=True):
        batch, state, _base = book.decode(
            SOURCE, seq, codec.decompress(payload), {dictionary.dict_id: dictionary}
        )
        assert state is not None
        book.remember(SOURCE, state)
        _exact(sent, batch)


def test_a_lost_batch_fails_its_successors_until_the_next_keyframe(stream) -> None:
    dictionary, batches = stream
    codec, payloads = _payloads(batches)
    book = ChainBook()
    reasons = []
    for seq, payload in payloads[:25]:
        if seq == 103:
            continue  # lost
        try:
            _b, state, _base = book.decode(
                SOURCE, seq, codec.decompress(payload), {dictionary.dict_id: dictionary}
            )
        except DecodeError as exc:
            reasons.append((seq, exc.reason))
            continue
        assert state is not None
        book.remember(SOURCE, state)
    assert reasons == [(s, "missing_base") for s in range(104, 110)]


def test_reordered_and_duplicate_batches_use_the_states_kept(stream) -> None:
    dictionary, batches = stream
    codec, payloads = _payloads(batches)
    dicts = {dictionary.dict_id: dictionary}
    book = ChainBook()
    order = [0, 1, 2, 4, 3, 4, 5, 5, 6]  # 4 before 3 (fails), then resent; duplicates
    outcomes = []
    for i in order:
        seq, payload = payloads[i]
        try:
            batch, state, _b = book.decode(
                SOURCE, seq, codec.decompress(payload), dicts
            )
        except DecodeError as exc:
            outcomes.append(exc.reason)
            continue
        assert state is not None
        book.remember(SOURCE, state)
        _exact(batches[i], batch)
        outcomes.append("ok")
    assert outcomes == ["ok", "ok", "ok", "missing_base", "ok", "ok", "ok", "ok", "ok"]


def test_a_restarted_reader_rebuilds_the_base_from_stored_chunks(stream) -> None:
    """Core restart mid-chain: memory is empty, the chunks before are stored."""
    dictionary, batches = stream
    codec, payloads = _payloads(batches)
    stored = dict(payloads[:15])  # stored before the crash
    calls = []

    def chain(source: str, first: int, last: int) -> list[tuple[int, bytes]]:
        calls.append((source, first, last))
        return [(s, p) for s, p in sorted(stored.items()) if first <= s <= last]

    book = ChainBook(chain)  # fresh after the restart
    seq, payload = payloads[15]
    batch, _state, base = book.decode(
        SOURCE, seq, codec.decompress(payload), {dictionary.dict_id: dictionary}
    )
    assert calls == [(SOURCE, 110, 114)]  # from its keyframe to its base
    assert base is not None
    assert base.seq == 114
    _exact(batches[15], batch)
    # A gap in storage (a batch that was a dead letter) is a missing base, not a crash.
    del stored[112]
    with pytest.raises(DecodeError, match=r"^missing_base"):
        ChainBook(chain).decode(
            SOURCE, seq, codec.decompress(payload), {dictionary.dict_id: dictionary}
        )


def test_a_dead_letter_retried_later_decodes_on_its_stored_base(stream) -> None:
    """Batch 105 failed downstream; retried much later its base 104 is in storage."""
    dictionary, batches = stream
    codec, payloads = _payloads(batches)
    stored = {s: p for s, p in payloads[:60] if s != 105}
    book = ChainBook(
        lambda _src, a, b: [(s, stored[s]) for s in range(a, b + 1) if s in stored]
    )
    seq, payload = payloads[5]
    batch, _state, base = book.decode(
        SOURCE, seq, codec.decompress(payload), {dictionary.dict_id: dictionary}
    )
    assert base is not None
    assert base.seq == 104
    _exact(batches[5], batch)


def test_a_chunk_stored_with_its_base_decodes_alone(stream) -> None:
    dictionary, batches = stream
    codec, payloads = _payloads(batches)
    dicts = {dictionary.dict_id: dictionary}
    book = ChainBook()
    for seq, payload in payloads[:6]:
        _b, state, base = book.decode(SOURCE, seq, codec.decompress(payload), dicts)
        assert state is not None
        book.remember(SOURCE, state)
    assert base is not None
    alone = with_base(payloads[5][1], base)
    link = chain_link(alone)
    assert link is not None
    assert link.standalone
    batch, _s, _b = ChainBook().decode(SOURCE, 105, codec.decompress(alone), dicts)
    _exact(batches[5], batch)


def test_version_1_bodies_still_decode(stream) -> None:
    dictionary, batches = stream
    old = zstandard.ZstdCompressor().compress(encode_batch(batches[0]))
    body = decompress_body(zstandard.ZstdDecompressor(), old)
    assert chain_link(old) is None
    _exact(batches[0], decode_batch(body, {dictionary.dict_id: dictionary}))
    batch, state, _b = ChainBook().decode(
        SOURCE, 1, body, {dictionary.dict_id: dictionary}
    )
    assert state is None
    _exact(batches[0], batch)


def test_hostile_bodies_raise_decode_error_only(stream) -> None:
    """Fuzz: mutated, cut and spliced version-2 bodies never raise anything else."""
    dictionary, batches = stream
    codec, payloads = _payloads(batches[:12])
    dicts = {dictionary.dict_id: dictionary}
    bodies = [codec.decompress(p) for _s, p in payloads]
    rng = random.Random(12)
    decoded = 0
    for _ in range(1500):
        body = bytearray(rng.choice(bodies))
        for _m in range(rng.randint(1, 4)):
            at = rng.randrange(len(body))
            body[at] = rng.randrange(256)
        if rng.random() < 0.3:
            body = body[: rng.randrange(len(body) + 1)]
        if rng.random() < 0.1:
            body[21:21] = os.urandom(rng.randint(1, 40))
        book = ChainBook(lambda _s, a, b: [p for p in payloads if a <= p[0] <= b])
        try:
            book.decode(SOURCE, rng.randint(100, 112), bytes(body), dicts)
            decoded += 1
        except DecodeError:
            pass
    assert decoded > 0  # some mutations land in values and still decode


def test_long_and_short_batches_chain_within_quantum(stream) -> None:
    """Batches of 1 to 100 frames (both running-sum paths) build on one another."""
    dictionary, batches = stream
    frames = np.concatenate([b.frames for b in batches])
    first = batches[0]
    sizes = [100, 1, 2, 3, 65, 3, 64, 5]
    codec = Codec(os.urandom(32), keyframe_every=40)
    book = ChainBook()
    at = 0
    for seq, size in enumerate(sizes, 1):
        sent = TelemetryBatch(
            first.session_key, first.dict_id, first.channels, frames[at : at + size]
        )
        at += size
        _s, _q, _k, payload = codec.open_compressed(codec.encode(SOURCE, seq, sent))
        link = chain_link(payload)
        assert link is not None
        assert (link.base_seq is None) == (seq == 1)
        body = codec.decompress(payload)
        dicts = {dictionary.dict_id: dictionary}
        batch, state, _base = book.decode(SOURCE, seq, body, dicts)
        assert state is not None
        book.remember(SOURCE, state)
        _exact(sent, batch)
        # A subset decodes to the same values of its channels.
        only = frozenset({"SessionTime", "CarIdxLapDistPct", "Gear"})
        part = decode_batch(body, dicts, only) if seq == 1 else None
        if part is not None:
            assert part.frames.dtype.names == tuple(
                c.name for c in first.channels if c.name in only
            )
            for name in only:
                assert np.array_equal(part.frames[name], batch.frames[name])
