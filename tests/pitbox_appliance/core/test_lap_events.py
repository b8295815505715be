"""The ``lap_completed`` event carries the lap's flags, as the stored lap does.

Real recording: the Langley file starts with iRacing's reset, so lap 176 has no time
(iRacing's ``LapLastLapTime`` -1) and lap 177 is timed. The pit wall and the shims
read the event, not the table, so it must say ``invalid`` too.
"""

from __future__ import annotations

from pathlib import Path

from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.events import EventKind, LapCompleted
from pitbox_appliance.cli.importer import local_codec
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter
from tests.conftest import real_file


def test_a_reset_lap_is_invalid_in_its_event(tmp_path: Path) -> None:
    path = real_file("iracing", "ibt", "skmodified_langley_2015-05-28_14-47-39.ibt")
    codec = local_codec()
    ingestor = Ingestor(
        codec, SessionWriter(open_database(f"sqlite:///{tmp_path / 'p.db'}"))
    )
    adapter = IbtReplayAdapter(str(path), speed=0)
    try:
        for seq, message in enumerate(ShimPipeline(adapter).messages()):
            assert ingestor.handle(codec.encode("car1-pc1", seq, message), "car1-pc1")
    finally:
        adapter.close()
    ingestor.end_of_streams()
    ingestor.flush()
    laps = [
        event.payload
        for event in ingestor.publisher.take_events()
        if event.kind is EventKind.LAP_COMPLETED
    ]
    assert all(isinstance(lap, LapCompleted) for lap in laps)
    assert [(lap.lap, lap.invalid, lap.time is None) for lap in laps] == [
        (176, True, True),
        (177, False, False),
    ]
