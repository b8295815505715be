"""Property tests: every decoder either returns a valid value or raises its own clear error."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driver_pc.adapters.base import AdapterUnavailableError
from driver_pc.adapters.ibt_file import IbtError, IbtReader
from driver_pc.adapters.iracing_replay import LiveDumpAdapter
from driver_pc.protocol.channels import ChannelKind, ChannelSpec
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
from driver_pc.protocol.session_info import SessionInfoError, parse_session_info
from pitbox_appliance.api.context import read_body
from pitbox_appliance.api.schemas import CommandIn
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter
from tests.conftest import real_file

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


# ---- regressions of the fuzz findings (bench/fuzz, bench/RESULTS.md) ----------------
def test_deeply_nested_session_info_is_refused_not_a_segfault() -> None:
    # Found by bench/fuzz/fuzz_session_yaml.py: libyaml's C composer overflowed the
    # stack (SIGSEGV) on ~100,000 nested levels. Run apart: a regression kills a process.
    script = (
        "from driver_pc.protocol.session_info import parse_session_info, SessionInfoError\n"
        "for text in ('[' * 100_000, '- ' * 100_000 + 'x', 'a: {' * 100_000):\n"
        "    try:\n"
        "        parse_session_info(text)\n"
        "    except SessionInfoError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.count("nests deeper than 64 levels") == 3, done.stdout


def _sealed(key: bytes, kind: MessageType, body: bytes, seq: int = 1) -> bytes:
    """A correctly authenticated envelope around an arbitrary body, as a peer could send."""
    src = b"car1-pc1"
    head = _HEAD.pack(MAGIC, SCHEMA_VERSION, int(kind), len(src)) + src + _SEQ.pack(seq)
    nonce = os.urandom(12)
    compressed = zstandard.ZstdCompressor().compress(body)
    return head + nonce + AESGCM(key).encrypt(nonce, compressed, head)


def test_deeply_nested_json_body_is_rejected_and_ingest_goes_on(
    tmp_path: Path,
) -> None:
    # Found by bench/fuzz/fuzz_codec.py: json.loads raised RecursionError, which
    # escaped Ingestor.handle and would have ended the core's ingest thread.
    engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    ingestor = Ingestor(CODEC, SessionWriter(engine))
    try:
        for seq, kind in enumerate(
            (MessageType.CHANNELS, MessageType.DRIVER_CHANGE, MessageType.STATUS), 1
        ):
            assert not ingestor.handle(_sealed(KEY, kind, b"[" * 200_000, seq))
        # Authentic but unreadable: kept aside as dead letters (issue 11), never raised.
        assert ingestor.stats.dead_letters["bad_json"] == 3
        status = {"state": "streaming"}
        ok = _sealed(KEY, MessageType.STATUS, json.dumps(status).encode(), 9)
        ingestor.handle(ok)  # still handling messages afterwards
        assert ingestor.stats.dead_letters["bad_json"] == 3
    finally:
        ingestor.writer.close()
        engine.dispose()


async def test_deeply_nested_api_body_is_400_not_500() -> None:
    # The same finding in the API: read_body answered 500 with a traceback in the log.
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await read_body(request, CommandIn)
        return body if isinstance(body, web.Response) else web.json_response({})

    app = web.Application()
    app.router.add_post("/x", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/x", data=b"[" * 200_000)
        assert response.status == 400
        assert (await response.json())["error"] == "body: JSON nested too deeply"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.sampled_from([200_000, 524_000, 600_000, 1_000_000]),
    flips=st.lists(st.tuples(st.integers(0, 1200), st.integers(1, 255)), max_size=6),
)
def test_damaged_live_dumps_give_adapter_errors(
    tmp_path: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    # Found by bench/fuzz/fuzz_dump.py: a truncated dump raised struct.error out of
    # pyirsdk instead of the adapter's error naming the file.
    data = bytearray(
        real_file("iracing", "live", "teamjorge_live_dump.bin").read_bytes()
    )
    del data[cut:]
    for pos, bit in flips:  # damage the header and the variable table
        data[pos] ^= bit
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(data))
    problem = None
    try:
        adapter = LiveDumpAdapter(str(path), speed=0)
        try:
            for _n, _frames in zip(range(8), adapter.ticks(), strict=False):
                pass
        finally:
            adapter.close()
    except AdapterUnavailableError as exc:
        problem = str(exc)
    assert problem is None or "dump" in problem


@pytest.mark.timeout(30)
def test_dump_declaring_millions_of_variables_is_refused_at_once(
    tmp_path: Path,
) -> None:
    # Found by bench/fuzz/fuzz_dump.py: num_vars = 18,808,832 made pyirsdk build that
    # many variable headers past the end of the file (a hang, unbounded memory).
    data = bytearray(
        real_file("iracing", "live", "teamjorge_live_dump.bin").read_bytes()
    )
    struct.pack_into("<i", data, 24, 18_808_832)  # irsdk header: num_vars at byte 24
    path = tmp_path / "huge.bin"
    path.write_bytes(bytes(data))
    started = time.monotonic()
    with pytest.raises(AdapterUnavailableError, match="18808832 variables declared"):
        LiveDumpAdapter(str(path), speed=0)
    assert time.monotonic() - started < 5
