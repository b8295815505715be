"""Detectors triggered from data: simulated race segments with ground truth, and real .ibt files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from driver_pc.adapters.ibt_file import IbtReader
from driver_pc.adapters.simulator import RaceSimulatorAdapter, TruthKind
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.data_dirs import track_outlines_dir
from driver_pc.protocol.events import EventKind, encode_event
from driver_pc.protocol.messages import SessionInfo
from pitbox_appliance.analysis.corners import CornerMap, find_corners
from pitbox_appliance.analysis.track_outline import (
    LiveOutline,
    OutlineStore,
    gps_lap_paths,
    outline_from_laps,
    track_key,
)
from pitbox_appliance.cli.importer import local_codec
from pitbox_appliance.config import ConfigError, DetectorsConfig, load_config
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.detectors import (
    DETECTOR_CHANNELS,
    DETECTORS,
    DetectorSet,
    Emission,
    detector_channels,
    register_detector,
)
from pitbox_appliance.detectors.drafting import GLOBAL_REPEAT_S
from pitbox_appliance.detectors.fatigue import (
    DriverFatigueAnalyzer,
    FatigueFeatures,
)
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.reader import SessionReader
from pitbox_appliance.storage.writer import SessionWriter
from tests.conftest import real_file
from training.offline_detectors import OfflineRun, run_detectors

MISTAKE_KEYS = {"mistake", "lap", "lap_dist_pct", "section", "severity", "driver"}
SEVERITY = ("off_track", "spin", "contact")


class SimRace:
    """One simulated race segment, its frames, its ground truth and the detectors' output."""

    def __init__(self, sim: RaceSimulatorAdapter) -> None:
        self.batches = list(sim.ticks())
        self.sim = sim
        self.changes = [
            (e.session_time, str(e.data["driver_in"]))
            for e in sim.truth_of(TruthKind.DRIVER_CHANGE, car_idx=0)
        ]
        self.run: OfflineRun = run_detectors(self.batches, driver_at=self.driver_at)

    def driver_at(self, t: float) -> str:
        driver = "Alex Sim"
        for at, name in self.changes:
            if t >= at:
                driver = name
        return driver

    def sequences(self) -> list[dict[str, Any]]:
        """The team car's incident sequences: start, worst stage, points counted."""
        seqs: dict[int, dict[str, Any]] = {}
        for e in self.sim.truth_of(TruthKind.INCIDENT, car_idx=0):
            s = seqs.setdefault(
                int(e.data["sequence"]),
                {"start": e.session_time, "type": e.data["type"], "points": 0},
            )
            s["points"] += int(e.data["counted"])
            if SEVERITY.index(str(e.data["type"])) > SEVERITY.index(s["type"]):
                s["type"] = e.data["type"]
        return list(seqs.values())


@pytest.fixture(scope="module")
def race() -> SimRace:
    # Boosted incident and fatigue rates so a 40-lap segment shows every case.
    return SimRace(
        RaceSimulatorAdapter(
            laps=40,
            speed=0,
            seed=11,
            opponents=5,
            incidents=8,
            fatigue=8,
            stints_per_driver=2,
            grid_position=3,
        )
    )


def test_incidents_match_ground_truth(race: SimRace) -> None:
    truth = race.sequences()
    found = race.run.of("incident_detected")
    assert len(truth) >= 5
    matched = 0
    for seq in truth:
        hits = [e for e in found if abs(e.session_time - seq["start"]) < 3.0]
        if hits:
            matched += 1
            # iRacing's counter (simulated) agrees with the sequence's counted points.
            assert hits[0].payload["points"] == seq["points"]
            assert hits[0].payload["incident"] == seq["type"]
    false = [
        e for e in found if not any(abs(e.session_time - s["start"]) < 3 for s in truth)
    ]
    assert matched / len(truth) >= 0.9
    assert len(false) <= 0.1 * len(found)
    for e in found:
        encode_event("car1", e.kind, e.payload)  # the published schema holds


