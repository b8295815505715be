"""SessionReader on a real SQLite file filled by the import path: rows, chunk order, decoding, resume."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zstandard
from sqlalchemy import Engine

from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.adapters.simulator import write_simulated_ibt
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import (
    DecodeError,
    decode_batch,
    decompress_body,
    encode_batch,
)
from driver_pc.protocol.messages import TelemetryBatch
from pitbox_appliance.cli.importer import import_file, local_codec
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import make_engine, open_database
from pitbox_appliance.storage.reader import (
    RESUME_LAPS,
    ChunkDecoder,
    MissingChannelSetError,
    SessionReader,
    StoredChunk,
)
from pitbox_appliance.storage.writer import SessionWriter

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Stored:
    """A database with a race imported from two driver PCs, and a shorter session."""

    url: str
    path: Path
    race_file: Path
    race_key: str
    other_key: str


def _import(url: str, path: Path, car: str) -> None:
    engine = open_database(url)
    writer = SessionWriter(engine)
    codec = local_codec()
    import_file(path, Ingestor(codec, writer), codec, car=car)
    writer.close()
    engine.dispose()


def _import_as(url: str, path: Path, source: str) -> None:
    """Import ``path`` as the shim ``source`` would stream it."""
    engine = open_database(url)
    writer = SessionWriter(engine)
    codec = local_codec()
    ingestor = Ingestor(codec, writer)
    pipeline = ShimPipeline(IbtReplayAdapter(str(path), speed=0))
    for seq, message in enumerate(pipeline.messages()):
        ingestor.handle(codec.encode(source, seq, message))
    ingestor.flush()
    writer.close()
    engine.dispose()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """Six laps with a pit stop, imported as two sources of one car; then 2 more laps.

    Both imports carry the file's session key, so the race has two sources whose
    chunks cover the same stretch (what two driver PCs of one car send).
    """
    folder = tmp_path_factory.mktemp("reader")
    race = write_simulated_ibt(folder / "race.ibt", laps=6, start_fuel=2.0, seed=3)
    other = write_simulated_ibt(folder / "other.ibt", laps=2, seed=5)
    path = folder / "pitbox.sqlite3"
    url = f"sqlite:///{path}"
    _import(url, race, "car1")
    _import_as(url, race, "car1-pc2")  # a second PC of car1, same stretch
    _import(url, other, "car3")
    with sqlite3.connect(path) as db:
        keys = [
            k for (k,) in db.execute("SELECT session_key FROM sessions ORDER BY id")
        ]
    assert len(keys) == 2
    return Stored(url, path, race, keys[0], keys[1])


@pytest.fixture
def engine(stored: Stored) -> Iterator[Engine]:
    """A read-only engine, as the dashboard and the API open one."""
    engine = make_engine(stored.url, readonly=True)
    yield engine
    engine.dispose()


@pytest.fixture
def reader(engine: Engine) -> SessionReader:
    return SessionReader(engine)


def _rows(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def _race_id(reader: SessionReader, stored: Stored) -> int:
    race = reader.session_by_key(stored.race_key)
    assert race is not None
    return race.id


# ---- sessions, laps, stints, drivers, events -------------------------------------------
def test_sessions_newest_first(reader: SessionReader, stored: Stored) -> None:
    sessions = reader.sessions()
    assert [s.session_key for s in sessions] == [stored.other_key, stored.race_key]
    assert reader.sessions(limit=1) == sessions[:1]
    assert reader.latest_session_key() == stored.other_key
    race = reader.session(sessions[1].id)
    assert race == sessions[1]
    assert race.track.startswith("Martinsville")
    assert "DriverInfo" in race.session_info
    assert reader.session(999) is None
    assert reader.session_by_key("nope") is None


def test_laps_are_joined_with_their_drivers(
    reader: SessionReader, stored: Stored
) -> None:
    sid = _race_id(reader, stored)
    expected = _rows(
        stored.path,
        "SELECT laps.id, laps.lap_number, laps.lap_time, drivers.user_name"
        " FROM laps LEFT JOIN drivers ON laps.driver_id = drivers.id"
        " WHERE laps.session_id = ? ORDER BY laps.end_time",
        sid,
    )
    laps = reader.laps(sid)
    assert [(r.id, r.lap_number, r.lap_time, r.driver_name) for r in laps] == expected
    assert len(laps) == 7  # lap 0 (the out lap) and six timed laps
    assert {r.driver_name for r in laps} == {"Alex Sim"}
    assert [r.end_time for r in laps] == sorted(r.end_time for r in laps)
    pit = reader.laps(sid, pit=True)
    assert pit
    assert all(r.pit_lap for r in pit)
    assert reader.laps(sid, pit=True, limit=1) == pit[:1]
    assert len(reader.laps(sid, pit=False)) == len(laps) - len(pit)
    # Every session's laps, session by session (``pitbox laps``).
    every = reader.laps()
    assert [r.session_id for r in every] == sorted(r.session_id for r in every)
    assert [r for r in every if r.session_id == sid] == laps


def test_fastest_laps_of_a_session_and_of_a_track(
    reader: SessionReader, stored: Stored
) -> None:
    sid = _race_id(reader, stored)
    clean = [
        r
        for r in reader.laps(sid)
        if r.lap_time is not None and r.start_time is not None and not r.pit_lap
    ]
    fastest = reader.fastest_laps(sid, limit=2)
    assert fastest == sorted(clean, key=lambda r: r.lap_time or 0.0)[:2]
    race = reader.session(sid)
    assert race is not None
    others = reader.fastest_laps(track=race.track, other_than=sid, limit=5)
    assert others
    assert all(r.session_id != sid for r in others)
    assert reader.fastest_laps(track="nowhere") == []


def test_stints_drivers_totals_and_events(
    reader: SessionReader, stored: Stored
) -> None:
    sid = _race_id(reader, stored)
    stints = reader.stints(sid)
    laps = reader.laps(sid)
    expected = _rows(
        stored.path,
        "SELECT stints.number, drivers.user_name,"
        " (SELECT count(*) FROM laps WHERE laps.stint_id = stints.id)"
        " FROM stints LEFT JOIN drivers ON stints.driver_id = drivers.id"
        " WHERE stints.session_id = ? ORDER BY stints.number",
        sid,
    )
    assert [(s.number, s.driver_name, s.lap_count) for s in stints] == expected
    assert len(stints) >= 2  # the pit stop starts stint 2
    assert sum(s.lap_count for s in stints) == len(laps)
    assert stints[0].end_time == stints[1].start_time
    assert stints[-1].end_time is None
    drivers = reader.drivers(sid)
    assert [(d.user_name, d.team_name) for d in drivers.values()] == [
        ("Alex Sim", "PitBox Racing")
    ]
    totals = reader.lap_totals(sid)
    assert totals.count == len(laps)
    assert totals.best_lap_time == min(r.lap_time for r in laps if r.lap_time)
    assert totals.drivers == ("Alex Sim",)
    events = reader.events(sid)
    assert [(e.session_time, e.id) for e in events] == sorted(
        (e.session_time, e.id) for e in events
    )
    assert events[0].payload["user_name"] == "Alex Sim"  # the first driver change
    kind = events[0].kind
    assert reader.events(sid, kind=kind) == [e for e in events if e.kind == kind]
    assert reader.events(sid, kind="no-such-kind") == []


# ---- chunks ---------------------------------------------------------------------------
def test_chunks_in_order_windowed_and_per_source(
    reader: SessionReader, stored: Stored
) -> None:
    sid = _race_id(reader, stored)
    chunks = list(reader.chunks(sid))
    (count,) = _rows(
        stored.path, "SELECT count(*) FROM telemetry_chunks WHERE session_id = ?", sid
    )[0]
    assert len(chunks) == count
    keys = [(c.start_time, c.source, c.seq) for c in chunks]
    assert keys == sorted(keys)
    sources = sorted({c.source for c in chunks})
    assert len(sources) == 2
    assert sources[0].startswith("car1-import")
    # Each source's chunks follow its sequence numbers.
    for source in sources:
        mine = list(reader.chunks(sid, source=source))
        assert mine == [c for c in chunks if c.source == source]
        assert [c.seq for c in mine] == sorted(c.seq for c in mine)
    # A window returns exactly the chunks overlapping it.
    start, end = 60.0, 90.0
    window = list(reader.chunks(sid, start=start, end=end))
    assert window == [c for c in chunks if c.end_time >= start and c.start_time <= end]
    assert window
    assert window[0].start_time <= start <= window[0].end_time + 0.1
    assert reader.last_chunk_end(sid) == max(c.end_time for c in chunks)
    assert list(reader.chunks(999)) == []
    assert reader.last_chunk_end(999) is None


def test_decoded_chunks_are_what_the_codec_sent(
    reader: SessionReader, stored: Stored
) -> None:
    """Storage → ChunkDecoder gives the shim's batches as the codec carries them."""
    sid = _race_id(reader, stored)
    source = next(c.source for c in reader.chunks(sid) if c.source.startswith("car1"))
    dictionaries = reader.chunk_channel_sets(sid)
    assert dictionaries == reader.channel_sets(sid)
    decode = ChunkDecoder(dictionaries)
    got = [batch for _chunk, batch in decode.batches(reader.chunks(sid, source=source))]
    adapter = IbtReplayAdapter(str(stored.race_file), speed=0)
    try:
        sent = [
            m for m in ShimPipeline(adapter).messages() if isinstance(m, TelemetryBatch)
        ]
    finally:
        adapter.close()
    assert len(got) == len(sent)
    for stored_batch, batch in zip(got, sent, strict=True):
        expected = decode_batch(encode_batch(batch), dictionaries).frames
        assert stored_batch.session_key == batch.session_key
        assert stored_batch.frames.dtype == expected.dtype
        assert np.array_equal(stored_batch.frames, expected)
    times = np.concatenate([b.frames["SessionTime"] for b in got])
    assert np.all(np.diff(times) > 0)


