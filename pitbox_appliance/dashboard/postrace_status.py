"""The post-race pipeline's progress on the pit wall: a small widget read from the worker's progress file."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from nicegui import ui

from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.widgets import tid
from pitbox_appliance.postrace.progress import (
    Progress,
    Step,
    progress_file_for,
    read_progress,
)

#: Sessions shown (newest first).
SHOWN = 3
REFRESH_S = 3.0
_TONES = {"done": "pb-ok", "failed": "pb-bad"}


class PostRaceStatus:
    """A "Post-race" caption and one line per recent session: its step, or failed: why.

    Reads the worker's progress file read-only off the event loop; shows nothing
    while no session has entered the pipeline.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        with tid(ui.element("div"), "postrace").classes("pb-postrace") as self.box:
            ui.label("Post-race").classes("pb-cap")
            self.lines = tid(ui.html("", sanitize=True), "postrace-lines")
        self.box.set_visibility(False)
        ui.timer(0, self.reload, once=True)
        ui.timer(REFRESH_S, self.reload)

    @classmethod
    def of(cls, ctx: PageContext) -> PostRaceStatus:
        """The widget for a page: the progress file beside the dashboard's database."""
        data = ctx.services.data
        return cls(progress_file_for(data.db_url) if data is not None else None)

    async def reload(self) -> None:
        if self.path is None:
            return
        path = self.path
        rows = await asyncio.get_running_loop().run_in_executor(
            None, lambda: read_progress(path, limit=SHOWN)
        )
        self.box.set_visibility(bool(rows))
        self.lines.set_content("".join(line(p) for p in rows))


def line(progress: Progress) -> str:
    """One session's status as an HTML line."""
    tone = (
        _TONES["failed"]
        if progress.failed
        else _TONES["done"]
        if progress.step is Step.DONE
        else ""
    )
    return (
        f'<div class="{tone}">{html.escape(progress.car)} · session '
        f"{progress.session_id}: {html.escape(progress.status)}</div>"
    )
