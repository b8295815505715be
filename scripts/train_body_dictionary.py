"""Trains the zstd dictionary of telemetry bodies on our own simulator's output.

Writes ``driver_pc/protocol/body_dictionary.py``. Run once: the dictionary is frozen
when shipped (stored chunks compressed with it need it to decode), so a new one gets
a new number and the old one stays. Only our race simulator's output goes in (never
the recorded data of ../shared/data).

    .venv/bin/python scripts/train_body_dictionary.py
"""

from __future__ import annotations

import base64
import hashlib
import sys
import textwrap
from pathlib import Path

import zstandard

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import (
    DEFAULT_KEYFRAME_EVERY,
    DEFAULT_LEVEL,
    ChainState,
    encode_chained,
)
from driver_pc.protocol.messages import TelemetryBatch

OUT = (
    Path(__file__).resolve().parents[1]
    / "driver_pc"
    / "protocol"
    / "body_dictionary.py"
)
SIZE = 16 * 1024
# (seed, opponents): a full field, a car alone, a small field; seeds no test or
# bench uses, so no figure is measured on what the dictionary was trained on.
RUNS = ((7001, 63), (7002, 0), (7003, 20))


def bodies() -> list[bytes]:
    """Version-3 inner bodies (no chain head) of the simulator runs, as a shim sends."""
    out: list[bytes] = []
    for seed, opponents in RUNS:
        adapter = RaceSimulatorAdapter(laps=1, speed=0, seed=seed, opponents=opponents)
        state: ChainState | None = None
        count = 0
        for message in ShimPipeline(adapter).messages():
            if not isinstance(message, TelemetryBatch):
                continue
            keyframe = count % DEFAULT_KEYFRAME_EVERY == 0
            body, state = encode_chained(
                message, count, None if keyframe else state, count
            )
            out.append(body[21:])
            count += 1
    return out


def main() -> None:
    samples = bodies()
    trained = zstandard.train_dictionary(SIZE, samples, level=DEFAULT_LEVEL)
    data = trained.as_bytes()
    text = "\n".join(
        f'    "{line}"' for line in textwrap.wrap(base64.b64encode(data).decode(), 76)
    )
    OUT.write_text(
        '"""The zstd dictionary telemetry bodies are compressed with '
        '(trained on our simulator; frozen)."""\n\n'
        "from __future__ import annotations\n\n"
        "import base64\n"
        "import functools\n\n"
        "import zstandard\n\n"
        "# Made by scripts/train_body_dictionary.py from "
        f"{len(samples)} version-3 bodies of our race\n"
        f"# simulator, (seed, opponents) = {RUNS}.\n"
        "# Never change it: chunks stored with it need it to decode. A better one\n"
        "# is added beside it under a new number.\n"
        f'SHA256 = "{hashlib.sha256(data).hexdigest()}"\n'
        f"_DATA = (\n{text}\n)\n\n\n"
        "@functools.cache\n"
        "def dictionary() -> zstandard.ZstdCompressionDict:\n"
        '    """Dictionary 1, as zstd loads it."""\n'
        "    return zstandard.ZstdCompressionDict(base64.b64decode(_DATA))\n"
    )
    sys.stdout.write(f"wrote {OUT}: {len(data)} bytes from {len(samples)} bodies\n")


if __name__ == "__main__":
    main()
