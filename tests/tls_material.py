"""Certificates the security tests make for themselves: two CAs, a server
certificate for 127.0.0.1 and localhost, and a client certificate from each
CA. Keys are P-256, so making them all takes milliseconds."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """Paths of the PEM files in one folder."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    """A client certificate signed by ``other_ca``, not by ``ca``."""
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, key, issuer, issuer_key, *, ca, usage=None, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(names)), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, stem: str, cert, key) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_tls_material(folder: Path) -> TlsMaterial:
    """Write a fresh CA pair, server and client certificates into ``folder``."""
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in
            ("ca", "other_ca", "server", "client", "stranger")}
    ca = _certificate("alquery test CA", keys["ca"], "alquery test CA", keys["ca"],
                      ca=True)
    other = _certificate("other CA", keys["other_ca"], "other CA", keys["other_ca"],
                         ca=True)
    server = _certificate(
        "localhost", keys["server"], "alquery test CA", keys["ca"], ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=(x509.DNSName("localhost"),
               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
    )
    client = _certificate("client", keys["client"], "alquery test CA", keys["ca"],
                          ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _certificate("stranger", keys["stranger"], "other CA",
                            keys["other_ca"], ca=False,
                            usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path, _ = _write(folder, "ca", ca, keys["ca"])
    other_path, _ = _write(folder, "other_ca", other, keys["other_ca"])
    server_cert, server_key = _write(folder, "server", server, keys["server"])
    client_cert, client_key = _write(folder, "client", client, keys["client"])
    stranger_cert, stranger_key = _write(folder, "stranger", stranger,
                                         keys["stranger"])
    return TlsMaterial(ca_path, server_cert, server_key, client_cert, client_key,
                       other_path, stranger_cert, stranger_key)
