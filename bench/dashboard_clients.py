"""Ten browser clients on the dashboard: update rate per client, dashboard CPU/memory, read→screen latency.

The whole chain runs for real on this host: Mosquitto (provisioned users), the
appliance CoreService in-process (SQLite in a temp dir), a ShimService streaming the
race simulator at real time (60 Hz ticks, 50 ms batches), and the dashboard as its
own process (``python -m pitbox_appliance.dashboard``), as under supervisor.

Clients are pages of ONE headless Debian Chromium (``/usr/bin/chromium``,
no-sandbox flags), each in its own browser context (own cookies and NiceGUI
client), i.e. ten real socket.io clients rendering the real pages. Per phase
(``/`` then ``/map``) every client counts, in the page itself, how often the live
value changes (``/``: the speed label; ``/map``: the car dot's ``transform``).

Latency, shim read → value on the screen: the simulator is wrapped so that the
``Speed`` channel of every tick carries the wall-clock millisecond (mod 300) at
which the shim's adapter handed the tick over, scaled so that the pit wall's km/h
label shows exactly that number. Each ``/`` client notes ``Date.now()`` in a
MutationObserver when the label changes; (now − shown) mod 300 ms is the latency
from shim read to the DOM update (paint follows within a frame, ≤ 16 ms, not
included). The browser and the shim share this host's clock.

    .venv/bin/python bench/dashboard_clients.py [--clients 10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, machine, write_result

from driver_pc.adapters.base import Frames
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.broker import MosquittoBroker, free_port
from pitbox_appliance.config import ApplianceConfig, CoreConfig, MqttConfig
from pitbox_appliance.core.service import CoreService

CHROMIUM = "/usr/bin/chromium"
APPLIANCE_USER, APPLIANCE_PASSWORD = "appliance", "bench-appliance-secret"
DRIVER_USER, DRIVER_PASSWORD = "car1-pc1", "bench-pc1-secret"
# Everyone logs in to the pit wall (issue 14 §3): the clients use a viewer login.
VIEWER_USER, VIEWER_PASSWORD = "bench", "bench-viewer-secret"


def add_viewer_login(security: Path) -> None:
    """Put the bench's viewer login in the users file of the ``security`` folder."""
    from pitbox_appliance.security.users import USERS_FILE, UserStore

    security.mkdir(parents=True, exist_ok=True)
    UserStore(security / USERS_FILE).add(
        VIEWER_USER, "viewer", VIEWER_PASSWORD, replace=True
    )


async def log_in_session(session: Any, url: str) -> None:
    """Log the viewer in on an aiohttp session (its cookie jar keeps the session).

    The jar must accept cookies of an IP host (``aiohttp.CookieJar(unsafe=True)``).
    """
    form = {"name": VIEWER_USER, "password": VIEWER_PASSWORD, "next": "/"}
    async with session.post(url + "/login", data=form) as response:
        await response.read()
    if not any(c.key == "pitbox_session" for c in session.cookie_jar):
        raise SystemExit(f"could not log in to {url}: HTTP {response.status}")


