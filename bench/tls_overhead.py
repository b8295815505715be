"""What access control costs: TLS on the driver PC's hop, the TLS handshake, the pairing KDF.

Runs a real Mosquitto with the plain listener (appliance side) and the TLS listener
(driver side, certificate from a CA made here). A driver client publishes wire-sized
QoS 1 messages over plain TCP, then over TLS; an appliance client on the plain listener
receives them. Reports, for each: hop latency p50/p99 at the live rate (20 messages/s),
the fastest sustained rate, and the broker's CPU time per message. Then the TLS
handshake time and the scrypt cost of one pairing attempt.

    .venv/bin/python bench/tls_overhead.py [--seconds 20] [--burst 20000] [--size 900]
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

from _common import machine

from driver_pc.protocol import topics
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from driver_pc.protocol.pairing import pairing_proof
from pitbox_appliance.broker import MosquittoBroker, TlsListener, free_port
from pitbox_appliance.security.pki import ensure_pki

APP_USER, APP_PASSWORD = "appliance", "bench-appliance-pw"
DRIVER, DRIVER_PASSWORD = "car1-pc1", "bench-driver-pw"
_STAMP = struct.Struct("<Qd")


def main() -> None:
    """Run every measurement and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="paced run length")
    parser.add_argument("--burst", type=int, default=20000, help="messages, fastest")
    parser.add_argument("--size", type=int, default=900, help="payload bytes")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="pitbox-tls-") as tmp_name:
        tmp = Path(tmp_name)
        pki = ensure_pki(tmp / "sec", ["127.0.0.1", "localhost"])
        port, tls_port = free_port(), free_port()
        broker = MosquittoBroker(
            tmp / "broker",
            port,
            tls=TlsListener(tls_port, pki.server_cert, pki.server_key, "127.0.0.1"),
        )
        broker.add_user(APP_USER, APP_PASSWORD)
        broker.add_user(DRIVER, DRIVER_PASSWORD)
        broker.write_config(APP_USER)
        broker.start()
        try:
            for label, address in (
                ("plain", BrokerAddress("127.0.0.1", port, DRIVER, DRIVER_PASSWORD)),
                (
                    "tls",
                    BrokerAddress(
                        "127.0.0.1",
                        tls_port,
                        DRIVER,
                        DRIVER_PASSWORD,
                        ca_file=str(pki.ca_cert),
                    ),
                ),
            ):
                _hop(label, broker, port, address, args)
            _handshakes(tls_port, pki.ca_cert)
        finally:
            broker.stop()
    _pairing_kdf()


def _hop(
    label: str,
    broker: MosquittoBroker,
    port: int,
    driver_address: BrokerAddress,
    args: argparse.Namespace,
) -> None:
    received: dict[int, float] = {}
    sent: dict[int, float] = {}
    done = threading.Event()
    want = [0]

    def on_message(_topic: str, payload: bytes, _mid: int) -> None:
        number, _ = _STAMP.unpack_from(payload)
        received[number] = time.perf_counter()
        if len(received) >= want[0]:
            done.set()

    app = MqttConnection(
        f"bench-app-{label}", BrokerAddress("127.0.0.1", port, APP_USER, APP_PASSWORD)
    )
    app.subscribe(topics.shim_data(DRIVER).name, 1, on_message)
    driver = MqttConnection(f"bench-drv-{label}", driver_address, max_inflight=64)
    app.start()
    driver.start()
    if not (app.connected.wait(10) and driver.connected.wait(10)):
        raise SystemExit(f"{label}: could not connect")
    topic = topics.shim_data(DRIVER)
    filler = os.urandom(max(0, args.size - _STAMP.size))
    # Paced at the live rate: latency of the hop.
    count = int(args.seconds * 20)
    want[0] = count
    for number in range(count):
        sent[number] = time.perf_counter()
        while driver.publish(topic, _STAMP.pack(number, 0.0) + filler) < 0:
            time.sleep(0.001)  # not queued (reconnecting): try again
        time.sleep(0.05)
    done.wait(10)
    hops = sorted((received[n] - sent[n]) * 1000 for n in range(count) if n in received)
    # Fastest: a burst through paho's window; the broker's CPU per message.
    received.clear()
    done.clear()
    want[0] = args.burst
    cpu0 = _cpu_seconds(broker.pid)
    start = time.perf_counter()
    number = 0
    while number < args.burst:
        if driver.publish(topic, _STAMP.pack(number, 0.0) + filler) >= 0:
            number += 1
        else:
            time.sleep(0.001)
    done.wait(120)
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(broker.pid) - cpu0
    driver.stop()
    app.stop()
    print(
        f"{label:5}: hop p50 {statistics.median(hops):.2f} ms, "
        f"p99 {hops[int(len(hops) * 0.99) - 1]:.2f} ms ({len(hops)}/{count} at 20/s) | "
        f"burst {len(received)}/{args.burst} in {elapsed:.2f} s = "
        f"{len(received) / elapsed:,.0f} msg/s ({len(received) * args.size / elapsed / 1e6:.1f} MB/s) | "
        f"broker CPU {cpu / max(1, len(received)) * 1e6:.1f} µs/msg"
    )


def _handshakes(tls_port: int, ca_cert: Path, repeats: int = 50) -> None:
    context = ssl.create_default_context(cafile=str(ca_cert))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with (
            socket.create_connection(("127.0.0.1", tls_port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            times.append((time.perf_counter() - start) * 1000)
    print(
        f"TLS handshake (TCP connect + TLS, ECDSA P-256): median "
        f"{statistics.median(times):.2f} ms, max {max(times):.2f} ms ({repeats} runs)"
    )


def _pairing_kdf(repeats: int = 5) -> None:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pairing_proof("7KQ2M9XD", os.urandom(16))
        times.append((time.perf_counter() - start) * 1000)
    print(
        f"pairing proof (scrypt n=2^14 r=8 + HMAC): median "
        f"{statistics.median(times):.0f} ms ({repeats} runs); a sniffer guessing all "
        f"2^40 codes needs {2**40 * statistics.median(times) / 1000 / 3.15e7:,.0f} "
        "CPU-years"
    )


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
