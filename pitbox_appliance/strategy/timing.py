"""Reads Al Kamel lap-by-lap timing CSVs (IMSA/WEC/ELMS) into typed per-lap records."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# Columns without which no stint or pit analysis is possible.
REQUIRED_COLUMNS = (
    "NUMBER",
    "LAP_NUMBER",
    "LAP_TIME",
    "CROSSING_FINISH_LINE_IN_PIT",
    "ELAPSED",
    "DRIVER_NAME",
    "PIT_TIME",
    "FLAG_AT_FL",
)
MAX_ERROR_TEXT = 40  # characters of an offending value quoted in an error
# File names of lap charts: plain or gzipped CSV (IMSA's archive serves both).
LAP_CHART_SUFFIXES = (".csv", ".csv.gz")


class TrackFlag(StrEnum):
    """Flag shown at the finish line when the car crossed it (Al Kamel ``FLAG_AT_FL``)."""

    GREEN = "green"
    FULL_COURSE_YELLOW = "fcy"
    SAFETY_CAR = "safety_car"
    RED = "red"
    FINISH = "finish"
    UNKNOWN = "unknown"


# Al Kamel flag codes. "FF" is the chequered flag (the car's last lap).
FLAG_CODES: Mapping[str, TrackFlag] = {
    "GF": TrackFlag.GREEN,
    "FCY": TrackFlag.FULL_COURSE_YELLOW,
    "SC": TrackFlag.SAFETY_CAR,
    "RF": TrackFlag.RED,
    "FF": TrackFlag.FINISH,
}
GZIP_MAGIC = b"\x1f\x8b"
NEUTRALISED_FLAGS = frozenset(
    {TrackFlag.FULL_COURSE_YELLOW, TrackFlag.SAFETY_CAR, TrackFlag.RED}
)


class TimingFileError(ValueError):
    """A timing file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class TimingLap:
    """One car's lap as the timing system reported it at the finish line.

    ``in_pit`` is true when the lap ended in the pit lane (the in-lap of a stop).
    ``pit_time_s`` is the time spent in the pit lane, which Al Kamel reports on the
    lap *after* the in-lap (the out-lap), so it is known when the out-lap ends.
    """

    car: str
    lap: int
    lap_time_s: float | None
    elapsed_s: float
    in_pit: bool
    pit_time_s: float | None
    driver: str
    driver_number: str
    car_class: str
    team: str
    flag: TrackFlag
    line: int

    @property
    def is_green(self) -> bool:
        """Lap that ended under green (the chequered lap counts as green running)."""
        return self.flag in (TrackFlag.GREEN, TrackFlag.FINISH)

    @property
    def is_neutralised(self) -> bool:
        """Lap that ended under full-course yellow, safety car or red flag."""
        return self.flag in NEUTRALISED_FLAGS


def read_timing_csv(path: Path) -> list[TimingLap]:
    """All laps of a lap chart, ``.csv`` or gzipped ``.csv.gz``, in file order.

    The one reader of lap charts: ``pitbox timing``, training and the accuracy
    bench all read through it. A ``.gz`` name or the gzip magic bytes select
    decompression. Tolerates a UTF-8 byte-order mark, spaces around names and
    values, a trailing empty column and ``;`` as separator. Raises
    ``TimingFileError`` naming the file (and line) for anything else it cannot
    make sense of: unreadable, a broken gzip stream, not UTF-8, missing columns.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TimingFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if path.name.lower().endswith(".gz") or raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise TimingFileError(
                f"{path}: not a readable gzip file ({exc}); expected a gzipped "
                "Al Kamel lap chart"
            ) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TimingFileError(f"{path}:{line}: not UTF-8 text") from exc
    return parse_timing_text(text, source=str(path))


def lap_chart_files(folder: Path) -> list[Path]:
    """The lap charts (``*.csv`` and ``*.csv.gz``) of a folder, sorted by name."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.name.lower().endswith(LAP_CHART_SUFFIXES)
    )


def lap_chart_name(path: Path) -> str:
    """A lap chart's name without ``.csv``/``.csv.gz`` and IMSA's ``_race_laps``."""
    name = path.name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name.removesuffix("_race_laps")