def test_damage_alerts_follow_contact_damage(race: SimRace) -> None:
    truth = race.sim.truth_of(TruthKind.DAMAGE, car_idx=0)
    alerts = race.run.of("damage_alert")
    assert truth, "the segment must contain damage"
    immediate = [a for a in alerts if a.payload["lap_time_loss_s"] is None]
    for damage in truth:
        near = [a for a in immediate if abs(a.session_time - damage.session_time) < 1]
        assert near, f"no damage alert at {damage.session_time:.1f}"
        repair = float(damage.data["repair_s"]) + float(
            damage.data["optional_repair_s"]
        )
        # Repair time left covers at least this damage's repairs (damage accumulates).
        assert near[0].payload["repair_time_left_s"] >= repair - 0.5
        if float(damage.data["repair_s"]) > 0:
            assert near[0].payload["severity"] in ("moderate", "severe")
    for a in alerts:
        encode_event("car1", a.kind, a.payload)


def test_fatigue_tracks_ground_truth(race: SimRace) -> None:
    updates = race.run.of("driver_fatigue_update")
    laps = {e.lap: float(e.data["fatigue"]) for e in race.sim.truth_of(TruthKind.LAP)}
    pairs = [
        (u.payload["fatigue"], laps[u.payload["lap"]])
        for u in updates
        if u.payload["lap"] in laps
    ]
    assert len(pairs) >= 5
    ours, truth = np.array(pairs).T
    assert np.corrcoef(ours, truth)[0, 1] > 0.7
    assert np.all((ours >= 0) & (ours <= 1))
    assert any(u.payload["basis"] == "inputs+stint_time" for u in updates)
    for u in updates:
        encode_event("car1", u.kind, u.payload)


def test_fatigue_model_seam_replaces_statistics(race: SimRace) -> None:
    class Constant:
        def predict(self, features: FatigueFeatures) -> float | None:
            assert features.precision, "the model gets the driver's metrics"
            return 0.9

    analyzer = DriverFatigueAnalyzer(model=Constant())
    emitted: list[Emission] = []
    for lap in race.run.laps:
        emitted += analyzer.on_lap(lap, DetectorSet([]).shared)
    assert emitted
    assert all(e.payload["fatigue"] == 0.9 for e in emitted)
    assert {e.payload["basis"] for e in emitted} == {"model"}


def test_drafting_opportunities_are_real_gaps(race: SimRace) -> None:
    events = race.run.of("drafting_opportunity")
    assert events
    times = [e.session_time for e in events]
    assert min(np.diff(times)) >= GLOBAL_REPEAT_S - 1e-6  # rate-limited
    frames = np.concatenate(race.batches)
    checked = 0
    for e in events:
        row = frames[np.searchsorted(frames["SessionTime"], e.session_time)]
        pct, est = row["CarIdxLapDistPct"], row["CarIdxEstTime"]
        other = e.payload["other_idx"]
        sign = 1.0 if e.payload["direction"] == "ahead" else -1.0
        apart = (sign * (pct - pct[0])) % 1.0
        present = (
            (pct >= 0)
            & (np.arange(len(pct)) != 0)
            & ~row["CarIdxOnPitRoad"].astype(bool)
        )
        # The car named is the nearest one on track in that direction ...
        assert apart[other] == apart[present].min()
        # ... and the gap is the time between us at the reference pace (EstTime).
        if (pct[other] > pct[0]) == (sign > 0):  # not across the line
            want = max(0.0, sign * float(est[other] - est[0]))
            assert e.payload["gap_s"] == pytest.approx(want, abs=0.01)
            checked += 1
        assert e.payload["gap_s"] <= 1.0
        encode_event("car1", e.kind, e.payload)
    assert checked


