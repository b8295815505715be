"""``pitbox-shim`` unattended: the service definitions, the status file, the rotating log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from driver_pc import autostart
from driver_pc.shim_status import describe, read_status
from tests.conftest import RunningAppliance, wait_for

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


class Recorder:
    """Stands in for subprocess on an OS this test does not run on; keeps the commands."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(command))
        return subprocess.CompletedProcess(list(command), 0, "active\n", "")


def test_the_systemd_unit_is_valid_and_restarts_the_shim(tmp_path: Path) -> None:
    command = autostart.shim_command(
        ["--adapter", "iracing", "--video-dir", "/a b/obs"]
    )
    assert command[:4] == [sys.executable, "-m", "driver_pc", "--service"]
    unit = tmp_path / autostart.UNIT_NAME
    unit.write_text(autostart.systemd_unit(command))
    text = unit.read_text()
    assert "Restart=on-failure" in text
    assert "WantedBy=default.target" in text
    assert "ExecStart=" in text
    assert '"/a b/obs"' in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit was not verified")
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    # A broken unit does fail the same check (so the check above means something).
    bad = tmp_path / "broken.service"
    bad.write_text(text.replace(f"ExecStart={sys.executable}", "ExecStart=nowhere/x"))
    assert (
        subprocess.run(
            ["systemd-analyze", "verify", str(bad)], capture_output=True, check=False
        ).returncode
        != 0
    )


def test_install_and_uninstall_on_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = Recorder()
    assert autostart.main(["install", "--adapter", "iracing"], runner, "linux") == 0
    unit = tmp_path / "config" / "systemd" / "user" / autostart.UNIT_NAME
    assert "--service --adapter iracing" in unit.read_text()
    assert runner.commands == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", autostart.UNIT_NAME],
    ]
    runner.commands.clear()
    assert autostart.main(["uninstall"], runner, "linux") == 0
    assert not unit.exists()
    assert runner.commands[0] == [
        "systemctl",
        "--user",
        "disable",
        "--now",
        autostart.UNIT_NAME,
    ]


def test_the_windows_task_starts_at_logon_restarts_and_never_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = [
        r"C:\Program Files\Python311\python.exe",
        "-m",
        "driver_pc",
        "--service",
        "--video-dir",
        r"C:\Users\Bea\Videos\OBS rec",
    ]
    root = ET.fromstring(
        autostart.windows_task_xml(command, "RIG\\Bea").replace('encoding="UTF-16"', "")
    )
    assert root.find("t:Triggers/t:LogonTrigger/t:UserId", TASK_NS).text == "RIG\\Bea"
    settings = root.find("t:Settings", TASK_NS)
    assert settings.find("t:ExecutionTimeLimit", TASK_NS).text == "PT0S"
    assert settings.find("t:RestartOnFailure/t:Count", TASK_NS).text == "999"
    assert settings.find("t:MultipleInstancesPolicy", TASK_NS).text == "IgnoreNew"
    exec_ = root.find("t:Actions/t:Exec", TASK_NS)
    assert exec_.find("t:Command", TASK_NS).text == command[0]
    assert exec_.find("t:Arguments", TASK_NS).text == (
        r'-m driver_pc --service --video-dir "C:\Users\Bea\Videos\OBS rec"'
    )
    monkeypatch.setattr(autostart.data_dirs, "shim_config_dir", lambda: tmp_path)
    runner = Recorder()
    assert autostart.main(["install", "--adapter", "iracing"], runner, "win32") == 0
    xml_file = tmp_path / "pitbox-shim-task.xml"
    assert xml_file.read_text(encoding="utf-16").startswith("<?xml")
    assert runner.commands == [
        [
            "schtasks",
            "/Create",
            "/TN",
            autostart.TASK_NAME,
            "/XML",
            str(xml_file),
            "/F",
        ],
        ["schtasks", "/Run", "/TN", autostart.TASK_NAME],
    ]
    runner.commands.clear()
    assert autostart.main(["uninstall"], runner, "win32") == 0
    assert runner.commands[-1] == [
        "schtasks",
        "/Delete",
        "/TN",
        autostart.TASK_NAME,
        "/F",
    ]


def _shim(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "driver_pc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_a_service_shim_waits_for_the_sim_and_says_so(tmp_path: Path) -> None:
    status, log = tmp_path / "s.json", tmp_path / "shim.log"
    process = _shim(
        [
            "--service",
            "--source",
            "car1-pc1",
            "--adapter",
            "iracing",
            "--memory-map",
            str(tmp_path / "no-sim-here"),
            "--port",
            "9",
            "--spool",
            str(tmp_path / "s.spool"),
            "--status-file",
            str(status),
            "--log-file",
            str(log),
        ],
        {"PITBOX_TEAM_KEY": "00" * 32},
    )
    try:
        # Without --service this exits 1 at once; as a service it waits and says why.
        assert wait_for(lambda: read_status(status) is not None, 30)
        report = read_status(status)
        assert report is not None
        assert report["state"] == "waiting_for_sim"
        assert "not running" in report["error"]
        assert process.poll() is None
        assert "waiting for the sim" in log.read_text()
        text = describe(report)
        assert "sim: not seen" in text
        assert "appliance: unreachable" in text
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0


def test_a_service_shim_streams_and_reports(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    broker = appliance.broker
    status, log = tmp_path / "s.json", tmp_path / "shim.log"
    process = _shim(
        [
            "--service",
            "--source",
            broker.driver_user,
            "--adapter",
            "simulator",
            "--laps",
            "3",
            "--speed",
            "10",
            "--port",
            str(broker.port),
            "--spool",
            str(tmp_path / "s.spool"),
            "--status-file",
            str(status),
            "--log-file",
            str(log),
        ],
        {
            "PITBOX_TEAM_KEY": appliance.team_key.hex(),
            "PITBOX_MQTT_PASSWORD": broker.driver_password,
        },
    )
    try:

        def acked() -> bool:
            report = read_status(status)
            return bool(
                report and report["last_ack_at"] and report["state"] == "streaming"
            )

        assert wait_for(acked, 60), read_status(status)
        report = read_status(status)
        assert report is not None
        assert report["appliance_connected"] is True
        assert report["session_key"]
        assert report["ticks"] > 0
        assert report["pid"] == process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    assert log.stat().st_size > 0
    shown = subprocess.run(
        [sys.executable, "-m", "driver_pc", "service", "status", "--source", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0
    assert "service:" in shown.stdout
    assert json.loads(status.read_text())["source"] == broker.driver_user


APPLIANCE_ONLY = {
    "sqlalchemy",
    "alembic",
    "aiohttp",
    "nicegui",
    "supervisor",
    "pyarrow",
    "ai_edge_litert",
    "boto3",
    "matplotlib",
}


def test_the_shim_needs_none_of_the_appliances_packages() -> None:
    """A driver PC installs ``pitbox[driver]``: the shim must run without the rest."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    driver = (
        project["project"]["dependencies"]
        + project["project"]["optional-dependencies"]["driver"]
    )
    names = {d.split("=")[0].split(">")[0].split("<")[0].lower() for d in driver}
    assert not names & {n.replace("_", "-") for n in APPLIANCE_ONLY}
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, driver_pc.__main__, driver_pc.service, driver_pc.autostart; "
            "print(sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert not set(json.loads(loaded.stdout.replace("'", '"'))) & APPLIANCE_ONLY
