"""Dashboard logins: the users file (argon2id, 0600, own file) and ``pitbox users``."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.security.users import (
    USERS_FILE,
    Role,
    UserError,
    UserStore,
)


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "appliance.yaml"
    config.write_text(f"version: 1\nsecurity:\n  dir: {tmp_path / 'sec'}\n")
    return config


def test_passwords_are_argon2id_hashes_in_a_private_file(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "sec" / USERS_FILE)
    store.add("Ann", "engineer", "correct horse")
    raw = store.path.read_text()
    assert "correct horse" not in raw
    entry = json.loads(raw)["users"]["ann"]
    assert entry["hash"].startswith("$argon2id$")
    assert "m=65536" in entry["hash"]  # memory-hard: 64 MiB per check
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.verify("ann", "correct horse") == store.get("ANN")
    assert store.verify("ann", "correct horsE") is None
    assert store.verify("nobody", "correct horse") is None
    assert "argon" not in repr(store.get("ann"))
    assert "argon" not in repr(store.users())


def test_bad_names_roles_passwords_and_duplicates_are_refused(tmp_path: Path) -> None:
    store = UserStore(tmp_path / USERS_FILE)
    with pytest.raises(UserError, match="invalid user name"):
        store.add("bad name", Role.CREW, "long enough")
    with pytest.raises(UserError, match="invalid user name"):
        store.add("-dash", Role.CREW, "long enough")
    with pytest.raises(ValueError, match="viewer, crew, engineer"):
        store.add("bob", "boss", "long enough")
    with pytest.raises(UserError, match="at least 8"):
        store.add("bob", Role.CREW, "short")
    store.add("bob", Role.CREW, "long enough")
    with pytest.raises(UserError, match="already exists"):
        store.add("BOB", Role.VIEWER, "long enough")
    store.add("bob", Role.VIEWER, "another one", replace=True)
    assert store.verify("bob", "another one") is not None
    bob = store.get("bob")
    assert bob is not None
    assert bob.role is Role.VIEWER
    with pytest.raises(UserError, match="no user 'zed'"):
        store.remove("zed")


def test_a_second_store_sees_changes_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / USERS_FILE
    reader, writer = UserStore(path), UserStore(path)
    assert reader.users() == ()
    writer.add("ann", Role.ENGINEER, "long enough")
    assert [u.name for u in reader.users()] == ["ann"]
    writer.remove("ann")
    assert reader.get("ann") is None


def test_the_users_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(_config(tmp_path))
    assert pitbox(["users", "--config", config, "list"]) == 0
    assert (
        "no users yet: pitbox users add NAME --role engineer" in capsys.readouterr().out
    )

    monkeypatch.setattr("sys.stdin", io.StringIO("pit-wall-2026\n"))
    args = ["users", "--config", config, "add", "ann", "--role", "engineer"]
    assert pitbox([*args, "--password-stdin"]) == 0
    assert "added ann as engineer" in capsys.readouterr().out

    # The password is never an argument: a prompt (getpass) or stdin.
    answers = iter(["crew-password", "crew-password"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    assert pitbox(["users", "--config", config, "add", "bo", "--role", "crew"]) == 0
    answers = iter(["one-password", "other-password"])
    assert pitbox(["users", "--config", config, "add", "cy", "--role", "viewer"]) == 2
    assert "the two passwords differ" in capsys.readouterr().err

    assert pitbox(["users", "--config", config, "add", "x y", "--role", "crew"]) == 2
    assert "invalid user name 'x y'" in capsys.readouterr().err
    assert pitbox(["users", "--config", config, "add", "dee", "--role", "boss"]) == 2
    assert "unknown role 'boss': choose one of viewer, crew, engineer" in (
        capsys.readouterr().err
    )

    assert pitbox(["users", "--config", config, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"]) for u in listed] == [
        ("ann", "engineer"),
        ("bo", "crew"),
    ]
    assert all("hash" not in u for u in listed)
    store = UserStore(tmp_path / "sec" / USERS_FILE)
    assert store.verify("ann", "pit-wall-2026") is not None
    assert store.verify("bo", "crew-password") is not None

    assert pitbox(["users", "--config", config, "remove", "bo"]) == 0
    assert pitbox(["users", "--config", config, "remove", "bo"]) == 2
    assert "no user 'bo'" in capsys.readouterr().err
    assert [u.name for u in store.users()] == ["ann"]
