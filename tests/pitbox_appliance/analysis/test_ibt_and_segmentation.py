from pathlib import Path

import irsdk
import numpy as np
import pytest

from driver_pc.adapters.ibt_file import IbtError, IbtReader
from pitbox_appliance.analysis.segmentation import LapSegmenter
from tests.conftest import IBT_DIR, real_file

TOLERANCE_S = 0.017  # one 60 Hz tick


def iracing_reported_laps(reader: IbtReader) -> list[float]:
    """Every lap time iRacing itself published in the file (LapLastLapTime changes > 0)."""
    llt = reader.column("LapLastLapTime")
    changes = np.flatnonzero(np.diff(llt) != 0) + 1
    return [float(llt[i]) for i in changes if llt[i] > 0]


def segment(path: Path) -> list[float]:
    with IbtReader(path) as reader:
        seg = LapSegmenter(tick_rate=reader.layout.tick_rate)
        laps = [lap for rows in reader.rows() for lap in seg.feed(rows)]
    return [lap.lap_time for lap in laps if lap.lap_time is not None]


@pytest.mark.parametrize(
    "name",
    [
        "skmodified_martinsville_2015-05-30_20-32-44.ibt",
        "skmodified_langley_2015-05-28_14-45-28.ibt",
        "skmodified_langley_2015-05-28_14-47-39.ibt",
        "skmodified_langley_2015-05-28_14-49-50.ibt",
    ],
)
def test_lap_times_match_iracing_on_real_files(name: str) -> None:
    path = real_file("iracing", "ibt", name)
    with IbtReader(path) as reader:
        truth = iracing_reported_laps(reader)
    ours = segment(path)
    assert len(ours) == len(truth)
    for got, want in zip(ours, truth, strict=True):
        assert abs(got - want) <= TOLERANCE_S


def test_lap_times_match_simulator_truth(sim_ibt: Path) -> None:
    with IbtReader(sim_ibt) as reader:
        truth = iracing_reported_laps(reader)
    ours = segment(sim_ibt)
    assert len(truth) >= 5
    assert ours == pytest.approx(truth, abs=TOLERANCE_S)


def test_reader_agrees_with_pyirsdk(sim_ibt: Path) -> None:
    ibt = irsdk.IBT()
    ibt.open(str(sim_ibt))
    try:
        with IbtReader(sim_ibt) as reader:
            for name in ("Speed", "Lap", "FuelLevel", "OnPitRoad", "Lat"):
                ours = reader.column(name)
                theirs = np.array(ibt.get_all(name))
                np.testing.assert_array_equal(ours, theirs.astype(ours.dtype))
    finally:
        ibt.close()


def test_corrupt_file_gives_clear_error() -> None:
    path = real_file("iracing", "ibt", "teamjorge_invalid_test_file.ibt")
    with pytest.raises(
        IbtError, match=r"teamjorge_invalid_test_file\.ibt: header version"
    ):
        IbtReader(path)


def test_truncated_file_gives_clear_error(sim_ibt: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ibt"
    cut.write_bytes(sim_ibt.read_bytes()[:-5000])
    with pytest.raises(IbtError, match="truncated"):
        IbtReader(cut)


def test_real_files_all_readable() -> None:
    if not IBT_DIR.exists():
        pytest.skip("real recorded data not present")
    for path in sorted(IBT_DIR.glob("*.ibt")):
        if "invalid" in path.name:
            continue
        with IbtReader(path) as reader:
            assert sum(len(r) for r in reader.rows()) == reader.layout.record_count > 0
