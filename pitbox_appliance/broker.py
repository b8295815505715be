"""Runs and provisions the appliance's Mosquitto broker."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

logger = logging.getLogger(__name__)

#: The repo's ``firmware_config/`` folder (not a package, so not importlib.resources).
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "firmware_config"

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.02
_LOG_TAIL_CHARS = 4000
# Mosquitto refuses %u ACL substitution for these; a username must also not
# break the password file's "user:hash" line format.
_BAD_USERNAME = re.compile(r"[:+#/\s\x00]")

#: The broker logins of the appliance's own programs: core, dashboard and
#: ``pitbox report --broker``. The broker makes a login the client id
#: (``use_username_as_clientid``), so two programs must never share one. They all
#: have the appliance login's password. Kept in step with
#: ``pitbox_appliance.config`` (which this module may not import) by a test.
PROGRAM_USERS = ("pitbox-core", "pitbox-dashboard", "pitbox-report")
#: Program logins that may have a password of their own (``add_user`` before
#: ``write_config``): the dashboard's, so that its process never holds the
#: appliance password (docs/security.md).
OWN_LOGIN_USERS = ("pitbox-dashboard",)
#: Program logins that only read the live topics (state and events): the dashboard
#: shows them and sends everything else through the core's API.
READ_ONLY_USERS = ("pitbox-dashboard",)

#: Seconds between two snapshots of the broker's in-memory state (see
#: mosquitto.conf.template): the most a kill -9 of the broker can lose of what
#: it holds only in memory. Mosquitto's own default is 1800.
AUTOSAVE_INTERVAL_S = 2


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A TLS listener for driver PCs on the LAN (certificate from the appliance CA)."""

    port: int
    certfile: Path
    keyfile: Path
    bind: str = "0.0.0.0"

    def render(self) -> str:
        """The listener block of mosquitto.conf."""
        return (
            f"listener {self.port} {self.bind}\n"
            # A listener setting: each listener needs it (see the plain one).
            "use_username_as_clientid true\n"
            f"certfile {self.certfile}\n"
            f"keyfile {self.keyfile}\n"
            "tls_version tlsv1.2\n"
        )


