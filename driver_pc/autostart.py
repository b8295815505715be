"""``pitbox-shim service install|uninstall|status``: the shim as a background service.

Linux: a systemd *user* unit (``~/.config/systemd/user/pitbox-shim.service``), started
at login, restarted 5 s after a crash. Windows: a Task Scheduler task that starts at
logon, is restarted after a failure and has no run-time limit (the default limit of
72 h would end a long endurance weekend); it is created from an XML definition with
``schtasks /Create /XML``. Both run ``pitbox-shim --service`` with the arguments given
after ``install`` (e.g. ``--adapter iracing``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from driver_pc.protocol import data_dirs
from driver_pc.shim_status import describe, read_status

UNIT_NAME = "pitbox-shim.service"
TASK_NAME = "PitBox Shim"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def shim_command(shim_args: Sequence[str]) -> list[str]:
    """The command a service manager runs: this Python, the shim, ``--service``."""
    return [sys.executable, "-m", "driver_pc", "--service", *shim_args]


def status_file(source: str) -> Path:
    """Where a shim of ``source`` writes its status (``--status-file`` default)."""
    return data_dirs.shim_data_dir() / f"{source}.status.json"


# ---- Linux: systemd user unit -----------------------------------------------------------
def systemd_unit(command: Sequence[str]) -> str:
    """The user unit's text for ``command``."""
    exec_start = " ".join(_systemd_quote(part) for part in command)
    return (
        "[Unit]\n"
        "Description=PitBox driver-PC shim (streams the sim to the pit appliance)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        # SIGTERM: the shim stops reading, keeps its spool and exits 0.
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=30\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def systemd_unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/pitbox-shim.service``."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


def _systemd_quote(part: str) -> str:
    if part and all(c.isalnum() or c in "/._-=:+,@" for c in part):
        return part
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- Windows: Task Scheduler ------------------------------------------------------------
def windows_task_xml(command: Sequence[str], user: str) -> str:
    """The task definition: at ``user``'s logon, restarted on failure, no time limit."""
    program, *arguments = command
    args = subprocess.list2cmdline(arguments)
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo><Description>PitBox driver-PC shim</Description></RegistrationInfo>
  <Triggers>
    <LogonTrigger><Enabled>true</Enabled><UserId>{escape(user)}</UserId></LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{escape(user)}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>
    <StartWhenAvailable>true</StartWhenAvailable>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec><Command>{escape(program)}</Command><Arguments>{escape(args)}</Arguments></Exec>
  </Actions>
</Task>
"""


def windows_install_commands(xml_path: Path) -> list[list[str]]:
    """Register the task from its XML file, then start it now."""
    return [
        ["schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(xml_path), "/F"],
        ["schtasks", "/Run", "/TN", TASK_NAME],
    ]


def windows_uninstall_commands() -> list[list[str]]:
    return [
        ["schtasks", "/End", "/TN", TASK_NAME],
        ["schtasks", "/Delete", "/TN", TASK_NAME, "/F"],
    ]


def windows_status_command() -> list[str]:
    return ["schtasks", "/Query", "/TN", TASK_NAME, "/FO", "LIST", "/V"]


# ---- the command ------------------------------------------------------------------------
def main(argv: Sequence[str], run: Runner | None = None, platform: str = "") -> int:
    """``pitbox-shim service ACTION [SHIM ARGS...]``; 0 done, 1 a step failed, 2 usage."""
    parser = argparse.ArgumentParser(
        prog="pitbox-shim service",
        description="run pitbox-shim in the background, started at login",
    )
    parser.add_argument("action", choices=("install", "uninstall", "status"))
    parser.add_argument(
        "--source", help="status: the PC's source id (default: the only status file)"
    )
    args, shim_args = parser.parse_known_args(argv)
    runner = run or _run
    windows = (platform or sys.platform) == "win32"
    if args.action == "install":
        command = shim_command(shim_args)
        steps = _install_windows(command) if windows else _install_linux(command)
    elif args.action == "uninstall":
        steps = windows_uninstall_commands() if windows else _uninstall_linux()
    else:
        return _status(args.source, runner, windows)
    for step in steps:
        done = runner(step)
        if done.returncode != 0 and not (args.action == "uninstall" and "/End" in step):
            sys.stderr.write(
                f"pitbox-shim service: {shlex.join(step)} failed: "
                f"{(done.stderr or done.stdout).strip()}\n"
            )
            return 1
    _say(f"pitbox-shim service: {args.action} done")
    return 0


def _install_linux(command: list[str]) -> list[list[str]]:
    path = systemd_unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(systemd_unit(command))
    _say(f"wrote {path}")
    return [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", UNIT_NAME],
    ]


def _uninstall_linux() -> list[list[str]]:
    path = systemd_unit_path()
    steps = [["systemctl", "--user", "disable", "--now", UNIT_NAME]]
    if path.exists():
        path.unlink()
        _say(f"removed {path}")
    return [*steps, ["systemctl", "--user", "daemon-reload"]]


def _install_windows(command: list[str]) -> list[list[str]]:
    user = os.environ.get("USERNAME", "")
    xml_path = data_dirs.shim_config_dir() / "pitbox-shim-task.xml"
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    xml_path.write_text(windows_task_xml(command, user), encoding="utf-16")
    _say(f"wrote {xml_path}")
    return windows_install_commands(xml_path)


def _status(source: str | None, runner: Runner, windows: bool) -> int:
    manager = (
        windows_status_command()
        if windows
        else ["systemctl", "--user", "is-active", UNIT_NAME]
    )
    answer = runner(manager)
    state = (answer.stdout or answer.stderr).strip() or f"exit {answer.returncode}"
    _say(f"service: {state.splitlines()[0] if state else '?'}")
    files = (
        [status_file(source)]
        if source
        else sorted(data_dirs.shim_data_dir().glob("*.status.json"))
    )
    if not files:
        _say(describe(None))
    for path in files:
        _say(describe(read_status(path)))
    return 0


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(command), capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(command), 127, "", str(exc))
