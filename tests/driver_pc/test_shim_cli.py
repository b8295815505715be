"""The ``pitbox-shim`` command: clear errors, and a real run against the appliance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import RunningAppliance, wait_for


def shim(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driver_pc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_missing_team_key_is_named() -> None:
    result = shim("--source", "car1-pc1", env={"PITBOX_TEAM_KEY": "zz"})
    assert result.returncode == 2
    assert "PITBOX_TEAM_KEY" in result.stderr


def test_live_adapter_off_windows_is_explained() -> None:
    result = shim("--source", "car1-pc1", env={"PITBOX_TEAM_KEY": "00" * 32})
    assert result.returncode == 1
    assert "needs Windows" in result.stderr


def test_ibt_adapter_needs_a_file() -> None:
    result = shim(
        "--source", "car1-pc1", "--adapter", "ibt", env={"PITBOX_TEAM_KEY": "00" * 32}
    )
    assert result.returncode == 2
    assert "--file" in result.stderr


def test_shim_process_streams_a_recording(
    appliance: RunningAppliance, sim_ibt: Path, tmp_path: Path
) -> None:
    broker = appliance.broker
    result = shim(
        "--source",
        broker.driver_user,
        "--adapter",
        "ibt",
        "--file",
        str(sim_ibt),
        "--speed",
        "0",
        "--port",
        str(broker.port),
        "--spool",
        str(tmp_path / "s.spool"),
        env={
            "PITBOX_TEAM_KEY": appliance.team_key.hex(),
            "PITBOX_MQTT_PASSWORD": broker.driver_password,
        },
    )
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: appliance.core.ingestor.stats.laps >= 6, timeout=30)
    assert appliance.core.ingestor.stats.rejected == {}
