"""A Raspberry Pi estimate: scale this machine's figures by a CPU benchmark with published Pi results.

The benchmark is ``sysbench cpu`` (1.0.20, one thread, primes up to 10,000; Debian
package ``sysbench``), run here three times; the best run stands for an uncontended
core. Its published single-core results (events per second):

| board | source A: leoncode.co.uk "Raspberry Pi CPU Benchmarks" | source B: zbotic.in "Raspberry Pi 5 benchmarks" (64-bit Pi OS) |
|---|---:|---:|
| Raspberry Pi 4 | 1,477.83 | 812 (1.8 GHz) |
| Raspberry Pi 5 | 2,737.49 | 1,847 |

The two sources disagree by up to 1.8× (OS, clocks, cooling), so the estimate is a
range. ``sysbench cpu`` is a C loop of integer divisions: the interpreter-bound part
of our work loses more on an in-order-ish A72 than that loop does, so DESIGN §6's
rule of thumb (a Pi 4 core is 3–4× slower than this machine's) is given beside it as
the conservative end. Every throughput headline (unit ``x real time``) of the newest
runs in ``bench/out`` is divided by the factors, and written as an ESTIMATE.

    .venv/bin/python bench/pi_estimate.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from _common import machine, write_result
from render_summary import newest_runs

PUBLISHED = {  # events per second, one thread
    "Pi 4": {"leoncode": 1477.83, "zbotic": 812.0},
    "Pi 5": {"leoncode": 2737.49, "zbotic": 1847.0},
}
DESIGN_PI4_SLOWER = (3.0, 4.0)  # DESIGN §6: "a Pi 4 core is ~3-4x slower"


def sysbench_events_per_s(runs: int = 3, seconds: int = 10) -> list[float]:
    binary = shutil.which("sysbench")
    if binary is None:
        raise SystemExit("sysbench is not installed: apt-get install sysbench")
    out = []
    for _ in range(runs):
        text = subprocess.run(
            [binary, "cpu", "--threads=1", f"--time={seconds}", "run"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"events per second:\s*([0-9.]+)", text)
        if match is None:
            raise SystemExit(f"sysbench printed no rate:\n{text}")
        out.append(float(match.group(1)))
    return out


def main() -> int:
    print(f"pi_estimate | {machine()}")
    rates = sysbench_events_per_s()
    here = max(rates)
    print(
        f"sysbench cpu, one thread, here: {', '.join(f'{r:,.0f}' for r in rates)} events/s (best {here:,.0f})"
    )
    factors: dict[str, tuple[float, float]] = {}
    for board, published in PUBLISHED.items():
        slow = sorted(here / rate for rate in published.values())
        factors[board] = (slow[0], slow[-1])
        print(
            f"  {board}: this core is {slow[0]:.2f}–{slow[-1]:.2f}× faster by sysbench"
        )
    factors["Pi 4 (DESIGN)"] = DESIGN_PI4_SLOWER
    headline: dict[str, dict[str, object]] = {}
    raw: dict[str, object] = {"sysbench_here": rates, "factors": factors, "scaled": {}}
    for run in newest_runs([]):
        for name, fig in run["headline"].items():
            unit = str(fig.get("unit", ""))
            if not unit.startswith("x real time") or fig.get("value") is None:
                continue
            value = float(fig["value"])
            for board, (low, high) in factors.items():
                pessimistic = value / high
                raw["scaled"][f"{run['bench']}: {name} on {board}"] = (
                    value / high,
                    value / low,
                )
                print(
                    f"{run['bench']}: {name} = {value:,.1f}x here → "
                    f"{value / high:,.1f}–{value / low:,.1f}x on a {board} core (ESTIMATE)"
                )
                if board == "Pi 4 (DESIGN)":
                    headline[f"ESTIMATE {name} on a Pi 4 core (÷4, DESIGN)"] = {
                        "value": round(pessimistic, 1),
                        "unit": unit,
                        "target": fig.get("target"),
                        "better": "higher",
                        "bar": f"{fig.get('bar', run['bench'])}, Pi 4 estimate",
                    }
    write_result("pi_estimate", headline, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
