"""``pitbox deadletters``: list and show read the database; retry needs the running core."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import DriverChange
from pitbox_appliance.broker import free_port
from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A database holding one dead letter: a driver change with a NaN session time."""
    url = f"sqlite:///{tmp_path / 'core.sqlite3'}"
    engine = open_database(url)
    writer = SessionWriter(engine)
    codec = Codec(os.urandom(32))
    bad = DriverChange(**asdict(DriverChange("s1", float("nan"), 0, 7, "Bad Shim")))
    ingestor = Ingestor(codec, writer)
    ingestor.ingest(codec.encode("car1-pc1", 5, bad), "car1-pc1", "t/car1-pc1")
    ingestor.flush()
    writer.close()
    engine.dispose()
    return url


def test_list_and_show(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert pitbox(["deadletters", "--db", db_url, "list"]) == 0
    line = capsys.readouterr().out
    assert "car1-pc1" in line
    assert "driver_change" in line
    assert "invalid:DriverChange.session_time" in line
    assert pitbox(["deadletters", "--db", db_url, "list", "--json"]) == 0
    (letter,) = json.loads(capsys.readouterr().out)
    assert letter["seq"] == 5
    assert pitbox(["deadletters", "--db", db_url, "show", str(letter["id"])]) == 0
    shown = capsys.readouterr().out
    assert "nan is not a session time" in shown
    assert "topic      t/car1-pc1" in shown
    assert pitbox(["deadletters", "--db", db_url, "show", "999"]) == 2
    assert "no dead letter 999" in capsys.readouterr().err


def test_retry_says_the_core_must_run(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PITBOX_API_TOKENS", raising=False)
    args = ["deadletters", "--db", db_url, "retry", "--all"]
    assert pitbox([*args, "--api", "http://127.0.0.1:9"]) == 2
    assert "scope 'commands'" in capsys.readouterr().err
    monkeypatch.setenv("PITBOX_API_TOKENS", "cli-token-0123456789:commands")
    assert pitbox([*args, "--api", f"http://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "does not answer" in err
    assert "only writer" in err


def test_an_old_database_has_no_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    assert pitbox(["deadletters", "--db", url, "list"]) == 0
    assert "no dead letters" in capsys.readouterr().out
