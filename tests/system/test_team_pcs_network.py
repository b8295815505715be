"""Three team PCs of one car on a real broker; one PC's network is cut across the driver swap."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.reader import SessionReader
from tests.conftest import BrokerHandle, RunningAppliance, wait_for
from tests.system.netns import Netns, lan_broker, network_namespace, spool_depth
from tests.system.team_shims import team_pc_shim

# One driver swap, at 116 race seconds (lap 4, in the pits); 567 race seconds in all.
RACE: dict[str, Any] = {"laps": 20, "seed": 4, "opponents": 5, "start_fuel": 2.0}
SPEED = 15.0
PCS = 3
CAR = "car42"
# Wall seconds, not race seconds: the shim's MQTT keep-alive is 10 s and Mosquitto
# drops a client silent for 1.5 times that, so an 18 s cut makes the broker end the
# PC's connection (at 15x, 18 s is 270 race seconds: the swap and ten laps).
CUT_WALL_S = 18.0


# Known bug (core/car.py, CarTracker._drive): a pit entry inside a gap of the driving
# PC's frames is never recorded (continue_lap clears the segmenter's pit state), so at
# the pit exit ``entered`` is None and a second stint opens for the driver the swap
# already gave one (empty, from the swap to the exit). Here the driving PC was cut
# before the entry; a moment's election flicker at 15x does it too (the three-PC
# broker test stores the same extra stint but checks only the first stints).


@dataclass(frozen=True)
class Cut:
    """Which PC loses its network, and when (race seconds from the driver swap)."""

    pc: int
    before_swap_s: float


CUTS = {
    # PC 1 drives the first stint: cut on its in-lap, before the pit entry (at 97.5).
    "outgoing": Cut(pc=1, before_swap_s=30.0),
    # PC 2 spectates until its driver takes the car: cut just before it should.
    "incoming": Cut(pc=2, before_swap_s=20.0),
}


@pytest.fixture
def netns() -> Iterator[Netns]:
    with network_namespace() as ns:
        yield ns


@pytest.fixture
def broker(tmp_path: Path, netns: Netns) -> Iterator[BrokerHandle]:
    """The ``appliance`` fixture's broker, on the host's end of the veth pair."""
    with lan_broker(tmp_path, netns) as handle:
        yield handle


@dataclass(frozen=True)
class Sample:
    """The core's health and the car's driving PC at one moment."""

    at: float  # monotonic
    status: str
    reason: str | None
    accepted: int
    elected: str | None
    session_time: float  # the car's newest SessionTime as the core has it


@dataclass
class HealthLog:
    """The core sampled in the background while the race runs."""

    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def accepted_at(self, when: float) -> int:
        """Messages the core had accepted by monotonic time ``when``."""
        return max((s.accepted for s in self.samples if s.at <= when), default=0)

    def elected_between(self, first: float, last: float) -> set[str | None]:
        """The driving PCs while the core's race clock was in [first, last]."""
        return {s.elected for s in self.samples if first <= s.session_time <= last}


def sample_health(core: CoreService, log: HealthLog) -> None:
    while not log.stop.wait(0.25):
        health = core.health()
        live = core.ingestor.live.get(CAR)
        log.samples.append(
            Sample(
                time.monotonic(),
                str(health["status"]),
                health["reason"],
                int(health["ingest"].get("accepted", 0)),
                core.ingestor.source_of(CAR),
                live.values.get("SessionTime", 0.0) if live else 0.0,
            )
        )