def log_in_page(page: Any, url: str) -> None:
    """Log the viewer in through the login form of a Chromium page."""
    page.goto(url + "/login", timeout=60_000)
    page.get_by_test_id("login-name").fill(VIEWER_USER)
    page.get_by_test_id("login-password").fill(VIEWER_PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.wait_for_selector('[data-testid="user"]', timeout=60_000)


MODULO_MS = 300  # the speed label carries read-time ms mod this
TARGET_RATE = 20.0  # DESIGN §6: updates per second per client
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Installed in every page: counts changes of a selector's text or an attribute and,
# for the speed label, keeps (Date.now(), text) of each change.
_WATCH = """
([selector, attr]) => {
  const el = document.querySelector(selector);
  window.__pb = {changes: 0, seen: []};
  const obs = new MutationObserver(() => {
    window.__pb.changes += 1;
    if (!attr) window.__pb.seen.push([Date.now(), el.textContent]);
  });
  obs.observe(el, attr ? {attributes: true, attributeFilter: [attr]}
                       : {childList: true, characterData: true, subtree: true});
  window.__pb.obs = obs;
  window.__pb.t0 = performance.now();
}
"""
_COLLECT = """
() => { if (!window.__pb) return {changes: 0, seen: [], seconds: 1, reloaded: true};
        window.__pb.obs.disconnect();
        return {changes: window.__pb.changes, seen: window.__pb.seen,
                seconds: (performance.now() - window.__pb.t0) / 1000}; }
"""


class StampedSimulator(RaceSimulatorAdapter):
    """The simulator at real time; Speed carries the read time (ms mod 300) as km/h."""

    def __init__(self) -> None:
        # A 200-lap race: a 100,000-lap one makes the strategy engine plan 3,365
        # stints, a 449 KB live state, which the dashboard rejects as too big.
        super().__init__(laps=200, speed=1.0, seed=5)

    def ticks(self) -> Iterator[Frames]:
        for rows in super().ticks():
            stamp = (time.time() * 1000.0) % MODULO_MS
            rows["Speed"][:] = stamp / 3.6
            yield rows


class ProcessMeter:
    """CPU seconds (user + system) and resident memory of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def __enter__(self) -> ProcessMeter:
        self.rss_peak_mb = 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss_peak_mb = max(self.rss_peak_mb, self.rss_mb())
            self._stop.wait(0.25)


def chromium_cpu_s() -> float:
    """CPU seconds of this run's Chromium processes (our descendants named chromium).

    Other Chromium processes on the shared machine are not ours and not counted.
    """
    me, total = os.getpid(), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if b"chromium" in cmd and _descends(int(fields[1]), me):
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _descends(pid: int, root: int) -> bool:
    for _ in range(10):
        if pid == root:
            return True
        if pid <= 1:
            return False
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(text.rsplit(")", 1)[1].split()[1])
    return False


def start_dashboard(tmp: Path, broker: MosquittoBroker, log: Path) -> tuple[Any, str]:
    port = free_port()
    config = tmp / "appliance.yaml"
    config.write_text(
        f"""version: 1
mqtt:
  host: {broker.host}
  port: {broker.port}
  username: {APPLIANCE_USER}
core:
  db_url: sqlite:///{tmp / "appliance.sqlite3"}
  api_port: 0
dashboard:
  host: 127.0.0.1
  port: {port}
security:
  dir: {tmp / "security"}
"""
    )
    add_viewer_login(tmp / "security")
    env = {**os.environ, "PITBOX_MQTT_PASSWORD": APPLIANCE_PASSWORD}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pitbox_appliance.dashboard",
                "--config",
                str(config),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"dashboard did not start:\n{log.read_text()[-2000:]}")


def phase(
    browser: Any,
    url: str,
    path: str,
    clients: int,
    seconds: float,
    meter: ProcessMeter,
    core: CoreService,
) -> dict[str, Any]:
    """``clients`` contexts on ``path``; rates, CPU and latency over ``seconds``."""
    selector, attr = (
        ('[data-testid="speed"]', None)
        if path == "/"
        else ('[data-testid="dot-car1"]', "transform")
    )
    contexts = [
        browser.new_context(viewport={"width": 1280, "height": 800})
        for _ in range(clients)
    ]
    pages = [c.new_page() for c in contexts]
    try:
        for page in pages:
            log_in_page(page, url)
            page.goto(url + path)
            page.wait_for_selector(selector, timeout=30_000)
        time.sleep(2.0)  # settle: every client connected and drawing
        for page in pages:
            page.evaluate(_WATCH, [selector, attr])
        cpu0, wall0 = meter.cpu_s(), time.monotonic()
        published0 = core.live_published
        chrome0 = chromium_cpu_s()
        with meter:
            time.sleep(seconds)
        cpu1, wall1 = meter.cpu_s(), time.monotonic()
        published1 = core.live_published
        chrome1 = chromium_cpu_s()
        results = [page.evaluate(_COLLECT) for page in pages]
        shown = [page.locator(selector).first.text_content() for page in pages[:2]]
    finally:
        for context in contexts:
            context.close()
    rates = [r["changes"] / r["seconds"] for r in results]
    latencies = []
    for r in results:
        for now_ms, text in r["seen"]:
            try:
                shown = int(text)
            except ValueError:
                continue
            latencies.append((now_ms - shown) % MODULO_MS)
    wall = wall1 - wall0
    return {
        "path": path,
        "rates": rates,
        "cpu_cores": (cpu1 - cpu0) / wall,
        "rss_peak_mb": meter.rss_peak_mb,
        "chromium_cores": (chrome1 - chrome0) / wall,
        "latencies_ms": latencies,
        "load1": os.getloadavg()[0],
        "source_rate": (published1 - published0) / wall,
        "shown": shown,
        "latency_label": "shim read → DOM change in Chromium",
    }


# ---- socket-level clients -------------------------------------------------------------
_QUERY = re.compile(r"query: (\{.*?\}),\n")


class SocketClient:
    """One NiceGUI client without a browser: the page's HTTP GET, then its socket.io.

    Does what nicegui.js does: reads the page's socket.io query (client id, next
    message id), connects to ``/_nicegui_ws/socket.io`` with it (implicit handshake)
    and acknowledges messages. Counts the ``update`` messages and, on ``/``, notes
    (arrival time, text) of every update of the speed label.
    """

    def __init__(self, url: str, path: str) -> None:
        self.url, self.path = url, path
        self.updates = 0  # update messages carrying the watched element
        self.messages = 0  # all update messages (the header's twice a second too)
        self.seen: list[tuple[float, str]] = []
        self.started = 0.0
        self.reloads = 0
        self._testid = "speed" if path == "/" else "dot-car1"
        self._watched: str | None = None

    @property
    def watched(self) -> str | None:
        """The id of the element whose updates count (None: not in the page)."""
        return self._watched
        self._next_id = 0

    async def run(self, session: Any, stop: asyncio.Event) -> None:
        import socketio

        async with session.get(self.url + self.path) as response:
            page = await response.text()
        match = _QUERY.search(page)
        if match is None:
            raise SystemExit("no socket.io query in the page: NiceGUI changed shape")
        query = ast.literal_eval(match.group(1))  # the template prints a Python dict
        self._next_id = int(query.get("next_message_id", 0))
        self._watched = _element_id(page, self._testid)
        query.update(
            document_id=str(uuid.uuid4()), tab_id=str(uuid.uuid4()), old_tab_id=""
        )
        query = {
            k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()
        }
        client = socketio.AsyncClient(reconnection=False)
        client.on("update", self._on_update)
        client.on("try_reconnect", self._on_reload)
        cookies = "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)
        await client.connect(
            self.url + "?" + urllib.parse.urlencode(query),
            headers={"Cookie": cookies} if cookies else {},
            socketio_path="/_nicegui_ws/socket.io",
            transports=["websocket"],
        )
        self.started = time.monotonic()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.5)
                await client.emit(
                    "ack",
                    {"client_id": query["client_id"], "next_message_id": self._next_id},
                )
        finally:
            await client.disconnect()

    def _on_update(self, data: dict[str, Any]) -> None:
        now_ms = time.time() * 1000.0
        self.messages += 1
        self._next_id = int(data.get("_id", self._next_id)) + 1
        # The sub page is built after the handshake, and the map rebuilds its dots when
        # its outline arrives: follow the element with the test id wherever it goes.
        for key, element in data.items():
            props = element.get("props") if isinstance(element, dict) else None
            if isinstance(props, dict) and props.get("data-testid") == self._testid:
                self._watched = key
        element = data.get(self._watched) if self._watched is not None else None
        if isinstance(element, dict):
            self.updates += 1
            text = element.get("text")
            if self.path == "/" and text is not None:
                self.seen.append((now_ms, str(text)))

    def _on_reload(self, *_args: Any) -> None:
        self.reloads += 1


def _element_id(page: str, testid: str) -> str | None:
    """The id of the element with ``data-testid`` in the page's initial element tree."""
    match = re.search(r"parseElements\(String\.raw`(.*?)`\)", page, re.S)
    if match is None:
        return None
    try:
        elements = json.loads(match.group(1))
    except json.JSONDecodeError:
        return None
    for key, element in elements.items():
        props = element.get("props") if isinstance(element, dict) else None
        if isinstance(props, dict) and props.get("data-testid") == testid:
            return str(key)
    return None


