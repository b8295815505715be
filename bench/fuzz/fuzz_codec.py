"""Fuzz the wire codec: the envelope (verify, decrypt) and the body parsers behind it.

The first input byte picks the target: the raw envelope under a wrong key, the
envelope sealed with the right key around arbitrary bodies (so decompression and the
JSON/columnar parsers are reached), or a columnar batch body parsed directly against a
real channel dictionary (a 63-car simulator field, arrays included). Only DecodeError
may escape.

    .venv/bin/python bench/fuzz/fuzz_codec.py -max_total_time=120
"""

from __future__ import annotations

import os
import struct

import atheris
import zstandard
from _fuzz import run

with atheris.instrument_imports():
    from driver_pc.adapters.simulator import RaceSimulatorAdapter
    from driver_pc.pipeline import ShimPipeline
    from driver_pc.protocol.codec import (
        _HEAD,
        _SEQ,
        MAGIC,
        Codec,
        DecodeError,
        decode_batch,
        parse_body,
    )
    from driver_pc.protocol.messages import (
        SCHEMA_VERSION,
        ChannelDictionary,
        MessageType,
        TelemetryBatch,
    )

KEY = bytes(range(32))
CODEC = Codec(KEY)
_messages = []
for _m in ShimPipeline(
    RaceSimulatorAdapter(laps=1, speed=0, seed=3, opponents=63)
).messages():
    _messages.append(_m)
    if len(_messages) > 12:
        break
DICTIONARY = next(m for m in _messages if isinstance(m, ChannelDictionary))
DICTS = {DICTIONARY.dict_id: DICTIONARY}
KINDS = list(MessageType)
ZSTD = zstandard.ZstdCompressor(level=1)


def seal(kind: MessageType, body: bytes) -> bytes:
    """A correctly authenticated envelope around ``body`` (already compressed or not)."""
    src = b"car1-pc1"
    head = _HEAD.pack(MAGIC, SCHEMA_VERSION, int(kind), len(src)) + src + _SEQ.pack(7)
    nonce = b"\0" * 12
    return head + nonce + CODEC.keyring.aead("car1-pc1").encrypt(nonce, body, head)


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    target, rest = data[0] % 4, data[1:]
    try:
        if target == 0:
            CODEC.decode(rest, DICTS)
        elif target == 1:
            CODEC.decode(
                seal(KINDS[data[1] % len(KINDS)], ZSTD.compress(rest[1:])), DICTS
            )
        elif target == 2:
            CODEC.decode(seal(KINDS[data[1] % len(KINDS)], rest[1:]), DICTS)
        else:
            decode_batch(rest, DICTS)
            parse_body(MessageType.TELEMETRY, rest, DICTS, frozenset({"Speed"}))
    except DecodeError:
        pass


def seeds() -> list[bytes]:
    out = []
    for i, m in enumerate(_messages):
        wire = CODEC.encode("car1-pc1", i + 1, m)
        out.append(b"\0" + wire)
        kind, body = CODEC._body(m)
        out.append(b"\1" + bytes([KINDS.index(kind)]) + body)
        if isinstance(m, TelemetryBatch):
            out.append(b"\3" + body)
    out.append(b"\0" + os.urandom(64))
    out.append(b"\3" + struct.pack("<IIB", DICTIONARY.dict_id, 2**31, 1) + b"k")
    return out


if __name__ == "__main__":
    run("codec", one_input, seeds())
