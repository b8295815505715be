"""Fuzz the .ibt reader: damaged headers, variable tables, row counts and session info.

Each input is written to a file (the reader memory-maps files) and read to the end;
only IbtError may escape.

    .venv/bin/python bench/fuzz/fuzz_ibt.py -max_total_time=120 -max_len=200000
"""

from __future__ import annotations

import os
import tempfile

import atheris
from _fuzz import REAL_DATA, run

with atheris.instrument_imports():
    from driver_pc.adapters.ibt_file import IbtError, IbtReader

PATH = os.path.join(tempfile.mkdtemp(prefix="pitbox-fuzz-ibt-"), "input.ibt")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as out:
        out.write(data)
    try:
        with IbtReader(PATH) as reader:
            for _rows in reader.rows(chunk=64):
                pass
            reader.session_info_text()
    except IbtError:
        pass


def seeds() -> list[bytes]:
    files = sorted((REAL_DATA / "iracing" / "ibt").glob("*.ibt"))
    # Heads of the real files: header, variable table, session info, first rows.
    return [f.read_bytes()[:150_000] for f in files]


if __name__ == "__main__":
    run("ibt", one_input, seeds())
