"""/stints shows the post-race pipeline's progress from the worker's file: step, failure and why, done."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitbox_appliance.postrace.progress import ProgressBook, Step, progress_file_for
from tests.pitbox_appliance.dashboard.conftest import ImportedDb, import_sim_session
from tests.pitbox_appliance.dashboard.test_dashboard_pages import (
    dashboard,
    eventually,
    one,
    text_of,
)

pytestmark = pytest.mark.timeout(60)


async def test_stints_page_follows_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    imported: ImportedDb = import_sim_session(tmp_path / "db")
    book = ProgressBook(progress_file_for(imported.url))
    async with dashboard(imported, tmp_path) as h:
        await h.user.open("/stints")
        await eventually(lambda: one(h.user, "handoff-state") is not None)
        # Hidden while nothing has entered the pipeline.
        await h.user.should_not_see(marker="postrace")
        book.start(1, imported.session_key, "import", "checkered")
        book.advance(1, Step.SYNCING, path="team=x/season=2026/track=y/session=z")
        await eventually(lambda: one(h.user, "postrace").visible, within_s=10)
        await eventually(
            lambda: text_of(h.user, "postrace-lines").endswith(
                "import · session 1: syncing</div>"
            ),
            within_s=10,
        )
        book.fail(1, "syncing: not on s3://team/pitbox yet: connection refused", 30)
        await eventually(
            lambda: (
                "failed: syncing: not on s3://team/pitbox yet"
                in text_of(h.user, "postrace-lines")
            ),
            within_s=10,
        )
        assert 'class="pb-bad"' in text_of(h.user, "postrace-lines")
        book.advance(1, Step.DONE, report_url="s3://team/pitbox/report.html")
        await eventually(
            lambda: "session 1: done" in text_of(h.user, "postrace-lines"),
            within_s=10,
        )
    book.close()
