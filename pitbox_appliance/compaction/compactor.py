"""compact_session: one stored session → a partitioned directory of Parquet files plus manifest.json."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from driver_pc.protocol.data_dirs import track_outlines_dir
from driver_pc.protocol.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    Partition,
    file_entry,
)
from driver_pc.protocol.messages import ChannelDictionary
from driver_pc.protocol.session_info import SessionInfoError, parse_session_info
from pitbox_appliance.coaching.sync import (
    PROFILES_FILE,
    PROFILES_TABLE,
    session_profiles,
)
from pitbox_appliance.compaction.summary import (
    SessionRows,
    StintFuel,
    StintTyres,
    events_table,
    laps_table,
    session_analytics,
    session_date,
    session_table,
    stint_summaries,
    stints_table,
    team_of,
)
from pitbox_appliance.compaction.telemetry import TelemetryWriter
from pitbox_appliance.compaction.track import TrackCollector, track_map
from pitbox_appliance.storage.reader import (
    ChunkDecoder,
    MissingChannelSetError,
    SessionReader,
    SessionRow,
)

logger = logging.getLogger(__name__)

Frames = np.ndarray[Any, np.dtype[np.void]]

STAGING = ".staging"
UNKNOWN = "unknown"
TABLE_FILES = {
    "telemetry": "telemetry/telemetry.parquet",
    "telemetry_exceptions": "telemetry_exceptions/telemetry_exceptions.parquet",
    "laps": "laps/laps.parquet",
    "stints": "stints/stints.parquet",
    "events": "events/events.parquet",
    "session": "session/session.parquet",
    # The sim's last session-info YAML as stored; every CarSetup change before it is a
    # ``car_setup`` event in the events table.
    "session_info": "session/session_info.yaml",
    # The track map the pit wall used (compaction/track.py): outline and corners.
    "track_outline": "track_outline/track_outline.parquet",
    "corners": "corners/corners.parquet",
}


class CompactionError(RuntimeError):
    """A session could not be compacted; the message says which and why."""


class AlreadyCompactedError(CompactionError):
    """The session's directory already exists in the outbox (use ``replace``)."""


