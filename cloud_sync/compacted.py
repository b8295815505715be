"""Reading compacted sessions for the cloud side: a set's tables from a directory, and sets fetched from a target."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cloud_sync.manifest import check_local, read_set
from cloud_sync.targets import Target
from driver_pc.protocol.manifest import MANIFEST_NAME, Manifest, ManifestError
from driver_pc.protocol.session_info import SessionInfoError, parse_session_info

logger = logging.getLogger(__name__)

# Telemetry columns the analytics read (any that are missing are simply absent).
TELEMETRY_COLUMNS = (
    "source",
    "SessionTime",
    "LapDistPct",
    "Speed",
    "Throttle",
    "Brake",
    "Lat",
    "Lon",
    "PlayerCarMyIncidentCount",
)


@dataclass
class Lap:
    """One lap row of ``laps.parquet``."""

    lap_number: int
    stint: int | None
    driver: str
    start_time: float | None
    end_time: float
    lap_time: float | None
    fuel_used: float | None
    pit_lap: bool
    input_smoothness: float | None
    input_aggression: float | None
    input_precision: float | None
    invalid: bool = False  # reset, towed or given no time by iRacing
    refuelled: bool = False  # fuel rose during the lap: fuel_used is null

    @property
    def clean(self) -> bool:
        """Timed, valid, not a pit lap, and with a start (not the out-lap from the grid)."""
        return (
            self.lap_time is not None
            and not self.pit_lap
            and not self.invalid
            and self.start_time is not None
        )


@dataclass
class SessionEvent:
    """One row of ``events.parquet`` with its payload decoded."""

    session_time: float
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class TrackCorner:
    """One row of ``corners.parquet``: a corner and the zone of lap distance it counts.

    The zone runs from ``zone_start`` to ``zone_end`` (across the line when
    ``zone_end < zone_start``) and takes in the braking before the corner.
    """

    number: int
    label: str
    apex: float
    zone_start: float
    zone_end: float

    def holds(self, pct: float) -> bool:
        """Whether lap distance ``pct`` (0..1) is in this corner's zone."""
        if self.zone_start == self.zone_end:  # the track's one corner: the whole lap
            return True
        if self.zone_start < self.zone_end:
            return self.zone_start <= pct < self.zone_end
        return pct >= self.zone_start or pct < self.zone_end


@dataclass
class CompactedSession:
    """A compacted session read from its directory: manifest, laps, stints, events, telemetry."""

    root: Path
    manifest: Manifest
    laps: list[Lap]
    stints: list[dict[str, Any]]
    events: list[SessionEvent]
    telemetry: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    #: The track's corners as the pit wall numbered them (empty: the set has none).
    corners: tuple[TrackCorner, ...] = ()
    _session_info: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return self.manifest.path

    @property
    def session_key(self) -> str:
        return str(self.manifest.session["session_key"])

    @property
    def car(self) -> str:
        return str(self.manifest.session.get("car") or "unknown")

    @property
    def car_name(self) -> str:
        """The car's name as the sim gives it (``CarScreenName`` of the player's car).

        ``car`` is the appliance's car id (``import`` for imported files); the name
        comes from the set's session info, falling back to that id without one.
        """
        drivers = self.session_info.get("DriverInfo") or {}
        if isinstance(drivers, dict):
            idx = drivers.get("DriverCarIdx")
            for entry in drivers.get("Drivers") or []:
                if isinstance(entry, dict) and entry.get("CarIdx") == idx:
                    name = entry.get("CarScreenName") or entry.get("CarPath")
                    if name:
                        return str(name).strip()
        return self.car

    @property
    def session_info(self) -> dict[str, Any]:
        """The set's session-info YAML (``session_info`` table) parsed; ``{}`` without it."""
        if self._session_info is None:
            self._session_info = _session_info(self.root, self.manifest)
        return self._session_info

    @property
    def track(self) -> str:
        return str(self.manifest.session.get("track") or "unknown track")

    @property
    def partition(self) -> dict[str, Any]:
        return asdict(self.manifest.partition)

    def corner_at(self, pct: float) -> TrackCorner | None:
        """The corner whose zone holds lap distance ``pct``; None without corners."""
        p = pct % 1.0
        return next((c for c in self.corners if c.holds(p)), None)

    def events_of(self, kind: str) -> list[SessionEvent]:
        return [e for e in self.events if e.kind == kind]

    def drivers(self) -> list[str]:
        return sorted({lap.driver for lap in self.laps})


