"""One logging set-up for every program: one format, the level from the caller or env."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from driver_pc.protocol.logs import parse_level
from tests.conftest import REPO_ROOT

ROOT = REPO_ROOT
SCRIPT = """
import logging, sys
from driver_pc.protocol.logs import setup_logging
setup_logging(logging.WARNING)
logging.getLogger("pitbox.x").info("quiet")
logging.getLogger("pitbox.x").warning("loud %s", 1)
"""


def run(env_level: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PITBOX_LOG_LEVEL"}
    if env_level is not None:
        env["PITBOX_LOG_LEVEL"] = env_level
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return result.stderr


def test_one_format_and_the_programs_default_level() -> None:
    lines = run(None).splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ WARNING pitbox\.x: loud 1", lines[0])


def test_env_overrides_the_level() -> None:
    assert "INFO pitbox.x: quiet" in run("info")


def test_a_bad_env_level_is_named_and_the_default_kept() -> None:
    err = run("chatty")
    assert "'chatty' is not a level" in err
    assert "quiet" not in err


@pytest.mark.parametrize(
    ("text", "level"),
    [("debug", logging.DEBUG), (" WARNING ", logging.WARNING), ("15", 15), ("x", None)],
)
def test_parse_level(text: str, level: int | None) -> None:
    assert parse_level(text) == level


def test_no_program_configures_logging_itself() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("driver_pc", "pitbox_appliance", "cloud_sync", "training")
        for path in (ROOT / package).rglob("*.py")
        if "basicConfig(" in path.read_text()
        and path != ROOT / "driver_pc/protocol/logs.py"
    ]
    assert offenders == []
