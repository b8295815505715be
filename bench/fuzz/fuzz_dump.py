"""Fuzz the live memory-dump reader (the ``dump`` adapter over pyirsdk's test_file mode).

Each input is written to a file and replayed; only AdapterUnavailableError (cannot
open) and the adapter's own ValueError subclasses may escape.

    .venv/bin/python bench/fuzz/fuzz_dump.py -max_total_time=120
"""

from __future__ import annotations

import os
import tempfile

import atheris
from _fuzz import REAL_DATA, run

with atheris.instrument_imports():
    from driver_pc.adapters.base import AdapterUnavailableError
    from driver_pc.adapters.iracing_replay import LiveDumpAdapter

PATH = os.path.join(tempfile.mkdtemp(prefix="pitbox-fuzz-dump-"), "input.bin")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as out:
        out.write(data)
    try:
        adapter = LiveDumpAdapter(PATH, speed=0)
    except AdapterUnavailableError:
        return
    try:
        for _n, _frames in zip(range(8), adapter.ticks(), strict=False):
            pass
        adapter.session_info_text()
    except AdapterUnavailableError:
        pass
    finally:
        adapter.close()


def seeds() -> list[bytes]:
    return [
        f.read_bytes() for f in sorted((REAL_DATA / "iracing" / "live").glob("*.bin"))
    ]


if __name__ == "__main__":
    run("dump", one_input, seeds())
