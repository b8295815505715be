"""Wire bytes per second per car, against raw rows, JSON per frame and zlib per batch.

Runs the real shim pipeline (adapter → ShimPipeline → Codec.encode) over the
Martinsville recording, over the race simulator (alone and with a 63-car field), and
over the full live channel set of a real iRacing memory-map dump (323 channels, 2,204
values a tick; see :class:`LiveSetAdapter` for where each channel's values come
from), counts every encoded byte
(telemetry batches with their envelope, plus the periodic channel dictionary,
session info and driver changes), and compares with:

  (a) raw rows: the packed row size × tick rate;
  (b) one JSON message per frame: ``json.dumps`` of {channel: value} per tick;
  (c) a plain compressor: ``zlib.compress`` of each 100 ms batch laid out columnar.

It then decodes every message and reports, per channel, the largest decode error
against the quantum the channel dictionary states (integers and flags must be exact).

    .venv/bin/python bench/wire_bytes.py [--sim-laps 10] [--all-channels] [--level N]

``--level`` sets the zstd level of the shim's codec (default: the codec's own).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import MARTINSVILLE, REAL_DATA, machine, recording, write_result

from driver_pc.adapters.base import Frames, SimAdapter
from driver_pc.adapters.ibt_file import IbtReader
from driver_pc.adapters.iracing_replay import IbtReplayAdapter, LiveDumpAdapter
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.channels import ChannelSpec
from driver_pc.protocol.codec import DEFAULT_LEVEL, Codec
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch

SOURCE = "car1-pc1"
LIVE_DUMP = REAL_DATA / "iracing" / "live" / "teamjorge_live_dump.bin"
SUB_TICKS = 6  # the 360 Hz channels (``*_ST``) carry 6 values a 60 Hz tick
_THIRD_ELEMENT = ("CFshock", "CRshock", "ROLLFshock", "ROLLRshock")
TARGET_KBPS = 16.0  # DESIGN §6, for the full live channel set
CODEC_LEVEL = DEFAULT_LEVEL


@dataclass
class ChannelError:
    spec: ChannelSpec
    max_err: float = 0.0
    worst_excess: float = 0.0  # max(err - allowed); > 0 means out of tolerance
    mismatches: int = 0  # lossless channels: values that differ


@dataclass
class WireResult:
    label: str
    channels: int
    row_bytes: int
    tick_rate: int
    ticks: int = 0
    bytes_by_type: Counter[str] = field(default_factory=Counter)
    count_by_type: Counter[str] = field(default_factory=Counter)
    envelope_bytes: int = 0
    json_bytes: int = 0
    json_compact_bytes: int = 0
    zlib_bytes: int = 0
    errors: dict[str, ChannelError] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.ticks / self.tick_rate

    def kbps(self, nbytes: float) -> float:
        return nbytes / self.seconds / 1000.0


class LiveSetAdapter(SimAdapter):
    """The full live channel set of a real memory-map dump, driven by real sources.

    Channels, types, counts and units (so quanta) are the dump's, as the shim's live
    adapter declares them. Each tick, a channel takes its value from, in order:

    1. the Martinsville recording, same name (the car's own channels); a channel the
       dump declares with 6 values a tick (the 360 Hz ``*_ST`` channels, and this
       build's ``Velocity*``/``*Rate``/``*Accel``/``SteeringWheelTorque``) takes
       the recording's 60 Hz channel of its name without ``_ST``, linearly
       interpolated at 6 points between the previous tick and this one;
    2. the recording's four corner shocks for this car's third-element and roll
       shocks (``CF``/``CR``: mean of the two corners, ``ROLLF``/``ROLLR``: half their
       difference), interpolated the same way;
    3. the race simulator's 63-car field, same name (every ``CarIdx*`` it has, and
       the lap/position/incident/flag channels the recording lacks);
    4. ``SessionTimeOfDay``/``ReplaySessionTime`` advance with ``SessionTime``;
       ``ReplayFrameNum`` counts ticks; ``Engine0_RPM`` follows ``RPM``;
    5. otherwise the dump's own value, constant.
    """

    name = "live-set"

    def __init__(self, dump: Path, ibt: Path, field_laps: int) -> None:
        live = LiveDumpAdapter(str(dump), speed=0, session_key="live-set-bench")
        self._channels = live.channels
        self._info = live.session_info_text()
        self._dump_row = next(iter(live.ticks()))
        live.close()
        with IbtReader(ibt) as reader:
            self._ibt = np.concatenate(list(reader.rows()))
        self._field = RaceSimulatorAdapter(
            laps=field_laps, speed=0, seed=1, opponents=63
        )
        self.sources: Counter[str] = Counter()

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self._channels

    @property
    def session_key(self) -> str:
        return "live-set-bench"

    @property
    def session_info_update(self) -> int:
        return 1

    def session_info_text(self) -> str:
        return self._info

    def ticks(self) -> Iterator[Frames]:
        ibt = self._ibt
        field_rows: list[Frames] = []
        have = 0
        for rows in self._field.ticks():
            field_rows.append(rows)
            have += len(rows)
            if have >= len(ibt):
                break
        field = np.concatenate(field_rows)[: len(ibt)]
        n = min(len(ibt), len(field))
        out = np.repeat(self._dump_row, n)
        ibt_names = set(ibt.dtype.names or ())
        field_names = set(field.dtype.names or ())
        t = ibt["SessionTime"][:n].astype(np.float64)
        for ch in self._channels:
            name = ch.name
            base = name[:-3] if name.endswith("_ST") else name
            if ch.count == SUB_TICKS and base in ibt_names:
                out[name] = _sub_ticks(ibt[base][:n])
                self.sources["recording, 360 Hz interpolated"] += 1
            elif ch.count == SUB_TICKS and base.startswith(_THIRD_ELEMENT):
                out[name] = _sub_ticks(_third_element(ibt, base)[:n])
                self.sources["recording's corner shocks, 360 Hz interpolated"] += 1
            elif name in ibt_names:
                out[name] = ibt[name][:n].reshape(out[name].shape)
                self.sources["recording"] += 1
            elif name in field_names:
                out[name] = field[name][:n]
                self.sources["simulator's 63-car field"] += 1
            elif name in ("SessionTimeOfDay", "ReplaySessionTime"):
                out[name] = self._dump_row[name][0] + (t - t[0])
                self.sources["advances with SessionTime"] += 1
            elif name == "ReplayFrameNum":
                out[name] = self._dump_row[name][0] + np.arange(n)
                self.sources["counts ticks"] += 1
            elif name == "Engine0_RPM":
                out[name] = ibt["RPM"][:n]
                self.sources["recording (RPM)"] += 1
            else:
                self.sources["dump's value, constant"] += 1
        for start in range(0, n, 600):
            yield out[start : start + 600]

    def close(self) -> None:
        self._field.close()


def _sub_ticks(column: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A 60 Hz column as 6 values a tick, linear from the previous tick to this one."""
    values = column.astype(np.float64)
    prev = np.concatenate([values[:1], values[:-1]])
    steps = np.arange(1, SUB_TICKS + 1) / SUB_TICKS
    return prev[:, None] + (values - prev)[:, None] * steps[None, :]


def _third_element(ibt: Frames, base: str) -> np.ndarray[Any, Any]:
    """A third-element or roll shock channel made from the two corners it joins."""
    axle = "F" if base.startswith(("CF", "ROLLF")) else "R"
    what = base.split("shock", 1)[1]
    left = ibt[f"L{axle}shock{what}"].astype(np.float64)
    right = ibt[f"R{axle}shock{what}"].astype(np.float64)
    if base.startswith("ROLL"):
        return np.asarray((left - right) / 2)
    return np.asarray((left + right) / 2)


def measure(adapter: SimAdapter, label: str, level: int | None = None) -> WireResult:
    codec = (
        Codec(os.urandom(32)) if level is None else Codec(os.urandom(32), level=level)
    )
    pipeline = ShimPipeline(adapter)
    channels = adapter.channels
    names = [c.name for c in channels]
    dictionaries: dict[int, ChannelDictionary] = {}
    res = WireResult(label, len(channels), 0, adapter.tick_rate)
    res.errors = {c.name: ChannelError(c) for c in channels}
    envelope = 3 + 1 + 1 + 1 + len(SOURCE.encode()) + 8 + 12 + 16
    for seq, msg in enumerate(pipeline.messages()):
        wire = codec.encode(SOURCE, seq, msg)
        kind = type(msg).__name__
        res.bytes_by_type[kind] += len(wire)
        res.count_by_type[kind] += 1
        res.envelope_bytes += envelope
        if isinstance(msg, ChannelDictionary):
            dictionaries[msg.dict_id] = msg
            res.row_bytes = msg.dtype.itemsize
            # Decode errors are judged against the quanta the dictionary states.
            for spec in msg.channels:
                res.errors[spec.name].spec = spec
        if not isinstance(msg, TelemetryBatch):
            continue
        frames = msg.frames
        res.ticks += len(frames)
        # (b) one JSON message per frame
        for row in frames.tolist():
            one = dict(zip(names, row, strict=True))
            res.json_bytes += len(json.dumps(one, default=_listed))
            res.json_compact_bytes += len(
                json.dumps(one, separators=(",", ":"), default=_listed)
            )
        # (c) zlib over the same 100 ms batch, columnar
        columnar = b"".join(np.ascontiguousarray(frames[n]).tobytes() for n in names)
        res.zlib_bytes += len(zlib.compress(columnar))
        # decode error per channel vs its quantum
        decoded = codec.decode(wire, dictionaries).message
        assert isinstance(decoded, TelemetryBatch)
        for ch in channels:
            _accumulate_error(
                res.errors[ch.name], frames[ch.name], decoded.frames[ch.name]
            )
    adapter.close()
    return res


def _listed(value: Any) -> Any:
    """An array channel's value (a CarIdx* array) as a JSON list."""
    return np.asarray(value).tolist()


def _accumulate_error(err: ChannelError, orig: Any, back: Any) -> None:
    q = err.spec.quantum
    if q is None:
        err.mismatches += int(np.count_nonzero(orig != back))
        return
    a = orig.astype(np.float64)
    b = back.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    with np.errstate(invalid="ignore"):
        diff = np.where(both_nan | same_inf, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    # Allowed: half a quantum, plus the rounding of the decoded value to its own type.
    allowed = q / 2 + np.spacing(np.abs(back)).astype(np.float64)
    err.max_err = max(err.max_err, float(diff.max(initial=0.0)))
    err.worst_excess = max(err.worst_excess, float((diff - allowed).max(initial=-1.0)))


def report(res: WireResult, all_channels: bool) -> None:
    total = sum(res.bytes_by_type.values())
    tele = res.bytes_by_type["TelemetryBatch"]
    raw = res.row_bytes * res.tick_rate / 1000.0
    print(f"\n== {res.label}")
    print(
        f"   {res.channels} channels, row {res.row_bytes} B, {res.tick_rate} Hz, "
        f"{res.ticks} ticks = {res.seconds:.1f} s, "
        f"{res.count_by_type['TelemetryBatch']} telemetry messages"
    )
    print(f"   {'what':58s} {'KB/s':>9s} {'vs raw':>7s}")
    rows = [
        ("(a) raw rows (row bytes x tick rate)", raw),
        ("(b) one JSON message per frame", res.kbps(res.json_bytes)),
        ("    the same with compact separators", res.kbps(res.json_compact_bytes)),
        (
            "(c) zlib of 100 ms columnar batches (plain compressor)",
            res.kbps(res.zlib_bytes),
        ),
        ("PitBox wire: telemetry batches incl. envelope", res.kbps(tele)),
        ("PitBox wire: all messages (+ dictionary/session info)", res.kbps(total)),
    ]
    for name, kbps in rows:
        print(f"   {name:58s} {kbps:9.2f} {kbps / raw:7.3f}")
    print("   breakdown of the PitBox wire:")
    for kind in sorted(res.bytes_by_type):
        n, b = res.count_by_type[kind], res.bytes_by_type[kind]
        print(
            f"     {kind:17s} {n:6d} msgs {b:10d} B  {res.kbps(b):7.3f} KB/s  "
            f"{b / n:8.0f} B/msg"
        )
    print(
        f"     envelope (header+nonce+tag, {res.envelope_bytes // sum(res.count_by_type.values())} B/msg) "
        f"= {res.kbps(res.envelope_bytes):.3f} KB/s of the total"
    )
    print(
        f"   bytes per value on the wire: "
        f"{tele / (res.ticks * sum(c.spec.count for c in res.errors.values())):.3f}"
    )
    verdict = "met" if res.kbps(total) <= TARGET_KBPS else "NOT met"
    print(
        f"   target <= {TARGET_KBPS:.0f} KB/s per car (full live set): {verdict} "
        f"for these {res.channels} channels"
    )
    # decode errors
    errs = list(res.errors.values())
    lossless = [e for e in errs if e.spec.quantum is None]
    floats = [e for e in errs if e.spec.quantum is not None]
    bad_int = [e for e in lossless if e.mismatches]
    bad_float = [e for e in floats if e.worst_excess > 0]
    print(
        f"   decode check: {len(lossless) - len(bad_int)}/{len(lossless)} integer/flag "
        f"channels exact; {len(floats) - len(bad_float)}/{len(floats)} float channels "
        f"within quantum/2 (+ rounding to their own type)"
    )
    for e in bad_int:
        print(f"     LOSSY integer channel {e.spec.name}: {e.mismatches} values differ")
    for e in bad_float:
        print(
            f"     OUT OF TOLERANCE {e.spec.name}: max error {e.max_err:.3g} "
            f"> quantum {e.spec.quantum:g}/2"
        )
    shown = sorted(
        floats, key=lambda e: e.max_err / (e.spec.quantum or 1), reverse=True
    )
    if not all_channels:
        shown = shown[:10]
        print("   largest decode error / quantum (10 worst float channels):")
    else:
        print("   largest decode error per float channel:")
    print(
        f"     {'channel':28s} {'unit':10s} {'quantum':>9s} {'max err':>10s} {'err/q':>6s}"
    )
    for e in shown:
        q = e.spec.quantum or 1.0
        print(
            f"     {e.spec.name:28s} {e.spec.unit:10s} {q:9.1e} {e.max_err:10.3e} "
            f"{e.max_err / q:6.3f}"
        )


def _write(results: list[WireResult], live: LiveSetAdapter | None, level: int) -> None:
    """Headline figures to bench/out (KB/s per car, all messages; the decode check)."""
    names = ("martinsville", "sim_single_car", "sim_field_63", "live_set")
    headline: dict[str, Any] = {}
    raw: dict[str, Any] = {"zstd_level": level}
    if live is not None:
        raw["live_set_sources"] = dict(live.sources)
    worst_q = 0.0
    mismatches = 0
    outside = 0
    for name, res in zip(names, results, strict=False):
        total = sum(res.bytes_by_type.values())
        headline[f"wire_kbps_{name}"] = {
            "value": round(res.kbps(total), 3),
            "unit": "KB/s per car",
            "target": TARGET_KBPS,
            "better": "lower",
            "bar": f"{res.label}: {res.channels} channels, all messages",
            # DESIGN's bar is the full live set; the others are easier sets.
            "easier_set": name != "live_set",
        }
        errs = res.errors.values()
        worst_q = max(
            [worst_q]
            + [e.max_err / e.spec.quantum for e in errs if e.spec.quantum is not None]
        )
        mismatches += sum(e.mismatches for e in errs)
        outside += sum(1 for e in errs if e.worst_excess > 0)
        raw[name] = {
            "bytes_by_type": dict(res.bytes_by_type),
            "count_by_type": dict(res.count_by_type),
            "seconds": res.seconds,
            "channels": res.channels,
            "out_of_tolerance": [e.spec.name for e in errs if e.worst_excess > 0],
        }
    raw["decode_max_error_per_quantum"] = worst_q
    headline["decode_float_channels_out_of_tolerance"] = {
        "value": outside,
        "unit": "channels",
        "target": 0,
        "better": "lower",
        "bar": "float channels with any |decoded - sent| above quantum/2 plus the "
        f"value's own float rounding (largest error {worst_q:.3f} quantum)",
    }
    headline["decode_integer_mismatches"] = {
        "value": mismatches,
        "unit": "values",
        "target": 0,
        "better": "lower",
        "bar": "integer and flag values that differ after decode",
    }
    # numpy scalars and arrays as plain JSON values
    headline, raw = json.loads(
        json.dumps([headline, raw], default=lambda o: np.asarray(o).tolist())
    )
    print(f"wrote {write_result('wire_bytes', headline, raw)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-laps", type=int, default=10, help="simulator laps")
    parser.add_argument(
        "--field-laps", type=int, default=3, help="laps of the 63-car field run"
    )
    parser.add_argument(
        "--all-channels", action="store_true", help="print every channel's decode error"
    )
    parser.add_argument(
        "--level", type=int, default=None, help="zstd level (default: the codec's)"
    )
    args = parser.parse_args()
    level = args.level
    print(f"wire_bytes | {machine()} | zstd level {level or CODEC_LEVEL}")
    live: LiveSetAdapter | None = None
    with tempfile.TemporaryDirectory() as tmp:
        path, label = recording(Path(tmp))
        results = [
            measure(IbtReplayAdapter(str(path), speed=0), label, level),
            measure(
                RaceSimulatorAdapter(laps=args.sim_laps, speed=0, seed=1),
                f"race simulator ({args.sim_laps} laps, its own channel set)",
                level,
            ),
            measure(
                RaceSimulatorAdapter(
                    laps=args.field_laps, speed=0, seed=1, opponents=63
                ),
                f"race simulator, 63-car field ({args.field_laps} laps, CarIdx* of 64)",
                level,
            ),
        ]
        if LIVE_DUMP.exists() and MARTINSVILLE.exists():
            live = LiveSetAdapter(LIVE_DUMP, MARTINSVILLE, args.field_laps)
            results.append(
                measure(
                    live,
                    f"full live channel set of {LIVE_DUMP.name}, driven by the "
                    "Martinsville recording and the simulator's 63-car field",
                    level,
                )
            )
        else:
            print(
                f"NOTE: {LIVE_DUMP} or {MARTINSVILLE} is absent "
                "(see ../shared/data/README.md): no live-set figure."
            )
    for res in results:
        report(res, args.all_channels)
    if live is not None:
        print("\nlive set: where each channel's values come from (channels):")
        for what, count in live.sources.most_common():
            print(f"   {count:4d}  {what}")
    _write(results, live, level or CODEC_LEVEL)


if __name__ == "__main__":
    main()
