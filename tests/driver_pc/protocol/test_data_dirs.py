"""The data-directory layout: the same paths every deployable used before, XDG overrides honoured."""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs
import pytest

from driver_pc.protocol import data_dirs

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="XDG variables are Linux's"
)


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the XDG data and config homes into a temporary directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def _old_appliance_dir() -> Path:
    """What the nine call sites computed before data_dirs existed."""
    return Path(platformdirs.user_data_dir("pitbox", appauthor=False))


def test_paths_are_those_platformdirs_gave_before() -> None:
    root = _old_appliance_dir()
    assert data_dirs.appliance_data_dir() == root
    assert data_dirs.database_file() == root / "pitbox.sqlite3"
    assert data_dirs.outbox_dir() == root / "outbox"
    assert data_dirs.reports_dir() == root / "reports"
    assert data_dirs.video_dir() == root / "video"
    assert data_dirs.security_dir() == root / "security"
    assert data_dirs.broker_run_dir() == root / "broker"
    shim_data = Path(platformdirs.user_data_dir("pitbox-shim", appauthor=False))
    shim_config = Path(platformdirs.user_config_dir("pitbox-shim", appauthor=False))
    assert data_dirs.shim_spool_file("car42-pc1") == shim_data / "car42-pc1.spool"
    assert data_dirs.shim_credentials_file() == shim_config / "credentials.json"


@linux_only
def test_xdg_variables_set_after_import_move_every_path(xdg: Path) -> None:
    data, config = xdg / "data", xdg / "config"
    assert data_dirs.database_file() == data / "pitbox" / "pitbox.sqlite3"
    assert data_dirs.outbox_dir() == data / "pitbox" / "outbox"
    assert data_dirs.reports_dir() == data / "pitbox" / "reports"
    assert data_dirs.video_dir() == data / "pitbox" / "video"
    assert data_dirs.security_dir() == data / "pitbox" / "security"
    assert data_dirs.broker_run_dir() == data / "pitbox" / "broker"
    assert (
        data_dirs.shim_spool_file("car1-pc1") == data / "pitbox-shim" / "car1-pc1.spool"
    )
    assert (
        data_dirs.shim_credentials_file() == config / "pitbox-shim" / "credentials.json"
    )


@linux_only
def test_nothing_is_created_by_asking(xdg: Path) -> None:
    data_dirs.database_file()
    data_dirs.shim_credentials_file()
    assert not (xdg / "data").exists()
    assert not (xdg / "config").exists()


@linux_only
def test_every_default_goes_through_data_dirs(xdg: Path) -> None:
    """The defaults of the commands and services are the layout's paths."""
    from cloud_sync.command import default_outbox as sync_outbox
    from cloud_sync.report.command import default_reports
    from driver_pc.pairing import default_credentials_path
    from pitbox_appliance.api.video import video_dir
    from pitbox_appliance.compaction.command import default_outbox
    from pitbox_appliance.config import SecurityConfig
    from pitbox_appliance.dashboard.app import crew_file
    from pitbox_appliance.dashboard.crew_store import FILE_NAME
    from pitbox_appliance.security.devices import broker_run_dir, security_dir
    from pitbox_appliance.storage.database import default_db_url

    assert default_db_url() == f"sqlite:///{data_dirs.database_file()}"
    assert data_dirs.appliance_data_dir().is_dir()  # the database's folder is made
    assert default_outbox() == sync_outbox() == data_dirs.outbox_dir()
    assert default_reports() == data_dirs.reports_dir()
    assert video_dir(None) == data_dirs.video_dir()
    assert video_dir("/srv/video") == Path("/srv/video")
    security = SecurityConfig()
    assert security_dir(security) == data_dirs.security_dir()
    assert broker_run_dir(security) == data_dirs.broker_run_dir()
    assert default_credentials_path() == data_dirs.shim_credentials_file()
    assert crew_file("sqlite://") == data_dirs.appliance_data_dir() / FILE_NAME
    assert (
        crew_file("sqlite:////srv/pitbox/db.sqlite3") == Path("/srv/pitbox") / FILE_NAME
    )
