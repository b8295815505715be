"""cloud_sync's reader of a compacted set: the laps' invalid and refuelled flags."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cloud_sync.compacted import load_session
from pitbox_appliance.compaction import compact_session
from tests.conftest import import_into, readonly_engine, real_file


def test_invalid_laps_are_read_and_never_clean(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    import_into(
        url,
        real_file("iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt"),
    )
    engine = readonly_engine(url)
    manifest = compact_session(engine, 1, tmp_path / "outbox")
    engine.dispose()
    root = tmp_path / "outbox" / manifest.path
    session = load_session(root, telemetry=False)
    assert [(lap.lap_number, lap.invalid, lap.clean) for lap in session.laps] == [
        (31, True, False),
        (32, False, True),
        (33, False, True),
    ]
    assert not any(lap.refuelled for lap in session.laps)

    # A set compacted before the columns existed reads as all valid, not refuelled.
    laps = root / manifest.file("laps").path
    pq.write_table(pq.read_table(laps).drop_columns(["invalid", "refuelled"]), laps)
    older = load_session(root, telemetry=False)
    assert [lap.lap_number for lap in older.laps] == [31, 32, 33]
    assert not any(lap.invalid or lap.refuelled for lap in older.laps)