def load_session(root: Path, *, telemetry: bool = True) -> CompactedSession:
    """Read the compacted set in ``root`` (the ``session=…`` directory); ManifestError if unusable."""
    manifest = Manifest.load(root)
    tables = {f.table: root / f.path for f in manifest.files}
    for needed in ("laps", "stints", "events"):
        if needed not in tables or not tables[needed].is_file():
            raise ManifestError(f"{root}: the set has no {needed} table")
    laps = [
        Lap(
            lap_number=int(r["lap_number"]),
            stint=r["stint"],
            driver=r["driver_name"] or "unknown driver",
            start_time=r["start_time"],
            end_time=float(r["end_time"]),
            lap_time=r["lap_time"],
            fuel_used=r["fuel_used"],
            pit_lap=bool(r["pit_lap"]),
            input_smoothness=r["input_smoothness"],
            input_aggression=r["input_aggression"],
            input_precision=r["input_precision"],
            # Sets compacted before the columns existed have neither: false.
            invalid=bool(r.get("invalid", False)),
            refuelled=bool(r.get("refuelled", False)),
        )
        for r in pq.read_table(tables["laps"]).to_pylist()
    ]
    stints = pq.read_table(tables["stints"]).to_pylist()
    events = []
    for r in pq.read_table(tables["events"]).to_pylist():
        try:
            payload = json.loads(r["payload"]) if r["payload"] else {}
        except ValueError:
            logger.warning("%s: event %s has an unreadable payload", root, r["kind"])
            continue
        events.append(
            SessionEvent(float(r["session_time"]), str(r["kind"]), dict(payload))
        )
    columns: dict[str, np.ndarray[Any, Any]] = {}
    if telemetry and "telemetry" in tables and tables["telemetry"].is_file():
        columns = _telemetry(tables["telemetry"])
    corners: tuple[TrackCorner, ...] = ()
    if "corners" in tables and tables["corners"].is_file():
        corners = tuple(
            TrackCorner(
                number=int(r["number"]),
                label=str(r["label"]),
                apex=float(r["apex_pct"]),
                zone_start=float(r["zone_start_pct"]),
                zone_end=float(r["zone_end_pct"]),
            )
            for r in pq.read_table(tables["corners"]).to_pylist()
        )
    return CompactedSession(root, manifest, laps, stints, events, columns, corners)


def _session_info(root: Path, manifest: Manifest) -> dict[str, Any]:
    """Parse the set's ``session_info`` file; ``{}`` (logged) when absent or unreadable."""
    item = next((f for f in manifest.files if f.table == "session_info"), None)
    if item is None or not (root / item.path).is_file():
        return {}
    try:
        return parse_session_info((root / item.path).read_text(encoding="utf-8"))
    except (SessionInfoError, UnicodeDecodeError) as exc:
        logger.warning("%s: session info unreadable: %s", root, exc)
        return {}


def _telemetry(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """The analytics' columns as float64 arrays, from the source with the most rows."""
    schema = pq.read_schema(path)
    wanted = [c for c in TELEMETRY_COLUMNS if c in schema.names]
    if "SessionTime" not in wanted or "LapDistPct" not in wanted:
        return {}
    table = pq.read_table(path, columns=wanted)
    sources = table["source"].to_numpy(zero_copy_only=False).astype(str)
    values, counts = np.unique(sources, return_counts=True)
    keep = sources == values[int(np.argmax(counts))] if len(values) else sources == ""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name in wanted:
        if name == "source":
            continue
        column = table[name].to_numpy(zero_copy_only=False)
        out[name] = np.asarray(column, dtype=np.float64)[keep]
    order = np.argsort(out["SessionTime"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def fetch_sets(target: Target, cache: Path) -> list[Path]:
    """Download every complete set on ``target`` into ``cache`` (checked); their directories.

    A set counts when its ``manifest.json`` is there (the uploader writes it last).
    Files already in the cache with the manifest's checksum are not downloaded again.
    """
    keys = target.list_keys()
    prefix = target.key("")
    found: list[Path] = []
    for key in keys:
        if not key.endswith("/" + MANIFEST_NAME):
            continue
        rel = key[len(prefix) :].rsplit("/", 1)[0]
        if not rel.startswith("team="):
            continue
        local = cache / rel
        local.mkdir(parents=True, exist_ok=True)
        target.download(key, local / MANIFEST_NAME)
        try:
            compacted = read_set(cache, rel)
        except ManifestError as exc:
            logger.warning("skipping %s: %s", key, exc)
            continue
        ok = True
        for item in compacted.files[:-1]:
            dest = compacted.local(item)
            try:
                check_local(item, dest)
                continue
            except ManifestError:
                pass
            dest.parent.mkdir(parents=True, exist_ok=True)
            target.download(target.key(f"{rel}/{item.path}"), dest)
            try:
                check_local(item, dest)
            except ManifestError as exc:
                logger.warning("skipping %s: %s", rel, exc)
                ok = False
                break
        if ok:
            found.append(local)
    return found
