"""Samples who had the CPUs: per-thread run and run-queue wait of chosen processes.

Run as its own process (so its sampling costs no other process's GIL) by
``bench/load.py``: every ``--interval`` seconds it reads, for every thread of the
given ``--pid``s, ``/proc/<pid>/task/<tid>/schedstat`` (ns on a CPU, ns runnable but
waiting for one); every tenth sample, the CPU time of every process by name
(``/proc/<pid>/stat``, clock ticks), each CPU's busy, idle and steal ticks
(``/proc/stat``), the CPU pressure (PSI) and the load average. On SIGTERM
it writes everything as JSON to ``--out``.

    .venv/bin/python bench/sched_probe.py --out probe.json --pid 123 --pid 456
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

_stop = False


def _on_term(_sig: int, _frame: FrameType | None) -> None:
    global _stop
    _stop = True


def threads_of(pid: int) -> dict[int, str]:
    """Each thread id of ``pid`` with its kernel name (``comm``)."""
    out: dict[int, str] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out[int(tid)] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            except OSError:
                continue
    except OSError:
        pass
    return out


def schedstat(pid: int, tid: int) -> tuple[int, int] | None:
    try:
        run, wait, _slices = (
            Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        )
    except (OSError, ValueError):
        return None
    return int(run), int(wait)


def process_ticks() -> dict[str, int]:
    """utime + stime (clock ticks) of every process, summed by its name (``comm``)."""
    total: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat.rsplit(")", 1)[1].split()
        total[name] = total.get(name, 0) + int(fields[11]) + int(fields[12])
    return total


def cpu_ticks() -> list[list[int]]:
    """Per CPU: busy (user, nice, system, irq, softirq), idle + iowait, steal ticks."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            v = [int(x) for x in line.split()[1:]]
            out.append([v[0] + v[1] + v[2] + v[5] + v[6], v[3] + v[4], v[7]])
    return out


def cpu_pressure_us() -> int:
    """Total µs some runnable task waited for a CPU (PSI), 0 when not available."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return 0
    return int(line.rsplit("total=", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pid", type=int, action="append", default=[])
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--all-every", type=int, default=10)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    names: dict[str, dict[int, str]] = {}
    samples: list[dict[str, Any]] = []
    n = 0
    while not _stop:
        now = time.monotonic()
        row: dict[str, Any] = {"t": now, "tasks": {}}
        for pid in args.pid:
            if n % 50 == 0 or str(pid) not in names:
                # Every thread ever seen (threads come and go; the core's end first).
                names.setdefault(str(pid), {}).update(threads_of(pid))
            for tid in names[str(pid)]:
                stat = schedstat(pid, tid)
                if stat is not None:
                    row["tasks"][tid] = stat
        if n % args.all_every == 0:
            row["ticks"] = process_ticks()
            row["cpu"] = cpu_ticks()
            row["psi_cpu_us"] = cpu_pressure_us()
            row["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
        samples.append(row)
        n += 1
        time.sleep(max(0.0, args.interval - (time.monotonic() - now)))
    args.out.write_text(
        json.dumps(
            {
                "clk_tck": os.sysconf("SC_CLK_TCK"),
                "names": names,
                "samples": samples,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
