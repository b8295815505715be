"""Fixtures of the cloud-side tests: a real S3 endpoint (moto in server mode) and report data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from cloud_sync.s3 import S3Target
from cloud_sync.uploader import Backoff
from pitbox_appliance.compaction import compact_session
from tests.conftest import import_into, readonly_engine

REGION = "us-east-1"


FAST = Backoff(base=0.01, factor=2.0, cap=0.1, jitter=0.0, attempts=3)


@dataclass
class MotoServer:
    """``moto_server`` on a loopback port, requests authenticated with an IAM user's key."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    access_key: str = ""
    secret_key: str = ""
    buckets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        # The first three requests (the IAM setup below) go unauthenticated; every
        # request after them must carry a valid SigV4 signature of a known key.
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
        log = (self.workdir / f"moto-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="pitbox-uploader")
        iam.put_user_policy(
            UserName="pitbox-uploader",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName="pitbox-uploader")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def kill(self) -> None:
        """``kill -9`` by PID: the endpoint vanishes mid-request."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, secret: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret or self.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def target(self, bucket: str, prefix: str = "pitbox", **options: Any) -> S3Target:
        options.setdefault("read_timeout", 5.0)
        options.setdefault("connect_timeout", 1.0)
        return S3Target(
            bucket,
            prefix,
            endpoint_url=self.url,
            region=REGION,
            access_key_id=options.pop("access_key_id", self.access_key),
            secret_access_key=options.pop("secret_access_key", self.secret_key),
            **options,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    """A server this test may kill."""
    server = MotoServer(tmp_path)
    server.start()
    yield server
    server.stop()


SETUP_A = "CarSetup:\n UpdateCount: 1\n Chassis:\n  Front:\n   ToeIn: -1.0 mm\n   BrakeBias: 56.0%\n  Rear:\n   ARB: 3\n"
SETUP_B = "CarSetup:\n UpdateCount: 2\n Chassis:\n  Front:\n   ToeIn: -2.5 mm\n   BrakeBias: 56.0%\n  Rear:\n   ARB: 5\n"
# (file name, setup, simulator options): oldest first
SESSIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("a.ibt", SETUP_A, {"laps": 5, "seed": 7}),
    ("b.ibt", SETUP_B, {"laps": 6, "seed": 3, "start_fuel": 1.8}),
    ("c.ibt", SETUP_B, {"laps": 2, "seed": 11, "drivers": ("Bea Sim", "Alex Sim")}),
)
# What the mistake detector stores (pitbox_appliance/detectors/mistakes.py), put into
# session 2 as that detector would; the simulator's driver makes none of its own.
MISTAKES = (
    (
        100.0,
        {
            "mistake": "braking",
            "lap": 3,
            "lap_dist_pct": 0.27,
            "section": 2,
            "severity": 0.8,
            "driver": "Alex Sim",
        },
    ),
    (
        150.0,
        {
            "mistake": "braking",
            "lap": 5,
            "lap_dist_pct": 0.28,
            "section": 2,
            "severity": 0.5,
            "driver": "Alex Sim",
        },
    ),
    (
        170.0,
        {
            "mistake": "line",
            "lap": 6,
            "lap_dist_pct": 0.71,
            "section": 7,
            "severity": 0.3,
            "driver": "Alex Sim",
        },
    ),
)


@dataclass(frozen=True)
class Team:
    """Three sessions of one team in a database and compacted in an outbox."""

    db_url: str
    outbox: Path
    paths: tuple[str, ...]  # compacted set paths, oldest first


_CACHE: dict[str, Team] = {}


def write_ibt_with_setup(path: Path, setup_yaml: str, **options: Any) -> Path:
    """A simulated .ibt whose session info YAML carries a CarSetup section."""
    from driver_pc.adapters.ibt_file import IbtWriter
    from driver_pc.adapters.simulator import RaceSimulatorAdapter

    sim = RaceSimulatorAdapter(speed=0, **options)
    writer = IbtWriter(
        path, list(sim.channels), sim.session_info_text() + setup_yaml, sim.tick_rate
    )
    for rows in sim.ticks():
        writer.write(rows)
    writer.close()
    return path


def build_team(root: Path) -> Team:
    """Build (once per test run) the three sessions; later calls reuse them."""
    if "team" in _CACHE:
        return _CACHE["team"]
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    root.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{root / 'team.sqlite3'}"
    for name, setup, options in SESSIONS:
        import_into(db_url, write_ibt_with_setup(root / name, setup, **options))
    engine = open_database(db_url)
    writer = SessionWriter(engine)
    for at, payload in MISTAKES:
        writer.add_event(2, "mistake", at, payload)
    writer.commit()
    writer.close()
    engine.dispose()
    outbox = root / "outbox"
    engine = readonly_engine(db_url)
    paths = tuple(compact_session(engine, i, outbox).path for i in (1, 2, 3))
    engine.dispose()
    _CACHE["team"] = Team(db_url, outbox, paths)
    return _CACHE["team"]