def parse_timing_text(text: str, source: str = "<text>") -> list[TimingLap]:
    """Laps of timing CSV text; ``source`` names it in error messages."""
    text = text.removeprefix("\ufeff")
    header_line = next((line for line in text.splitlines() if line.strip()), None)
    if header_line is None:
        raise TimingFileError(f"{source}: empty file, expected an Al Kamel header")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] = []
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [name.strip().upper() for name in row]
            break
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise TimingFileError(
            f"{source}:{reader.line_num}: not an Al Kamel lap chart: "
            f"missing column(s) {', '.join(missing)}"
        )
    columns = {name: index for index, name in enumerate(header) if name}
    laps: list[TimingLap] = []
    seen: dict[tuple[str, int], int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        lap = _parse_row(row, columns, len(header), source, line)
        key = (lap.car, lap.lap)
        if key in seen:
            raise TimingFileError(
                f"{source}:{line}: car {lap.car} lap {lap.lap} already given "
                f"on line {seen[key]}"
            )
        seen[key] = line
        laps.append(lap)
    if not laps:
        raise TimingFileError(f"{source}: header but no laps")
    return laps


def laps_by_car(laps: Iterable[TimingLap]) -> dict[str, list[TimingLap]]:
    """Each car's laps in lap order (cars in order of first appearance)."""
    cars: defaultdict[str, list[TimingLap]] = defaultdict(list)
    for lap in laps:
        cars[lap.car].append(lap)
    return {
        car: sorted(car_laps, key=lambda x: x.lap) for car, car_laps in cars.items()
    }


def parse_duration(text: str) -> float:
    """Seconds of ``"55.406"``, ``"1:55.406"`` or ``"1:02:03.456"``."""
    parts = text.strip().split(":")
    if len(parts) > 3 or not all(parts):
        raise ValueError(f"not a duration: {text!r}")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"not a duration: {text!r}") from None
    if any(v < 0 or v != v for v in values) or any(v >= 60 for v in values[1:]):
        raise ValueError(f"not a duration: {text!r}")
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    return seconds


def _parse_row(
    row: list[str], columns: Mapping[str, int], width: int, source: str, line: int
) -> TimingLap:
    # A trailing separator adds or drops one empty field; anything else is broken.
    if len(row) < len(columns) or len(row) > width + 1:
        raise TimingFileError(
            f"{source}:{line}: {len(row)} fields, the header has {width}"
        )

    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    def duration(name: str) -> float:
        value = cell(name)
        if not value:
            raise TimingFileError(f"{source}:{line}: {name} is empty")
        try:
            return parse_duration(value)
        except ValueError:
            raise TimingFileError(
                f"{source}:{line}: {name} {value[:MAX_ERROR_TEXT]!r} is not a time"
            ) from None

    def optional_duration(name: str) -> float | None:
        return duration(name) if cell(name) else None

    car = cell("NUMBER")
    if not car:
        raise TimingFileError(f"{source}:{line}: NUMBER (car) is empty")
    lap_text = cell("LAP_NUMBER")
    try:
        lap_number = int(lap_text)
    except ValueError:
        raise TimingFileError(
            f"{source}:{line}: LAP_NUMBER {lap_text[:MAX_ERROR_TEXT]!r} is not a number"
        ) from None
    if lap_number < 0:
        raise TimingFileError(f"{source}:{line}: LAP_NUMBER {lap_number} is negative")
    pit_flag = cell("CROSSING_FINISH_LINE_IN_PIT").upper()
    if pit_flag not in ("", "B"):
        raise TimingFileError(
            f"{source}:{line}: CROSSING_FINISH_LINE_IN_PIT "
            f"{pit_flag[:MAX_ERROR_TEXT]!r} is neither empty nor 'B'"
        )
    return TimingLap(
        car=car,
        lap=lap_number,
        lap_time_s=optional_duration("LAP_TIME"),
        elapsed_s=duration("ELAPSED"),
        in_pit=pit_flag == "B",
        pit_time_s=optional_duration("PIT_TIME"),
        driver=cell("DRIVER_NAME"),
        driver_number=cell("DRIVER_NUMBER"),
        car_class=cell("CLASS"),
        team=cell("TEAM"),
        flag=FLAG_CODES.get(cell("FLAG_AT_FL").upper(), TrackFlag.UNKNOWN),
        line=line,
    )
