"""One team PC as its own ``pitbox-shim`` process: the simulator's view of PC ``pc``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tests.conftest import RunningAppliance


def team_pc_shim(
    appliance: RunningAppliance,
    car: str,
    pc: int,
    *,
    race: Mapping[str, Any],
    speed: float,
    pcs: int,
    start: float,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start PC ``pc`` of ``car`` (source ``<car>-pc<pc>``, password ``<source>-secret``).

    All PCs share one race clock (``start``, wall time), so their views agree; the
    output goes to ``<source>.log`` in the appliance's directory. ``prefix`` runs the
    shim inside something (``ip netns exec NAME``).
    """
    source = f"{car}-pc{pc}"
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": appliance.team_key.hex(),
        "PITBOX_MQTT_PASSWORD": f"{source}-secret",
    }
    command = [
        *prefix,
        sys.executable,
        "-m",
        "driver_pc",
        f"--source={source}",
        f"--host={appliance.broker.host}",
        f"--port={appliance.broker.port}",
        f"--spool={appliance.tmp / f'{source}.spool'}",
        "--adapter=simulator",
        *(f"--{k.replace('_', '-')}={v}" for k, v in race.items()),
        f"--speed={speed}",
        f"--team-pcs={pcs}",
        f"--pc={pc}",
        f"--race-start={start}",
    ]
    log = (appliance.tmp / f"{source}.log").open("ab")
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)
