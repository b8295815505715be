"""Quanta stated by the channel dictionary; bodies stored before they were stated.

``data/version1_bodies.npz`` was written by the code before dictionaries stated quanta
(commit 41e6303): its dictionary (five-element channel entries), a version-1 body and a
version-2 chain (keyframe and two deltas) of channels whose quanta the decision of
2026-12-03 changed, and what that code decoded them to.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driver_pc.protocol import channels
from driver_pc.protocol.channels import ChannelKind, ChannelSpec
from driver_pc.protocol.codec import (
    Codec,
    DecodeError,
    decode_batch,
    decode_chained,
    parse_body,
)
from driver_pc.protocol.messages import ChannelDictionary, MessageType, TelemetryBatch

STORED = Path(__file__).with_name("data") / "version1_bodies.npz"

# docs/decisions.md "Precision of the live channels" (2026-12-03).
DECIDED_UNIT = {
    "m/s^2": 1e-2,
    "rad/s": 1e-3,
    "N*m": 0.1,
    "Nm": 0.1,
    "m/s at 360 Hz": 1e-3,
}
DECIDED_NAME = {
    "CarIdxRPM": 10.0,
    "CarIdxSteer": 1e-3,
    "CarIdxEstTime": 1e-3,
    "CarIdxF2Time": 1e-3,
}


@pytest.fixture
def decided(monkeypatch: pytest.MonkeyPatch) -> None:
    """New dictionaries at the decided quanta."""
    for unit, q in DECIDED_UNIT.items():
        monkeypatch.setitem(channels.LIVE_UNIT_QUANTUM, unit, q)
    for name, q in DECIDED_NAME.items():
        monkeypatch.setitem(channels.LIVE_NAME_QUANTUM, name, q)


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    with np.load(STORED) as data:
        return {name: data[name] for name in data.files}


def _legacy(stored: dict[str, Any]) -> ChannelDictionary:
    return ChannelDictionary.from_json(json.loads(stored["dictionary"].tobytes()))


def test_stored_dictionary_keeps_its_id_and_the_version1_quanta(stored) -> None:
    legacy = _legacy(stored)
    assert legacy.dict_id == int(stored["dict_id"][0])
    quanta = {c.name: c.quantum for c in legacy.channels}
    assert quanta["CarIdxRPM"] == 0.1
    assert quanta["CarIdxSteer"] == 1e-4
    assert quanta["CarIdxEstTime"] == 1e-4
    assert quanta["LatAccel"] == 1e-3
    assert quanta["YawRate_ST"] == 1e-4
    assert quanta["SteeringWheelTorque_ST"] == 1e-2
    assert quanta["LFshockVel_ST"] == 1e-4
    assert quanta["Lap"] is None


def test_stored_version1_body_decodes_exactly_as_before(stored) -> None:
    legacy = _legacy(stored)
    batch = decode_batch(stored["v1"].tobytes(), {legacy.dict_id: legacy})
    assert batch.frames.tobytes() == stored["v1_decoded"].tobytes()


def test_stored_version2_chain_decodes_exactly_as_before(stored) -> None:
    legacy = _legacy(stored)
    state = None
    out = []
    for seq in (5, 6, 7):
        body = stored[f"v2_{seq}"].tobytes()
        batch, state = decode_chained(body, {legacy.dict_id: legacy}, None, state, seq)
        out.append(batch.frames)
    assert np.concatenate(out).tobytes() == stored["v2_decoded"].tobytes()


def test_stored_body_with_the_new_dictionary_is_not_found(stored, decided) -> None:
    """The same channels at the new quanta are another dictionary: no silent mis-decode."""
    legacy = _legacy(stored)
    fresh = ChannelDictionary(
        legacy.session_key,
        legacy.tick_rate,
        tuple(
            ChannelSpec(c.name, c.kind, c.count, c.unit, c.description)
            for c in legacy.channels
        ),
    )
    assert fresh.dict_id != legacy.dict_id
    with pytest.raises(DecodeError):
        decode_batch(stored["v1"].tobytes(), {fresh.dict_id: fresh})


def test_new_dictionary_states_the_decided_quanta(stored, decided) -> None:
    legacy = _legacy(stored)
    fresh = ChannelDictionary(
        "k",
        60,
        (
            *(ChannelSpec(c.name, c.kind, c.count, c.unit) for c in legacy.channels),
            ChannelSpec("RPM", ChannelKind.FLOAT, 1, "revs/min"),
            ChannelSpec("Speed", ChannelKind.FLOAT, 1, "m/s"),
            ChannelSpec("SteeringWheelMaxForceNm", ChannelKind.FLOAT, 1, "N*m"),
        ),
    )
    entries = {e[0]: e[5] for e in fresh.to_json()["channels"]}
    assert entries == {
        "SessionTime": 1e-6,
        "Lap": None,
        "OnPitRoad": None,
        "LatAccel": 1e-2,
        "YawRate_ST": 1e-3,
        "SteeringWheelTorque_ST": 0.1,
        "SteeringWheelAngle": 1e-4,  # our driver's inputs: unchanged
        "LFshockVel_ST": 1e-3,
        "CarIdxRPM": 10.0,
        "CarIdxSteer": 1e-3,
        "CarIdxEstTime": 1e-3,
        "CarIdxF2Time": 1e-3,
        "CarIdxLap": None,
        "RPM": 0.1,  # our own engine: unchanged
        "Speed": 1e-3,
        "SteeringWheelMaxForceNm": 0.1,
    }
    back = ChannelDictionary.from_json(json.loads(json.dumps(fresh.to_json())))
    assert back == fresh
    assert back.dict_id == fresh.dict_id


def test_stated_version1_quanta_keep_the_version1_id(stored) -> None:
    """Six-element entries at the version-1 table's quanta decode the same: same id."""
    legacy = _legacy(stored)
    assert not legacy.states_quanta
    assert all(len(e) == 5 for e in legacy.to_json()["channels"])  # sent as before
    stated = legacy.to_json()
    stated["channels"] = [
        [*e, c.quantum]
        for e, c in zip(stated["channels"], legacy.channels, strict=True)
    ]
    again = ChannelDictionary.from_json(json.loads(json.dumps(stated)))
    assert again == legacy
    assert again.dict_id == legacy.dict_id
    batch = decode_batch(stored["v1"].tobytes(), {again.dict_id: again})
    assert batch.frames.tobytes() == stored["v1_decoded"].tobytes()