def socket_phase(
    url: str,
    path: str,
    clients: int,
    seconds: float,
    meter: ProcessMeter,
    core: CoreService,
) -> dict[str, Any]:
    import aiohttp

    async def go() -> list[SocketClient]:
        stop = asyncio.Event()
        workers = [SocketClient(url, path) for _ in range(clients)]
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as session:
            await log_in_session(session, url)
            tasks = [asyncio.create_task(w.run(session, stop)) for w in workers]
            await asyncio.sleep(3.0)  # connect and settle
            for w in workers:
                w.updates, w.messages, w.seen = 0, 0, []
                w.started = time.monotonic()
            state["cpu0"], state["wall0"] = meter.cpu_s(), time.monotonic()
            state["pub0"] = core.live_published
            with meter:
                await asyncio.sleep(seconds)
            state["cpu1"], state["wall1"] = meter.cpu_s(), time.monotonic()
            state["pub1"] = core.live_published
            for w in workers:
                w.started = time.monotonic() - w.started
            stop.set()
            await asyncio.gather(*tasks)
        return workers

    state: dict[str, float] = {}
    workers = asyncio.run(go())
    wall = state["wall1"] - state["wall0"]
    latencies = []
    for w in workers:
        for now_ms, text in w.seen:
            if text.isdigit():
                latencies.append((now_ms - int(text)) % MODULO_MS)
    return {
        "path": path,
        "rates": [w.updates / w.started for w in workers],
        "cpu_cores": (state["cpu1"] - state["cpu0"]) / wall,
        "rss_peak_mb": meter.rss_peak_mb,
        "chromium_cores": 0.0,
        "latencies_ms": latencies,
        "load1": os.getloadavg()[0],
        "source_rate": (state["pub1"] - state["pub0"]) / wall,
        "latency_label": "shim read → update message at the socket client",
        "shown": [w.reloads for w in workers],
        "messages": [w.messages / w.started for w in workers],
    }


