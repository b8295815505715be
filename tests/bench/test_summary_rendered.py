"""bench/RESULTS.md's summary is what the runs in bench/out give (it cannot drift)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_summary_is_rendered_from_the_runs() -> None:
    done = subprocess.run(
        [sys.executable, "bench/render_summary.py", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (
        f"{done.stderr}run `.venv/bin/python bench/render_summary.py` and commit"
    )
