"""Per-batch cost of the detectors on the 60 Hz path, at the shim's live cadence.

Simulates a race segment (6-car field, endurance model) flat out, re-cuts it into
the batches the shim sends live (3 ticks = 50 ms) and into replay batches (30 ticks),
and times ``DetectorSet.on_frames`` per batch and ``on_lap`` per lap.

    .venv/bin/python bench/detector_cost.py [--laps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine, pct

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.detectors import POOL_FRAMES
from training.offline_detectors import run_detectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laps", type=int, default=20)
    args = parser.parse_args()
    sim = RaceSimulatorAdapter(
        laps=args.laps, speed=0, seed=7, opponents=5, incidents=4, fatigue=4
    )
    frames = np.concatenate(list(sim.ticks()))
    print(f"{machine()}")
    print(
        f"{len(frames)} frames, {args.laps} laps, 6 cars, {len(frames.dtype.names or ())} channels"
    )
    print(
        "| batch ticks | pooled to | batches | per batch p50 µs | p99 µs | max µs "
        "| per frame µs |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    # (ticks per batch, frames pooled before the detectors look): the core pools
    # live 3-tick batches to POOL_FRAMES; replays send 30-tick batches.
    for ticks, pool in ((3, 1), (3, POOL_FRAMES), (30, POOL_FRAMES), (600, 1)):
        batches = [frames[i : i + ticks] for i in range(0, len(frames), ticks)]
        start = time.perf_counter()
        run = run_detectors(batches, min_frames=pool)
        wall = time.perf_counter() - start
        cost = np.asarray(run.batch_seconds) * 1e6
        print(
            f"| {ticks} | {pool} | {len(batches)} | {pct(cost, 50):.0f} "
            f"| {pct(cost, 99):.0f} "
            f"| {cost.max():.0f} | {cost.sum() / len(frames):.1f} |"
        )
        print(f"  (whole offline run incl. segmentation: {wall:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
