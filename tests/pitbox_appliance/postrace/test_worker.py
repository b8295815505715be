"""The post-race worker on a real database: finished → compacted → reported, resumable, idempotent."""

from __future__ import annotations

from pathlib import Path

from driver_pc.adapters.simulator import write_simulated_ibt
from pitbox_appliance.postrace.progress import Step, read_progress
from pitbox_appliance.postrace.worker import PostRaceConfig, PostRaceService
from tests.conftest import free_port, import_into


def test_pipeline_fails_on_an_unreachable_api_then_resumes_where_it_stopped(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    import_into(
        url, write_simulated_ibt(tmp_path / "r.ibt", laps=3, seed=7, endurance=True)
    )
    config = PostRaceConfig(
        db_url=url,
        outbox=tmp_path / "outbox",
        progress=tmp_path / "postrace.sqlite3",
        reports=tmp_path / "reports",
        api=f"http://127.0.0.1:{free_port()}",  # nothing listens: the core is down
        api_token="t" * 32,
        settle_s=0.0,
        pdf=False,
    )
    worker = PostRaceService(config)
    assert worker.round(now=100.0) == []  # first sight of the session
    (failed,) = worker.round(now=101.0)
    worker.close()
    assert failed.finished_by == "checkered"
    assert failed.step is Step.REPORTING  # compacted, no target: straight to the report
    assert failed.failed
    assert failed.status.startswith("failed: reporting: appliance http://127.0.0.1")
    assert "not reachable" in failed.status
    manifest = config.outbox / failed.path / "manifest.json"
    compacted_at = manifest.stat().st_mtime_ns
    assert read_progress(config.progress) == [failed]  # what the pit wall reads

    # Restarted without an API (a team that does not announce): it resumes at the
    # report, does not compact again, and names the local report.
    config.api = None
    worker = PostRaceService(config)
    (waiting,) = worker.round(now=102.0)
    assert waiting.status.startswith("failed")  # not due before its back-off
    (done,) = worker.round(now=failed.next_attempt_at + 1)
    assert done.status == "done"
    assert done.report_url.startswith("file://")
    assert Path(done.report_url.removeprefix("file://")).is_file()
    assert manifest.stat().st_mtime_ns == compacted_at
    assert worker.round(now=failed.next_attempt_at + 50) == [done]  # nothing again
    worker.close()
