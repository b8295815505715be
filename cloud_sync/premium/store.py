"""The premium API's data: compacted sets mirrored from the bucket (checked by SHA-256) and queried in place with DuckDB.

DuckDB reads S3 itself only through its ``httpfs`` extension, which it downloads on
first use; that download is not possible offline (tested: ``INSTALL httpfs`` fails
with no network). So the tables the API serves are fetched through boto3 (the
target's own credentials) into a local mirror with the bucket's Hive layout, and
DuckDB reads the mirror with ``hive_partitioning``. Objects are create-only, so a
file once fetched and checked never changes; a refresh fetches only new sets.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from cloud_sync.manifest import check_local, read_set
from cloud_sync.targets import Target
from driver_pc.protocol.manifest import MANIFEST_NAME, ManifestError

logger = logging.getLogger(__name__)

#: The tables the API serves (telemetry is never fetched).
TABLES = ("laps", "stints", "events", "session")
SLUG = re.compile(r"^[a-z0-9-]{1,64}$")
HIVE = (
    "hive_partitioning = true, union_by_name = true, "
    "hive_types = {'team': VARCHAR, 'season': INTEGER, 'track': VARCHAR, "
    "'session': VARCHAR}"
)
STRATEGY = "strategy_recommendation"


class NotFound(LookupError):
    """No such session in the scope asked for."""


class SessionStore:
    """A local mirror of the bucket's compacted sets and the API's queries over it."""

    def __init__(self, target: Target | None, mirror: Path) -> None:
        self.target = target
        self.mirror = mirror
        self.mirror.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One in-memory database; each query runs on its own cursor (a cursor per
        # thread is DuckDB's way to share it), which saves opening one per request.
        self._db = duckdb.connect(config={"threads": 2})
        self.refreshed_at: float | None = None
        self.problems: list[str] = []

    def close(self) -> None:
        self._db.close()

    # ---- the mirror ------------------------------------------------------------------
    def refresh(self) -> int:
        """Fetch the sets not mirrored yet; the number of new sets."""
        if self.target is None:
            return 0
        with self._lock:
            new = 0
            prefix = self.target.key("")
            for key in self.target.list_keys():
                if not key.endswith("/" + MANIFEST_NAME):
                    continue
                rel = key[len(prefix) :].rsplit("/", 1)[0]
                if (
                    not rel.startswith("team=")
                    or (self.mirror / rel / ".done").exists()
                ):
                    continue
                if self._fetch(key, rel):
                    new += 1
            self.refreshed_at = time.time()
            return new

    def _fetch(self, key: str, rel: str) -> bool:
        assert self.target is not None
        local = self.mirror / rel
        local.mkdir(parents=True, exist_ok=True)
        self.target.download(key, local / MANIFEST_NAME)
        try:
            compacted = read_set(self.mirror, rel)
            for item in compacted.files[:-1]:
                table = item.path.split("/", 1)[0]
                if table not in TABLES or not item.path.endswith(".parquet"):
                    continue
                dest = compacted.local(item)
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.target.download(self.target.key(f"{rel}/{item.path}"), dest)
                check_local(item, dest)
        except ManifestError as exc:
            self.problems.append(f"{rel}: {exc}")
            logger.warning("premium API: skipping %s: %s", rel, exc)
            return False
        (local / ".done").write_text("")
        return True

    # ---- queries ---------------------------------------------------------------------
    def _glob(self, table: str) -> str | None:
        pattern = f"team=*/season=*/track=*/session=*/{table}/*.parquet"
        if not any(self.mirror.glob(pattern)):
            return None
        return str(self.mirror / pattern).replace("'", "''")

    def _query(
        self, table: str, sql: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Run ``sql`` (``{t}`` = the table's files) with named parameters; rows as dicts."""
        glob = self._glob(table)
        if glob is None:
            return []
        source = f"read_parquet('{glob}', {HIVE})"
        with self._db.cursor() as con:
            cursor = con.execute(sql.format(t=source), params)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def sessions(self, team: str, season: int) -> list[dict[str, Any]]:
        return self._query(
            "session",
            "SELECT session, track, session_key, car, track_name, team_name, "
            "first_time, last_time, duration, laps, best_lap_time, stints, drivers "
            "FROM {t} WHERE team = $team AND season = $season ORDER BY session",
            {"team": team, "season": season},
        )

    def _check(self, team: str, season: int, session: str) -> dict[str, Any]:
        scope = {"team": team, "season": season, "session": session}
        found = self._query(
            "session",
            "SELECT session FROM {t} WHERE team = $team AND season = $season "
            "AND session = $session",
            scope,
        )
        if not found:
            raise NotFound(f"no session {session!r} of team {team!r} in {season}")
        return scope

    def laps(self, team: str, season: int, session: str) -> list[dict[str, Any]]:
        return self._query(
            "laps",
            "SELECT lap_number, stint, driver_name, start_time, end_time, lap_time, "
            "fuel_used, pit_lap, max_speed FROM {t} WHERE team = $team AND "
            "season = $season AND session = $session ORDER BY lap_number",
            self._check(team, season, session),
        )

    def stints(self, team: str, season: int, session: str) -> list[dict[str, Any]]:
        return self._query(
            "stints",
            "SELECT stint, driver_name, start_time, end_time, laps, timed_laps, "
            "avg_lap_time, best_lap_time, fuel_used FROM {t} WHERE team = $team AND "
            "season = $season AND session = $session ORDER BY stint",
            self._check(team, season, session),
        )

    def pit_cycles(self, team: str, season: int, session: str) -> list[dict[str, Any]]:
        """Runs of consecutive pit laps (in-lap … out-lap) and the time they cost.

        ``time_lost_s`` = the cycle's lap times − as many of the session's median
        clean lap (null when a lap of the cycle is untimed).
        """
        return self._query(
            "laps",
            """
            WITH l AS (
                SELECT * FROM {t} WHERE team = $team AND season = $season
                AND session = $session),
            pace AS (
                SELECT median(lap_time) AS clean FROM l
                WHERE NOT pit_lap AND lap_time IS NOT NULL AND start_time IS NOT NULL),
            runs AS (
                SELECT *, lap_number - row_number() OVER (ORDER BY lap_number) AS grp
                FROM l WHERE pit_lap)
            SELECT row_number() OVER (ORDER BY min(lap_number)) AS cycle,
                   min(lap_number) AS in_lap, max(lap_number) AS out_lap,
                   count(*) AS laps, min(start_time) AS start_time,
                   max(end_time) AS end_time,
                   arg_min(driver_name, lap_number) AS driver_in,
                   arg_max(driver_name, lap_number) AS driver_out,
                   CASE WHEN count(lap_time) = count(*)
                        THEN sum(lap_time) - count(*) * any_value(pace.clean) END
                        AS time_lost_s
            FROM runs, pace GROUP BY grp ORDER BY in_lap
            """,
            self._check(team, season, session),
        )

    def handoffs(self, team: str, season: int, session: str) -> list[dict[str, Any]]:
        """Each change of driver between consecutive stints."""
        return self._query(
            "stints",
            """
            WITH s AS (
                SELECT stint, driver_name, start_time, end_time,
                       lag(driver_name) OVER (ORDER BY stint) AS prev_driver,
                       lag(end_time) OVER (ORDER BY stint) AS prev_end,
                       lag(stint) OVER (ORDER BY stint) AS prev_stint
                FROM {t} WHERE team = $team AND season = $season
                AND session = $session)
            SELECT prev_stint AS from_stint, stint AS to_stint,
                   prev_driver AS from_driver, driver_name AS to_driver,
                   prev_end AS from_end_time, start_time AS to_start_time,
                   start_time - prev_end AS gap_s
            FROM s WHERE prev_stint IS NOT NULL
            AND prev_driver IS DISTINCT FROM driver_name ORDER BY stint
            """,
            self._check(team, season, session),
        )

    def predictions(self, team: str, season: int, session: str) -> list[dict[str, Any]]:
        """The strategy engine's recommendations as stored (``strategy_recommendation``)."""
        rows = self._query(
            "events",
            "SELECT session_time, payload FROM {t} WHERE team = $team AND "
            "season = $season AND session = $session AND kind = $kind "
            "ORDER BY session_time",
            {**self._check(team, season, session), "kind": STRATEGY},
        )
        out = []
        for row in rows:
            try:
                payload = json.loads(row["payload"]) if row["payload"] else {}
            except ValueError:
                payload = {}
            out.append({"session_time": row["session_time"], "prediction": payload})
        return out
