"""``pitbox demo``: broker, core and dashboard under supervisor, fed by simulated and replayed shims."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from driver_pc.adapters.base import SimAdapter
from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pairing import (
    DeviceCredentials,
    ca_path,
    load_credentials,
    pair,
    save_credentials,
)
from driver_pc.protocol.pairing import PairingError
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.api.auth import program_tokens
from pitbox_appliance.broker import (
    MosquittoBroker,
    TlsListener,
    free_port,
    render_supervisor_config,
)
from pitbox_appliance.config import DASHBOARD_MQTT_USER
from pitbox_appliance.security.devices import DeviceRegistry
from pitbox_appliance.security.pki import ensure_pki
from pitbox_appliance.security.users import USERS_FILE, Role, UserStore

logger = logging.getLogger(__name__)
#: The dashboard login ``pitbox demo`` makes (an engineer; password printed at start).
DEMO_USER = "demo"


def run_demo(args: argparse.Namespace) -> int:
    """Run the whole appliance locally until Ctrl-C (or ``--duration`` seconds)."""
    work: Path = args.dir or Path.home() / ".pitbox-demo"
    work.mkdir(parents=True, exist_ok=True)
    team_key = secrets.token_bytes(32)
    appliance_password = secrets.token_hex(16)
    broker_port, tls_port = free_port(), free_port()
    # First setup: the CA and the broker's TLS certificate; shims pair over the API.
    pki = ensure_pki(work / "security", ["127.0.0.1", "localhost"])
    broker = MosquittoBroker(
        work / "broker",
        port=broker_port,
        tls=TlsListener(tls_port, pki.server_cert, pki.server_key, "127.0.0.1"),
    )
    broker.add_user("appliance", appliance_password)
    # The dashboard's own broker login (read-only on the live topics): its process
    # never holds the appliance password.
    dashboard_password = secrets.token_hex(16)
    broker.add_user(DASHBOARD_MQTT_USER, dashboard_password)
    # Every team PC runs a shim for car 42 (--team-pcs): one drives, the others
    # spectate, all on one race clock; driver i sits at PC i mod N.
    seed, race_start = int(time.time()), time.time() + 5.0
    pcs = max(1, args.team_pcs)
    shims: list[tuple[str, SimAdapter]] = [
        (
            f"car42-pc{pc}",
            RaceSimulatorAdapter(
                laps=args.laps,
                speed=args.speed,
                seed=seed,
                opponents=args.opponents,
                team_pcs=pcs,
                pc=pc,
                race_start=race_start if pcs > 1 and args.speed > 0 else None,
            ),
        )
        for pc in range(1, pcs + 1)
    ]
    for i, path in enumerate(args.replay or []):
        shims.append(
            (f"car{43 + i}-pc1", IbtReplayAdapter(str(path), speed=args.speed))
        )
    broker.write_config(appliance_user="appliance")
    # The dashboard needs a login: a demo engineer with a new password every run.
    demo_password = secrets.token_urlsafe(9)
    UserStore(pki.directory / USERS_FILE).add(
        DEMO_USER, Role.ENGINEER, demo_password, replace=True
    )
    api_port = free_port()
    config_path = work / "appliance.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker_port,
                    "username": "appliance",
                },
                "security": {
                    "dir": str(pki.directory),
                    "broker_run_dir": str(broker.run_dir),
                    "tls_port": tls_port,
                    "public_host": "127.0.0.1",
                    "legacy_team_key": False,
                },
                "core": {
                    "db_url": f"sqlite:///{work / 'pitbox.sqlite3'}",
                    "api_port": api_port,
                },
                "dashboard": {
                    "host": "0.0.0.0",
                    "port": args.port,
                    "team_name": "PitBox Demo",
                },
            }
        )
    )
    # Each program its own API token; the core is told their digests only.
    tokens = program_tokens()
    conf = render_supervisor_config(
        broker.run_dir,
        sys.executable,
        config_path,
        team_key.hex(),
        appliance_password,
        api_tokens=tokens.core,
        dashboard_api_token=tokens.dashboard,
        postrace_api_token=tokens.postrace,
        dashboard_mqtt_password=dashboard_password,
        # A finished demo session is compacted and reported by itself, as on a real
        # appliance (no sync target: the report stays local; the /stints tile shows it).
        postrace=True,
    )
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads: list[threading.Thread] = []
    try:
        # The core must hold its broker session before shims publish, or the
        # broker has nobody to keep their first messages for.
        started = _wait_core(api_port, 60, supervisord) and _wait_port(
            args.port, 60, supervisord
        )
        if not started:
            sys.stderr.write(
                f"pitbox demo: the appliance did not start; logs in {broker.run_dir / 'logs'}\n"
            )
            return 1
        registry = DeviceRegistry(pki.directory, broker.run_dir)
        for source, adapter in shims:
            creds_path = work / "shims" / f"{source}.json"
            try:
                creds = _paired(registry, creds_path, source, api_port, tls_port)
            except (PairingError, ValueError, RuntimeError) as exc:
                sys.stderr.write(f"pitbox demo: pairing {source} failed: {exc}\n")
                return 1
            config = ShimConfig(
                source=source,
                broker=creds.broker_address(ca_path(creds_path)),
                team_key=creds.message_key,
                spool_path=str(work / f"{source}.spool"),
            )
            thread = threading.Thread(
                target=ShimService(config, adapter).run, args=(stop,), daemon=True
            )
            thread.start()
            threads.append(thread)
        # The dashboard binds 0.0.0.0 with the demo's CA: HTTPS (docs/remote.md).
        sys.stdout.write(
            f"PitBox demo running: dashboard https://127.0.0.1:{args.port}/  "
            f"(certificate from the demo's own CA {pki.ca_cert}: trust it, or let "
            "the browser warn once) "
            f"(logs: {broker.run_dir / 'logs'}). Ctrl-C stops everything.\n"
            f"Dashboard login: {DEMO_USER} / {demo_password}  (engineer; more people: "
            f"pitbox users --config {config_path} add NAME --role viewer|crew|engineer)\n"
        )
        sys.stdout.flush()
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while not stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                break
            if supervisord.poll() is not None:
                sys.stderr.write("pitbox demo: supervisord exited\n")
                return 1
            stop.wait(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM)
            try:
                supervisord.wait(timeout=30)
            except subprocess.TimeoutExpired:
                supervisord.kill()
        sys.stdout.write("PitBox demo stopped.\n")
    return 0


def _paired(
    registry: DeviceRegistry,
    creds_path: Path,
    source: str,
    api_port: int,
    tls_port: int,
) -> DeviceCredentials:
    """The demo shim's credentials: kept from the last run, else paired afresh."""
    active = {d.source for d in registry.devices() if d.active}
    if source in active and creds_path.exists():
        # The demo picks new ports each run: only the TLS port is out of date.
        kept = load_credentials(creds_path).to_json()
        return DeviceCredentials.from_json({**kept, "mqtt_port": tls_port})
    if source in active:
        registry.revoke(source)
    pending = registry.start_pairing(source)
    creds = pair(f"http://127.0.0.1:{api_port}", pending.code)
    save_credentials(creds, creds_path)
    return creds


def _wait_core(api_port: int, timeout: float, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{api_port}/api/v1/health"
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if json.load(reply).get("broker_connected"):
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    return False


def _wait_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.3)
    return False
