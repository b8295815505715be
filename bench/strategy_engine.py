"""Cost of the live strategy engine per telemetry batch and per lap, on a simulated field."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.session_info import parse_session_info
from pitbox_appliance.analysis.segmentation import LapSegmenter
from pitbox_appliance.strategy.engine import StrategyEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--laps", type=int, default=30)
    parser.add_argument("--opponents", type=int, default=40)
    parser.add_argument(
        "--rows", type=int, default=3, help="ticks per batch (3 = 50 ms)"
    )
    args = parser.parse_args()
    sim = RaceSimulatorAdapter(
        laps=args.laps, speed=0, seed=5, opponents=args.opponents, classes=2
    )
    engine = StrategyEngine()
    engine.session_info(parse_session_info(sim.session_info_text()))
    seg = LapSegmenter()
    batch_s: list[float] = []
    lap_s: list[float] = []
    sim_s = 0.0
    for rows in sim.ticks():
        sim_s = float(rows["SessionTime"][-1])
        for i in range(0, len(rows), args.rows):
            chunk = rows[i : i + args.rows]
            laps = seg.feed(chunk)
            t0 = time.perf_counter()
            engine.on_batch(chunk)
            batch_s.append(time.perf_counter() - t0)
            for lap in laps:
                t0 = time.perf_counter()
                engine.on_lap(
                    lap.lap_number,
                    lap.lap_time,
                    lap.fuel_used,
                    lap.pit_lap,
                    lap.end_time,
                    float(chunk["FuelLevel"][-1]),
                    "Alex Sim",
                )
                lap_s.append(time.perf_counter() - t0)
    b, lp = np.array(batch_s) * 1e3, np.array(lap_s) * 1e3
    print(
        json.dumps(
            {
                "cars": args.opponents + 1,
                "batches": len(b),
                "batch_ms_p50": round(float(np.percentile(b, 50)), 3),
                "batch_ms_p99": round(float(np.percentile(b, 99)), 3),
                "batch_ms_mean": round(float(b.mean()), 3),
                "share_of_one_core_pct": round(
                    100 * float(b.sum() + lp.sum()) / 1e3 / float(sim_s), 3
                ),
                "laps": len(lp),
                "lap_ms_p50": round(float(np.percentile(lp, 50)), 3),
                "lap_ms_p99": round(float(np.percentile(lp, 99)), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
