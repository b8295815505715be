import os

import numpy as np
import pytest

from driver_pc.protocol.channels import ChannelKind, ChannelSpec
from driver_pc.protocol.codec import MAX_MESSAGE_BYTES, Codec, DecodeError
from driver_pc.protocol.messages import (
    ChannelDictionary,
    Command,
    DriverChange,
    ShimState,
    ShimStatus,
    TelemetryBatch,
)

CHANNELS = (
    ChannelSpec("SessionTime", ChannelKind.DOUBLE, 1, "s"),
    ChannelSpec("Speed", ChannelKind.FLOAT, 1, "m/s"),
    ChannelSpec("Lap", ChannelKind.INT),
    ChannelSpec("OnPitRoad", ChannelKind.BOOL),
    ChannelSpec("Flags", ChannelKind.BITFIELD),
    ChannelSpec("CarIdxLapDistPct", ChannelKind.FLOAT, 64, "%"),
)
DICT = ChannelDictionary("s1", 60, CHANNELS)


def _frames(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(3)
    f = np.zeros(n, dtype=DICT.dtype)
    f["SessionTime"] = 4000 + np.arange(n) / 60
    f["Speed"] = rng.uniform(0, 80, n)
    f["Lap"] = [3, 3, 4, 4, 4, 5][:n]
    f["OnPitRoad"] = [0, 1, 1, 0, 0, 1][:n]
    f["Flags"] = [0xFFFFFFFF, 0, 0x10000, 4, 4, 7][:n]
    f["CarIdxLapDistPct"] = rng.uniform(-1, 1, (n, 64))
    return f


@pytest.fixture
def codec() -> Codec:
    return Codec(os.urandom(32))


def test_telemetry_round_trip_within_stated_precision(codec: Codec) -> None:
    frames = _frames()
    wire = codec.encode(
        "car1-pc1", 9, TelemetryBatch("s1", DICT.dict_id, CHANNELS, frames)
    )
    env = codec.decode(wire, {DICT.dict_id: DICT})
    assert (env.source, env.seq) == ("car1-pc1", 9)
    out = env.message.frames
    for ch in CHANNELS:
        if ch.quantum is None:
            np.testing.assert_array_equal(out[ch.name], frames[ch.name])
        else:
            err = np.abs(out[ch.name].astype(float) - frames[ch.name].astype(float))
            assert err.max() <= ch.quantum / 2 + 1e-6, ch.name


def test_non_finite_floats_survive(codec: Codec) -> None:
    frames = _frames()
    frames["Speed"][2] = np.nan
    frames["CarIdxLapDistPct"][1, 5] = np.inf
    env = codec.decode(
        codec.encode("a", 1, TelemetryBatch("s1", DICT.dict_id, CHANNELS, frames)),
        {DICT.dict_id: DICT},
    )
    assert np.isnan(env.message.frames["Speed"][2])
    assert np.isinf(env.message.frames["CarIdxLapDistPct"][1, 5])
    assert env.message.frames["Speed"][3] == pytest.approx(frames["Speed"][3], abs=1e-3)


@pytest.mark.parametrize(
    "message",
    [
        DICT,
        DriverChange("s1", 12.5, 3, 42, "Bob", "Team", "7"),
        ShimStatus(ShimState.STREAMING, "simulator", 100, 0, "s1"),
        Command("c1", "camera", {"car": "7", "group": 1}),
    ],
)
def test_json_messages_round_trip(codec: Codec, message: object) -> None:
    env = codec.decode(codec.encode("car1-pc1", 1, message))  # type: ignore[arg-type]
    assert env.message == message


def test_tampered_message_is_rejected(codec: Codec) -> None:
    wire = bytearray(codec.encode("car1-pc1", 1, DICT))
    wire[-5] ^= 0x01
    with pytest.raises(DecodeError) as info:
        codec.decode(bytes(wire))
    assert info.value.reason == "bad_auth"


def test_header_is_authenticated(codec: Codec) -> None:
    wire = bytearray(codec.encode("car1-pc1", 1, DICT))
    wire[len(b"PBX") + 3 + len("car1-pc1")] ^= 0x02  # change the sequence number
    with pytest.raises(DecodeError) as info:
        codec.decode(bytes(wire))
    assert info.value.reason == "bad_auth"


def test_wrong_key_is_rejected(codec: Codec) -> None:
    wire = codec.encode("car1-pc1", 1, DICT)
    with pytest.raises(DecodeError) as info:
        Codec(os.urandom(32)).decode(wire)
    assert info.value.reason == "bad_auth"


@pytest.mark.parametrize("cut", [0, 1, 5, 12, 30])
def test_truncated_message_is_rejected(codec: Codec, cut: int) -> None:
    wire = codec.encode("car1-pc1", 1, DICT)
    with pytest.raises(DecodeError):
        codec.decode(wire[:cut])


def test_oversized_message_is_rejected_before_work(codec: Codec) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(b"PBX" + bytes(MAX_MESSAGE_BYTES))
    assert info.value.reason == "oversized"


def test_telemetry_without_dictionary_is_rejected(codec: Codec) -> None:
    wire = codec.encode("a", 1, TelemetryBatch("s1", DICT.dict_id, CHANNELS, _frames()))
    with pytest.raises(DecodeError) as info:
        codec.decode(wire, {})
    assert info.value.reason == "unknown_dictionary"


def test_bad_json_field_named(codec: Codec) -> None:
    from driver_pc.protocol.codec import parse_body
    from driver_pc.protocol.messages import MessageType

    with pytest.raises(DecodeError, match="user_id"):
        parse_body(
            MessageType.DRIVER_CHANGE,
            b'{"session_key": "s", "session_time": 1.0, "car_idx": 1, '
            b'"user_id": "x", "user_name": "n"}',
            {},
        )


def test_constant_columns_travel_as_one_value(codec: Codec) -> None:
    frames = _frames()
    frames["CarIdxLapDistPct"] = -1.0  # an empty 64-car field
    frames["Lap"] = 7
    moving = frames.copy()
    moving["CarIdxLapDistPct"] = np.random.default_rng(1).uniform(0, 1, (6, 64))
    batch = TelemetryBatch("s1", DICT.dict_id, CHANNELS, frames)
    still = codec.encode("a", 1, batch)
    busy = codec.encode("a", 2, TelemetryBatch("s1", DICT.dict_id, CHANNELS, moving))
    assert len(still) < len(busy) / 3
    out = codec.decode(still, {DICT.dict_id: DICT}).message.frames
    np.testing.assert_array_equal(out["CarIdxLapDistPct"], frames["CarIdxLapDistPct"])
    np.testing.assert_array_equal(out["Lap"], frames["Lap"])
