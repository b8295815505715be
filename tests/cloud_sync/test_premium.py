"""PremiumDataAPI: `pitbox-cloud serve` over a moto bucket (server mode), DuckDB answers against the parquet tables, keys, plans, rate limits, metering, schemathesis."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cloud_sync import cloud_command
from cloud_sync.outbox import Outbox
from cloud_sync.premium.keys import KeyStore, Scope
from cloud_sync.premium.ratelimit import RateLimiter
from cloud_sync.uploader import Uploader
from tests.cloud_sync.conftest import FAST, REGION, MotoServer, free_port
from tests.conftest import REPO_ROOT, readonly_engine

DRIVERS = ("Alex Sim", "Bea Sim")
TEAM = "pitbox-racing"
EXAMPLES = int(os.environ.get("PITBOX_SCHEMATHESIS_EXAMPLES", "12"))


@dataclass
class Served:
    url: str
    keys_db: Path
    teams: Path
    mirror: Path
    set_dir: Path  # the compacted set in the outbox
    season: int
    session: str
    token: str  # pitbox-racing:<season>, generous rate


def _race(root: Path) -> Path:
    """A simulated two-driver race with stops and a swap, through the real ingest."""
    from driver_pc.adapters.simulator import RaceSimulatorAdapter
    from driver_pc.pipeline import ShimPipeline
    from pitbox_appliance.cli.importer import local_codec
    from pitbox_appliance.compaction import compact_session
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    url = f"sqlite:///{root / 'db.sqlite3'}"
    codec = local_codec()
    engine = open_database(url)
    writer = SessionWriter(engine)
    ingestor = Ingestor(codec, writer)
    sim = RaceSimulatorAdapter(
        laps=16, speed=0, seed=4, drivers=DRIVERS, start_fuel=3.0, endurance=True
    )
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        ingestor.handle(codec.encode("car42-pc1", seq, message))
        if seq % 2000 == 0:
            ingestor.flush()
    ingestor.end_of_streams()
    ingestor.flush()
    writer.close()
    engine.dispose()
    reader = readonly_engine(url)
    try:
        return root / "outbox" / compact_session(reader, 1, root / "outbox").path
    finally:
        reader.dispose()


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cloud_command.main(list(argv))
    return status, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def moto_premium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, moto_premium: MotoServer
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("premium")
    set_dir = _race(root)
    bucket = moto_premium.bucket("pitbox-premium")
    target = moto_premium.target(bucket)
    with Outbox(root / "q.sqlite3") as outbox:
        done = Uploader(outbox, root / "outbox", target, FAST).run_once()
    assert len(done.done) == 1
    teams = root / "teams"
    teams.mkdir()
    (teams / "pitbox.yaml").write_text(
        f"team: {TEAM}\nname: PitBox Racing\nplan: pro\n"
    )
    (teams / "other.yaml").write_text("team: other-team\nname: Other\nplan: free\n")
    keys_db = root / "keys.sqlite3"
    manifest = json.loads((set_dir / "manifest.json").read_text())
    season = int(manifest["partition"]["season"])
    session = str(manifest["partition"]["session"])
    status, text = _cli(
        "keys", "add", "--keys-db", str(keys_db), "--teams", str(teams),
        "--name", "Broadcast partner", "--scope", f"{TEAM}:{season}",
        "--rate", "100000", "--json",
    )  # fmt: skip
    assert status == 0, text
    token = json.loads(text)["token"]
    port = free_port()
    env = dict(
        os.environ,
        PITBOX_S3_ACCESS_KEY_ID=moto_premium.access_key,
        PITBOX_S3_SECRET_ACCESS_KEY=moto_premium.secret_key,
        PITBOX_S3_REGION=REGION,
    )
    mirror = root / "mirror"
    log = (root / "serve.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "cloud_sync.cloud_command", "serve",
            "--bucket", f"s3://{bucket}/pitbox", "--endpoint-url", moto_premium.url,
            "--keys-db", str(keys_db), "--teams", str(teams), "--mirror", str(mirror),
            "--port", str(port), "--refresh", "2",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = (
            time.monotonic() + 180
        )  # a loaded CI machine: imports, first bucket scan
        while True:  # up, and the set mirrored
            assert proc.poll() is None, (root / "serve.log").read_text()
            try:
                status, body = _get(
                    f"{url}/v1/teams/{TEAM}/seasons/{season}/sessions", token
                )
                if status == 200 and body["count"] == 1:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (root / "serve.log").read_text()
            time.sleep(0.3)
        yield Served(url, keys_db, teams, mirror, set_dir, season, session, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _get(
    url: str, token: str | None = None
) -> tuple[int, Any, dict[str, str]] | tuple[int, Any]:
    status, body, _ = _request(url, token)
    return status, body


def _request(url: str, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return (
                int(response.status),
                json.loads(response.read()),
                dict(response.headers),
            )
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read()), dict(exc.headers)


def _path(s: Served, resource: str) -> str:
    return f"{s.url}/v1/teams/{TEAM}/seasons/{s.season}/sessions/{s.session}/{resource}"


def _table(s: Served, table: str) -> list[dict[str, Any]]:
    return pq.read_table(s.set_dir / table / f"{table}.parquet").to_pylist()


# ---- answers against the tables ----------------------------------------------------------
def test_laps_and_stints_equal_the_parquet_tables(served: Served) -> None:
    status, body, _ = _request(_path(served, "laps"), served.token)
    assert status == 200
    laps = _table(served, "laps")
    assert body["count"] == len(laps) == len(body["data"])
    for got, row in zip(body["data"], laps, strict=True):
        for column in ("lap_number", "driver_name", "lap_time", "pit_lap", "fuel_used"):
            assert got[column] == row[column], column
    status, body, _ = _request(_path(served, "stints"), served.token)
    stints = _table(served, "stints")
    assert [r["driver_name"] for r in body["data"]] == [
        r["driver_name"] for r in stints
    ]
    assert [r["laps"] for r in body["data"]] == [r["laps"] for r in stints]
    assert {r["driver_name"] for r in stints} == set(DRIVERS)


def test_pit_cycles_and_handoffs_recomputed_from_the_tables(served: Served) -> None:
    laps = sorted(_table(served, "laps"), key=lambda r: r["lap_number"])
    cycles: list[list[dict[str, Any]]] = []
    for row in laps:
        if not row["pit_lap"]:
            continue
        if cycles and cycles[-1][-1]["lap_number"] == row["lap_number"] - 1:
            cycles[-1].append(row)
        else:
            cycles.append([row])
    assert cycles, "the simulated race has stops"
    clean = sorted(
        r["lap_time"]
        for r in laps
        if not r["pit_lap"]
        and r["lap_time"] is not None
        and r["start_time"] is not None
    )
    mid = len(clean) // 2
    median = clean[mid] if len(clean) % 2 else (clean[mid - 1] + clean[mid]) / 2
    status, body, _ = _request(_path(served, "pit-cycles"), served.token)
    assert status == 200
    assert [(c["in_lap"], c["out_lap"]) for c in body["data"]] == [
        (c[0]["lap_number"], c[-1]["lap_number"]) for c in cycles
    ]
    for got, cycle in zip(body["data"], cycles, strict=True):
        times = [r["lap_time"] for r in cycle]
        if None in times:
            assert got["time_lost_s"] is None
        else:
            assert got["time_lost_s"] == pytest.approx(sum(times) - len(times) * median)
        assert got["driver_in"] == cycle[0]["driver_name"]
    stints = sorted(_table(served, "stints"), key=lambda r: r["stint"])
    expected = [
        (a["driver_name"], b["driver_name"], b["stint"])
        for a, b in itertools.pairwise(stints)
        if a["driver_name"] != b["driver_name"]
    ]
    assert expected, "the simulated race has a driver swap"
    status, body, _ = _request(_path(served, "handoffs"), served.token)
    assert [
        (h["from_driver"], h["to_driver"], h["to_stint"]) for h in body["data"]
    ] == (expected)


def test_predictions_are_the_stored_strategy_events(served: Served) -> None:
    events = [
        r for r in _table(served, "events") if r["kind"] == "strategy_recommendation"
    ]
    assert events
    status, body, _ = _request(_path(served, "predictions"), served.token)
    assert status == 200
    assert body["count"] == len(events)
    assert body["data"][0]["prediction"] == json.loads(events[0]["payload"])


def test_mirror_keeps_the_hive_layout_without_telemetry(served: Served) -> None:
    import duckdb

    files = sorted(
        p.relative_to(served.mirror).as_posix()
        for p in served.mirror.rglob("*.parquet")
    )
    assert files
    assert all(f.startswith(f"team={TEAM}/season={served.season}/") for f in files)
    assert not [f for f in files if "/telemetry" in f]
    # The same layout any Hive reader takes: DuckDB, like Athena/Trino/Spark.
    with duckdb.connect() as con:
        n = con.execute(
            f"SELECT count(*) FROM read_parquet('{served.mirror}/*/*/*/*/laps/*.parquet', "
            "hive_partitioning = true) WHERE team = 'pitbox-racing'"
        ).fetchone()
    assert n is not None
    assert n[0] == len(_table(served, "laps"))


# ---- keys, scopes, plans --------------------------------------------------------------
def test_refusals(served: Served) -> None:
    laps = _path(served, "laps")
    assert _request(laps)[0] == 401
    assert _request(laps, "pbx_000000000000_nope")[0] == 401
    assert _request(laps, served.token + "x")[0] == 401
    wrong_season = laps.replace(f"/seasons/{served.season}/", "/seasons/1999/")
    status, body, _ = _request(wrong_season, served.token)
    assert status == 403
    assert "no scope" in body["error"]
    status, body, _ = _request(
        laps.replace(served.session, "no-such-session"), served.token
    )
    assert status == 404
    status, body, _ = _request(
        laps.replace(f"teams/{TEAM}", "teams/Bad_Team"), served.token
    )
    assert status == 400
    # A free team gets no key ...
    status, text = _cli(
        "keys", "add", "--keys-db", str(served.keys_db), "--teams", str(served.teams),
        "--name", "x", "--scope", "other-team:*",
    )  # fmt: skip
    assert status == 2
    assert "free plan" in text
    assert "premium data API" in text
    # ... and a key made for it anyway (or before a downgrade) is refused by the server.
    store = KeyStore(served.keys_db)
    _, token = store.add("sneaky", [Scope("other-team", "*")])
    store.close()
    other = f"{served.url}/v1/teams/other-team/seasons/{served.season}/sessions"
    status, body, _ = _request(other, token)
    assert status == 403
    assert "free plan" in body["error"]


def test_keys_are_stored_hashed_and_revocable(served: Served) -> None:
    status, text = _cli(
        "keys", "add", "--keys-db", str(served.keys_db), "--teams", str(served.teams),
        "--name", "Temp", "--scope", f"{TEAM}:*", "--json",
    )  # fmt: skip
    assert status == 0
    made = json.loads(text)
    token = made["token"]
    raw = served.keys_db.read_bytes() + (
        served.keys_db.with_name(served.keys_db.name + "-wal").read_bytes()
        if served.keys_db.with_name(served.keys_db.name + "-wal").exists()
        else b""
    )
    assert token.encode() not in raw
    with sqlite3.connect(served.keys_db) as db:
        stored = db.execute(
            "SELECT token_sha256 FROM api_keys WHERE id = ?", (made["id"],)
        ).fetchone()[0]
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert oct(served.keys_db.stat().st_mode & 0o777) == "0o600"
    assert _request(_path(served, "laps"), token)[0] == 200
    assert _cli("keys", "revoke", "--keys-db", str(served.keys_db), made["id"])[0] == 0
    assert _request(_path(served, "laps"), token)[0] == 401
    status, text = _cli("keys", "list", "--keys-db", str(served.keys_db), "--json")
    listed = {k["id"]: k for k in json.loads(text)}
    assert listed[made["id"]]["revoked_at"] is not None
    assert "token" not in listed[made["id"]]
    assert _cli("keys", "add", "--keys-db", str(served.keys_db), "--name", "x",
                "--scope", "NOT A SCOPE")[0] == 2  # fmt: skip


def test_rate_limit_answers_429_with_retry_after(served: Served) -> None:
    status, text = _cli(
        "keys", "add", "--keys-db", str(served.keys_db), "--teams", str(served.teams),
        "--name", "Slow", "--scope", f"{TEAM}:{served.season}", "--rate", "3", "--json",
    )  # fmt: skip
    token = json.loads(text)["token"]
    url = _path(served, "stints")
    answers = [_request(url, token) for _ in range(5)]
    assert [a[0] for a in answers[:3]] == [200, 200, 200]
    assert [a[0] for a in answers[3:]] == [429, 429]
    retry = int(answers[3][2]["Retry-After"])
    assert 1 <= retry <= 20  # one request's worth of 3/min refills in ≤ 20 s
    # Usage is metered per key: 3 answered, 2 refused, + this call.
    status, _body, _ = _request(f"{served.url}/v1/usage", json.loads(text)["token"])
    assert status == 429  # the usage call counts against the limit too
    store = KeyStore(served.keys_db)
    usage = store.usage(json.loads(text)["id"])
    store.close()
    by_status = {}
    for row in usage:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["requests"]
    assert by_status == {200: 3, 429: 3}
    assert sum(r["rows"] for r in usage if r["status"] == 200) == 3 * len(
        _table(served, "stints")
    )


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", 2)[0] for _ in range(3)] == [True, True, False]
    assert limiter.take("k", 2) == (False, 30)
    now[0] = 29.0
    assert limiter.take("k", 2) == (False, 1)
    now[0] = 30.0
    assert limiter.take("k", 2) == (True, 0)


def test_usage_endpoint_reports_the_calling_key(served: Served) -> None:
    status, body, _ = _request(f"{served.url}/v1/usage", served.token)
    assert status == 200
    routes = {r["route"] for r in body["usage"]}
    assert "/v1/teams/{team}/seasons/{season}/sessions/{session}/laps" in routes


# ---- the OpenAPI document and schemathesis ------------------------------------------------
def test_openapi_and_schemathesis(served: Served) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    with urllib.request.urlopen(f"{served.url}/openapi.json", timeout=10) as doc:
        document = json.load(doc)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 7
    headers = {"Authorization": f"Bearer {served.token}"}
    problems: list[str] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=served.url, headers=headers, timeout=20)
            if response.status_code >= 500:
                problems.append(f"{case.formatted_path}: {response.status_code}")
                return
            try:
                # Generated teams/seasons are out of the key's scope (403, documented):
                # "valid by the schema must be accepted" does not hold for them.
                case.validate_response(
                    response,
                    excluded_checks=[positive_data_acceptance, not_a_server_error],
                )
            except AssertionError as exc:
                problems.append(f"{case.method} {case.formatted_path}: {exc}"[:400])

        check()
    assert not problems, "\n".join(sorted(set(problems))[:20])