def test_mistakes_have_the_heatmap_payload(race: SimRace) -> None:
    mistakes = race.run.of("mistake")
    assert mistakes
    assert not any(m.publish for m in mistakes)
    for m in mistakes:
        assert set(m.payload) == MISTAKE_KEYS
        assert m.payload["mistake"] in ("braking", "throttle", "line", "spin")
        assert 0 <= m.payload["section"] < 20
        assert 0.0 <= m.payload["severity"] <= 1.0
        assert int(m.payload["lap_dist_pct"] * 20) == m.payload["section"]
    spins = {s["start"] for s in race.sequences() if s["type"] != "off_track"}
    spin_mistakes = [m for m in mistakes if m.payload["mistake"] == "spin"]
    assert spin_mistakes
    # A spin mistake sits on a lap that really had a spin or contact.
    starts = [lap.start_time or 0 for lap in race.run.laps]
    for m in spin_mistakes:
        lap = next(x for x in race.run.laps if x.lap_number == m.payload["lap"])
        assert any(lap.start_time <= s < lap.end_time for s in spins), starts[:1]


def _sim_outline(batches: list[Any]) -> LiveOutline:
    """The simulated track's outline from its first laps' GPS, as the pit wall builds it."""
    frames = np.concatenate(batches)
    names = ("SessionTime", "LapDistPct", "Lat", "Lon", "OnPitRoad", "Speed")
    columns = {n: np.asarray(frames[n], dtype=np.float64) for n in names}
    outline = outline_from_laps(gps_lap_paths(columns)[:5])
    assert outline is not None
    return outline


def _sim_corners(batches: list[Any]) -> CornerMap:
    outline = _sim_outline(batches)
    return find_corners(outline.pct, outline.x, outline.y, outline.speed)


def test_mistakes_are_judged_by_the_tracks_corners(race: SimRace) -> None:
    corners = _sim_corners(race.batches)
    assert len(corners.corners) >= 2
    run = run_detectors(race.batches, driver_at=race.driver_at, corners=corners)
    mistakes = run.of("mistake")
    assert mistakes
    for m in mistakes:
        assert set(m.payload) == MISTAKE_KEYS | {"corner"}
        corner = corners.corners[m.payload["section"]]
        assert m.payload["corner"] == corner.number
        # Placed in the zone of the corner it names: at its apex, or where the
        # incident that caused it happened.
        assert corners.zone_id(m.payload["lap_dist_pct"]) == corner.number
        if m.payload["mistake"] not in ("spin", "line"):
            assert m.payload["lap_dist_pct"] == round(corner.apex, 4)
    # The spins found by section are found by corner too, on the same laps.
    by_section = {
        m.payload["lap"]
        for m in race.run.of("mistake")
        if m.payload["mistake"] == "spin"
    }
    by_corner = {m.payload["lap"] for m in mistakes if m.payload["mistake"] == "spin"}
    assert by_section
    assert by_section <= by_corner


def test_the_core_judges_mistakes_by_the_cached_outlines_corners(
    tmp_path: Path,
) -> None:
    """Once the pit wall cached the track's outline, the core's mistakes name corners."""
    sim = RaceSimulatorAdapter(
        laps=14, speed=0, seed=11, opponents=3, incidents=8, grid_position=3
    )
    messages = list(ShimPipeline(sim).messages())
    batches = list(
        RaceSimulatorAdapter(
            laps=14, speed=0, seed=11, opponents=3, incidents=8, grid_position=3
        ).ticks()
    )
    outline = _sim_outline(batches)
    corners = find_corners(outline.pct, outline.x, outline.y, outline.speed)
    info = next(m for m in messages if isinstance(m, SessionInfo))
    weekend = yaml.safe_load(info.yaml_text)["WeekendInfo"]
    key = track_key(weekend, str(weekend.get("TrackDisplayName") or ""))
    assert key
    database = tmp_path / "pitbox.sqlite3"
    OutlineStore(track_outlines_dir(database)).save(key, outline, frozenset())
    codec = local_codec()
    engine = open_database(f"sqlite:///{database}")
    ingestor = Ingestor(codec, SessionWriter(engine))
    for seq, message in enumerate(messages, 1):
        ingestor.handle(codec.encode("car42-pc1", seq, message))
    ingestor.writer.commit()
    (live,) = ingestor.live.values()
    stored = SessionReader(engine).events(live.session_id, "mistake")
    assert stored
    numbers = {c.number for c in corners.corners}
    assert all(e.payload["corner"] in numbers for e in stored)


