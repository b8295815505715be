"""Shared fixtures: real recorded data location, simulator-written .ibt files, brokers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.broker_fixtures", "tests.appliance_fixtures"]

REAL_DATA = Path(
    os.environ.get(
        "PITBOX_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
IBT_DIR = REAL_DATA / "iracing" / "ibt"


def real_file(*parts: str) -> Path:
    """Path of a recorded file under ../shared/data, skipping the test if it is absent."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real recorded data not present: {path} (see ../shared/data/README.md)"
        )
    return path


@pytest.fixture(scope="session")
def sim_ibt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .ibt file written by our own simulator: 6 laps, Martinsville paperclip."""
    from driver_pc.adapters.simulator import write_simulated_ibt

    return write_simulated_ibt(
        tmp_path_factory.mktemp("sim") / "sim.ibt", laps=6, seed=7
    )
