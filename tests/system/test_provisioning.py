"""ansible/playbook.yml run for real over SSH against a booted Debian 12 root (systemd-nspawn).

The root is debootstrapped once by ``ansible/ci/build-root.sh`` and cached in
``/var/cache/pitbox-ci`` (keyed by its package list); each run boots a fresh copy as
a container in a network namespace of its own, joined by a veth pair to a second
namespace where the control machine (``ansible-playbook``) and a driver PC (mDNS
browse) sit. The container reaches nothing else: PitBox comes from a wheel built
from this checkout and its dependencies from a wheel folder bound in read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.timeout(2400)

CACHE = Path(os.environ.get("PITBOX_CI_CACHE", "/var/cache/pitbox-ci"))
VENV_BIN = Path(sys.executable).parent
#: Where the time goes (written to test-artifacts/provisioning-times.json).
TIMES: dict[str, float] = {}
#: What a fresh Raspberry Pi OS Lite has in its boot partition (the parts the
#: playbook edits), so the firmware tasks run here too.
PI_CONFIG_TXT = "# Raspberry Pi OS default\ndtparam=audio=on\ndtoverlay=vc4-kms-v3d\nmax_framebuffers=2\n\n[all]\n"
PI_CMDLINE_TXT = "console=serial0,115200 console=tty1 root=PARTUUID=0a1b2c3d-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return (
            "provisioning needs root (debootstrap, systemd-nspawn, network namespaces)"
        )
    for tool in ("systemd-nspawn", "debootstrap", "ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install.sh installs debootstrap and systemd-container)"
    if not (VENV_BIN / "ansible-playbook").exists():
        return "ansible-core not installed in the venv (the dev extra pins it)"
    return None


def _run(
    cmd: list[str], timeout: float = 600, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd[:6]} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


@dataclass(frozen=True)
class Lan:
    """The appliance's namespace (``.1``) and the control machine's (``.2``), one veth."""

    appliance_ns: str
    pc_ns: str
    appliance_ip: str
    pc_ip: str

    def on_pc(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.pc_ns, *cmd]


@contextmanager
def lan() -> Iterator[Lan]:
    tag = secrets.token_hex(3)
    net = int(tag[:2], 16)
    net_ = Lan(f"pbpA{tag}", f"pbpB{tag}", f"10.215.{net}.1", f"10.215.{net}.2")
    made: list[str] = []
    try:
        for ns in (net_.appliance_ns, net_.pc_ns):
            if _run(["ip", "netns", "add", ns], check=False).returncode != 0:
                pytest.skip("cannot create a network namespace here")
            made.append(ns)
        a, b = f"pbpa{tag}", f"pbpb{tag}"
        _run(["ip", "-n", net_.appliance_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", net_.pc_ns])  # fmt: skip
        for ns, dev, ip in ((net_.appliance_ns, a, net_.appliance_ip), (net_.pc_ns, b, net_.pc_ip)):  # fmt: skip
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "up", "multicast", "on"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        yield net_
    finally:
        for ns in made:
            _run(["ip", "netns", "del", ns], check=False)


def _base_root() -> Path:
    """The cached, debootstrapped root (built on the first run: several minutes)."""
    out = _run(
        ["nice", "-n", "5", str(REPO_ROOT / "ansible/ci/build-root.sh"), str(CACHE)],
        timeout=1800,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _wheel(tmp: Path) -> Path:
    """PitBox's wheel, built from a copy of this working tree (no stale build/)."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("driver_pc", "pitbox_appliance", "cloud_sync", "training", "firmware_config"):  # fmt: skip
        shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)])  # fmt: skip
    (wheel,) = dist.glob("pitbox-*.whl")
    return wheel


