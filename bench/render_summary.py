"""Render the summary table of ``bench/RESULTS.md`` from the runs' JSON in ``bench/out``.

Each benchmark writes its headline figures through ``_common.write_result``; this
script takes the newest file of each benchmark (or the files named on the command
line), and writes one row per headline figure between the ``summary:start`` and
``summary:end`` markers of ``bench/RESULTS.md``: the bar, the figure, the target, the
verdict computed from them, and the file it came from. A figure marked
``"easier_set": true`` (measured on a set easier than the bar, e.g. 143 channels for
"the full live set") goes into a second table, without a verdict. So the table cannot drift
from the runs: edit a run, not the table.

    .venv/bin/python bench/render_summary.py [--check] [FILE.json ...]

``--check`` exits 1 when the table in RESULTS.md is not what the files give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from _common import OUT, REPO

RESULTS = REPO / "bench" / "RESULTS.md"
START = "<!-- summary:start (bench/render_summary.py writes this table) -->"
END = "<!-- summary:end -->"


def newest_runs(files: list[Path]) -> list[dict[str, Any]]:
    """The runs that stand among ``files`` (default: all of bench/out).

    A run stands unless a newer run of the same benchmark measured any figure it did
    (so the field and the disk-set runs of ``ingest_rate``, which share none, both
    stand, and a wire run that renamed a figure still replaces the one before).
    """
    candidates = files or sorted(OUT.glob("*.json"))
    runs: list[tuple[str, Path, dict[str, Any]]] = []
    for path in candidates:
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: not a benchmark result ({exc})") from exc
        if not isinstance(run, dict):
            continue
        if "headline" not in run:
            run = live_path_headline(run, path)  # its own format, older than headlines
            if run is None:
                continue
        runs.append((str(run.get("utc", "")), path, run))
    standing: list[tuple[str, Path, dict[str, Any]]] = []
    for stamp, path, run in sorted(runs, key=lambda r: r[0], reverse=True):
        figures = set(run["headline"])
        if any(
            other["bench"] == run["bench"] and figures & set(other["headline"])
            for _s, _p, other in standing
        ):
            continue
        standing.append((stamp, path, run))
    return [
        {**run, "_path": path}
        for _stamp, path, run in sorted(standing, key=lambda r: (r[2]["bench"], r[0]))
    ]


def live_path_headline(run: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The headline of a ``bench/live_path.py`` run of at least 60 minutes, or None.

    Only the hour-long runs stand against the bar (issue 11 §3 measures over an hour);
    shorter ones stay in the detailed section.
    """
    if not path.name.startswith("live_path-") or run.get("minutes", 0) < 60:
        return None
    ticks, cpu = run["ticks"], run["cpu"]["process_cpu_per_tick_us"]
    shim = (
        "the real ShimService + Mosquitto + core"
        if "Service" in str(run.get("shim"))
        else str(run.get("shim"))
    )
    bar = f"Shim, live path, {run['minutes']:.0f} min at 60 Hz ({shim})"
    return {
        "bench": "live_path",
        "utc": path.stem.removeprefix("live_path-"),
        "headline": {
            "ticks missed": {
                "value": ticks["missed"],
                "unit": f"of {ticks['ticks_written']:,}",
                "target": 0,
                "better": "lower",
                "bar": bar,
            },
            "shim CPU per tick p99 (all threads)": {
                "value": round(cpu["p99"] / 1000, 3),
                "unit": "ms",
                "target": 1.0,
                "better": "lower",
                "bar": bar,
            },
        },
    }


def verdict(value: float | None, target: float | None, better: str) -> str:
    if value is None:
        return "not measured"
    if target is None:
        return "(no bar)"
    met = value <= target if better == "lower" else value >= target
    return "**met**" if met else "**NOT met**"


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(runs: list[dict[str, Any]]) -> str:
    """The verdicts against DESIGN's bars, then the figures on easier sets apart."""
    real = [
        "| bar (DESIGN §6) | figure | measured | target | verdict | run |",
        "|---|---|---:|---:|---|---|",
    ]
    easier = [
        "",
        "Figures on easier sets than the bar (no verdict: a pass there is not a pass):",
        "",
        "| set | figure | measured | run |",
        "|---|---|---:|---|",
    ]
    for run in runs:
        path: Path = run["_path"]
        where = f"`{path.relative_to(REPO)}`"
        for name, fig in run["headline"].items():
            unit = fig.get("unit", "")
            value = f"{_number(fig.get('value'))} {unit}"
            bar = fig.get("bar", run["bench"])
            if fig.get("easier_set"):
                easier.append(f"| {bar} | {name} | {value} | {where} |")
                continue
            better = fig.get("better", "higher")
            target = fig.get("target")
            sign = "≤" if better == "lower" else "≥"
            shown = f"{sign} {_number(target)} {unit}" if target is not None else "–"
            real.append(
                f"| {bar} | {name} | {value} | {shown} | "
                f"{verdict(fig.get('value'), target, better)} | {where} |"
            )
    return "\n".join(real + (easier if len(easier) > 5 else []))


def render(text: str, rendered: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(
            f"{RESULTS}: the summary markers are missing ({START} … {END})"
        )
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{START}\n{rendered}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    runs = newest_runs(args.files)
    text = RESULTS.read_text()
    new = render(text, table(runs))
    if args.check:
        if new != text:
            print(
                "bench/RESULTS.md's summary is not what bench/out gives",
                file=sys.stderr,
            )
            return 1
        return 0
    RESULTS.write_text(new)
    print(
        f"rendered {sum(len(r['headline']) for r in runs)} figures from {len(runs)} runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