def test_new_quanta_round_trip_within_half_a_quantum(stored, decided) -> None:
    legacy = _legacy(stored)
    fresh = ChannelDictionary(
        "k",
        60,
        tuple(ChannelSpec(c.name, c.kind, c.count, c.unit) for c in legacy.channels),
    )
    sent = stored["sent"]
    codec = Codec(os.urandom(32))
    dictionaries: dict[int, ChannelDictionary] = {}
    wire = codec.encode("car7-pc1", 1, fresh)
    env = codec.decode(wire)
    assert isinstance(env.message, ChannelDictionary)
    assert env.message == fresh
    dictionaries[env.message.dict_id] = env.message
    for seq, start in enumerate(range(0, len(sent), 9), start=2):
        frames = sent[start : start + 9]
        wire = codec.encode(
            "car7-pc1",
            seq,
            TelemetryBatch("k", fresh.dict_id, fresh.channels, frames),
        )
        out = codec.decode(wire, dictionaries).message
        assert isinstance(out, TelemetryBatch)
        for ch in fresh.channels:
            got, want = out.frames[ch.name], frames[ch.name]
            if ch.quantum is None:
                np.testing.assert_array_equal(got, want)
                continue
            err = np.abs(got.astype(np.float64) - want.astype(np.float64))
            ulp = np.spacing(np.abs(want)).astype(np.float64)
            assert np.all(err <= ch.quantum / 2 + ulp + 1e-12), ch.name


@pytest.mark.parametrize(
    ("kind", "quantum"),
    [
        (ChannelKind.FLOAT, None),
        (ChannelKind.FLOAT, -1e-3),
        (ChannelKind.FLOAT, 0),
        (ChannelKind.FLOAT, "1e-3"),
        (ChannelKind.FLOAT, True),
        (ChannelKind.FLOAT, 1e9),
        (ChannelKind.DOUBLE, math.inf),
        (ChannelKind.INT, 1.0),
        (ChannelKind.BITFIELD, 0.1),
    ],
)
def test_bad_stated_quantum_is_refused(kind: ChannelKind, quantum: object) -> None:
    data = {
        "session_key": "k",
        "tick_rate": 60,
        "channels": [["X", int(kind), 1, "m", "", quantum]],
    }
    body = json.dumps(data).encode()
    with pytest.raises(DecodeError, match="bad_field"):
        parse_body(MessageType.CHANNELS, body, {})
