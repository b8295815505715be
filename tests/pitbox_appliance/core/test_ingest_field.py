"""The core forwards the other cars of live data (CarIdx* arrays) in the car's live state."""

from __future__ import annotations

import json
from pathlib import Path

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from pitbox_appliance.cli.importer import local_codec
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter


def test_live_state_lists_the_other_cars(tmp_path: Path) -> None:
    codec = local_codec()
    ingestor = Ingestor(
        codec, SessionWriter(open_database(f"sqlite:///{tmp_path / 'db'}"))
    )
    sim = RaceSimulatorAdapter(laps=1, speed=0, seed=8, opponents=12)
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        ingestor.handle(codec.encode("car42-pc1", seq, message))
    (live,) = ingestor.live.values()
    others = live.others.cars
    assert len(others) == 12
    assert all(0.0 <= o.lap_dist_pct < 1.0 for o in others)
    assert sorted(o.position for o in others if o.position) == sorted(
        {o.position for o in others if o.position}
    )
    assert all(o.number for o in others)
    assert 0 not in {o.idx for o in others}  # our own car is not among them
    # On the wire under the documented keys (docs/strategy.md).
    wire = json.loads(live.state(0.0, None).model_dump_json())["others"][0]
    assert {"idx", "number", "pct", "pos", "pit", "class_pos", "last_stop"} <= set(wire)


def test_the_detector_switches_reach_every_car(tmp_path: Path) -> None:
    """Config ``detectors``: a detector switched off never runs for any car."""
    from pitbox_appliance.config import DetectorsConfig

    codec = local_codec()
    enabled = DetectorsConfig(fatigue=False, mistake=False).enabled()
    ingestor = Ingestor(
        codec,
        SessionWriter(open_database(f"sqlite:///{tmp_path / 'db'}")),
        detectors=enabled,
    )
    sim = RaceSimulatorAdapter(laps=1, speed=0, seed=8)
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        ingestor.handle(codec.encode("car42-pc1", seq, message))
    (tracker,) = ingestor._cars.values()
    assert set(tracker.detector_names) == {"incident", "drafting", "damage", "training"}
