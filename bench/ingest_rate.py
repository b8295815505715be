"""Appliance ingest rate on one core: pre-encoded wire messages → Ingestor → SQLite.

The Martinsville recording is encoded once per car (distinct source ids and session
keys, ``--reps`` sessions per car), the cars' messages are interleaved as they would
arrive from the broker, and the timed loop is exactly what the core's ingest thread
does per message: ``Ingestor.handle`` (verify, decrypt, decompress, decode,
de-duplicate, segment laps/stints, compress and stage the chunk) with a commit every
``--commit-every`` messages, into a SQLite file (WAL) in a temp dir. The process is
pinned to one CPU. Encoding is not timed. "Decode alone" is the core's own decode of
the same messages (``WireDecoder``: verify, decompress, decode the channels the core
reads, check), timed by itself; its share is of the ingest's CPU time.

With ``--field 63`` each car is the race simulator with a 63-car field instead (every
batch carries the ``CarIdx*`` arrays: the full load of DESIGN §6 without MQTT).

    .venv/bin/python bench/ingest_rate.py [--cars 4] [--reps 2] [--runs 3] [--profile]
        [--field 63 --laps 8]

Figures go to ``bench/out/ingest_rate-<UTC>.json`` (``_common.write_result``): the
multiple of real time per CPU second for the cars together (target 50x with the
field, 100x on the 143-channel disk set) and decode's share of it.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import machine, med, pin_to_one_cpu, recording, spread, write_result

from driver_pc.adapters.ibt_file import IbtReader
from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from pitbox_appliance.core.decode import WireDecoder
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter

TARGET_X = 50.0  # DESIGN §6: >= 50x real time for 4 cars (+ a 63-car field)
TARGET_DISK_X = 100.0  # issue 12: the 143-channel disk set back above 100x


def encode_all(
    path: Path, cars: int, reps: int, key: bytes
) -> tuple[list[tuple[str, bytes]], int, int]:
    """Interleaved (source, wire) messages of every car; total frames; tick rate."""
    codec = Codec(key)
    per_car: list[list[tuple[str, bytes]]] = []
    frames = 0
    rate = 60
    for car in range(1, cars + 1):
        source = f"car{car}-pc1"
        seq = 0
        msgs: list[tuple[str, bytes]] = []
        for rep in range(reps):
            adapter = IbtReplayAdapter(
                str(path), speed=0, session_key=f"bench-car{car}-rep{rep}"
            )
            rate = adapter.tick_rate
            pipeline = ShimPipeline(adapter)
            for message in pipeline.messages():
                msgs.append((source, codec.encode(source, seq, message)))
                seq += 1
            frames += pipeline.stats.ticks
            adapter.close()
        per_car.append(msgs)
    interleaved: list[tuple[str, bytes]] = []
    longest = max(len(m) for m in per_car)
    for i in range(longest):
        for msgs in per_car:
            if i < len(msgs):
                interleaved.append(msgs[i])
    return interleaved, frames, rate


def encode_sim(
    cars: int, opponents: int, laps: int, key: bytes
) -> tuple[list[tuple[str, bytes]], int, int]:
    """As ``encode_all``, for the race simulator with ``opponents`` cars around each."""
    codec = Codec(key)
    per_car: list[list[tuple[str, bytes]]] = []
    frames = 0
    for car in range(1, cars + 1):
        source = f"car{car}-pc1"
        adapter = RaceSimulatorAdapter(
            laps=laps, speed=0, seed=100 + car, opponents=opponents
        )
        pipeline = ShimPipeline(adapter)
        per_car.append(
            [
                (source, codec.encode(source, seq, message))
                for seq, message in enumerate(pipeline.messages())
            ]
        )
        frames += pipeline.stats.ticks
    interleaved = [
        msgs[i]
        for i in range(max(len(m) for m in per_car))
        for msgs in per_car
        if i < len(msgs)
    ]
    return interleaved, frames, 60


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    frames: int
    laps: int
    rejected: dict[str, int]


def decode_only(messages: list[tuple[str, bytes]], key: bytes) -> tuple[float, float]:
    """Wall and CPU seconds of the core's decode of every message, nothing else."""
    decoder = WireDecoder(Codec(key), {})
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for source, wire in messages:
        opened = decoder.open(wire, source)
        if opened is not None:
            decoded = decoder.parse(opened)
            decoder.accepted(opened.source, opened.seq, decoded.message)
    return time.perf_counter() - wall0, time.process_time() - cpu0


