"""The appliance's own certificate authority and the broker's TLS certificate (first setup).

The CA is created once, on the appliance, and never leaves it except as its public
certificate (handed to each driver PC at pairing). The broker's server certificate
names every hostname and address the driver PCs may use (subject alternative names);
it is re-issued by the same CA when that set changes. Keys are ECDSA P-256 and are
stored with mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pitbox_appliance.security.files import write_private

logger = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True, slots=True)
class PkiFiles:
    """Where the CA and the broker's certificate live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (public; given to driver PCs)."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key."""
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The broker's certificate, signed by the CA."""
        return self.directory / "broker.crt"

    @property
    def server_key(self) -> Path:
        """The broker's private key."""
        return self.directory / "broker.key"

    @property
    def web_cert(self) -> Path:
        """The HTTPS certificate of the dashboard and the API, signed by the CA."""
        return self.directory / "web.crt"

    @property
    def web_key(self) -> Path:
        """The HTTPS certificate's private key."""
        return self.directory / "web.key"


def ensure_pki(directory: Path, names: Iterable[str]) -> PkiFiles:
    """Create the CA (once) and a broker certificate valid for ``names``.

    ``names`` are hostnames and IP addresses; a certificate that already covers
    exactly these names and is not near expiry is kept.
    """
    files = PkiFiles(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    wanted = _alt_names(names)
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        _create_ca(files)
        logger.info("created the appliance CA in %s", directory)
    if _server_cert_current(files, wanted):
        return files
    _issue_server_cert(files, wanted)
    logger.info("issued the broker certificate for %s", ", ".join(sorted(names)))
    return files


def ensure_web_cert(files: PkiFiles, names: Iterable[str]) -> tuple[Path, Path]:
    """The HTTPS certificate (and key) for ``names``, issued by the CA when needed.

    Kept while it covers exactly ``names`` and is not near expiry, like the
    broker's; the CA must exist (``pitbox devices setup``).
    """
    wanted = _alt_names(names)
    # The API and the dashboard start together: one issues, the other finds it
    # current (never a key of one with the certificate of the other).
    fd = os.open(files.directory / "web.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not _server_cert_current(files, wanted, files.web_cert, files.web_key):
            _issue_server_cert(files, wanted, files.web_cert, files.web_key)
            logger.info("issued the HTTPS certificate for %s", ", ".join(sorted(names)))
    finally:
        os.close(fd)  # closing releases the lock
    return files.web_cert, files.web_key


def spki_sha256(cert: Path) -> str:
    """Base64 SHA-256 of a certificate's public key (Chromium's SPKI pin format)."""
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    der = loaded.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return base64.b64encode(digest.finalize()).decode("ascii")


def appliance_names(extra: Iterable[str] = ()) -> list[str]:
    """Hostnames and addresses of this machine, as driver PCs may reach it."""
    host = socket.gethostname()
    names = {"localhost", "127.0.0.1", host, *extra}
    try:
        names.add(socket.getfqdn())
        for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM):
            names.add(str(info[4][0]))
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # No packet is sent: connect() on UDP only picks the outgoing address.
            probe.connect(("192.0.2.1", 9))
            names.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(n for n in names if n)


def ca_fingerprint(files: PkiFiles) -> str:
    """SHA-256 fingerprint of the CA certificate (hex, colon-separated)."""
    cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":")


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in sorted(set(names)):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    if not result:
        raise ValueError("the broker certificate needs at least one name")
    return result


def _create_ca(files: PkiFiles) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PitBox appliance CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    write_private(files.ca_key, _private_pem(key))
    write_private(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    # A new CA invalidates any broker certificate signed by an old one.
    files.server_cert.unlink(missing_ok=True)


def issue_cert(files: PkiFiles, names: Iterable[str], cert: Path, key: Path) -> None:
    """Issue another server certificate from the appliance CA, for ``names``.

    For a broker PitBox renders elsewhere (the cloud broker a bridge reaches,
    docs/remote.md): driver PCs trust only this CA, so it must sign that one too.
    """
    _issue_server_cert(files, _alt_names(names), cert, key)


def server_cert_names(files: PkiFiles) -> list[str]:
    """The names (DNS and IP) the broker's current certificate is valid for."""
    if not files.server_cert.exists():
        return []
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return sorted(str(name.value) for name in san.value)


def _issue_server_cert(
    files: PkiFiles,
    alt_names: list[x509.GeneralName],
    cert_path: Path | None = None,
    key_path: Path | None = None,
) -> None:
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key}: not an EC private key")
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PitBox broker")])
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(key_path or files.server_key, _private_pem(key))
    write_private(
        cert_path or files.server_cert, cert.public_bytes(serialization.Encoding.PEM)
    )


def _server_cert_current(
    files: PkiFiles,
    wanted: list[x509.GeneralName],
    cert_path: Path | None = None,
    key_path: Path | None = None,
) -> bool:
    cert_path = cert_path or files.server_cert
    key_path = key_path or files.server_key
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False  # signed by an older CA: issue it again
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=30)
    return fresh and set(san.value) == set(wanted)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
