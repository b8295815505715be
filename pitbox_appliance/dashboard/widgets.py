"""Small building blocks the pages share: test ids, tiles, SVG text, chart styling."""

from __future__ import annotations

from typing import Any, TypeVar

from nicegui import ui
from nicegui.elements.mixins.text_element import TextElement

E = TypeVar("E", bound=ui.element)

AXIS_LABEL = {"color": "#8b949e", "fontSize": 12}
SPLIT_LINE = {"lineStyle": {"color": "#262c34"}}


def tid(element: E, testid: str) -> E:
    """Name an element for tests: a NiceGUI marker and a DOM ``data-testid``."""
    return element.mark(testid).props(f'data-testid="{testid}"')


def tile(caption: str, testid: str | None = None) -> ui.element:
    """A dark tile with a caption; use it as a context manager for its content."""
    box = ui.element("div").classes("pb-tile")
    if testid:
        tid(box, testid)
    with box:
        ui.label(caption).classes("pb-cap")
    return box


def note(text: str, testid: str | None = None) -> ui.label:
    """A muted explanatory line: what the view is built from, what is missing."""
    label = ui.label(text).classes("pb-note")
    return tid(label, testid) if testid else label


class SvgText(TextElement):
    """An SVG ``<text>`` element whose content updates like a label's."""

    def __init__(self, text: str = "") -> None:
        super().__init__(tag="text", text=text)


def value_axis(**extra: Any) -> dict[str, Any]:
    """An ECharts value axis in the dashboard's colours."""
    return {
        "type": "value",
        "axisLabel": AXIS_LABEL,
        "splitLine": SPLIT_LINE,
        **extra,
    }
