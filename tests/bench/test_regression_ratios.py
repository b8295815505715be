"""Fast regression checks of the headline figures, as ratios to a baseline of the same run.

Timed tests on a shared machine lie, so nothing here compares a time with a number.
Each check times one of our hot paths and, interleaved with it, a fixed reference
workload that is not our code (the interpreter, small-array NumPy, zstd, SQLite: the
kinds of work the hot paths do). The figure is the ratio of the two CPU times, which
a faster or slower or busier machine changes far less than it changes either time.
Each ratio must stay within ``SLACK`` of the one recorded in
``bench/ratio_baselines.json`` (written with ``PITBOX_RECORD_RATIOS=1``, by a run on
main; say why in the commit when you do).
The wire figure needs no baseline run: bytes are bytes.

The full figures, against DESIGN §6's bars, are the benchmarks' (``bench/``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard

from driver_pc.adapters.base import Frames
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import TelemetryBatch
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.core.live_path import LivePeek
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter
from tests.conftest import REPO_ROOT

BASELINES = REPO_ROOT / "bench" / "ratio_baselines.json"
RECORD = os.environ.get("PITBOX_RECORD_RATIOS") == "1"
SLACK = 1.6  # a ratio may grow by this much before the check fails
KEY = bytes(range(32))
SOURCE = "car1-pc1"
FIELD = 63  # the full load's field: every batch carries the CarIdx* arrays


@cache
def field_race() -> tuple[tuple[bytes, ...], int, float]:
    """A simulated car in a 63-car field as its shim sends it: wire, frames, seconds."""
    codec = Codec(KEY)
    pipeline = ShimPipeline(
        RaceSimulatorAdapter(laps=2, speed=0, seed=11, opponents=FIELD)
    )
    wire = []
    last = 0.0
    for seq, message in enumerate(pipeline.messages()):
        wire.append(codec.encode(SOURCE, seq, message))
        if isinstance(message, TelemetryBatch):
            last = float(message.frames["SessionTime"][-1])
    return tuple(wire), pipeline.stats.ticks, last


class _Row:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: float) -> None:
        self.key = key
        self.value = value


def reference() -> None:
    """A fixed workload that is not ours, shaped like our hot paths, ~100 ms here.

    Mostly the interpreter (objects, attributes, dicts, strings), then NumPy on
    batch-sized arrays (call overhead, not memory bandwidth), zstd on small bodies
    and one SQLite transaction: the mix ingest and the shim spend their time in. A
    reference dominated by large-array NumPy (the first one) moved 1.6x against
    the interpreter from one host CPU to another (2026-12-04).
    """
    table: dict[str, float] = {}
    rows: list[tuple[str, float]] = []
    for i in range(15_000):
        row = _Row(f"c{i % 251}", i * 0.5)
        table[row.key] = table.get(row.key, 0.0) + row.value
        if i % 7 == 0:
            rows.append((row.key, row.value))
    rows.sort()
    rng = np.random.default_rng(1)
    batch = rng.standard_normal(384).astype(np.float32)
    for _ in range(800):
        steps = np.round(batch / 0.01).astype(np.int32)
        deltas = np.diff(steps, prepend=np.int32(0))
        batch = (np.cumsum(deltas) * 0.01).astype(np.float32)
        float(batch.max())
        int(np.count_nonzero(deltas))
    compressor = zstandard.ZstdCompressor(level=3)
    decompressor = zstandard.ZstdDecompressor()
    blob = rng.integers(0, 40, 16_000, dtype=np.int16).tobytes()
    for _ in range(40):
        decompressor.decompress(compressor.compress(blob))
    db = sqlite3.connect(":memory:")
    db.execute("create table t (k text, v real)")
    with db:
        db.executemany("insert into t values (?, ?)", rows)
    db.close()
    assert table


def cpu_ratio(subject: Callable[[], Any], repeats: int = 5) -> float:
    """Best CPU time of ``subject`` over best of ``reference``, interleaved.

    This machine is a VM whose CPU time for the same work varies up to 2x from one
    second to the next (the reference alone: 50 or 100 ms): the best of several
    runs of each, interleaved, is what the two share.
    """
    best_subject = best_reference = float("inf")
    for _ in range(repeats):
        for _ in range(3):
            t0 = time.process_time()
            reference()
            best_reference = min(best_reference, time.process_time() - t0)
        t0 = time.process_time()
        subject()
        best_subject = min(best_subject, time.process_time() - t0)
    return best_subject / best_reference


def check(name: str, ratio: float) -> None:
    baselines: dict[str, Any] = (
        json.loads(BASELINES.read_text()) if BASELINES.exists() else {}
    )
    if RECORD:
        baselines[name] = round(ratio, 4)
        BASELINES.write_text(json.dumps(baselines, indent=1, sort_keys=True) + "\n")
        return
    if name not in baselines:
        pytest.fail(
            f"no baseline for {name} in {BASELINES}: run with PITBOX_RECORD_RATIOS=1"
        )
    assert ratio <= baselines[name] * SLACK, (
        f"{name}: {ratio:.3f}× the reference workload, baseline {baselines[name]:.3f}× "
        f"(allowed up to {SLACK}×): a regression, or a much noisier machine"
    )


def test_ingest_of_a_field_race(tmp_path: Path) -> None:
    """Ingest (decode, store, segment, detectors, strategy) of one car in a full field."""
    wire, frames, _ = field_race()
    runs = iter(range(100))

    def ingest() -> None:
        engine = open_database(f"sqlite:///{tmp_path / f'r{next(runs)}.sqlite3'}")
        writer = SessionWriter(engine)
        ingestor = Ingestor(Codec(KEY), writer)
        for i, payload in enumerate(wire):
            ingestor.handle(payload, SOURCE)
            if i % 500 == 499:
                ingestor.flush()
        ingestor.flush()
        assert ingestor.stats.frames == frames
        writer.close()
        engine.dispose()

    check("ingest_field_race", cpu_ratio(ingest))


def test_live_path_peek_of_a_field_race() -> None:
    wire, _, _ = field_race()

    def peek() -> None:
        live = LivePeek(Codec(KEY), {})
        for payload in wire:
            live.peek(payload, SOURCE)
        assert live.peeked > 0

    check("live_peek_field_race", cpu_ratio(peek))


def test_shim_work_for_a_field_race() -> None:
    """The shim's pipeline and codec for the same race (the adapter's ticks excluded)."""
    adapter = RaceSimulatorAdapter(laps=1, speed=0, seed=11, opponents=FIELD)
    ticks = list(adapter.ticks())

    class Replay(RaceSimulatorAdapter):
        def ticks(self) -> Iterator[Frames]:
            yield from ticks

    def shim() -> None:
        codec = Codec(KEY)
        pipeline = ShimPipeline(Replay(laps=1, speed=0, seed=11, opponents=FIELD))
        for seq, message in enumerate(pipeline.messages()):
            codec.encode(SOURCE, seq, message)

    check("shim_field_race", cpu_ratio(shim))


def test_wire_bytes_of_a_field_race() -> None:
    """Bytes on the wire per car and second, all messages: exact, no baseline run."""
    wire, _, seconds = field_race()
    kb_s = sum(len(w) for w in wire) / seconds / 1000
    baselines = json.loads(BASELINES.read_text()) if BASELINES.exists() else {}
    if RECORD:
        baselines["wire_field_race_kb_s"] = round(kb_s, 3)
        BASELINES.write_text(json.dumps(baselines, indent=1, sort_keys=True) + "\n")
        return
    assert kb_s <= baselines["wire_field_race_kb_s"] * 1.02, kb_s
