"""Compacted storage per hour per car and per stored value, against the raw .ibt of the same data.

For each input (the Martinsville recording, and a simulated session of about one hour)
it imports the .ibt through `pitbox import`'s path into a fresh SQLite database,
compacts the session (`pitbox_appliance.compaction`) and reports:

  - the raw .ibt size, the appliance's stored chunk bytes and the compacted set size,
    each as bytes per hour per car (one .ibt = one car);
  - bytes per stored value: the telemetry Parquet file over (rows x channel columns),
    and the whole compacted set over the same count (target <= 1 byte, DESIGN §6);
  - the largest error of any float channel in quanta (must be <= 0.5) and whether
    every integer/flag channel is bit-exact.

    .venv/bin/python bench/storage.py [--sim-laps 137] [--skip-sim]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard
from _common import MARTINSVILLE, machine

from driver_pc.protocol.codec import decode_batch
from driver_pc.protocol.messages import ChannelDictionary
from pitbox_appliance.compaction import compact_session

HOUR = 3600.0
TARGET_BYTES_PER_VALUE = 1.0


@dataclass
class Result:
    label: str
    ibt_bytes: int
    hours: float
    frames: int
    channels: int
    values: int
    chunk_bytes: int
    telemetry_bytes: int
    set_bytes: int
    compact_seconds: float
    worst_quanta: float
    lossless_ok: bool

    def per_hour(self, size: int) -> float:
        return size / self.hours


def measure(label: str, ibt: Path, work: Path) -> Result:
    from pitbox_appliance.cli.importer import import_file, local_codec
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import make_engine, open_database
    from pitbox_appliance.storage.writer import SessionWriter

    work.mkdir(parents=True, exist_ok=True)
    db_path = work / f"{label}.sqlite3"
    url = f"sqlite:///{db_path}"
    engine = open_database(url)
    writer = SessionWriter(engine)
    codec = local_codec()
    import_file(ibt, Ingestor(codec, writer), codec)
    writer.close()
    engine.dispose()

    engine = make_engine(url, readonly=True)
    started = time.perf_counter()
    manifest = compact_session(engine, 1, work / "outbox")
    elapsed = time.perf_counter() - started
    engine.dispose()
    root = work / "outbox" / manifest.path
    set_bytes = sum(f.bytes for f in manifest.files)
    set_bytes += (root / "manifest.json").stat().st_size
    telemetry = manifest.file("telemetry")
    tele = manifest.telemetry
    tick_rate = tele["tick_rates"][0]

    frames, channels, chunk_bytes = _stored(db_path)
    table = pq.read_table(root / telemetry.path)
    worst, lossless = _precision(table, frames, channels)
    return Result(
        label=label,
        ibt_bytes=ibt.stat().st_size,
        hours=tele["rows"] / tick_rate / HOUR,
        frames=tele["rows"],
        channels=len(tele["columns"]),
        values=tele["values"],
        chunk_bytes=chunk_bytes,
        telemetry_bytes=telemetry.bytes,
        set_bytes=set_bytes,
        compact_seconds=elapsed,
        worst_quanta=worst,
        lossless_ok=lossless,
    )


def _stored(db_path: Path) -> tuple[np.ndarray[Any, Any], Any, int]:
    db = sqlite3.connect(db_path)
    (definition,) = db.execute("SELECT definition FROM channel_sets").fetchone()
    dictionary = ChannelDictionary.from_json(json.loads(definition))
    dec = zstandard.ZstdDecompressor()
    blobs = [
        data
        for (data,) in db.execute(
            "SELECT data FROM telemetry_chunks ORDER BY start_time, source, seq"
        )
    ]
    db.close()
    frames = np.concatenate(
        [
            decode_batch(dec.decompress(b), {dictionary.dict_id: dictionary}).frames
            for b in blobs
        ]
    )
    return frames, dictionary.channels, sum(len(b) for b in blobs)


def _precision(
    table: pa.Table, frames: np.ndarray[Any, Any], channels: Any
) -> tuple[float, bool]:
    worst, lossless = 0.0, True
    for spec in channels:
        column = table[spec.name]
        expected = frames[spec.name]
        if spec.quantum is None:
            got = column.to_numpy(zero_copy_only=False)
            lossless &= bool(
                np.array_equal(got, expected != 0 if got.dtype == bool else expected)
            )
            continue
        got = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        err = np.abs(got - expected.astype(np.float64)) / spec.quantum
        worst = max(worst, float(np.nanmax(err)))
    return worst, lossless


def report(results: list[Result]) -> None:
    print()
    print(
        "| input | data | .ibt MB/h | stored chunks MB/h | compacted MB/h | "
        "compacted / .ibt | telemetry B/value | whole set B/value | "
        "float error (quanta) | integers exact | compaction s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mb = 1e6
        print(
            f"| {r.label} | {r.hours * 60:.1f} min, {r.frames} rows x {r.channels} ch "
            f"| {r.per_hour(r.ibt_bytes) / mb:.1f} "
            f"| {r.per_hour(r.chunk_bytes) / mb:.1f} "
            f"| {r.per_hour(r.set_bytes) / mb:.2f} "
            f"| {r.set_bytes / r.ibt_bytes:.3f} "
            f"| {r.telemetry_bytes / r.values:.3f} "
            f"| {r.set_bytes / r.values:.3f} "
            f"| {r.worst_quanta:.3f} | {'yes' if r.lossless_ok else 'NO'} "
            f"| {r.compact_seconds:.2f} |"
        )
    print()
    for r in results:
        ok = r.set_bytes / r.values <= TARGET_BYTES_PER_VALUE and r.worst_quanta <= 0.5
        print(
            f"{r.label}: {r.set_bytes} bytes compacted for {r.ibt_bytes} bytes of .ibt; "
            f"24 h of this car ≈ {r.per_hour(r.set_bytes) * 24 / 1e6:.0f} MB; "
            f"{'meets' if ok and r.lossless_ok else 'MISSES'} the ≤ 1 byte/value target"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sim-laps", type=int, default=137, help="simulated laps (~26 s each)"
    )
    parser.add_argument("--skip-sim", action="store_true")
    args = parser.parse_args()
    print(f"# bench/storage.py | {machine()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if MARTINSVILLE.exists():
            results.append(measure("martinsville", MARTINSVILLE, work / "m"))
        else:
            print(
                f"NOTE: {MARTINSVILLE} is absent; only the simulated session is measured"
            )
        if not args.skip_sim:
            from driver_pc.adapters.simulator import write_simulated_ibt

            (work / "s").mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            ibt = write_simulated_ibt(
                work / "s" / "sim.ibt", laps=args.sim_laps, seed=11
            )
            print(
                f"simulated {args.sim_laps} laps in {time.perf_counter() - started:.1f} s"
            )
            results.append(measure("simulated", ibt, work / "s"))
    report(results)


if __name__ == "__main__":
    main()
