"""One bad message never stops the appliance: each is its own fault domain (issue 11 §1-3).

A real SQLite file and the real ``Ingestor``/``CoreService`` commit path, fed simulated
cars; no broker (the PUBACKs are recorded instead). The same through a real broker:
test_hostile_messages.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import (
    DriverChange,
    Message,
    TelemetryBatch,
    message_to_json,
)
from pitbox_appliance.config import ApplianceConfig, CoreConfig
from pitbox_appliance.core.car import CarTracker
from pitbox_appliance.core.ingest import Ingestor, Outcome
from pitbox_appliance.core.service import STALL_AFTER_S, CoreService
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter, environmental
from tests.conftest import RunningAppliance, wait_for

KEY = os.urandom(32)


def race(car: str, seed: int, laps: int = 2) -> list[Message]:
    adapter = RaceSimulatorAdapter(
        laps=laps, speed=0, seed=seed, session_key=f"race-{car}"
    )
    return list(ShimPipeline(adapter).messages())


def wire(codec: Codec, source: str, messages: list[Message]) -> list[bytes]:
    return [codec.encode(source, seq, m) for seq, m in enumerate(messages, 1)]


def interleave(*streams: list[bytes]) -> list[tuple[str, bytes]]:
    """Messages of several sources in arrival order (round robin), with their topic."""
    out: list[tuple[str, bytes]] = []
    longest = max(len(s) for s in streams)
    for i in range(longest):
        for number, stream in enumerate(streams, 1):
            if i < len(stream):
                out.append((topics.shim_data(f"car{number}-pc1").name, stream[i]))
    return out


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


@dataclass
class Cars:
    db: Path
    ingestor: Ingestor
    writer: SessionWriter
    codec: Codec


@pytest.fixture
def cars(tmp_path: Path) -> Iterator[Cars]:
    db = tmp_path / "core.sqlite3"
    engine = open_database(f"sqlite:///{db}")
    writer = SessionWriter(engine)
    codec = Codec(KEY)
    yield Cars(db, Ingestor(codec, writer), writer, codec)
    writer.close()
    engine.dispose()


def bad_driver_change(codec: Codec, source: str, seq: int, **fields: Any) -> bytes:
    """A DriverChange with JSON fields as a broken shim would send them."""
    body = message_to_json(
        DriverChange(f"race-{source.split('-')[0]}", 1.0, 0, 7, "Bad Shim")
    )
    body.update(fields)
    # The typed constructor does not check (a sender is never stopped by its own
    # input); json.dumps writes NaN and inf as the bare words Python reads back.
    return codec.encode(source, seq, DriverChange(**body))


# ---- 1: each message is its own fault domain --------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"session_time": float("nan")}, "invalid:DriverChange.session_time"),
        ({"session_time": float("inf")}, "invalid:DriverChange.session_time"),
        ({"user_id": 2**70}, "invalid:DriverChange.user_id"),
        ({"user_name": "x" * 129}, "invalid:DriverChange.user_name"),
        ({"session_key": ""}, "invalid:DriverChange.session_key"),
        ({"car_idx": -1}, "invalid:DriverChange.car_idx"),
    ],
)
def test_a_bad_driver_change_is_a_dead_letter_and_the_batch_commits(
    cars: Cars, fields: dict[str, Any], reason: str
) -> None:
    messages = race("car1", 3, laps=1)
    half = len(messages) // 2
    codec = cars.codec
    for seq, message in enumerate(messages[:half], 1):
        assert cars.ingestor.ingest(codec.encode("car1-pc1", seq, message)).stored
    bad = bad_driver_change(codec, "car1-pc1", half + 1, **fields)
    handled = cars.ingestor.ingest(bad, "car1-pc1", "pitbox/v1/shim/car1-pc1/data")
    assert handled.outcome is Outcome.DEAD_LETTER
    assert handled.reason == reason
    for seq, message in enumerate(messages[half:], half + 2):
        assert cars.ingestor.ingest(codec.encode("car1-pc1", seq, message)).stored
    cars.ingestor.flush()  # the batch with the bad message in it commits
    assert cars.ingestor.stats.dead_letters == {reason: 1}
    (letter,) = rows(
        cars.db, "SELECT source, seq, kind, reason, detail, payload FROM dead_letters"
    )
    assert letter[:4] == ("car1-pc1", half + 1, "driver_change", reason)
    assert reason.split(":", 1)[1] in letter[4]  # the detail names the field
    assert letter[5] == bad  # the message as received
    # Nothing of it stored: one driver, one stint, no NULL start time.
    assert rows(cars.db, "SELECT user_name FROM drivers") == [("Alex Sim",)]
    assert rows(cars.db, "SELECT COUNT(*) FROM stints WHERE start_time IS NULL") == [
        (0,)
    ]
    chunks = rows(cars.db, "SELECT COUNT(*) FROM telemetry_chunks")[0][0]
    assert chunks == sum(isinstance(m, TelemetryBatch) for m in race("car1", 3, 1))
    # Re-delivered (no PUBACK reached the shim): a duplicate, not a second letter.
    assert cars.ingestor.ingest(bad).outcome is Outcome.DUPLICATE


def test_analysis_raising_for_one_car_loses_nothing_of_the_other(
    cars: Cars, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = wire(cars.codec, "car1-pc1", race("car1", 3))
    two = wire(cars.codec, "car2-pc1", race("car2", 4))
    original = CarTracker.telemetry
    calls = {"car2": 0}
    poisoned: list[int] = []

    def analysis(self: CarTracker, source: str, seq: int, *args: Any) -> None:
        original(self, source, seq, *args)  # stores its chunk, events, laps...
        if self.car == "car2":
            calls["car2"] += 1
            if calls["car2"] in (40, 41, 90):  # ...then analysis raises
                poisoned.append(seq)
                raise IndexError("index 0 is out of bounds for axis 0 with size 0")

    monkeypatch.setattr(CarTracker, "telemetry", analysis)
    outcomes = []
    for n, (_topic, payload) in enumerate(interleave(one, two), 1):
        outcomes.append(cars.ingestor.ingest(payload))
        if n % 50 == 0:
            cars.ingestor.flush()
    cars.ingestor.flush()
    assert [o.reason for o in outcomes if not o.stored] == ["IndexError"] * 3
    assert cars.ingestor.stats.dead_letters == {"IndexError": 3}
    letters = rows(cars.db, "SELECT source, seq, reason, traceback FROM dead_letters")
    assert [(s, q) for s, q, _r, _t in letters] == [("car2-pc1", q) for q in poisoned]
    assert all("IndexError" in tb and "analysis" in tb for *_x, tb in letters)
    # car1 lost nothing; car2 lost exactly the three poisoned batches (no partial row)
    by_source = dict(
        rows(cars.db, "SELECT source, COUNT(*) FROM telemetry_chunks GROUP BY source")
    )
    batches = sum(isinstance(m, TelemetryBatch) for m in race("car1", 3))
    assert by_source["car1-pc1"] == batches
    assert by_source["car2-pc1"] == (
        sum(isinstance(m, TelemetryBatch) for m in race("car2", 4)) - 3
    )
    stored = rows(
        cars.db,
        "SELECT s.car, l.lap_number FROM laps l JOIN sessions s ON s.id = l.session_id"
        " ORDER BY s.car, l.end_time",
    )
    assert [lap for car, lap in stored if car == "car1"] == [0, 1, 2]
    # car2 resumed from storage after each failure and still completed its laps.
    assert [lap for car, lap in stored if car == "car2"] == [0, 1, 2]


def test_the_first_message_of_a_batch_is_not_committed_before_the_batch(
    cars: Cars,
) -> None:
    """A SAVEPOINT opened before any write must not start (and commit) on its own."""
    payloads = wire(cars.codec, "car1-pc1", race("car1", 3, laps=1))
    for payload in payloads[:5]:
        assert cars.ingestor.ingest(payload).stored
    cars.ingestor.rollback()
    assert rows(cars.db, "SELECT COUNT(*) FROM sessions") == [(0,)]
    assert rows(cars.db, "SELECT COUNT(*) FROM sources") == [(0,)]
    for payload in payloads[:5]:  # handled again after the rollback: not duplicates
        assert cars.ingestor.ingest(payload).stored


# ---- 3: a commit refused by one message's content ----------------------------------------
@dataclass
class Service:
    core: CoreService
    acked: list[int]
    committed: list[list[tuple[str, bytes, int]]]
    db: Path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    db = tmp_path / "core.sqlite3"
    fatal: list[str] = []
    core = CoreService(
        ApplianceConfig(core=CoreConfig(db_url=f"sqlite:///{db}")),
        KEY,
        on_fatal=fatal.append,
    )
    acked: list[int] = []
    committed: list[list[tuple[str, bytes, int]]] = []
    core.connection.ack = acked.append  # type: ignore[method-assign]
    core.commit_listeners.append(committed.append)
    yield Service(core, acked, committed, db)
    assert not fatal
    core.writer.close()
    core.engine.dispose()


def feed(service: Service, items: list[tuple[str, bytes]]) -> None:
    core = service.core
    with core._lock:
        for mid, (topic, payload) in enumerate(items, 1):
            core._pending.append((topic, payload, mid))
            core._handle((topic, payload, mid))


def test_a_commit_refused_for_one_message_stores_the_rest(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = Codec(KEY)
    items = interleave(
        wire(codec, "car1-pc1", race("car1", 3, laps=1)),
        wire(codec, "car2-pc1", race("car2", 4, laps=1)),
    )[:120]
    # One chunk row the database refuses at commit (as a NaN time used to be).
    writer = service.core.writer
    original = writer.add_chunk
    poison = {"seq": 30, "source": "car2-pc1"}

    def add_chunk(**row: Any) -> None:
        if row["source"] == poison["source"] and row["seq"] == poison["seq"]:
            row = {**row, "start_time": None}
        original(**row)

    monkeypatch.setattr(writer, "add_chunk", add_chunk)
    feed(service, items)
    with service.core._lock:
        assert service.core._commit_locked()
    assert service.core._held is None
    assert sorted(service.acked) == list(range(1, len(items) + 1))  # every one acked
    letters = rows(service.db, "SELECT source, seq, reason FROM dead_letters")
    assert letters == [("car2-pc1", 30, "IntegrityError")]
    chunks = rows(service.db, "SELECT COUNT(*) FROM telemetry_chunks")[0][0]
    batches = sum(1 for _t, p in items if codec.open(p)[2].name == "TELEMETRY")
    assert chunks == batches - 1
    # Nothing committed twice, nothing committed that was acked but lost.
    assert rows(
        service.db,
        "SELECT COUNT(*) - COUNT(DISTINCT source || seq) FROM telemetry_chunks",
    ) == [(0,)]


def test_a_full_disk_holds_every_message_unacknowledged_then_commits_them(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = Codec(KEY)
    items = interleave(wire(codec, "car1-pc1", race("car1", 3, laps=1)))[:40]
    feed(service, items)
    writer = service.core.writer
    original = writer.commit
    failures = [OperationalError("COMMIT", {}, Exception("database or disk is full"))]

    def commit() -> None:
        if failures:
            raise failures.pop()
        original()

    monkeypatch.setattr(writer, "commit", commit)
    core = service.core
    with core._lock:
        assert not core._commit_locked()
    assert core._held is not None
    assert environmental(core._held)
    assert service.acked == []  # nothing acknowledged while held
    assert rows(service.db, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
    assert "storage failing" not in (core.stall_reason() or "")  # not yet 2 s
    core._held_since -= 5
    assert "storage failing" in (core.stall_reason() or "")
    assert core.health()["status"] == "stalled"
    core._retry_held()
    assert core._held is None
    assert sorted(service.acked) == list(range(1, len(items) + 1))
    assert core.stall_reason() is None
    chunks = rows(service.db, "SELECT COUNT(*) FROM telemetry_chunks")[0][0]
    assert chunks == sum(1 for _t, p in items if codec.open(p)[2].name == "TELEMETRY")


def test_environmental_failures_are_told_apart() -> None:
    full = OperationalError(
        "INSERT", {}, sqlite3.OperationalError("database or disk is full")
    )
    io = OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))
    assert environmental(full)
    assert environmental(io)
    assert environmental(OSError(28, "No space left on device"))
    from sqlalchemy.exc import IntegrityError, StatementError

    assert not environmental(
        IntegrityError("INSERT", {}, sqlite3.IntegrityError("NOT NULL"))
    )
    assert not environmental(StatementError("x", "INSERT", {}, OverflowError("big")))
    assert not environmental(IndexError("index 0 is out of bounds"))


# ---- 6: a dead letter retried after the fix -----------------------------------------------
def test_retry_after_the_fix_stores_it_and_removes_the_letter(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = Codec(KEY)
    items = interleave(wire(codec, "car1-pc1", race("car1", 3, laps=1)))
    broken = {"on": True}
    original = CarTracker.session_info

    def session_info(self: CarTracker, msg: Any) -> None:
        if broken["on"]:
            raise KeyError("DriverInfo")
        original(self, msg)

    monkeypatch.setattr(CarTracker, "session_info", session_info)
    feed(service, items)
    core = service.core
    with core._lock:
        assert core._commit_locked()
    # The shim sends the session info at the start and again every 30 s.
    letters = rows(service.db, "SELECT id, reason FROM dead_letters ORDER BY id")
    assert [reason for _id, reason in letters] == ["KeyError"] * len(letters)
    assert len(letters) >= 1
    letter_id = letters[0][0]
    # Still broken: it stays, with one more attempt.
    again = core.retry_dead_letter(letter_id)
    assert (again.outcome, again.reason) == (Outcome.DEAD_LETTER, "KeyError")
    assert rows(
        service.db, f"SELECT attempts FROM dead_letters WHERE id = {letter_id}"
    ) == [(2,)]
    broken["on"] = False  # "the fix"
    for each, _reason in letters:
        assert core.retry_dead_letter(each).stored
    assert rows(service.db, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
    assert rows(service.db, "SELECT track FROM sessions")[0][0]  # the info is in
    with pytest.raises(LookupError):
        core.retry_dead_letter(letter_id)


def test_stats_say_what_was_put_aside(cars: Cars) -> None:
    bad = bad_driver_change(cars.codec, "car1-pc1", 5, user_id=2**70)
    cars.ingestor.ingest(bad)
    cars.ingestor.flush()
    stats = cars.ingestor.stats.as_dict()
    assert stats["dead_letters"] == {"invalid:DriverChange.user_id": 1}
    assert stats["rejected"] == {}
    assert json.dumps(stats)


def test_an_idle_core_is_not_stalled_by_its_first_burst(
    appliance: RunningAppliance,
) -> None:
    """A core idle for longer than the stall time takes a burst: that is no stall."""
    core = appliance.core
    time.sleep(STALL_AFTER_S + 0.5)  # nothing to ingest: idle, not stalled
    assert core.stall_reason() is None
    topic = topics.shim_data("car1-pc1").name
    with core._lock:  # the burst waits while ingest takes its first message
        for mid in range(50):
            core._on_message(topic, b"\x00" * 64, mid)
        assert wait_for(lambda: core._inbox.qsize() < 50, 5)
        assert core._inbox.qsize() > 0
        assert core.stall_reason() is None
    assert wait_for(lambda: core._inbox.qsize() == 0, 10)