def test_decoder_keeps_only_the_channels_asked_for(
    reader: SessionReader, stored: Stored
) -> None:
    sid = _race_id(reader, stored)
    chunk = next(reader.chunks(sid))
    decode = ChunkDecoder(reader.channel_sets(sid), frozenset({"SessionTime", "Speed"}))
    batch = decode(chunk)
    assert set(batch.frames.dtype.names or ()) == {"SessionTime", "Speed"}
    assert len(batch.frames) == chunk.frames


def test_decoder_rejects_a_damaged_chunk(reader: SessionReader, stored: Stored) -> None:
    sid = _race_id(reader, stored)
    chunk = next(reader.chunks(sid))
    decode = ChunkDecoder(reader.channel_sets(sid))
    garbage = StoredChunk(**{**_fields(chunk), "data": b"not zstd"})
    with pytest.raises(DecodeError, match=r"^bad_compression"):
        decode(garbage)
    body = decompress_body(zstandard.ZstdDecompressor(), chunk.data)
    truncated = zstandard.ZstdCompressor().compress(body[:10])
    with pytest.raises(DecodeError):
        decode(StoredChunk(**{**_fields(chunk), "data": truncated}))
    with pytest.raises(DecodeError, match="no channel dictionary"):
        ChunkDecoder({})(chunk)