def compact_session(
    engine: Engine,
    session_id: int,
    out_dir: Path,
    *,
    team: str | None = None,
    replace: bool = False,
    outlines: Path | None = None,
) -> Manifest:
    """Write session ``session_id`` as a compacted set under ``out_dir``; returns its manifest.

    The set is written in ``out_dir/.staging`` and renamed into
    ``out_dir/team=…/season=…/track=…/session=…`` only when complete (manifest last),
    so a reader (the uploader) never sees half a session. ``team`` overrides the team
    name found in the data. ``outlines``: the per-track outline cache (default: beside
    the database), whose outline the set's corner map is taken from when it has one.
    """
    rows, dictionaries = _load(engine, session_id)
    info = _session_info(rows.race)
    team_name = team or team_of(rows)
    partition, season_source = _partition(rows.race, team_name, info)
    final = out_dir / partition.path
    if final.exists() and not replace:
        raise AlreadyCompactedError(f"session {session_id} is already at {final}")
    staging = out_dir / STAGING / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        manifest = _write_set(
            engine,
            rows,
            dictionaries,
            info,
            partition,
            team_name,
            season_source,
            staging,
            outlines if outlines is not None else _outlines_beside(engine),
        )
        _fsync_tree(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            trash = out_dir / STAGING / f"old-{uuid.uuid4().hex}"
            final.rename(trash)
            shutil.rmtree(trash)
        staging.rename(final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("compacted session %s into %s", session_id, final)
    return manifest


def compacted_path(
    engine: Engine, session_id: int, out_dir: Path, *, team: str | None = None
) -> Path:
    """Where ``compact_session`` puts (or has put) this session."""
    rows, _ = _load(engine, session_id, relational_only=True)
    info = _session_info(rows.race)
    partition, _ = _partition(rows.race, team or team_of(rows), info)
    return out_dir / partition.path


def slug(value: str) -> str:
    """A partition value: lowercase ``[a-z0-9-]``, at most 64 characters."""
    text = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:64].strip("-")
    return text or UNKNOWN


# ---- reading ---------------------------------------------------------------------
def _load(
    engine: Engine, session_id: int, relational_only: bool = False
) -> tuple[SessionRows, list[ChannelDictionary]]:
    with SessionReader(engine).snapshot() as reader:
        race = reader.session(session_id)
        if race is None:
            raise CompactionError(f"no session {session_id} in the database")
        rows = SessionRows(
            race,
            reader.drivers(session_id),
            reader.stints(session_id),
            reader.laps(session_id),
            reader.events(session_id),
        )
        dictionaries: list[ChannelDictionary] = []
        if not relational_only:
            try:
                used = reader.chunk_channel_sets(session_id)
            except MissingChannelSetError as exc:
                raise CompactionError(str(exc)) from None
            dictionaries = [used[dict_id] for dict_id in sorted(used)]
    return rows, dictionaries


def _session_info(race: SessionRow) -> dict[str, Any]:
    if not race.session_info:
        return {}
    try:
        return parse_session_info(race.session_info)
    except SessionInfoError:
        logger.warning("session %s: unreadable session info", race.id)
        return {}


def _partition(
    race: SessionRow, team: str | None, info: dict[str, Any]
) -> tuple[Partition, str]:
    date = session_date(info)
    if date is not None:
        season, source = date.year, "session_info"
    else:
        season = dt.datetime.fromtimestamp(race.created_at, dt.UTC).year
        source = "stored_at"
    return (
        Partition(
            team=slug(team or UNKNOWN),
            season=season,
            track=slug(race.track or UNKNOWN),
            session=slug(race.session_key),
        ),
        source,
    )


def _chunks(
    engine: Engine, session_id: int, dictionaries: list[ChannelDictionary]
) -> Iterator[tuple[str, Frames]]:
    """Decoded batches in chunk order: (source, frames)."""
    reader = SessionReader(engine)
    decode = ChunkDecoder({d.dict_id: d for d in dictionaries}, reader=reader)
    for chunk, batch in decode.batches(reader.chunks(session_id)):
        yield chunk.source, batch.frames


# ---- writing ---------------------------------------------------------------------
def _write_set(
    engine: Engine,
    rows: SessionRows,
    dictionaries: list[ChannelDictionary],
    info: dict[str, Any],
    partition: Partition,
    team_name: str | None,
    season_source: str,
    root: Path,
    outlines: Path | None,
) -> Manifest:
    race = rows.race
    collector = TrackCollector()
    fuel = StintFuel([s.start_time for s in rows.stints])
    tyres = StintTyres([s.start_time for s in rows.stints])
    files: list[FileEntry] = []
    notes: list[str] = []
    telemetry_summary: dict[str, Any] = {"rows": 0, "values": 0, "columns": []}
    if dictionaries:
        writer = TelemetryWriter(dictionaries)
        path = root / TABLE_FILES["telemetry"]
        path.parent.mkdir(parents=True)
        writer.open(path)
        exceptions = root / TABLE_FILES["telemetry_exceptions"]
        exceptions.parent.mkdir(parents=True)
        for source, frames in _chunks(engine, race.id, dictionaries):
            writer.add(source, frames)
            collector(source, frames)
            fuel(source, frames)
            tyres(source, frames)
        fuel.finish()
        tyres.finish()
        result = writer.result
        if writer.close(exceptions):
            files.append(
                file_entry(
                    root,
                    TABLE_FILES["telemetry_exceptions"],
                    "telemetry_exceptions",
                    result.exceptions,
                )
            )
        else:
            exceptions.parent.rmdir()
        files.insert(
            0, file_entry(root, TABLE_FILES["telemetry"], "telemetry", result.rows)
        )
        telemetry_summary = {
            "rows": result.rows,
            "values": result.values,
            "exceptions": result.exceptions,
            "tick_rates": sorted(result.tick_rates),
            "first_time": result.first_time,
            "last_time": result.last_time,
            "sources": sorted(result.sources),
            "columns": [c.describe() for c in result.columns],
        }
    else:
        notes.append("no telemetry stored for this session")
    stints = stint_summaries(rows, fuel, tyres)
    tables = {
        "laps": laps_table(rows),
        "stints": stints_table(stints),
        "events": events_table(rows, _dumps),
        "session": session_table(rows, stints, team_name),
    }
    for table, data in tables.items():
        files.append(_write_table(root, table, data))
    # Driver profiles (issue 15): an extra file, so older readers just skip it.
    profiles = session_profiles(engine, race.id)
    if profiles is not None:
        (root / PROFILES_FILE).write_text(_dumps(profiles), encoding="utf-8")
        files.append(
            file_entry(root, PROFILES_FILE, PROFILES_TABLE, len(profiles["profiles"]))
        )
    weekend = info.get("WeekendInfo")
    found = track_map(
        collector, weekend if isinstance(weekend, dict) else None, race.track, outlines
    )
    if found is not None:
        files.append(_write_table(root, "track_outline", found.outline_table()))
        files.append(_write_table(root, "corners", found.corners_table()))
    else:
        notes.append("no track map: no clean lap with GPS or speed and yaw")
    if race.session_info:
        info_path = root / TABLE_FILES["session_info"]
        info_path.write_text(race.session_info, encoding="utf-8")
        files.append(file_entry(root, TABLE_FILES["session_info"], "session_info", 1))
    manifest = Manifest(
        partition=partition,
        files=tuple(files),
        session={
            "session_key": race.session_key,
            "appliance_session_id": race.id,
            "car": race.car,
            "track": race.track or None,
            "track_length_km": race.track_length_km or None,
            "subsession_id": race.subsession_id or None,
            "team": team_name,
            "first_time": race.first_time,
            "last_time": race.last_time,
            "stored_at": dt.datetime.fromtimestamp(race.created_at, dt.UTC).isoformat(),
            "season_source": season_source,
            "track_key": found.key if found is not None else None,
            "track_map": found.source if found is not None else None,
            "drivers": sorted(
                (
                    {
                        "user_id": d.user_id,
                        "user_name": d.user_name,
                        "team_name": d.team_name,
                    }
                    for d in rows.drivers.values()
                ),
                key=lambda d: (str(d["user_name"]), int(d["user_id"])),
            ),
        },
        analytics=session_analytics(
            rows,
            stints,
            partition.session,
            info,
            found.corners if found is not None else None,
        ),
        telemetry=telemetry_summary,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        notes=notes,
    )
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(manifest.dumps())
    tmp.rename(root / MANIFEST_NAME)
    return manifest


def _outlines_beside(engine: Engine) -> Path | None:
    database = engine.url.database
    if (
        engine.url.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
    ):
        return None
    return track_outlines_dir(Path(database))


def _write_table(root: Path, table: str, data: pa.Table) -> FileEntry:
    rel = TABLE_FILES[table]
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path, compression="zstd", compression_level=9)
    return file_entry(root, rel, table, data.num_rows)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory of the staged set to disk before the rename."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
