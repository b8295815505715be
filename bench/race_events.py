"""A simulated 6-hour race replayed flat out through a real Mosquitto, a shim and the core.

Runs tests/system/test_race_events.py::test_full_six_hour_race (which asserts that strategy
recommendations, fatigue updates, drafting opportunities, damage alerts and
incidents reach the bus) and prints the event counts it recorded.

    .venv/bin/python bench/race_events.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, machine


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "race.json"
        env = {
            **os.environ,
            "PITBOX_FULL_RACE": "1",
            "PITBOX_FULL_RACE_REPORT": str(report),
        }
        result = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "pytest"),
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/system/test_race_events.py::test_full_six_hour_race",
            ],
            cwd=REPO,
            env=env,
            check=False,
        )
        print(machine())
        if report.exists():
            print(json.dumps(json.loads(report.read_text()), indent=2))
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
