"""Turning the core's open figure sets (strategy dicts and lists) into escaped HTML rows."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pitbox_appliance.dashboard import formatting as fmt

#: Field names whose numbers are seconds of racing time, shown as lap times/durations.
_SECONDS_SUFFIX = ("_s",)
_LITRES_SUFFIX = ("_l", "fuel_to_add", "fuel_to_finish", "fuel_per_lap")


def label(key: str) -> str:
    """``pit_window_open_lap`` → ``pit window open lap`` (units dropped from the name)."""
    words = key.replace(".", " ").replace("_", " ").strip()
    for unit in (" s", " l", " pct"):
        if words.endswith(unit):
            words = words[: -len(unit)]
    return words


def value(key: str, raw: Any) -> str:
    """One value as text: numbers rounded for reading, seconds and litres marked."""
    if raw is None:
        return fmt.UNKNOWN
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, int):
        return f"{raw}"
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return fmt.UNKNOWN
        if key.endswith(_SECONDS_SUFFIX):
            return f"{raw:.1f} s"
        if key.endswith(_LITRES_SUFFIX):
            return f"{raw:.1f} L"
        if key.endswith("pct"):
            return f"{raw * 100:.0f} %"
        return f"{raw:.2f}" if abs(raw) < 10 else f"{raw:.1f}"
    if isinstance(raw, Mapping):
        return " · ".join(f"{label(str(k))} {value(str(k), v)}" for k, v in raw.items())
    if isinstance(raw, list | tuple):
        return ", ".join(value(key, v) for v in raw)
    return str(raw)


def pairs_html(pairs: Iterable[tuple[str, Any]], testid: str) -> str:
    """A two-column definition list of figures (escaped)."""
    rows = [
        f"<dt>{html.escape(label(k))}</dt><dd>{html.escape(value(k, v))}</dd>"
        for k, v in pairs
    ]
    return f'<dl class="pb-figs" data-testid="{testid}">{"".join(rows)}</dl>'


def table_html(
    rows: Sequence[Mapping[str, Any]],
    testid: str,
    columns: Sequence[str] | None = None,
    row_class: str = "",
) -> str:
    """A table of dicts; the columns are ``columns`` or every key seen, in order."""
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(str(key), None)
        columns = list(seen)
    head = "".join(f"<th>{html.escape(label(c))}</th>" for c in columns)
    body = "".join(
        f'<tr class="{row_class}">'
        + "".join(f"<td>{html.escape(value(c, row.get(c)))}</td>" for c in columns)
        + "</tr>"
        for row in rows
    )
    return (
        f'<table class="pb-figtable" data-testid="{testid}">'
        f"<tr>{head}</tr>{body}</table>"
    )
