"""When is a stored session finished: checkered flag, a newer session, or idle (from the database)."""

from __future__ import annotations

from pathlib import Path

from driver_pc.adapters.simulator import write_simulated_ibt
from pitbox_appliance.postrace.finished import FinishWatch, checkered
from pitbox_appliance.storage.reader import SessionReader
from tests.conftest import import_into, readonly_engine, real_file

MARTINSVILLE = ("iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt")


def test_checkered_then_settled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    # The endurance model ends its race on the checkered flag (SessionState 5).
    race = write_simulated_ibt(tmp_path / "r.ibt", laps=3, seed=7, endurance=True)
    import_into(url, race)
    engine = readonly_engine(url)
    reader = SessionReader(engine)
    sessions = reader.sessions()
    assert checkered(reader, sessions[0].id)  # the simulator's race ends on the flag
    watch = FinishWatch(idle_s=600, settle_s=20)
    assert watch.finished(reader, sessions, 1000.0) == {}  # first sight
    assert watch.finished(reader, sessions, 1010.0) == {}  # not settled yet
    assert watch.finished(reader, sessions, 1020.0) == {sessions[0].id: "checkered"}
    engine.dispose()


def test_no_flag_waits_for_idle_and_a_newer_session_ends_the_old(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    # A real practice recording: iRacing's flag never shows the checkered.
    import_into(url, real_file(*MARTINSVILLE))
    engine = readonly_engine(url)
    reader = SessionReader(engine)
    (first,) = reader.sessions()
    assert not checkered(reader, first.id)
    watch = FinishWatch(idle_s=600, settle_s=20)
    assert watch.finished(reader, [first], 0.0) == {}
    assert watch.finished(reader, [first], 599.0) == {}
    assert watch.finished(reader, [first], 600.0) == {first.id: "idle"}
    import_into(url, write_simulated_ibt(tmp_path / "s.ibt", laps=1, seed=2))
    sessions = reader.sessions()
    assert len(sessions) == 2
    found = FinishWatch(idle_s=600, settle_s=20).finished(reader, sessions, 0.0)
    assert found == {first.id: "session_change"}
    engine.dispose()
