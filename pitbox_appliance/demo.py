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
from driver_pc.service import ShimConfig, ShimService
from driver_pc.transport.mqtt import BrokerAddress
from pitbox_appliance.broker import MosquittoBroker, free_port, render_supervisor_config

logger = logging.getLogger(__name__)


def run_demo(args: argparse.Namespace) -> int:
    """Run the whole appliance locally until Ctrl-C (or ``--duration`` seconds)."""
    work: Path = args.dir or Path.home() / ".pitbox-demo"
    work.mkdir(parents=True, exist_ok=True)
    team_key = secrets.token_bytes(32)
    appliance_password = secrets.token_hex(16)
    broker_port = free_port()
    broker = MosquittoBroker(work / "broker", port=broker_port)
    broker.add_user("appliance", appliance_password)
    shims: list[tuple[str, SimAdapter]] = [
        (
            "car42-pc1",
            RaceSimulatorAdapter(
                laps=args.laps,
                speed=args.speed,
                seed=int(time.time()),
                opponents=args.opponents,
            ),
        )
    ]
    for i, path in enumerate(args.replay or []):
        shims.append(
            (f"car{43 + i}-pc1", IbtReplayAdapter(str(path), speed=args.speed))
        )
    shim_passwords = {source: secrets.token_hex(12) for source, _ in shims}
    for source, password in shim_passwords.items():
        broker.add_user(source, password)
    broker.write_config(appliance_user="appliance")
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
    # One token for the pit wall (commands) and the driver endpoints; the core and the
    # dashboard get it through supervisor's environment.
    api_token = secrets.token_hex(20)
    conf = render_supervisor_config(
        broker.run_dir,
        sys.executable,
        config_path,
        team_key.hex(),
        appliance_password,
        api_tokens=f"{api_token}:commands+driver",
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
        for source, adapter in shims:
            config = ShimConfig(
                source=source,
                broker=BrokerAddress(
                    "127.0.0.1", broker_port, source, shim_passwords[source]
                ),
                team_key=team_key,
                spool_path=str(work / f"{source}.spool"),
            )
            thread = threading.Thread(
                target=ShimService(config, adapter).run, args=(stop,), daemon=True
            )
            thread.start()
            threads.append(thread)
        sys.stdout.write(
            f"PitBox demo running: dashboard http://127.0.0.1:{args.port}/  "
            f"(logs: {broker.run_dir / 'logs'}). Ctrl-C stops everything.\n"
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
