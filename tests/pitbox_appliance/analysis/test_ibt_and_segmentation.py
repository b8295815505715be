from pathlib import Path

import irsdk
import numpy as np
import pytest

from driver_pc.adapters.ibt_file import IbtError, IbtReader
from pitbox_appliance.analysis.segmentation import (
    VERDICT_WAIT_S,
    CompletedLap,
    LapSegmenter,
)
from tests.conftest import IBT_DIR, real_file

TOLERANCE_S = 0.017  # one 60 Hz tick


def iracing_reported_laps(reader: IbtReader) -> list[float]:
    """Every lap time iRacing itself published in the file (LapLastLapTime changes > 0)."""
    llt = reader.column("LapLastLapTime")
    changes = np.flatnonzero(np.diff(llt) != 0) + 1
    return [float(llt[i]) for i in changes if llt[i] > 0]


def segment_laps(path: Path) -> list[CompletedLap]:
    with IbtReader(path) as reader:
        seg = LapSegmenter(tick_rate=reader.layout.tick_rate)
        laps = [lap for rows in reader.rows() for lap in seg.feed(rows)]
    return laps + seg.flush()


def segment(path: Path) -> list[float]:
    return [lap.lap_time for lap in segment_laps(path) if lap.lap_time is not None]


REAL_FILES = [
    "skmodified_martinsville_2015-05-30_20-32-44.ibt",
    "skmodified_langley_2015-05-28_14-45-28.ibt",
    "skmodified_langley_2015-05-28_14-47-39.ibt",
    "skmodified_langley_2015-05-28_14-49-50.ibt",
]


@pytest.mark.parametrize("name", REAL_FILES)
def test_lap_times_match_iracing_on_real_files(name: str) -> None:
    path = real_file("iracing", "ibt", name)
    with IbtReader(path) as reader:
        truth = iracing_reported_laps(reader)
    ours = segment(path)
    assert len(ours) == len(truth)
    for got, want in zip(ours, truth, strict=True):
        assert abs(got - want) <= TOLERANCE_S


@pytest.mark.parametrize("name", REAL_FILES)
def test_invalid_laps_are_the_ones_iracing_gave_no_time(name: str) -> None:
    """Each lap against iRacing's verdict published after its line: -1 or a time."""
    path = real_file("iracing", "ibt", name)
    with IbtReader(path) as reader:
        t = reader.column("SessionTime")
        llt = reader.column("LapLastLapTime")
    changes = np.flatnonzero(np.diff(llt) != 0) + 1
    laps = segment_laps(path)
    assert laps
    for lap in laps:
        after = [
            i for i in changes if lap.end_time < t[i] <= lap.end_time + VERDICT_WAIT_S
        ]
        assert len(after) == 1, lap
        verdict = float(llt[after[0]])
        assert lap.invalid == (verdict < 0), lap
        if lap.invalid:
            assert lap.lap_time is None
        elif lap.lap_time is not None:
            assert abs(lap.lap_time - verdict) <= TOLERANCE_S
        assert lap.fuel_used is None or lap.fuel_used >= 0


def test_langley_reset_lap_is_invalid() -> None:
    """The recording starts with iRacing's reset tick (Lap 0) and the car in its stall.

    Lap 176 is the lap the reset happened in: iRacing publishes -1 for it. Lap 177
    is a clean 15.0707 s lap.
    """
    path = real_file("iracing", "ibt", "skmodified_langley_2015-05-28_14-47-39.ibt")
    laps = segment_laps(path)
    assert [(lap.lap_number, lap.invalid) for lap in laps] == [
        (176, True),
        (177, False),
    ]
    assert laps[0].lap_time is None
    assert laps[0].pit_lap
    assert laps[1].lap_time == pytest.approx(15.0707, abs=TOLERANCE_S)
    assert laps[1].fuel_used == pytest.approx(0.2028, abs=1e-3)


def test_reset_mid_lap_in_spliced_langley_recordings() -> None:
    """Two real recordings joined as one live stream would carry a reset mid-lap.

    The end of 14-47-39 (lap 178 under way, 42.77 l) runs straight into 14-49-50,
    which starts with iRacing's reset tick and the car in its stall with 43.31 l
    (its Lap relabelled to carry on from 178). Timed from line to line that lap was
    a 30.0 s lap with -0.20 l of fuel "used"; iRacing published no time for it.
    """
    before = real_file("iracing", "ibt", "skmodified_langley_2015-05-28_14-47-39.ibt")
    after = real_file("iracing", "ibt", "skmodified_langley_2015-05-28_14-49-50.ibt")
    with IbtReader(before) as reader:
        first = np.concatenate(list(reader.rows()))
    with IbtReader(after) as reader:
        second = np.concatenate(list(reader.rows()))
        tick_rate = reader.layout.tick_rate
    first = first[first["SessionTime"] > 4307.0]  # from just before lap 178's line
    second["SessionTime"] += (
        first["SessionTime"][-1] + 1 / 60 - second["SessionTime"][0]
    )
    driving = second["Lap"] > 0
    second["Lap"][driving] -= second["Lap"][driving][0] - first["Lap"][-1]
    seg = LapSegmenter(tick_rate=tick_rate)
    frames = np.concatenate([first, second])
    laps = [
        lap for i in range(0, len(frames), 3) for lap in seg.feed(frames[i : i + 3])
    ]
    laps += seg.flush()
    assert [lap.lap_number for lap in laps] == [177, 178, 179]
    reset = laps[1]
    assert reset.invalid
    assert reset.lap_time is None
    assert reset.refuelled
    assert reset.fuel_used is None
    assert laps[2].lap_time == pytest.approx(15.1677, abs=TOLERANCE_S)
    assert not laps[2].invalid
    assert laps[2].fuel_used == pytest.approx(0.2012, abs=1e-3)


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