def ingest_once(
    messages: list[tuple[str, bytes]],
    key: bytes,
    commit_every: int,
    profile: cProfile.Profile | None = None,
) -> Run:
    """Wall and CPU seconds, frames and laps stored, rejections: one run, fresh DB."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        writer = SessionWriter(engine)
        ingestor = Ingestor(Codec(key), writer)
        handle, flush = ingestor.handle, ingestor.flush
        if profile is not None:
            profile.enable()
        started, cpu0 = time.perf_counter(), time.process_time()
        for i, (source, wire) in enumerate(messages):
            handle(wire, source)
            if i % commit_every == commit_every - 1:
                flush()
        flush()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        if profile is not None:
            profile.disable()
        stats = ingestor.stats
        writer.close()
        engine.dispose()
    return Run(elapsed, cpu, stats.frames, stats.laps, dict(stats.rejected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, default=4)
    parser.add_argument(
        "--reps", type=int, default=2, help="sessions of the file per car"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed repeats")
    parser.add_argument("--commit-every", type=int, default=500)
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile top-15"
    )
    parser.add_argument(
        "--field", type=int, default=0, help="simulator cars with this many opponents"
    )
    parser.add_argument("--laps", type=int, default=8, help="--field: race length")
    args = parser.parse_args()
    cpu = pin_to_one_cpu()
    print(f"ingest_rate | {machine()} | pinned to CPU {cpu}")
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as tmp:
        if args.field:
            messages, frames, rate = encode_sim(args.cars, args.field, args.laps, key)
            label = f"race simulator, {args.field}-car field, {args.laps} laps"
            channels = len(RaceSimulatorAdapter(speed=0, opponents=args.field).channels)
        else:
            path, label = recording(Path(tmp))
            messages, frames, rate = encode_all(path, args.cars, args.reps, key)
            with IbtReader(path) as reader:
                channels = len(reader.channels)
    wire_bytes = sum(len(w) for _, w in messages)
    print(
        f"input: {label}; {args.cars} cars x {args.reps} sessions = {frames} frames "
        f"({frames / rate:.0f} s of car-time), {len(messages)} messages, "
        f"{wire_bytes / 1e6:.1f} MB; commit every {args.commit_every} messages"
    )
    wall_rates: list[float] = []
    cpu_rates: list[float] = []
    decode_rates: list[float] = []
    decode_shares: list[float] = []
    runs: list[dict[str, float]] = []
    for i in range(args.runs):
        run = ingest_once(messages, key, args.commit_every)
        if run.frames != frames or run.rejected:
            raise SystemExit(
                f"run {i + 1}: stored {run.frames}/{frames} frames, "
                f"rejected {run.rejected}"
            )
        _dec_wall, dec_cpu = decode_only(messages, key)
        wall_rates.append(frames / run.wall_s)
        cpu_rates.append(frames / run.cpu_s)
        decode_rates.append(frames / dec_cpu)
        decode_shares.append(dec_cpu / run.cpu_s)
        runs.append({"wall_s": run.wall_s, "cpu_s": run.cpu_s, "decode_cpu_s": dec_cpu})
        print(
            f"  run {i + 1}: {run.wall_s:.2f} s wall, {run.cpu_s:.2f} s CPU "
            f"({run.cpu_s / run.wall_s:.0%} of the core was ours): "
            f"{frames / run.wall_s:,.0f} frames/s wall, "
            f"{frames / run.cpu_s:,.0f} frames/s CPU; {run.laps} laps stored; "
            f"decode alone {dec_cpu:.2f} s CPU ({dec_cpu / run.cpu_s:.0%} of ingest)"
        )
    fps_wall, fps = med(wall_rates), med(cpu_rates)
    print(f"\nframes per wall second (median of {args.runs}): {spread(wall_rates)}")
    print(f"frames per CPU second  (median of {args.runs}): {spread(cpu_rates)}")
    print(f"decode alone, frames per CPU second: {spread(decode_rates)}")
    print(
        "(on this shared machine other processes also run on the pinned CPU; "
        "frames per CPU second is what a core of our own would do)"
    )
    for name, value in (("CPU", fps), ("wall", fps_wall)):
        print(
            f"multiple of real time per {name} second: one car "
            f"(frames/s / {rate}) {value / rate:,.0f}x; {args.cars} cars together "
            f"(frames/s / {rate * args.cars}) {value / (rate * args.cars):,.0f}x"
        )
    team_x = fps / (rate * args.cars)
    target = TARGET_X if args.field else TARGET_DISK_X
    verdict = "met" if team_x >= target else "NOT met"
    print(
        f"target >= {target:.0f}x real time for {args.cars} cars on one core: "
        f"{verdict} ({team_x:,.0f}x per CPU second) for this {channels}-channel set"
        + (
            f" with a {args.field}-car field (no MQTT: bench/load.py has it)"
            if args.field
            else "; the 63-car field (CarIdx* arrays) is not part of this load"
        )
    )
    share = med(decode_shares)
    print(f"decode's share of ingest CPU (median): {share:.0%}")
    what = (
        f"{args.cars} cars + {args.field}-car field, simulator, no MQTT"
        if args.field
        else f"{args.cars} cars, {channels}-channel disk set ({label})"
    )
    write_result(
        "ingest_rate",
        {
            f"ingest, {what}": {
                "value": round(team_x, 1),
                "unit": "x real time per CPU second",
                "target": target,
                "better": "higher",
                "bar": "appliance ingest on one core (in process: decode, "
                "segmentation, detectors, strategy, SQLite)",
            },
            f"decode share of ingest, {what}": {
                "value": round(100 * share, 1),
                "unit": "% of ingest CPU",
                "target": None,
                "better": "lower",
                "bar": "the core's decode (verify, decompress, decode, check) alone",
            },
        },
        {
            "input": label,
            "cars": args.cars,
            "field": args.field,
            "laps": args.laps if args.field else None,
            "reps": None if args.field else args.reps,
            "channels": channels,
            "frames": frames,
            "tick_rate": rate,
            "messages": len(messages),
            "wire_bytes": wire_bytes,
            "commit_every": args.commit_every,
            "runs": runs,
            "frames_per_cpu_s": cpu_rates,
            "frames_per_wall_s": wall_rates,
            "decode_frames_per_cpu_s": decode_rates,
            "x_real_time_per_cpu_s": team_x,
            "x_real_time_per_wall_s": fps_wall / (rate * args.cars),
        },
    )
    if args.profile:
        # CPU time, not wall: on a shared machine the wall clock also counts the
        # time other processes had the CPU.
        prof = cProfile.Profile(time.process_time)
        run = ingest_once(messages, key, args.commit_every, prof)
        print(
            f"\ncProfile of one run ({run.cpu_s:.2f} s CPU under the profiler; "
            "it inflates functions that make many small calls), "
            "top 15 by own time:"
        )
        stats = pstats.Stats(prof)
        stats.strip_dirs().sort_stats("tottime").print_stats(15)
        print("top 15 by cumulative time:")
        stats.sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
