"""Render the summary table of ``bench/RESULTS.md`` from the runs' JSON in ``bench/out``.

Each benchmark writes its headline figures through ``_common.write_result``; this
script takes the newest file of each benchmark (or the files named on the command
line), and writes one row per headline figure between the ``summary:start`` and
``summary:end`` markers of ``bench/RESULTS.md``: the bar, the figure, the target, the
verdict computed from them, and the file it came from. So the table cannot drift
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
    """The newest run of each benchmark among ``files`` (all of bench/out if none)."""
    candidates = files or sorted(OUT.glob("*.json"))
    newest: dict[str, tuple[str, Path, dict[str, Any]]] = {}
    for path in candidates:
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: not a benchmark result ({exc})") from exc
        if not isinstance(run, dict) or "headline" not in run:
            continue  # written before write_result existed
        bench, stamp = str(run.get("bench", path.stem)), str(run.get("utc", ""))
        if bench not in newest or stamp > newest[bench][0]:
            newest[bench] = (stamp, path, run)
    return [{**run, "_path": path} for _stamp, path, run in sorted(newest.values())]


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
    lines = [
        "| bar (DESIGN §6) | figure | measured | target | verdict | run |",
        "|---|---|---:|---:|---|---|",
    ]
    for run in runs:
        path: Path = run["_path"]
        where = f"`{path.relative_to(REPO)}`"
        for name, fig in run["headline"].items():
            unit = fig.get("unit", "")
            better = fig.get("better", "higher")
            target = fig.get("target")
            sign = "≤" if better == "lower" else "≥"
            lines.append(
                "| {bar} | {name} | {value} {unit} | {target} | {verdict} | {where} |".format(
                    bar=fig.get("bar", run["bench"]),
                    name=name,
                    value=_number(fig.get("value")),
                    unit=unit,
                    target=f"{sign} {_number(target)} {unit}"
                    if target is not None
                    else "–",
                    verdict=verdict(fig.get("value"), target, better),
                    where=where,
                )
            )
    return "\n".join(lines)


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
