"""Profiles travel with the compacted session; the cloud side reads them (goals, badges, plan, SkillProgressionTracker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_sync.analytics.training import (
    SkillProgressionTracker,
    TrainingTracker,
    synced_training,
)
from cloud_sync.compacted import load_session
from cloud_sync.report.generator import SessionReportGenerator
from cloud_sync.statboard.builder import StatboardBuilder
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.events import EventKind, encode_event
from pitbox_appliance.cli.importer import local_codec
from pitbox_appliance.coaching.live import BOARD, BadgeAward
from pitbox_appliance.coaching.profile import (
    Badge,
    BadgeCategory,
    BadgeEvidence,
    BadgeLevel,
    DriverSettings,
    MetricType,
    TrainingGoal,
)
from pitbox_appliance.coaching.service import CoachingService
from pitbox_appliance.coaching.setups import setup_id
from pitbox_appliance.coaching.sync import PROFILES_FILE
from pitbox_appliance.compaction.compactor import compact_session
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.reader import SessionReader
from pitbox_appliance.storage.writer import SessionWriter

pytestmark = pytest.mark.timeout(600)


def test_profiles_are_compacted_and_read_by_the_cloud(tmp_path: Path) -> None:
    BOARD.reset()
    engine = open_database(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    codec = local_codec()
    ingestor = Ingestor(codec, SessionWriter(engine))
    sim = RaceSimulatorAdapter(laps=6, speed=0, seed=3, drivers=("Alex Sim",))
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        assert ingestor.handle(codec.encode("car42-pc1", seq, message), "car42-pc1")
    ingestor.end_of_streams()
    ingestor.flush()
    # Two setups in the session (the sim sends none; iRacing's CarSetup as stored):
    # the one in the car for Alex's fastest lap becomes his preferred setup here.
    laps = [lap for lap in SessionReader(engine).laps(1, pit=False) if lap.lap_time]
    fastest = min(laps, key=lambda lap: lap.lap_time or 0.0)
    writer = SessionWriter(engine)
    soft, hard = {"Tires": {"pressure": 150}}, {"Tires": {"pressure": 170}}
    writer.add_event(1, "car_setup", 0.0, {"update": 1, "setup": hard})
    writer.add_event(
        1, "car_setup", fastest.end_time - 1.0, {"update": 2, "setup": soft}
    )
    if fastest.end_time + 1 < laps[-1].end_time:
        writer.add_event(
            1, "car_setup", fastest.end_time + 1, {"update": 3, "setup": hard}
        )
    writer.commit()
    coaching = CoachingService(engine)
    coaching.save_settings("Alex Sim", DriverSettings(units="imperial"))
    made = coaching.mark_training(1, "Alex Sim")  # no teammate: no goals, a plan
    assert made["goals"] == []
    goal = TrainingGoal(
        id="alex-t1-braking",
        description="T1 braking: 60 → 50 m",
        track_id="martinsville",
        corner_ids=["T1"],
        metric_type=MetricType.BRAKING,
        measure="braking_point_m",
        baseline_value=60.0,
        target_value=50.0,
        current_value=55.0,
        progress=0.5,
        created_at=1.0,
    )
    coaching.store.replace_goals("Alex Sim", 1, [goal])
    badge = Badge(
        id="fuel-gold",
        name="Gold fuel",
        description="fuel_per_lap_sd_l 0.03 over 8 laps",
        level=BadgeLevel.GOLD,
        category=BadgeCategory.FUEL,
        earned_at=2.0,
        evidence=BadgeEvidence(
            metric="fuel_per_lap_sd_l",
            value=0.03,
            threshold=0.04,
            session_id=1,
            laps=[1, 2, 3],
            values=[1.1, 1.12, 1.13],
        ),
    )
    assert coaching.store.apply([BadgeAward("Alex Sim", badge, 1)]) == 1
    assert coaching.store.apply([BadgeAward("Alex Sim", badge, 1)]) == 0  # once

    out = tmp_path / "outbox"
    manifest = compact_session(engine, 1, out)
    entry = manifest.file("driver_profiles")
    assert entry.path == PROFILES_FILE
    assert entry.rows == 1
    root = out / manifest.path
    synced = json.loads((root / PROFILES_FILE).read_text())
    [profile] = synced["profiles"]
    assert profile["driver"] == "Alex Sim"
    assert profile["settings"]["units"] == "imperial"
    [(track, preferred)] = profile["preferredSetups"].items()
    assert track == "martinsville-speedway-simulated"  # the goals' trackId too
    assert preferred == setup_id(soft)
    assert profile["skillHistory"], "the session's corner measures are recorded"

    # Cloud side: an older reader only needs the tables it knows; this one reads more.
    session = load_session(root)
    tracker = TrainingTracker([session])
    [synced_goal] = tracker.goals("Alex Sim")
    assert synced_goal.goal_id == "alex-t1-braking"
    assert synced_goal.progress == 0.5
    encode_event("car42", EventKind.TRAINING_GOAL_PROGRESS, synced_goal.payload())
    fuel = [b for b in tracker.badges_new(session.path) if b.category == "fuel"]
    assert [(b.level, b.value) for b in fuel] == [("gold", 0.03)]
    encode_event("car42", EventKind.BADGE_EARNED, fuel[0].payload())
    training = synced_training(session)
    assert training is not None
    assert training["driver"] == "Alex Sim"
    assert tracker.plan("Alex Sim") == made["plan"]

    trends = {
        t.metric: t for t in SkillProgressionTracker([session]).trends("Alex Sim")
    }
    assert {"best_lap", "braking_point_m", "min_speed_kph"} <= set(trends)
    season = manifest.partition.season
    assert set(trends["min_speed_kph"].seasons) == {season}
    # A second practice of Alex: trends over two sessions, on the statboard too.
    sim = RaceSimulatorAdapter(
        laps=4, speed=0, seed=6, drivers=("Alex Sim",), session_key="second"
    )
    for seq, message in enumerate(ShimPipeline(sim).messages(), 10_000):
        assert ingestor.handle(codec.encode("car42-pc1", seq, message), "car42-pc1")
    ingestor.end_of_streams()
    ingestor.flush()
    second = load_session(out / compact_session(engine, 2, out).path)
    both = [session, second]
    [best] = [
        t
        for t in SkillProgressionTracker(both).trends("Alex Sim")
        if t.metric == "best_lap"
    ]
    bests = [
        min(lap.lap_time for lap in s.laps if lap.clean and lap.lap_time) for s in both
    ]
    assert [v for _, _, v in best.points] == pytest.approx(bests)
    assert best.improving == (bests[1] < bests[0])
    board = StatboardBuilder("pitbox-racing", both)
    progression = board.data()["progression"]["Alex Sim"]
    assert {"metric": "best_lap", "sessions": 2}.items() <= next(
        t for t in progression if t["metric"] == "best_lap"
    ).items()
    assert "<h2>Skill progression</h2>" in board.html()
    report = SessionReportGenerator(second, history=[session]).build()
    assert "best_lap" in report.html  # the trend row in the report
    report = SessionReportGenerator(session).build()
    assert "Skill progression and next practice" in report.html
    assert "T1 braking: 60 → 50 m" in report.html  # the synced goal, in the report
    engine.dispose()
    BOARD.reset()