def _fields(chunk: StoredChunk) -> dict[str, object]:
    return {name: getattr(chunk, name) for name in StoredChunk.__slots__}


def test_channel_sets_fall_back_to_another_session(
    stored: Stored, tmp_path: Path
) -> None:
    """Compaction decodes with the same dictionary stored under another session."""
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(stored.path, copy)
    with sqlite3.connect(copy) as db:
        (sid,) = db.execute(
            "SELECT id FROM sessions WHERE session_key = ?", (stored.race_key,)
        ).fetchone()
        moved = db.execute(
            "UPDATE channel_sets SET session_id = 999 WHERE session_id = ?", (sid,)
        ).rowcount
    assert moved
    engine = make_engine(f"sqlite:///{copy}", readonly=True)
    try:
        reader = SessionReader(engine)
        assert reader.channel_sets(sid) == {}
        found = reader.chunk_channel_sets(sid)
        assert set(found) == {c.dict_id for c in reader.chunks(sid)}
    finally:
        engine.dispose()
    with sqlite3.connect(copy) as db:
        db.execute("DELETE FROM channel_sets")
    engine = make_engine(f"sqlite:///{copy}", readonly=True)
    try:
        with pytest.raises(MissingChannelSetError, match="no channel dictionary 0x"):
            SessionReader(engine).chunk_channel_sets(sid)
    finally:
        engine.dispose()


# ---- resume -------------------------------------------------------------------------
def test_resume_state_through_the_writer(stored: Stored, tmp_path: Path) -> None:
    """The writer's resume reads inside its transaction: flushed rows count."""
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(stored.path, copy)
    url = f"sqlite:///{copy}"
    engine = open_database(url)
    writer = SessionWriter(engine)
    try:
        sid = writer.session_id(stored.race_key)
        state = writer.resume_state(sid)
        assert state is not None
        reader = SessionReader(engine)
        laps = reader.laps(sid)
        assert [lap.id for lap in state.laps] == [lap.id for lap in laps][-RESUME_LAPS:]
        last = laps[-1]
        since = (last.start_time or last.end_time) - 1.0
        assert state.chunks == list(reader.chunks(sid, start=since))
        stints = reader.stints(sid)
        assert (state.stint_id, state.stint_number) == (stints[-1].id, len(stints))
        assert (state.driver_id, state.driver_name) == (
            stints[-1].driver_id,
            "Alex Sim",
        )
        # A stint opened but not committed: the writer sees it, other readers do not.
        new = writer.open_stint(sid, state.driver_id, (last.end_time) + 1.0)
        resumed = writer.resume_state(sid)
        assert resumed is not None
        assert resumed.stint_id == new
        assert resumed.stint_number == len(stints) + 1
        assert reader.stints(sid) == stints
        writer.rollback()
        assert writer.resume_state(sid + 100) is None  # no telemetry stored
    finally:
        writer.close()
        engine.dispose()


def test_snapshot_reads_in_one_session(reader: SessionReader, stored: Stored) -> None:
    with reader.snapshot() as snap:
        race = snap.session_by_key(stored.race_key)
        assert race is not None
        with snap.snapshot() as same:
            assert same is snap
        assert snap.laps(race.id) == reader.laps(race.id)
        # A chunk stream left half-read does not hold the snapshot up.
        first = next(snap.chunks(race.id))
        assert first == next(reader.chunks(race.id))
