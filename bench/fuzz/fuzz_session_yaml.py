"""Fuzz the session-info YAML parser (pyirsdk's loader with PitBox's quoting fixes).

Seeds are the real session-info files of ../shared/data; only SessionInfoError may
escape, and the process must not crash (libyaml is C).

    .venv/bin/python bench/fuzz/fuzz_session_yaml.py -max_total_time=120
"""

from __future__ import annotations

import atheris
from _fuzz import REAL_DATA, run

with atheris.instrument_imports():
    from driver_pc.protocol.session_info import (
        SessionInfoError,
        current_driver,
        parse_session_info,
        track_info,
    )


def one_input(data: bytes) -> None:
    text = data.decode("latin-1")
    try:
        info = parse_session_info(text)
    except SessionInfoError:
        return
    try:
        track_info(info)
        current_driver(info)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        pass  # the core turns these into a rejected message (bad_content)


def seeds() -> list[bytes]:
    files = sorted((REAL_DATA / "iracing" / "session_yaml").rglob("*.yaml"))
    small = [f for f in files if f.stat().st_size < 120_000][:20]
    return [f.read_bytes() for f in small] + [b"WeekendInfo:\n TrackName: x\n"]


if __name__ == "__main__":
    run("session_yaml", one_input, seeds())