def report(result: dict[str, Any], clients: int) -> None:
    rates = np.array(result["rates"])
    print(
        f"{result['path']:5s} {clients} clients: updates/s per client "
        f"min {rates.min():.1f} median {np.median(rates):.1f} max {rates.max():.1f} "
        f"(target ≥ {TARGET_RATE:.0f}; the core published "
        f"{result['source_rate']:.1f} states/s); dashboard {result['cpu_cores']:.3f} cores, "
        f"RSS peak {result['rss_peak_mb']:.0f} MB; Chromium (all clients) "
        f"{result['chromium_cores']:.2f} cores; load1 {result['load1']:.2f}"
    )
    if "messages" in result:
        print(
            f"      all update messages/s per client (incl. the header's): median "
            f"{np.median(result['messages']):.1f}; reloads asked: {sum(result['shown'])}"
        )
    if rates.max() == 0:
        print(f"      no updates; first clients show {result['shown']}")
    lat = np.array(result["latencies_ms"])
    if lat.size:
        print(
            f"      {result['latency_label']}: n={lat.size} p50 {np.percentile(lat, 50):.1f} ms "
            f"p90 {np.percentile(lat, 90):.1f} ms p99 {np.percentile(lat, 99):.1f} ms "
            f"max {lat.max():.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keep-log", type=Path, help="copy the dashboard's log here")
    parser.add_argument(
        "--mode",
        choices=("socket", "chromium"),
        default="socket",
        help="socket-level clients (default) or Chromium pages for the N-client phases",
    )
    parser.add_argument(
        "--browser-clients",
        type=int,
        default=2,
        help="Chromium pages on / for the screen latency (after the N-client phases)",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(machine())
    with tempfile.TemporaryDirectory(prefix="pitbox-dash-bench-") as name:
        tmp = Path(name)
        broker = MosquittoBroker(tmp / "mosquitto", port=free_port())
        broker.add_user(APPLIANCE_USER, APPLIANCE_PASSWORD)
        broker.add_user(DRIVER_USER, DRIVER_PASSWORD)
        broker.write_config(appliance_user=APPLIANCE_USER)
        broker.start()
        os.environ["PITBOX_MQTT_PASSWORD"] = APPLIANCE_PASSWORD
        key = os.urandom(32)
        core = CoreService(
            ApplianceConfig(
                mqtt=MqttConfig(
                    host=broker.host, port=broker.port, username=APPLIANCE_USER
                ),
                core=CoreConfig(db_url=f"sqlite:///{tmp / 'appliance.sqlite3'}"),
            ),
            key,
        )
        shim = ShimService(
            ShimConfig(
                source=DRIVER_USER,
                broker=BrokerAddress(
                    broker.host, broker.port, DRIVER_USER, DRIVER_PASSWORD
                ),
                team_key=key,
                spool_path=str(tmp / "shim.spool"),
            ),
            StampedSimulator(),
        )
        stop = threading.Event()
        shim_thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
        dashboard = None
        try:
            core.start()
            if not core.connection.connected.wait(15):
                raise SystemExit("the core could not connect to the broker")
            shim_thread.start()
            dashboard, url = start_dashboard(tmp, broker, tmp / "dashboard.log")
            results: list[tuple[str, int, dict[str, Any]]] = []
            meter = ProcessMeter(dashboard.pid)
            idle0, t0 = meter.cpu_s(), time.monotonic()
            time.sleep(5.0)
            idle = (meter.cpu_s() - idle0) / (time.monotonic() - t0)
            print(
                f"dashboard idle (no client, live data flowing): {idle:.3f} cores, RSS {meter.rss_mb():.0f} MB"
            )
            if args.mode == "socket":
                for path in ("/", "/map"):
                    print(f"socket-level clients on {path}:")
                    result = socket_phase(
                        url, path, args.clients, args.seconds, meter, core
                    )
                    report(result, args.clients)
                    results.append(("socket", args.clients, result))
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=[
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--no-first-run",
                    ],
                )
                try:
                    runs = [("/", args.browser_clients)]
                    if args.mode == "chromium":
                        runs = [("/", args.clients), ("/map", args.clients), *runs]
                    for path, count in runs:
                        print(f"Chromium pages on {path}:")
                        result = phase(
                            browser, url, path, count, args.seconds, meter, core
                        )
                        report(result, count)
                        results.append(("chromium", count, result))
                finally:
                    browser.close()
        finally:
            stop.set()
            shim_thread.join(15)
            if dashboard is not None and dashboard.poll() is None:
                dashboard.send_signal(signal.SIGTERM)
                try:
                    dashboard.wait(15)
                except subprocess.TimeoutExpired:
                    dashboard.kill()
            core.stop()
            broker.stop()
            if args.keep_log is not None:
                args.keep_log.write_bytes((tmp / "dashboard.log").read_bytes())
    write_dashboard_result(results, args.browser_clients)


