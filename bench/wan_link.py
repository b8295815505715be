"""A WAN link in user space between a network namespace and the host: delay, loss, rate, outage.

This machine's kernel has no ``sch_netem`` (``tc qdisc ... netem``: "Specified qdisc
kind is unknown"), nor the ``gact``/``police`` actions or iptables, so the link is
emulated the way netem does it, one IP packet at a time, in user space: two TUN
devices, one moved into the namespace (the driver PC) and one on the host (the
appliance), and a relay between them that holds each packet for the one-way delay,
drops it with the loss probability, serialises the uplink at its rate behind a
tail-drop buffer, and drops everything during an outage. The TCP, TLS and MQTT
traffic through it is the real one, retransmissions included.

    with WanLink(Impairment(delay_s=0.075, loss=0.01, up_bps=2e6)) as link:
        link.netns, link.pc_ip, link.appliance_ip
        link.outage(True); ...; link.outage(False)
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import secrets
import select
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000


@dataclass(frozen=True, slots=True)
class Impairment:
    """One direction's impairment; ``rate_bps`` None: no rate limit."""

    delay_s: float = 0.075
    loss: float = 0.01
    rate_bps: float | None = None
    #: The router's buffer ahead of a rate-limited link (tail drop beyond it).
    buffer_bytes: int = 128 * 1024


@dataclass(slots=True)
class Counters:
    """What one direction of the link did."""

    packets: int = 0
    bytes: int = 0
    lost: int = 0
    dropped_outage: int = 0
    dropped_buffer: int = 0
    delivered_bytes: int = 0


@dataclass
class _Direction:
    name: str
    src: int
    dst: int
    impairment: Impairment
    counters: Counters = field(default_factory=Counters)
    busy_until: float = 0.0
    heap: list[tuple[float, int, bytes]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)


class WanLink:
    """A namespace (the driver PC) joined to the host (the appliance) by an emulated WAN."""

    def __init__(
        self, up: Impairment, down: Impairment, seed: int = 1, subnet: int | None = None
    ) -> None:
        tag = secrets.token_hex(3)
        net = subnet if subnet is not None else int(tag[:2], 16)
        self.netns = f"pbw{tag}"
        self._pc_if = f"pbwa{tag}"
        self._app_if = f"pbwb{tag}"
        self.pc_ip = f"10.77.{net}.2"
        self.appliance_ip = f"10.77.{net}.1"
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._outage = threading.Event()
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self._up_imp, self._down_imp = up, down
        self.up: _Direction | None = None
        self.down: _Direction | None = None

    # ---- set-up -------------------------------------------------------------------
    def __enter__(self) -> Self:
        _run("ip", "netns", "add", self.netns)
        try:
            pc_fd = _tun(self._pc_if)
            app_fd = _tun(self._app_if)
            self._fds = [pc_fd, app_fd]
            _run("ip", "link", "set", self._pc_if, "netns", self.netns)
            inside = ("ip", "netns", "exec", self.netns)
            _run(*inside, "ip", "link", "set", "lo", "up")
            _run(*inside, "ip", "addr", "add", f"{self.pc_ip}/32", "dev", self._pc_if)
            _run(*inside, "ip", "link", "set", self._pc_if, "up")
            _run(
                *inside,
                "ip",
                "route",
                "add",
                f"{self.appliance_ip}/32",
                "dev",
                self._pc_if,
            )
            _run("ip", "addr", "add", f"{self.appliance_ip}/32", "dev", self._app_if)
            _run("ip", "link", "set", self._app_if, "up")
            _run("ip", "route", "add", f"{self.pc_ip}/32", "dev", self._app_if)
        except BaseException:
            self._teardown()
            raise
        self.up = _Direction("up", pc_fd, app_fd, self._up_imp)
        self.down = _Direction("down", app_fd, pc_fd, self._down_imp)
        for direction in (self.up, self.down):
            for target in (self._read_loop, self._write_loop):
                thread = threading.Thread(
                    target=target,
                    args=(direction,),
                    name=f"wan-{direction.name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for direction in (self.up, self.down):
            if direction is not None:
                with direction.cond:
                    direction.cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2)
        self._teardown()

    def _teardown(self) -> None:
        subprocess.run(
            ["ip", "link", "del", self._app_if], capture_output=True, check=False
        )
        subprocess.run(
            ["ip", "netns", "del", self.netns], capture_output=True, check=False
        )
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def exec_prefix(self) -> list[str]:
        """Runs a program inside the driver PC's namespace."""
        return ["ip", "netns", "exec", self.netns]

    def outage(self, on: bool) -> None:
        """Drop every packet both ways (a dead internet line) while on."""
        if on:
            self._outage.set()
        else:
            self._outage.clear()

    def queued_bytes(self) -> int:
        """Bytes waiting in the uplink's buffer now."""
        assert self.up is not None
        with self.up.cond:
            return sum(len(p) for _t, _s, p in self.up.heap)

    # ---- the relay ------------------------------------------------------------------
    def _read_loop(self, d: _Direction) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([d.src], [], [], 0.2)
            if not ready:
                continue
            try:
                packet = os.read(d.src, 65535)
            except OSError:
                return
            now = time.monotonic()
            c = d.counters
            c.packets += 1
            c.bytes += len(packet)
            if self._outage.is_set():
                c.dropped_outage += 1
                continue
            with self._rng_lock:
                lost = self._rng.random() < d.impairment.loss
            if lost:
                c.lost += 1
                continue
            imp = d.impairment
            with d.cond:
                start = max(now, d.busy_until)
                if imp.rate_bps is not None:
                    backlog_bytes = (start - now) * imp.rate_bps / 8
                    if backlog_bytes + len(packet) > imp.buffer_bytes:
                        c.dropped_buffer += 1
                        continue
                    d.busy_until = start + len(packet) * 8 / imp.rate_bps
                    due = d.busy_until + imp.delay_s
                else:
                    due = now + imp.delay_s
                self._seq += 1
                heapq.heappush(d.heap, (due, self._seq, packet))
                d.cond.notify()

    def _write_loop(self, d: _Direction) -> None:
        while not self._stop.is_set():
            with d.cond:
                while not d.heap and not self._stop.is_set():
                    d.cond.wait(0.2)
                if self._stop.is_set():
                    return
                due, _seq, packet = d.heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    d.cond.wait(min(wait, 0.05))
                    continue
                heapq.heappop(d.heap)
            try:
                os.write(d.dst, packet)
                d.counters.delivered_bytes += len(packet)
            except OSError:
                pass  # the other side is down: the packet is lost


def _tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(
        fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI)
    )
    return fd


def _run(*cmd: str) -> None:
    result = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")


def available() -> str | None:
    """None when a WAN link can be made here; else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    probe = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"ip netns unavailable: {probe.stderr.strip()}"
    return None