def test_per_batch_cost_is_small(race: SimRace) -> None:
    per_frame = np.sum(race.run.batch_seconds) / np.sum(race.run.batch_frames)
    assert per_frame < 200e-6  # the 60 Hz path has 16.7 ms a tick; we use far less


def test_registry_rejects_unknown_and_survives_a_faulty_plugin(race: SimRace) -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        DetectorSet(["incident", "nope"])
    detectors = DetectorSet()
    assert {d.name for d in detectors.detectors} == set(DETECTORS)
    assert detectors.detectors[0].name == "incident"
    bad = race.batches[0][["SessionTime"]]  # lacks LapDistPct: detectors must cope
    detectors.on_frames(bad, race_context())
    assert detectors.detectors  # those that failed were dropped, none crashed ingest


def race_context() -> Any:
    from pitbox_appliance.detectors import BatchContext

    return BatchContext("car1", "Alex Sim", 0.0, [26.4], {})


@pytest.mark.parametrize(
    "name",
    [
        "skmodified_martinsville_2015-05-30_20-32-44.ibt",
        "skmodified_langley_2015-05-28_14-47-39.ibt",
        "teamjorge_valid_test_file.ibt",
    ],
)
def test_real_recordings_clean_laps_have_no_incidents(name: str) -> None:
    path: Path = real_file("iracing", "ibt", name)
    with IbtReader(path) as reader:
        run = run_detectors(list(reader.rows()))
    timed = [lap for lap in run.laps if lap.lap_time is not None and not lap.pit_lap]
    best = min((lap.lap_time or 0 for lap in timed), default=0)
    clean = [lap for lap in timed if (lap.lap_time or 0) <= best * 1.02]
    for e in run.of("incident_detected"):
        assert not any(
            (lap.start_time or 0) <= e.session_time < lap.end_time for lap in clean
        ), f"incident on a clean real lap: {e.payload}"
    if name.startswith("teamjorge"):
        # The counter stays at 12 through the file: nothing was counted, nothing found.
        assert run.of("incident_detected") == []


# ---- the registry: declarations, discovery, config switches ---------------------------
def test_every_detector_declares_what_it_emits(race: SimRace) -> None:
    declared = {
        kind for spec in DETECTORS.values() for kind in (*spec.emits, *spec.stores)
    }
    emitted = {e.kind for e in race.run.emissions}
    assert emitted, "the race segment should make the detectors emit"
    assert emitted <= declared
    for e in race.run.emissions:
        assert e.publish == (e.kind in {k for s in DETECTORS.values() for k in s.emits})
    for spec in DETECTORS.values():
        assert spec.factory().name == spec.name
        assert all(isinstance(kind, EventKind) for kind in spec.emits)


def test_every_module_of_the_package_is_a_detector() -> None:
    import pkgutil

    from pitbox_appliance import detectors as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"base"}
    found = {spec.factory.__module__.rsplit(".", 1)[1] for spec in DETECTORS.values()}
    assert found == modules
    assert DETECTORS.disabled == {}


def test_a_detector_is_found_from_its_declaration_alone() -> None:
    with DETECTORS.scoped():

        @register_detector(
            "pit_limiter",
            channels=("PitSvFlags", "SessionTime"),
            emits=(EventKind.DAMAGE_ALERT,),
            order=50,
        )
        class PitLimiterDetector:
            name = "pit_limiter"

            def on_frames(self, frames: Any, ctx: Any, shared: Any) -> list[Emission]:
                return [Emission(EventKind.DAMAGE_ALERT, 1.0, {"frames": len(frames)})]

            def on_lap(self, lap: Any, shared: Any) -> list[Emission]:
                return []

        assert "PitSvFlags" in detector_channels()
        detectors = DetectorSet()
        assert [d.name for d in detectors.detectors].index("pit_limiter") == 1
        frames = np.zeros(3, dtype=[("SessionTime", "f8")])
        out = detectors.on_frames(frames, race_context())
        assert Emission(EventKind.DAMAGE_ALERT, 1.0, {"frames": 3}) in out
    assert "pit_limiter" not in DETECTORS
    assert "PitSvFlags" not in DETECTOR_CHANNELS


