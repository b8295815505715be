"""Shared helpers of the benchmarks: data location, machine description, statistics."""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("PITBOX_REAL_DATA", REPO.parent / "shared" / "data"))
MARTINSVILLE = (
    REAL_DATA / "iracing" / "ibt" / "skmodified_martinsville_2015-05-30_20-32-44.ibt"
)


def recording(tmp: Path, laps: int = 5) -> tuple[Path, str]:
    """The Martinsville recording, or a simulator-written .ibt when it is absent."""
    if MARTINSVILLE.exists():
        return MARTINSVILLE, f"Martinsville recording ({MARTINSVILLE.name})"
    from driver_pc.adapters.simulator import write_simulated_ibt

    path = write_simulated_ibt(tmp / "fallback_sim.ibt", laps=laps, seed=3)
    print(
        f"NOTE: {MARTINSVILLE} is absent (see ../shared/data/README.md); "
        f"using a simulator-written .ibt ({laps} laps) instead."
    )
    return path, f"simulator-written .ibt ({laps} laps; real recording absent)"


def code_fingerprint() -> str:
    """Short hash of every .py file of the packages measured (the tree changes often)."""
    digest = hashlib.sha1()
    for package in ("driver_pc", "pitbox_appliance"):
        for path in sorted((REPO / package).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> str:
    """One line: date, CPU count, CPU model, load, Python, code fingerprint."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} | nproc={os.cpu_count()} | "
        f"{model} | load1={load:.2f} | Python {platform.python_version()} | "
        f"code {code_fingerprint()}"
    )


def pct(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def med(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """``median (min-max over n)`` for a few repeats."""
    return (
        f"{med(values):.3g} (min {min(values):.3g}, max {max(values):.3g}, "
        f"n={len(values)})"
    )


def pin_to_one_cpu() -> int:
    """Pin this process to the last CPU it may use; returns that CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


OUT = REPO / "bench" / "out"


def write_result(
    bench: str, headline: dict[str, Any], raw: dict[str, Any] | None = None
) -> Path:
    """Write one run's figures to ``bench/out/<bench>-<UTC>.json``; the path written.

    ``headline`` holds the figures the summary in ``bench/RESULTS.md`` is rendered from
    (``bench/render_summary.py``): each ``{"value": x, "unit": "...", "target": y,
    "better": "lower"|"higher", "bar": "what it is measured against"}`` by name.
    ``raw`` is everything else the run measured.
    """
    import json
    import sys

    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = OUT / f"{bench}-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "bench": bench,
                "utc": stamp,
                "machine": machine(),
                "command": " ".join(sys.argv),
                "headline": headline,
                "raw": raw or {},
            },
            indent=1,
            default=float,
        )
    )
    print(f"raw figures: {path.relative_to(REPO)}")
    return path
