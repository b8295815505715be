"""Strategy engine against the simulator's truth: opponent stops and kinds, rejoin, laps left."""

from __future__ import annotations

import argparse
import json

from training.strategy_scoring import run_sim_race, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--laps", type=int, default=75)
    parser.add_argument("--opponents", type=int, default=16)
    args = parser.parse_args()
    for seed in args.seeds:
        race = run_sim_race(
            laps=args.laps,
            seed=seed,
            opponents=args.opponents,
            classes=2,
            tyre_wear=3.0,
            start_fuel=9.0,
        )
        print(json.dumps({"seed": seed, **score(race)}))


if __name__ == "__main__":
    main()