def test_each_detector_has_a_described_config_switch_on_by_default() -> None:
    fields = DetectorsConfig.model_fields
    assert set(fields) == set(DETECTORS), "add the detector's switch to DetectorsConfig"
    assert all(f.description for f in fields.values())
    assert set(DetectorsConfig().enabled()) == set(DETECTORS)


def test_a_detector_is_switched_off_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "pitbox.yaml"
    path.write_text("detectors:\n  drafting: false\n  mistake: no\n")
    enabled = load_config(path).detectors.enabled()
    assert enabled == ("incident", "fatigue", "damage", "training")
    assert {d.name for d in DetectorSet(enabled).detectors} == set(enabled)
    path.write_text("strategy: {}\ndetectors:\n  drafts: false\n")
    with pytest.raises(ConfigError, match=r"detectors\.drafts \(line 3\)"):
        load_config(path)


def test_pooled_batches_join_as_concatenate_would() -> None:
    """The detectors' pool joins batches as bytes: the same records, a writable copy."""
    from pitbox_appliance.detectors.base import join_frames

    layout = np.dtype([("SessionTime", "<f8"), ("CarIdxLap", "<i2", (4,))])
    parts = [
        np.array([(0.1 * i, [i, i + 1, -1, 7])] * (i + 1), dtype=layout)
        for i in range(3)
    ]
    joined = join_frames(parts)
    assert joined.dtype == layout
    assert joined.tobytes() == np.concatenate(parts).tobytes()
    joined["SessionTime"][0] = 9.0  # detectors may work on it in place
    assert parts[0]["SessionTime"][0] == 0.0
    with pytest.raises(ValueError, match="different channel sets"):
        join_frames([parts[0], parts[1][["SessionTime"]]])


def _straight(spike: dict[int, tuple[float, float]]) -> Any:
    """10 s on a straight at 40 m/s, 60 Hz, with LongAccel/LatAccel set at some ticks."""
    layout = np.dtype(
        [
            ("SessionTime", "<f8"),
            ("LapDistPct", "<f4"),
            ("Speed", "<f4"),
            ("LongAccel", "<f4"),
            ("LatAccel", "<f4"),
            ("YawRate", "<f4"),
        ]
    )
    frames = np.zeros(600, dtype=layout)
    frames["SessionTime"] = 100.0 + np.arange(600) / 60.0
    frames["LapDistPct"] = 0.1 + np.arange(600) * 40.0 / 60.0 / 5000.0
    frames["Speed"] = 40.0
    for tick, (long_accel, lat_accel) in spike.items():
        frames["LongAccel"][tick] = long_accel
        frames["LatAccel"][tick] = lat_accel
    return [frames[i : i + 6] for i in range(0, 600, 6)]


def test_a_lone_acceleration_spike_is_a_glitch_not_a_contact() -> None:
    """One sample of −64 / 90 m/s² with nothing lost is noise, not an impact.

    Every real hit in our recordings stays past the contact level for 2 to 8 samples at
    60 Hz (the real Langley brush: 90 then 60 m/s² lateral), so two samples are a contact.
    """
    glitch = run_detectors(_straight({200: (-64.0, 90.0)}), names=["incident"])
    assert glitch.of("incident_detected") == []
    hit = run_detectors(
        _straight({200: (-64.0, 90.0), 201: (-37.5, 59.9), 202: (-13.1, 27.7)}),
        names=["incident"],
    )
    (found,) = hit.of("incident_detected")
    assert found.payload["incident"] == "contact"
    assert found.session_time == pytest.approx(100.0 + 200 / 60.0, abs=0.02)