def write_dashboard_result(
    results: list[tuple[str, int, dict[str, Any]]], browsers: int
) -> None:
    """The headline figures (bench/out, for RESULTS.md's summary) and every phase."""
    headline: dict[str, Any] = {}
    for kind, count, result in results:
        lat = np.array(result["latencies_ms"])
        rates = np.array(result["rates"])
        where = (
            f"{count} Chromium pages on {result['path']} rendering on this machine"
            if kind == "chromium"
            else f"{count} socket-level clients on {result['path']}"
        )
        bar = (
            "Dashboard, one shim at real time through Mosquitto and the core (in"
            f" process), the dashboard process: {where}"
        )
        if kind == "chromium" and result["path"] == "/" and count == browsers:
            if lat.size:
                headline["shim read → DOM change p99"] = {
                    "value": round(float(np.percentile(lat, 99)), 1),
                    "unit": "ms",
                    "target": 100.0,
                    "better": "lower",
                    "bar": bar,
                }
        elif kind == "socket" and rates.size:
            headline[f"updates per second per client, slowest ({result['path']})"] = {
                "value": round(float(rates.min()), 1),
                "unit": "updates/s",
                "target": TARGET_RATE,
                "better": "higher",
                "bar": bar,
            }
            headline[f"dashboard process CPU ({result['path']})"] = {
                "value": round(result["cpu_cores"], 3),
                "unit": "cores",
                "target": 0.5,
                "better": "lower",
                "bar": bar,
            }
    raw = [
        {
            "kind": kind,
            "clients": count,
            **{k: v for k, v in result.items() if k != "latencies_ms"},
            "latency_ms": {
                q: float(np.percentile(result["latencies_ms"], p))
                for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
            }
            if len(result["latencies_ms"])
            else None,
            "latency_n": len(result["latencies_ms"]),
        }
        for kind, count, result in results
    ]
    write_result("dashboard_clients", headline, {"phases": raw})


if __name__ == "__main__":
    main()