def _wheelhouse(wheel: Path) -> Path:
    """The appliance's dependencies as wheels, cached by the pinned requirements."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = json.dumps(
        [project["dependencies"], project["optional-dependencies"]["appliance"]]
    )
    key = hashlib.sha256(pins.encode()).hexdigest()[:12]
    house = CACHE / "wheels" / f"appliance-{key}"
    if not (house / ".ready").exists():
        tmp = house.with_name(f".{house.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(tmp), f"{wheel}[appliance]"], timeout=1800)  # fmt: skip
        for own in tmp.glob("pitbox-*.whl"):
            own.unlink()
        (tmp / ".ready").touch()
        shutil.rmtree(house, ignore_errors=True)
        tmp.rename(house)
    return house


@dataclass
class Machine:
    """A booted copy of the base root: the 'Raspberry Pi'."""

    root: Path
    process: subprocess.Popen[bytes]
    lan: Lan
    key: Path

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return _run(
            self.lan.on_pc(
                "ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                f"pi@{self.lan.appliance_ip}", command,
            ),
            timeout=timeout,
            check=False,
        )  # fmt: skip


@contextmanager
def booted(base: Path, work: Path, net: Lan, wheelhouse: Path) -> Iterator[Machine]:
    root = work / "root"
    started = time.monotonic()
    # Copy-on-write: the cached root is the overlay's read-only lower layer, this
    # run's writes go to its own upper layer (a full copy where overlayfs is missing).
    for layer in ("upper", "overlay-work"):
        (work / layer).mkdir()
    root.mkdir()
    lower = f"lowerdir={base},upperdir={work / 'upper'},workdir={work / 'overlay-work'}"
    overlay = _run(["mount", "-t", "overlay", "overlay", "-o", lower, str(root)], check=False)  # fmt: skip
    if overlay.returncode != 0:
        root.rmdir()
        _run(["cp", "-a", "--reflink=auto", str(base), str(root)], timeout=600)
    TIMES["root_overlay"] = overlay.returncode == 0
    copy_s = time.monotonic() - started
    (root / "etc/machine-id").write_text("")
    boot = root / "boot/firmware"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "config.txt").write_text(PI_CONFIG_TXT)
    (boot / "cmdline.txt").write_text(PI_CMDLINE_TXT)
    key = work / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    ssh_dir = root / "home/pi/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    pi = (root / "home/pi").stat()
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, pi.st_uid, pi.st_gid)
    log = (work / "console.log").open("wb")
    process = subprocess.Popen(
        [
            "systemd-nspawn", "--boot", "--quiet", "--register=no", "--keep-unit",
            "--directory", str(root), "--machine", f"pitbox-{net.appliance_ns[-6:]}",
            f"--network-namespace-path=/run/netns/{net.appliance_ns}",
            f"--bind-ro={wheelhouse}:/var/cache/pitbox-wheels",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "--console=passive",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    machine = Machine(root, process, net, key)
    try:
        up = wait_for(
            lambda: process.poll() is None and machine.ssh("true", 10).returncode == 0,
            timeout=120,
            step=1,
        )
        assert up, f"the container did not boot to ssh: {(work / 'console.log').read_text()[-3000:]}"  # fmt: skip
        TIMES["root_copy_s"] = round(copy_s, 1)
        TIMES["boot_to_ssh_s"] = round(time.monotonic() - started - copy_s, 1)
        yield machine
    finally:
        if process.poll() is None:
            # systemd-nspawn turns SIGTERM into a clean shutdown of the container.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        log.close()
        if overlay.returncode == 0:
            _run(["umount", str(root)], check=False)


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^\S+\s+:\s+(ok=\d+.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP in:\n{output[-3000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _playbook(machine: Machine, work: Path, wheel: Path) -> tuple[dict[str, int], str, float]:  # fmt: skip
    home = work / "ansible-home"
    home.mkdir(exist_ok=True)
    extra = {
        "pitbox_wheel": str(wheel),
        "pitbox_pip_args": ["--no-index", "--find-links", "/var/cache/pitbox-wheels"],
        "pitbox_apt_update": False,
        # No display in the container: the kiosk is installed and enabled, not started.
        "pitbox_kiosk_start": False,
        # As the README's walk-through: tablets open https://pitbox.local:8080/.
        "pitbox_public_host": "pitbox.local",
    }
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    started = time.monotonic()
    result = _run(
        machine.lan.on_pc(
            str(VENV_BIN / "ansible-playbook"),
            "-i", f"{machine.lan.appliance_ip},",
            "-u", "pi", "--private-key", str(machine.key),
            "-e", "ansible_python_interpreter=/usr/bin/python3",
            "-e", json.dumps(extra),
            str(REPO_ROOT / "ansible/playbook.yml"),
        ),
        timeout=1200,
        check=False,
        env=env,
    )  # fmt: skip
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"ansible-playbook failed:\n{output[-6000:]}"
    return _recap(output), output, took


def test_playbook_provisions_a_booted_debian_12_root(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = Path(tmp_path)
    t0 = time.monotonic()
    base = _base_root()
    TIMES["base_root_s"] = round(time.monotonic() - t0)
    wheel = _wheel(work)
    house = _wheelhouse(wheel)
    prepared_s = time.monotonic() - t0
    with lan() as net, booted(base, work, net, house) as pi:
        first, _, first_s = _playbook(pi, work, wheel)
        assert first["failed"] == 0, first
        assert first["unreachable"] == 0, first
        assert first["changed"] > 0, first

        # The appliance answers its health check, inside and from the LAN.
        inside = pi.ssh("curl -fsS http://127.0.0.1:8081/api/v1/health")
        assert inside.returncode == 0, inside.stderr
        assert json.loads(inside.stdout)
        # From the LAN, the API and the dashboard serve HTTPS with the appliance CA.
        ca = work / "pitbox-ca.crt"
        ca.write_text(pi.ssh("cat /usr/local/share/pitbox/pitbox-ca.crt").stdout)
        base_url = f"https://{net.appliance_ip}"
        lan_health = _run(net.on_pc("curl", "-fsS", "--cacert", str(ca), f"{base_url}:8081/api/v1/health"))  # fmt: skip
        assert json.loads(lan_health.stdout)
        # The name tablets use (pitbox_public_host) is in the dashboard's certificate.
        by_name = ["--resolve", f"pitbox.local:8080:{net.appliance_ip}"]
        dashboard = _run(net.on_pc("curl", "-sS", "--cacert", str(ca), *by_name, "-o", "/dev/null", "-w", "%{http_code}", "https://pitbox.local:8080/"))  # fmt: skip
        assert dashboard.stdout in {"200", "302", "303", "307"}, dashboard.stdout
        plain = _run(net.on_pc("curl", "-sS", "-o", "/dev/null", f"http://{net.appliance_ip}:8080/"), check=False)  # fmt: skip
        assert plain.returncode != 0, "the dashboard answered plain HTTP on the LAN"

        # supervisor runs the whole appliance, as the pitbox user under systemd.
        status = pi.ssh(
            "sudo -u pitbox /opt/pitbox/venv/bin/supervisorctl "
            "-c /var/lib/pitbox/broker/supervisord.conf status"
        )
        programs = dict(
            line.split()[:2] for line in status.stdout.splitlines() if line.strip()
        )
        for program in ("mosquitto", "pitbox-core", "pitbox-dashboard", "pitbox-postrace"):  # fmt: skip
            assert programs.get(program) == "RUNNING", status.stdout
        assert pi.ssh("systemctl is-enabled pitbox").stdout.strip() == "enabled"

        # pitbox devices setup made the CA; driver PCs reach the broker's TLS port.
        pki = pi.ssh("sudo ls /var/lib/pitbox/security")
        assert {"ca.crt", "broker.crt"} <= set(pki.stdout.split()), pki.stdout
        tls = _run(
            net.on_pc(
                "openssl", "s_client", "-connect", f"{net.appliance_ip}:8883",
                "-CAfile", "/dev/stdin", "-verify_return_error", "-brief",
            ),
            check=False,
            input=ca.read_text(),
            timeout=20,
        )  # fmt: skip
        assert "Verification: OK" in tls.stdout + tls.stderr, tls.stderr[-2000:]

        # mDNS: a driver PC on the LAN finds the appliance by _pitbox._tcp.
        browse = _run(
            net.on_pc(
                sys.executable, "-c",
                "import json; from driver_pc.protocol.discovery import browse; "
                "print(json.dumps([[a.addresses, a.port] for a in browse(6.0)]))",
            ),
            cwd=REPO_ROOT,
            timeout=60,
        )  # fmt: skip
        found = json.loads(browse.stdout.strip().splitlines()[-1])
        assert [[net.appliance_ip], 8081] in found, found

        # Log rotation: a forced run rotates the logs; the appliance keeps logging.
        rotate = pi.ssh("sudo logrotate -f /etc/logrotate.d/pitbox && sudo ls /var/lib/pitbox/broker/logs")  # fmt: skip
        assert rotate.returncode == 0, rotate.stderr
        assert "pitbox-core.log.1" in rotate.stdout, rotate.stdout
        assert pi.ssh("curl -fsS http://127.0.0.1:8081/api/v1/health").returncode == 0

        # No /dev/watchdog in a container: no watchdog drop-in written.
        assert pi.ssh("test -e /dev/watchdog").returncode != 0
        assert pi.ssh("test -e /etc/systemd/system.conf.d/pitbox-watchdog.conf").returncode != 0  # fmt: skip

        # The kiosk is installed and enabled for the next boot (not started: no display).
        assert pi.ssh("systemctl is-enabled pitbox-kiosk").stdout.strip() == "enabled"
        verify = pi.ssh("sudo systemd-analyze verify /etc/systemd/system/pitbox-kiosk.service /etc/systemd/system/pitbox.service")  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # The kiosk launcher checks the dashboard's certificate against the CA and
        # pins it; the real Chromium (headless: no display here) loads the dashboard
        # over HTTPS with exactly the launcher's arguments.
        launcher = pi.ssh(
            "sed 's#^exec nice -n 10 /usr/bin/chromium #exec echo #' "
            "/usr/local/bin/pitbox-kiosk >/tmp/kiosk-args && "
            "sudo -u pitwall env HOME=/home/pitwall timeout 60 sh /tmp/kiosk-args"
        )
        kiosk_args = launcher.stdout.split()
        assert kiosk_args[-1] == "https://localhost:8080/", launcher.stdout
        pins = [a for a in kiosk_args if a.startswith("--ignore-certificate-errors-spki-list=")]  # fmt: skip
        assert len(pins) == 1, launcher.stdout
        assert len(pins[0].split("=", 1)[1]) == 44, pins
        page = pi.ssh(
            "sudo -u pitwall env HOME=/home/pitwall timeout 90 /usr/bin/chromium "
            "--headless --no-sandbox --disable-gpu --no-first-run "
            "--disable-background-networking --disable-component-update "
            "--user-data-dir=/tmp/kiosk-check --virtual-time-budget=5000 --dump-dom "
            f"{pins[0]} https://localhost:8080/",
            timeout=150,
        )
        assert "<body" in page.stdout, page.stderr[-2000:]
        assert "ERR_CERT" not in page.stdout
        assert "not private" not in page.stdout

        # The boot partition got the touchscreen fragments.
        config_txt = (pi.root / "boot/firmware/config.txt").read_text()
        assert "dtoverlay=vc4-kms-dsi-7inch" in config_txt
        assert config_txt.startswith(PI_CONFIG_TXT)
        cmdline = (pi.root / "boot/firmware/cmdline.txt").read_text()
        assert cmdline.count("\n") <= 1
        assert "consoleblank=0" in cmdline.split()

        # A second run changes nothing.
        second, output2, second_s = _playbook(pi, work, wheel)
        changed = [line for line in output2.splitlines() if line.startswith("changed:")]
        assert second["changed"] == 0, f"{second}\n{changed}"
        assert second["failed"] == 0, second
        TIMES.update(
            prepared_s=round(prepared_s), first_run_s=round(first_s),
            first_changed=first["changed"], second_run_s=round(second_s),
            total_s=round(time.monotonic() - t0),
        )  # fmt: skip
        # The figures ansible/README.md quotes (cold and warm cache).
        out = REPO_ROOT / "test-artifacts" / "provisioning-times.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(TIMES, indent=1) + "\n")
        sys.stderr.write(f"provisioning times: {TIMES}\n")


def test_ansible_lint_passes() -> None:
    lint = VENV_BIN / "ansible-lint"
    if not lint.exists():
        pytest.skip("ansible-lint not installed in the venv (the dev extra pins it)")
    result = _run(
        [str(lint), "--offline", "--nocolor", "ansible/playbook.yml"],
        check=False,
        cwd=REPO_ROOT,
        timeout=300,
        env={**os.environ, "ANSIBLE_HOME": "/tmp/pitbox-ansible-lint"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
