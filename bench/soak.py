"""Soak: a long simulated race, accelerated, with the RSS of core and dashboard sampled.

Runs the appliance as bench/load.py does (Mosquitto, core pinned to one CPU,
dashboard) and real shim processes (simulator, fastest replay) for ``--hours`` of
simulated racing per car. Every ``--sample-s`` it records the resident memory of the
core and the dashboard against the simulated hours stored. A leak shows as memory that
keeps growing at the same rate; bounded buffers show as growth that flattens. The
report gives RSS at each quarter of the run and the growth rate (MB per simulated
hour) in the first and the second half.

    .venv/bin/python bench/soak.py [--hours 24] [--cars 2] [--sample-s 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import code_fingerprint
from load import Appliance

LAP_S = 26.0  # the simulator's Martinsville lap, roughly


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--cars", type=int, default=2)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--core-cpu", type=int, default=1)
    args = parser.parse_args()
    laps = max(2, int(args.hours * 3600 / LAP_S))
    print(
        f"# soak: {args.cars} cars × {laps} laps (~{args.hours:g} simulated hours each),"
        f" fastest replay; {code_fingerprint()}"
    )
    work = Path(tempfile.mkdtemp(prefix="pitbox-soak-"))
    app = Appliance(work, args.core_cpu, dashboard=True)
    app.start()
    shims = []
    for car in range(1, args.cars + 1):
        source = f"car{car}-pc1"
        env = {**app.env, "PITBOX_MQTT_PASSWORD": app.passwords[source]}
        with (work / f"{source}.log").open("ab") as log:
            shims.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "driver_pc",
                        "--adapter",
                        "simulator",
                        "--laps",
                        str(laps),
                        "--speed",
                        "0",
                        "--seed",
                        str(200 + car),
                        "--source",
                        source,
                        "--port",
                        str(app.broker_port),
                        "--spool",
                        str(work / f"{source}.spool"),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    samples: list[tuple[float, float, float, float]] = []  # wall s, sim h, core, dash
    started = time.monotonic()
    try:
        while any(s.poll() is None for s in shims) or app.health().get("queue", 0):
            time.sleep(args.sample_s)
            frames = app.health().get("ingest", {}).get("frames", 0)
            sim_h = frames / 60 / 3600 / args.cars
            samples.append(
                (
                    time.monotonic() - started,
                    sim_h,
                    rss_mb(app.processes["core"].pid),
                    rss_mb(app.processes["dashboard"].pid),
                )
            )
            wall, h, core, dash = samples[-1]
            print(
                f"{wall:7.0f} s  {h:6.2f} sim h/car  core {core:6.1f} MB"
                f"  dashboard {dash:6.1f} MB",
                flush=True,
            )
    finally:
        for shim in shims:
            if shim.poll() is None:
                shim.terminate()
        app.stop()
    if len(samples) < 4:
        print("too short to judge")
        return 1
    print(json.dumps({"samples": len(samples), "work": str(work)}))
    n = len(samples)
    print("quarter | sim h/car | core MB | dashboard MB")
    for q in (0, n // 4, n // 2, 3 * n // 4, n - 1):
        _w, h, c, d = samples[q]
        print(f"{q / (n - 1):7.0%} | {h:9.2f} | {c:7.1f} | {d:12.1f}")
    for name, idx in (("core", 2), ("dashboard", 3)):
        first = _slope(samples[: n // 2], idx)
        second = _slope(samples[n // 2 :], idx)
        print(
            f"{name}: growth {first:+.2f} MB/sim h in the first half,"
            f" {second:+.2f} MB/sim h in the second"
        )
    db = work / "pitbox.sqlite3"
    print(
        f"database {db.stat().st_size / 1e6:.0f} MB after {samples[-1][1]:.2f} sim h/car;"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    return 0


def _slope(rows: list[tuple[float, float, float, float]], idx: int) -> float:
    """Least-squares MB per simulated hour."""
    xs = [r[1] for r in rows]
    ys = [r[idx] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return (
        sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
        if var
        else 0.0
    )


if __name__ == "__main__":
    sys.exit(main())
