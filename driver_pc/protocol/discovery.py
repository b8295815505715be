"""Zero-config discovery (DNS-SD over mDNS): the appliance advertises ``_pitbox._tcp``, PCs browse.

The only user of python-zeroconf. The appliance's core advertises its API (the port
pairing is done on) under an instance name such as "PitBox pit-1"; ``pitbox-shim pair``
without ``--appliance`` browses for a few seconds and pairs with what it found. The TXT
record says which API version and scheme to use; nothing secret is advertised (pairing
itself authenticates the appliance: docs/security.md).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import ifaddr
from zeroconf import (
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

SERVICE_TYPE = "_pitbox._tcp.local."
#: TXT keys: the API's scheme and version.
SCHEME_KEY, API_KEY = "scheme", "api"


@dataclass(frozen=True, slots=True)
class FoundAppliance:
    """One appliance that answered: its instance name, addresses and API port."""

    name: str
    addresses: tuple[str, ...]
    port: int
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The API URL to pair with (its first IPv4 address)."""
        scheme = self.properties.get(SCHEME_KEY, "http")
        return f"{scheme}://{self.addresses[0]}:{self.port}"

    @property
    def label(self) -> str:
        return self.name.removesuffix("." + SERVICE_TYPE)


def local_addresses() -> list[str]:
    """IPv4 addresses of this machine, loopback left out (what a LAN peer can reach)."""
    found = {
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not str(ip.ip).startswith("127.")
    }
    return sorted(found)


class Advertisement:
    """The appliance's ``_pitbox._tcp`` record, answered until :meth:`close`."""

    def __init__(
        self, name: str, port: int, addresses: list[str], scheme: str = "http"
    ) -> None:
        if not addresses:
            raise ValueError("advertise: no LAN address to advertise")
        host = socket.gethostname().split(".")[0] or "pitbox"
        self.info = ServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in addresses],
            port=port,
            properties={SCHEME_KEY: scheme, API_KEY: "v1"},
            server=f"{host}.local.",
        )
        self._zeroconf = Zeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
        # Another appliance with the same name on the LAN: ours becomes "name (2)".
        self._zeroconf.register_service(self.info, allow_name_change=True)

    @property
    def name(self) -> str:
        return self.info.name

    def close(self) -> None:
        try:
            self._zeroconf.unregister_service(self.info)
        finally:
            self._zeroconf.close()


def browse(timeout_s: float = 3.0) -> list[FoundAppliance]:
    """The appliances that answer on the LAN within ``timeout_s`` seconds, by name."""
    names: set[str] = set()
    lock = threading.Lock()

    def seen(
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            with lock:
                names.add(name)

    zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(zeroconf, SERVICE_TYPE, handlers=[seen])
        threading.Event().wait(timeout_s)
        browser.cancel()
        with lock:
            found_names = sorted(names)
        found = []
        for name in found_names:
            info = zeroconf.get_service_info(SERVICE_TYPE, name, timeout=2000)
            if info is None or info.port is None:
                continue
            addresses = tuple(info.parsed_addresses(IPVersion.V4Only))
            if not addresses:
                continue
            properties = {
                k.decode(errors="replace"): (v or b"").decode(errors="replace")
                for k, v in info.properties.items()
            }
            found.append(FoundAppliance(name, addresses, info.port, properties))
        return found
    finally:
        zeroconf.close()
