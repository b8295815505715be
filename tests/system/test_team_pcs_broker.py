"""Three team PCs stream for one car through a real broker: swaps, a PC killed -9, a PC frozen.

Each PC is its own ``pitbox-shim`` process running the simulator's view of that PC
(``--team-pcs 3 --pc K``), all on one race clock (``--race-start``). The core elects
the PC that drives; the laps it stores are checked against the simulator's truth.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.reader import SessionReader
from tests.conftest import RunningAppliance, wait_for
from tests.system.team_shims import team_pc_shim

RACE = {"laps": 26, "seed": 4, "opponents": 5, "start_fuel": 4.0}
SPEED = 15.0
PCS = 3


def shim(appliance: RunningAppliance, pc: int, start: float) -> subprocess.Popen[bytes]:
    return team_pc_shim(
        appliance, "car42", pc, race=RACE, speed=SPEED, pcs=PCS, start=start
    )


def why_not_driving(appliance: RunningAppliance, wall_s: float) -> str:
    """What the core and the shims were doing when PC 1 was not elected in time."""
    health = appliance.core.health()
    logs = {
        log.name: log.read_text(errors="replace")[-600:]
        for log in sorted(appliance.tmp.glob("car42-pc*.log"))
    }
    threads = sorted(t.name for t in threading.enumerate())
    return (
        f"PC 1 not driving {wall_s:.1f} s after the race start; core queue "
        f"{health['queue']}, ingest {health['ingest']}, shims {health['shims']}; "
        f"{len(threads)} threads in this process: {threads}; shim logs {logs}"
    )


@pytest.mark.timeout(240)
def test_three_pcs_swaps_a_killed_driver_and_a_frozen_spectator(
    appliance: RunningAppliance,
) -> None:
    truth_sim = RaceSimulatorAdapter(speed=0, **RACE)
    for _ in truth_sim.ticks():
        pass
    laps_truth = truth_sim.truth_of("lap", 0)
    swaps = truth_sim.truth_of("driver_change", 0)
    assert len(swaps) >= 1
    for pc in range(1, PCS + 1):
        appliance.broker.broker.add_user(f"car42-pc{pc}", f"car42-pc{pc}-secret")
    start = time.time() + 6.0  # the shims' start-up, on a busy machine
    procs = {pc: shim(appliance, pc, start) for pc in range(1, PCS + 1)}

    def at(race_s: float) -> None:
        time.sleep(max(0.0, start + race_s / SPEED - time.time()))

    core = appliance.core
    try:
        # PC 1 drives the first stint: killed -9 mid-stint, restarted 90 race-s later.
        first_swap = swaps[0].session_time
        at(first_swap - 180.0)
        elected = wait_for(lambda: core.ingestor.source_of("car42") == "car42-pc1", 20)
        assert elected, why_not_driving(appliance, time.time() - start)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(10)
        at(first_swap - 90.0)
        procs[1] = shim(appliance, 1, start)
        # PC 3 (standing by) freezes across the first swap (SIGSTOP: no network,
        # no sim), then catches up with a backlog of old frames.
        at(first_swap - 25.0)
        procs[3].send_signal(signal.SIGSTOP)
        at(first_swap + 35.0)
        procs[3].send_signal(signal.SIGCONT)
        for proc in procs.values():
            proc.wait(timeout=120)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
    reader = SessionReader(make_engine(appliance.db_url, readonly=True))
    # The frozen PC's backlog and the killed PC's spool reach the core after the
    # shims end: give it time to drain them on a busy machine (a liveness bound).
    assert wait_for(
        lambda: len(reader.laps(reader.sessions()[0].id)) >= len(laps_truth), 90
    )
    (session,) = reader.sessions()
    stored = reader.laps(session.id)
    numbers = [lap.lap_number for lap in stored]
    assert numbers == sorted(set(numbers)), "a lap was stored twice"
    by_number = {lap.lap_number: lap for lap in stored}
    timed = 0
    for event in laps_truth:
        lap = by_number[event.lap]  # every lap is there, PC killed or not
        assert lap.driver_name == event.data["driver"], event.lap
        if lap.lap_time is not None:
            timed += 1
            assert lap.lap_time == pytest.approx(event.data["lap_time"], abs=0.05)
    # At most the opening lap and the lap the killed PC came back in go untimed.
    assert timed >= len(laps_truth) - 2
    stints = reader.stints(session.id)
    assert [s.driver_name for s in stints][: len(swaps) + 1] == [
        swaps[0].data["driver_out"],
        *(s.data["driver_in"] for s in swaps),
    ]
