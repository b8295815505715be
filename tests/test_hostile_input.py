"""Property tests: every decoder either returns a valid value or raises its own clear error."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driver_pc.adapters.ibt_file import IbtError, IbtReader
from driver_pc.protocol.channels import ChannelKind, ChannelSpec
from driver_pc.protocol.codec import Codec, DecodeError, decode_batch, parse_body
from driver_pc.protocol.messages import ChannelDictionary, MessageType, TelemetryBatch
from driver_pc.session_info import SessionInfoError, parse_session_info

KEY = os.urandom(32)
CODEC = Codec(KEY)
UNITS = ["", "s", "m", "m/s", "%", "C", "rad", "l"]

channel = st.builds(
    ChannelSpec,
    name=st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
    kind=st.sampled_from(list(ChannelKind)),
    count=st.sampled_from([1, 1, 1, 4, 64]),
    unit=st.sampled_from(UNITS),
)
channel_sets = st.lists(channel, min_size=1, max_size=12, unique_by=lambda c: c.name)


def _fill(dictionary: ChannelDictionary, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.zeros(n, dtype=dictionary.dtype)
    for ch in dictionary.channels:
        shape = (n, ch.count) if ch.count > 1 else (n,)
        if ch.kind in (ChannelKind.FLOAT, ChannelKind.DOUBLE):
            values = rng.normal(0, 10 ** rng.integers(0, 6), shape)
            values[rng.random(shape) < 0.02] = np.nan
            frames[ch.name] = values
        elif ch.kind is ChannelKind.INT:
            frames[ch.name] = rng.integers(-(2**31), 2**31 - 1, shape)
        elif ch.kind is ChannelKind.BITFIELD:
            frames[ch.name] = rng.integers(0, 2**32 - 1, shape, dtype=np.uint64)
        else:
            frames[ch.name] = rng.integers(0, 2, shape)
    return frames


@settings(max_examples=150, deadline=None)
@given(channels=channel_sets, n=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_any_batch_round_trips_within_its_precision(
    channels: list[ChannelSpec], n: int, seed: int
) -> None:
    dictionary = ChannelDictionary("k", 60, tuple(channels))
    frames = _fill(dictionary, n, seed)
    wire = CODEC.encode(
        "car1-pc1",
        1,
        TelemetryBatch("k", dictionary.dict_id, dictionary.channels, frames),
    )
    out = CODEC.decode(wire, {dictionary.dict_id: dictionary}).message.frames
    for ch in channels:
        a, b = out[ch.name], frames[ch.name]
        if ch.quantum is None:
            np.testing.assert_array_equal(a, b)
        else:
            fa, fb = a.astype(np.float64), b.astype(np.float64)
            assert np.array_equal(np.isnan(fa), np.isnan(fb))
            finite = ~np.isnan(fb)
            ulp = np.spacing(np.abs(fb[finite]).astype(b.dtype)).astype(np.float64)
            assert np.all(
                np.abs(fa[finite] - fb[finite]) <= ch.quantum / 2 + ulp + 1e-12
            )


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=4096))
def test_random_envelopes_are_rejected_cleanly(data: bytes) -> None:
    try:
        CODEC.decode(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channels=channel_sets,
    body=st.binary(max_size=2048),
    kind=st.sampled_from(list(MessageType)),
)
def test_random_bodies_are_rejected_cleanly(
    channels: list[ChannelSpec], body: bytes, kind: MessageType
) -> None:
    dictionary = ChannelDictionary("k", 60, tuple(channels))
    head = struct.pack("<IIB", dictionary.dict_id, 3, 1) + b"k"
    for candidate in (body, head + body):
        try:
            parse_body(kind, candidate, {dictionary.dict_id: dictionary})
        except DecodeError:
            pass
        try:
            decode_batch(candidate, {dictionary.dict_id: dictionary})
        except DecodeError:
            pass


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=2000))
def test_session_info_parser_never_crashes(text: str) -> None:
    try:
        parse_session_info(text)
    except SessionInfoError:
        pass


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(0, 20000),
    flips=st.lists(st.tuples(st.integers(0, 20000), st.integers(1, 255)), max_size=8),
)
def test_damaged_ibt_files_give_ibt_errors(
    sim_ibt: Path, tmp_path: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(sim_ibt.read_bytes()[: max(0, len(sim_ibt.read_bytes()) - cut)])
    for pos, bit in flips:
        if pos < len(data):
            data[pos] ^= bit
    path = tmp_path / "damaged.ibt"
    path.write_bytes(bytes(data))
    problem = None
    try:
        with IbtReader(path) as reader:
            for _rows in reader.rows():
                pass
            reader.session_info_text()
    except IbtError as exc:
        problem = str(exc)
    assert problem is None or "damaged.ibt" in problem