#: The PitBox topics a bridge carries (below ``pitbox/v1/``) and their direction
#: seen from the appliance: shims' data comes in from the cloud broker; the core's
#: commands and end-to-end acknowledgements go out to it. Live state, events and
#: everything else stay on the appliance.
BRIDGE_TOPICS = (("shim/+/data", "in"), ("shim/+/cmd", "out"), ("shim/+/ack", "out"))
_BRIDGE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """A Mosquitto bridge from the appliance to a cloud broker (behind CGNAT).

    The appliance dials out to ``host:port`` over TLS (verified against
    ``ca_file``) with a password login; driver PCs off the LAN publish to the
    cloud broker under the same topics. Stored by ``pitbox remote
    bridge`` as ``bridge.json`` in the broker's run dir (mode 0600: it holds the
    cloud password) and rendered into mosquitto.conf by :meth:`render`.
    """

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    ca_file: str
    client_id: str = "pitbox-appliance"

    def __post_init__(self) -> None:
        for name, value in (
            ("host", self.host),
            ("username", self.username),
            ("password", self.password),
            ("ca_file", self.ca_file),
        ):
            if (
                not value
                or any(c in value for c in "\n\r\x00")
                or value != value.strip()
            ):
                raise ValueError(f"bridge {name} must be one non-empty line")
        if any(c in self.host for c in " :/#+"):
            raise ValueError(f"bridge host {self.host!r}: a hostname or IPv4 address")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"bridge port {self.port} out of range")
        if not _BRIDGE_NAME.fullmatch(self.client_id):
            raise ValueError(
                f"bridge client id {self.client_id!r}: letters, digits, _.-"
            )

    def render(self) -> str:
        """The ``connection`` section of mosquitto.conf."""
        topics = "".join(
            f"topic pitbox/v1/{pattern} {direction} 1\n"
            for pattern, direction in BRIDGE_TOPICS
        )
        return (
            "\n# Bridge to the cloud broker (pitbox remote bridge; docs/remote.md).\n"
            "# Must come last: every setting below belongs to this connection.\n"
            f"connection {self.client_id}\n"
            f"address {self.host}:{self.port}\n"
            "bridge_protocol_version mqttv311\n"
            f"remote_clientid {self.client_id}\n"
            f"local_clientid {self.client_id}-local\n"
            f"remote_username {self.username}\n"
            f"remote_password {self.password}\n"
            f"bridge_cafile {self.ca_file}\n"
            "bridge_insecure false\n"
            "bridge_tls_version tlsv1.2\n"
            # A persistent session on both sides: what arrives while the link is
            # down waits (QoS 1) on the broker that has it.
            "cleansession false\n"
            "try_private false\n"
            "notifications false\n"
            "keepalive_interval 20\n"
            "restart_timeout 1 15\n"
            "start_type automatic\n"
            f"{topics}"
        )

    def to_json(self) -> dict[str, object]:
        """As stored in ``bridge.json``."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "ca_file": self.ca_file,
            "client_id": self.client_id,
        }

    @classmethod
    def load(cls, path: Path) -> BridgeConfig | None:
        """The bridge stored at ``path``; None if there is none. ValueError if bad."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        try:
            return cls(
                host=str(data["host"]),
                port=int(data["port"]),
                username=str(data["username"]),
                password=str(data["password"]),
                ca_file=str(data["ca_file"]),
                client_id=str(data.get("client_id", "pitbox-appliance")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a bridge config ({exc})") from None


class MosquittoBroker:
    """One Mosquitto process with its config, password file and ACL in ``run_dir``.

    Provision with :meth:`add_user` and :meth:`write_config`, then :meth:`start`.
    The process is stopped by its own PID only; the port stays the same across
    :meth:`restart`, and persistence keeps retained messages and sessions.
    """

    def __init__(
        self,
        run_dir: Path,
        port: int,
        bind: str = "127.0.0.1",
        tls: TlsListener | None = None,
        autosave_interval_s: int = AUTOSAVE_INTERVAL_S,
    ) -> None:
        self.run_dir = run_dir
        self.port = port
        self.bind = bind
        self.tls = tls
        self.autosave_interval_s = autosave_interval_s
        self.pid_file = run_dir / "mosquitto.pid"
        self.password_file = run_dir / "passwd"
        self.acl_file = run_dir / "mosquitto.acl"
        self.config_file = run_dir / "mosquitto.conf"
        self.data_dir = run_dir / "data"
        self.log_file = run_dir / "logs" / "mosquitto.log"
        #: Written by ``pitbox remote bridge``; rendered by :meth:`write_config`.
        self.bridge_file = run_dir / "bridge.json"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        """The address clients connect to."""
        return self.bind

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's PID while it runs."""
        return self._process.pid if self.running and self._process else None

    def add_user(self, username: str, password: str) -> None:
        """Add or update a user in the password file (reloads a running broker).

        A program login that may have a password of its own (``OWN_LOGIN_USERS``)
        is remembered as having one, so ``write_config`` keeps it.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        set_password(self.password_file, username, password)
        if username in OWN_LOGIN_USERS:
            self._set_own_logins(self._own_logins() | {username})
        if self.running:
            self.reload()

    @property
    def own_logins_file(self) -> Path:
        """Program logins given a password of their own (not the appliance's)."""
        return self.run_dir / "own_logins.txt"

    def _own_logins(self) -> set[str]:
        try:
            return set(self.own_logins_file.read_text(encoding="utf-8").split())
        except FileNotFoundError:
            return set()

    def _set_own_logins(self, users: set[str]) -> None:
        _write_private(self.own_logins_file, "".join(f"{u}\n" for u in sorted(users)))

    def remove_user(self, username: str) -> None:
        """Delete a user from the password file (reloads a running broker).

        On reload Mosquitto 2.0 re-checks every connected client against the new
        password file and disconnects those no longer in it.
        """
        delete_user(self.password_file, username)
        if username in self._own_logins():
            self._set_own_logins(self._own_logins() - {username})
        if self.running:
            self.reload()

    def write_config(
        self, appliance_user: str, program_users: Sequence[str] = PROGRAM_USERS
    ) -> Path:
        """Render mosquitto.conf and the ACL into ``run_dir``; return the conf path.

        ``appliance_user`` and each of ``program_users`` get the appliance's
        access; the program logins are (re)written with the appliance login's
        password hash, so the appliance password opens each of them.
        """
        users = [appliance_user, *program_users]
        for user in users:
            if not user or _BAD_USERNAME.search(user):
                raise ValueError(f"invalid appliance username {user!r}")
        for folder in (self.run_dir, self.data_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        # A program login given a password of its own (the dashboard's, set with
        # add_user) keeps it; the others, and one only ever copied from the
        # appliance login, open with the appliance password (its current one).
        own = (
            password_users(self.password_file)
            & set(OWN_LOGIN_USERS)
            & self._own_logins()
        )
        copy_login(
            self.password_file,
            appliance_user,
            [u for u in program_users if u not in own],
        )
        acl = _render(
            "mosquitto.acl.template",
            appliance_users="".join(
                f"user {user}\ntopic read pitbox/v1/live/#\n"
                if user in READ_ONLY_USERS
                else f"user {user}\ntopic readwrite pitbox/v1/#\n"
                for user in dict.fromkeys(users)
            ),
        )
        _write_private(self.acl_file, acl)
        conf = _render(
            "mosquitto.conf.template",
            password_file=self.password_file,
            acl_file=self.acl_file,
            bind=self.bind,
            port=self.port,
            data_dir=self.data_dir,
            tls_listener=self.tls.render() if self.tls else "",
            pid_file=self.pid_file,
            autosave_interval_s=self.autosave_interval_s,
        )
        if os.geteuid() == 0:
            # As root Mosquitto would drop to the "mosquitto"/"nobody" user, which
            # cannot read our 0600 password file or write the persistence dir.
            conf += "\n# Started as root: keep root rather than drop privileges.\n"
            conf += "user root\n"
        bridge = BridgeConfig.load(self.bridge_file)
        if bridge is not None:
            conf += bridge.render()  # last: a connection's settings follow it
        _write_private(self.config_file, conf)
        return self.config_file

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the broker and wait until its port accepts TCP connections."""
        if self.running:
            return
        if not self.config_file.exists():
            raise RuntimeError(f"{self.config_file} missing: call write_config() first")
        if not self.password_file.exists():
            # Mosquitto refuses to start without it; an empty one denies everybody.
            self.password_file.touch(mode=0o600)
        if not _port_free(self.bind, self.port):
            # Checked up front: otherwise the probe below could reach the other
            # listener and report a broker that has in fact exited.
            raise RuntimeError(f"port {self.port} on {self.bind} is already in use")
        if self.tls is not None and not _port_free(self.tls.bind, self.tls.port):
            raise RuntimeError(f"TLS port {self.tls.port} is already in use")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        log_start = self._log.tell()
        self._process = subprocess.Popen(
            [_executable("mosquitto"), "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not _port_open(self.bind, self.port):
            if self._process.poll() is not None:
                code = self._process.returncode
                self._close_log()
                self._process = None
                raise RuntimeError(
                    f"mosquitto exited with code {code} on start "
                    f"(port {self.port}): {self._log_since(log_start)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"mosquitto did not accept connections on {self.bind}:"
                    f"{self.port} within {timeout:.0f} s: {self._log_since(log_start)}"
                )
            time.sleep(_POLL_S)
        logger.info(
            "mosquitto started on %s:%s (pid %s)", self.bind, self.port, self.pid
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the broker (SIGTERM so it saves persistence; SIGKILL if it hangs)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("mosquitto pid %s ignored SIGTERM; killing", process.pid)
                process.kill()
                process.wait()
            logger.info("mosquitto stopped (pid %s)", process.pid)
        self._close_log()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Make a running broker re-read its password file and ACL (SIGHUP)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)
        else:
            reload_by_pid_file(self.pid_file)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace").strip()
        except OSError as exc:
            return f"(no broker log: {exc})"
        return text[-_LOG_TAIL_CHARS:] or "(broker wrote nothing)"


def set_password(password_file: Path, username: str, password: str) -> None:
    """Add or update ``username`` in a Mosquitto password file (hashed, mode 0600)."""
    if not username or _BAD_USERNAME.search(username):
        raise ValueError(f"invalid MQTT username {username!r}")
    if not password or "\n" in password:
        raise ValueError(f"invalid password for MQTT user {username!r}")
    args = [_executable("mosquitto_passwd"), "-b"]
    if not password_file.exists():
        args.append("-c")
    args += [str(password_file), username, password]
    # The password is on the command line only for this short-lived child.
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"mosquitto_passwd failed for user {username!r}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    password_file.chmod(0o600)


def delete_user(password_file: Path, username: str) -> None:
    """Remove ``username`` from a Mosquitto password file (no error if absent)."""
    if not password_file.exists() or username not in password_users(password_file):
        return
    result = subprocess.run(
        [_executable("mosquitto_passwd"), "-D", str(password_file), username],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"mosquitto_passwd could not delete user {username!r}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    password_file.chmod(0o600)


def copy_login(password_file: Path, source: str, targets: Sequence[str]) -> None:
    """Give each of ``targets`` the password of ``source`` (its hash, copied).

    Mosquitto's hashes are salted but not bound to the username, so a copied line
    accepts the same password. Without ``source`` in the file nothing changes and
    a warning says the program logins cannot log in.
    """
    if not targets:
        return
    lines = (
        password_file.read_text(encoding="utf-8").splitlines()
        if password_file.exists()
        else []
    )
    hashes = {user: hashed for user, _, hashed in map(_split_login, lines)}
    if source not in hashes:
        logger.warning(
            "no broker login %r in %s: the program logins %s are not written",
            source,
            password_file,
            ", ".join(targets),
        )
        return
    copies = [user for user in dict.fromkeys(targets) if user != source]
    kept = [line for line in lines if line.split(":", 1)[0] not in copies]
    added = [f"{user}:{hashes[source]}" for user in copies]
    # Replaced in one rename: a broker reloading meanwhile reads the old or the new.
    partial = password_file.with_name(password_file.name + ".new")
    _write_private(partial, "\n".join([*kept, *added]) + "\n")
    partial.replace(password_file)


def _split_login(line: str) -> tuple[str, str, str]:
    return line.partition(":")


def password_users(password_file: Path) -> set[str]:
    """The usernames in a Mosquitto password file."""
    if not password_file.exists():
        return set()
    lines = password_file.read_text(encoding="utf-8").splitlines()
    return {line.split(":", 1)[0] for line in lines if ":" in line}


def reload_by_pid_file(pid_file: Path) -> bool:
    """SIGHUP the Mosquitto named by ``pid_file`` (run by supervisor); False if none.

    The PID is checked to belong to a ``mosquitto`` process first, so a stale
    file never signals an unrelated program.
    """
    try:
        pid = int(pid_file.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return False
    if comm != "mosquitto":
        return False
    os.kill(pid, signal.SIGHUP)
    return True


def render_supervisor_config(
    run_dir: Path,
    python: str,
    config: Path,
    team_key_hex: str,
    mqtt_password: str,
    api_tokens: str = "",
    sync_target: str = "",
    s3_endpoint_url: str = "",
    postrace: bool = False,
    *,
    dashboard_api_token: str = "",
    postrace_api_token: str = "",
    dashboard_mqtt_password: str = "",
) -> Path:
    """Render ``supervisord.conf``: broker, core, dashboard, and optional programs.

    The uploader when ``sync_target`` is set; the post-race worker if ``postrace``.
    Each program gets only the secrets it uses: the core ``team_key_hex``,
    ``mqtt_password`` and ``api_tokens`` (the tokens it accepts, digests:
    ``pitbox_appliance.api.auth.program_tokens``); the dashboard
    ``dashboard_mqtt_password`` (its own broker login, ``MosquittoBroker.add_user``
    before ``write_config``) and ``dashboard_api_token``; the post-race worker
    ``postrace_api_token``. Left out, they fall back to what every program got
    before: the appliance password (a warning says so) and ``api_tokens``. The file
    is written with mode 0600.
    """
    if not re.fullmatch(r"[0-9a-fA-F]+", team_key_hex):
        raise ValueError("team_key_hex must be a non-empty hex string")
    if not mqtt_password or any(c in mqtt_password for c in '"\\\n\r'):
        # Supervisor's environment= parser is shlex-based: keep quoting trivial.
        raise ValueError('mqtt_password must be non-empty without " \\ or newlines')
    if any(c in api_tokens for c in '"\\\n\r '):
        raise ValueError("api_tokens must not hold quotes, backslashes or spaces")
    if not dashboard_mqtt_password:
        logger.warning(
            "the dashboard gets the appliance's MQTT password: give it a login of "
            "its own (dashboard_mqtt_password)"
        )
    for name, value in (
        ("sync_target", sync_target),
        ("s3_endpoint_url", s3_endpoint_url),
        ("dashboard_api_token", dashboard_api_token),
        ("postrace_api_token", postrace_api_token),
        ("dashboard_mqtt_password", dashboard_mqtt_password),
    ):
        if any(c in value for c in '"\\\n\r '):
            raise ValueError(f"{name} must not hold quotes, backslashes or spaces")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    text = _render(
        "supervisord.conf.template",
        run_dir=_supervisor_escape(str(run_dir)),
        mosquitto=_supervisor_escape(
            _executable_or("mosquitto", "/usr/sbin/mosquitto")
        ),
        python=_supervisor_escape(python),
        config=_supervisor_escape(str(config)),
        team_key_hex=team_key_hex,
        mqtt_password=_supervisor_escape(mqtt_password),
        api_tokens=_supervisor_escape(api_tokens),
        dashboard_mqtt_password=_supervisor_escape(
            dashboard_mqtt_password or mqtt_password
        ),
        dashboard_token_env=(
            f'PITBOX_API_TOKEN="{_supervisor_escape(dashboard_api_token)}"'
            if dashboard_api_token
            else f'PITBOX_API_TOKENS="{_supervisor_escape(api_tokens)}"'
        ),
    )
    if sync_target:
        text += "\n" + _render(
            "supervisord.uploader.conf.template",
            python=_supervisor_escape(python),
            run_dir=_supervisor_escape(str(run_dir)),
            sync_target=_supervisor_escape(sync_target),
            s3_endpoint_url=_supervisor_escape(s3_endpoint_url),
        )
    if postrace:
        text += "\n" + _render(
            "supervisord.postrace.conf.template",
            python=_supervisor_escape(python),
            config=_supervisor_escape(str(config)),
            run_dir=_supervisor_escape(str(run_dir)),
            postrace_token_env=(
                f'PITBOX_API_TOKEN="{_supervisor_escape(postrace_api_token)}"'
                if postrace_api_token
                else f'PITBOX_API_TOKENS="{_supervisor_escape(api_tokens)}"'
            ),
            sync_target=_supervisor_escape(sync_target),
            s3_endpoint_url=_supervisor_escape(s3_endpoint_url),
        )
    path = run_dir / "supervisord.conf"
    _write_private(path, text)
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _render(template: str, **values: object) -> str:
    return (TEMPLATE_DIR / template).read_text(encoding="utf-8").format(**values)


def _write_private(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def _supervisor_escape(value: str) -> str:
    # Supervisor expands %(name)s in values; a literal % must be doubled.
    return value.replace("%", "%%")


def _executable(name: str) -> str:
    # Debian puts mosquitto in /usr/sbin, which is not on every user's PATH.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise FileNotFoundError(f"{name} not found (apt-get install mosquitto)")
    return found


def _executable_or(name: str, default: str) -> str:
    try:
        return _executable(name)
    except FileNotFoundError:
        return default  # rendering for another machine: the Debian location


def _port_free(host: str, port: int) -> bool:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )[0]
    with socket.socket(family, kind, proto) as sock:
        # Same option Mosquitto sets, so TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
        return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