def start_shim(
    appliance: RunningAppliance, pc: int, start: float, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    return team_pc_shim(
        appliance, CAR, pc, race=RACE, speed=SPEED, pcs=PCS, start=start, prefix=prefix
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("which", sorted(CUTS))
def test_network_cut_across_the_swap(
    appliance: RunningAppliance, netns: Netns, which: str
) -> None:
    """The cut PC runs in its own network namespace, the others beside the core.

    The broker listens on the host's end of the veth pair. Taking the namespace's
    end down is a silent cut (no reset reaches either side), held past the broker's
    keep-alive limit so the broker drops the PC; when the link is back the shim
    reconnects and sends its spool again. Laps and stints are checked against the
    simulator's truth, the spools must drain and the core must never stall.
    """
    cut = CUTS[which]
    truth_sim = RaceSimulatorAdapter(speed=0, **RACE)
    for _ in truth_sim.ticks():
        pass
    laps_truth = truth_sim.truth_of("lap", 0)
    (swap,) = truth_sim.truth_of("driver_change", 0)
    for pc in range(1, PCS + 1):
        appliance.broker.broker.add_user(f"{CAR}-pc{pc}", f"{CAR}-pc{pc}-secret")
    cut_source = f"{CAR}-pc{cut.pc}"
    pc1, pc2 = f"{CAR}-pc1", f"{CAR}-pc2"
    cut_spool = appliance.tmp / f"{cut_source}.spool"
    cut_from = swap.session_time - cut.before_swap_s
    start = time.time() + 3.0  # the shims' start-up
    procs = {
        pc: start_shim(
            appliance, pc, start, netns.exec_prefix() if pc == cut.pc else ()
        )
        for pc in range(1, PCS + 1)
    }

    def at(race_s: float) -> None:
        time.sleep(max(0.0, start + race_s / SPEED - time.time()))

    health = HealthLog()
    sampler = threading.Thread(target=sample_health, args=(appliance.core, health))
    sampler.start()
    try:
        # On the race clock, not on the core's state: a busy core lags by seconds.
        at(cut_from)
        netns.cut()
        cut_at = time.monotonic()
        cut_race_s = (time.time() - start) * SPEED
        # On time (within half a wall second): for "outgoing", before the pit entry.
        assert cut_race_s < cut_from + 8.0, cut_race_s
        time.sleep(CUT_WALL_S)
        held = spool_depth(cut_spool)
        netns.restore()
        restored_at = time.monotonic()
        # How soon the backlog goes out again (measured; the assertions are below).
        wait_for(lambda: spool_depth(cut_spool) < held / 2, 60)
        caught_up_s = time.monotonic() - restored_at
        for pc, proc in procs.items():
            assert proc.wait(timeout=120) == 0, pc
    finally:
        health.stop.set()
        sampler.join(10)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    cut_log = (appliance.tmp / f"{cut_source}.log").read_text()
    # The broker dropped the PC and it reconnected; its spool went on growing meanwhile.
    assert "dropped the connection" in cut_log, cut_log[-2000:]
    assert held > 100, held
    # Nothing waits unacknowledged: every PC's spool is empty.
    for pc in range(1, PCS + 1):
        assert spool_depth(appliance.tmp / f"{CAR}-pc{pc}.spool") == 0, pc

    # The core kept up throughout: never stalled, the other PCs' messages kept coming.
    # Counted from the car's first telemetry: an idle core reports "stalled" while it
    # handles the first burst of messages (its progress clock ran from its start).
    streaming = next(s.at for s in health.samples if s.elected is not None)
    stalls = [s for s in health.samples if s.at >= streaming and s.status != "ok"]
    assert not stalls, stalls[:3]
    assert health.accepted_at(cut_at + CUT_WALL_S) > health.accepted_at(cut_at + 3.0)
    stats = appliance.core.ingestor.stats
    assert not stats.rejected, stats.as_dict()
    assert not stats.dead_letters, stats.as_dict()
    # While PC 1 was away after the swap PC 2 drove (outgoing; at 15x a batch of
    # PC 2's 0.13 s behind another PC's is 2 race-s, "quiet", so the bridge may
    # stand in for a moment); while PC 2 was away no PC was in the car (incoming),
    # and PC 2 drove again once back.
    cut_until = cut_from + CUT_WALL_S * SPEED
    during = health.elected_between(swap.session_time + 30.0, cut_until)
    after = health.elected_between(cut_until, float("inf"))
    assert pc1 in health.elected_between(0.0, cut_from)  # PC 1 drove first
    if which == "outgoing":
        assert pc2 in during, during
        assert during <= {pc2, None}, during
    else:
        assert during == {None}, during
        assert pc2 in after, after

    reader = SessionReader(make_engine(appliance.db_url, readonly=True))
    assert wait_for(
        lambda: len(reader.laps(reader.sessions()[0].id)) >= len(laps_truth), 30
    )
    (session,) = reader.sessions()
    stored = reader.laps(session.id)
    numbers = [lap.lap_number for lap in stored]
    assert numbers == sorted(set(numbers)), "a lap was stored twice"
    # Every lap once, none invented (a lap 0 is the grid to the first crossing).
    assert [n for n in numbers if n > 0] == [e.lap for e in laps_truth], numbers
    by_number = {lap.lap_number: lap for lap in stored}
    untimed = []
    for event in laps_truth:
        lap = by_number[event.lap]  # every lap is there, network cut or not
        assert lap.driver_name == event.data["driver"], event.lap
        if lap.lap_time is None:
            untimed.append(event.lap)
        else:
            assert lap.lap_time == pytest.approx(event.data["lap_time"], abs=0.05), (
                event.lap
            )
    assert untimed == [], untimed
    sys.stderr.write(
        f"{which} PC cut at {cut_race_s:.0f} race s for {CUT_WALL_S:.0f} s wall"
        f" ({CUT_WALL_S * SPEED:.0f} race s):"
        f" {held} messages spooled, half sent again {caught_up_s:.1f} s after the"
        f" link came back; {stats.duplicates} duplicates dropped by the core,"
        f" {cut_log.count('no acknowledgement')} ack time-outs on the cut PC;"
        f" stored laps {numbers[0]}..{numbers[-1]}\n"
    )
    stints = reader.stints(session.id)
    drivers = [s.driver_name for s in stints]
    out, into = swap.data["driver_out"], swap.data["driver_in"]
    sys.stderr.write(f"stints {[(s.driver_name, s.start_time) for s in stints]}\n")
    assert drivers == [out, into]
    assert stints[1].start_time == pytest.approx(swap.session_time, abs=1.0)
