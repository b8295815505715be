"""Several PCs per car: laps stored, timed and credited through swaps, a driver PC gone, a spectator cut.

Three team PCs of one simulated car (``--team-pcs 3``) are encoded as their shims would
send them, interleaved by session time into one in-process ingest, and the stored laps
are compared with the simulator's truth. Writes bench/out/team_pcs-<UTC>.json.

    .venv/bin/python bench/team_pcs.py [--laps 30] [--seed 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.messages import TelemetryBatch
from pitbox_appliance.cli.importer import local_codec
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.reader import SessionReader
from pitbox_appliance.storage.writer import SessionWriter

PCS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    race = {"laps": args.laps, "seed": args.seed, "opponents": 5, "start_fuel": 4.0}
    codec = local_codec()
    streams = []
    for pc in range(1, PCS + 1):
        sim = RaceSimulatorAdapter(speed=0, team_pcs=PCS, pc=pc, **race)
        t = 0.0
        for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
            if isinstance(message, TelemetryBatch):
                t = float(message.frames["SessionTime"][0])
            streams.append((t, pc, seq, codec.encode(f"car42-pc{pc}", seq, message)))
    streams.sort(key=lambda m: m[:3])
    truth_sim = RaceSimulatorAdapter(speed=0, **race)
    for _ in truth_sim.ticks():
        pass
    laps_truth = {e.lap: e for e in truth_sim.truth_of("lap", 0)}
    swaps = truth_sim.truth_of("driver_change", 0)
    first = swaps[0].session_time if swaps else 300.0
    scenarios = {
        "swaps only": {},
        "driving PC gone 80 s mid-stint": {1: (first - 200.0, first - 120.0)},
        "spectator cut 60 s across a swap": {3: (first - 30.0, first + 30.0)},
    }
    results = {}
    for name, drop in scenarios.items():
        with tempfile.TemporaryDirectory() as tmp:
            engine = open_database(f"sqlite:///{Path(tmp) / 'team.sqlite3'}")
            ingestor = Ingestor(codec, SessionWriter(engine))
            started = time.process_time()
            for i, (t, pc, _seq, payload) in enumerate(streams):
                if pc in drop and drop[pc][0] <= t < drop[pc][1]:
                    continue
                ingestor.handle(payload)
                if i % 500 == 0:
                    ingestor.flush()
            ingestor.flush()
            cpu = time.process_time() - started
            reader = SessionReader(engine)
            (session,) = reader.sessions()
            stored = reader.laps(session.id)
            numbers = [lap.lap_number for lap in stored]
            errors = [
                abs(lap.lap_time - laps_truth[lap.lap_number].data["lap_time"])
                for lap in stored
                if lap.lap_time is not None and lap.lap_number in laps_truth
            ]
            credited = sum(
                lap.driver_name == laps_truth[lap.lap_number].data["driver"]
                for lap in stored
                if lap.lap_number in laps_truth
            )
            results[name] = {
                "truth_laps": len(laps_truth),
                "stored": sum(n in laps_truth for n in numbers),
                "stored_twice": len(numbers) - len(set(numbers)),
                "timed": len(errors),
                "max_error_ms": round(1000 * max(errors), 1) if errors else None,
                "credited_right": credited,
                "stints": len(reader.stints(session.id)),
                "driver_changes": len(swaps),
                "ingest_cpu_s": round(cpu, 2),
            }
            engine.dispose()
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"team_pcs-{stamp}.json").write_text(json.dumps(results, indent=1) + "\n")
    for name, r in results.items():
        print(
            f"{name:34} laps {r['stored']}/{r['truth_laps']} (twice: {r['stored_twice']})"
            f", timed {r['timed']}, max error {r['max_error_ms']} ms,"
            f" credited right {r['credited_right']}, stints {r['stints']}"
            f" for {r['driver_changes']} changes, ingest {r['ingest_cpu_s']} CPU s"
        )


if __name__ == "__main__":
    main()
