"""HTTPS for the dashboard and the API: when it is on, the certificate, the addresses, and the CA download.

HTTPS is on once the appliance has its CA (``pitbox devices setup``), for a server
bound to anything but loopback, unless ``security.https`` is false. The
appliance's own programs keep plain HTTP on 127.0.0.1 (as the broker keeps plain
MQTT there): the API then serves HTTPS on each LAN address and plain HTTP on
127.0.0.1, same port. Tablets fetch the CA certificate once from a plain-HTTP page
(``security.ca_http_port``: ``/ca.crt`` and its SHA-256 fingerprint, to compare
with the one on the touchscreen's /devices page; docs/remote.md).
"""

from __future__ import annotations

import html
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from driver_pc.protocol.discovery import local_addresses
from pitbox_appliance.config import SecurityConfig
from pitbox_appliance.security.devices import security_dir
from pitbox_appliance.security.pki import (
    PkiFiles,
    appliance_names,
    ca_fingerprint,
    ensure_web_cert,
    spki_sha256,
)

CA_PATH = "/ca.crt"
SPKI_PATH = "/web.spki"


@dataclass(frozen=True, slots=True)
class WebTls:
    """The HTTPS certificate of this appliance, and its CA."""

    pki: PkiFiles
    certfile: Path
    keyfile: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context (TLS 1.2 at least) with the certificate loaded."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback bind address (this machine only)."""
    return host in ("localhost", "::1") or host.startswith("127.")


def https_on(security: SecurityConfig, host: str) -> bool:
    """Whether a server bound to ``host`` serves HTTPS (see :func:`web_tls`)."""
    if not security.https or is_loopback(host):
        return False
    pki = PkiFiles(security_dir(security))
    return pki.ca_cert.exists() and pki.ca_key.exists()


def web_tls(security: SecurityConfig, host: str) -> WebTls | None:
    """The HTTPS set-up for a server bound to ``host``; None: plain HTTP.

    Issues (or re-issues, when the appliance's names or ``security.public_host``
    changed) the HTTPS certificate from the CA.
    """
    if not https_on(security, host):
        return None
    pki = PkiFiles(security_dir(security))
    # Every address of this machine, whatever ``host`` is: the API and the
    # dashboard then want the same certificate even when bound differently.
    public = [security.public_host] if security.public_host else []
    names = appliance_names([*public, *local_addresses()])
    certfile, keyfile = ensure_web_cert(pki, names)
    return WebTls(pki, certfile, keyfile)


def tls_hosts(host: str) -> list[str]:
    """The addresses HTTPS binds to: each LAN address for a wildcard bind.

    127.0.0.1 is left to plain HTTP on the same port (the appliance's own
    programs); a socket on 0.0.0.0 would take it too.
    """
    if host in ("", "0.0.0.0"):
        return local_addresses()
    return [host]


def ca_download_app(pki: PkiFiles, https_url: str | None = None) -> web.Application:
    """A plain-HTTP app: ``/ca.crt`` and a page with its fingerprint (nothing else)."""
    app = web.Application()

    async def ca_cert(_request: web.Request) -> web.Response:
        return web.Response(
            body=pki.ca_cert.read_bytes(),
            content_type="application/x-x509-ca-cert",
            headers={"Content-Disposition": 'attachment; filename="pitbox-ca.crt"'},
        )

    async def index(_request: web.Request) -> web.Response:
        fingerprint = html.escape(ca_fingerprint(pki))
        go = (
            f'<p>Then open the pit wall: <a href="{html.escape(https_url)}">'
            f"{html.escape(https_url)}</a></p>"
            if https_url
            else ""
        )
        page = (
            "<!doctype html><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width">'
            "<title>PitBox CA</title><h1>Trust this PitBox once</h1>"
            f'<p><a href="{CA_PATH}">Download the PitBox CA certificate</a></p>'
            "<p>Before you trust it, compare its SHA-256 fingerprint with the one "
            "on the appliance's touchscreen (Devices page):</p>"
            f"<pre style='white-space:pre-wrap'>{fingerprint}</pre>{go}"
        )
        return web.Response(text=page, content_type="text/html")

    async def web_spki(_request: web.Request) -> web.Response:
        # The dashboard certificate's public-key pin, for the touchscreen's kiosk
        # Chromium (--ignore-certificate-errors-spki-list): public, like the CA.
        return web.Response(text=spki_sha256(pki.web_cert) + "\n")

    app.router.add_get(CA_PATH, ca_cert)
    app.router.add_get(SPKI_PATH, web_spki)
    app.router.add_get("/", index)
    return app
