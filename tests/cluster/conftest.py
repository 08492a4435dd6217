"""Clusters for tests: :class:`~sluice.executor.cluster.local.LocalCluster` started from the repo root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sluice
from sluice.executor import api

from sluice.executor.cluster.local import LocalCluster as _LocalCluster
from sluice.executor.cluster.local import free_port

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["ROOT", "LocalCluster", "connected_cluster", "free_port", "node_info", "node_with"]


class LocalCluster(_LocalCluster):
    """Daemons that import the test modules (the repo root on their path)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("cwd", ROOT)
        super().__init__(*args, **kwargs)


@contextmanager
def connected_cluster(**kwargs) -> Iterator[LocalCluster]:
    """A :class:`LocalCluster` (``kwargs`` as its own) with this process connected as its
    driver; the driver disconnects and the cluster stops however the block ends."""
    c = LocalCluster(**kwargs)
    sluice.init(address=c.address)
    try:
        yield c
    finally:
        sluice.shutdown()
        c.stop()


def node_with(resource: str) -> str:
    """The id (``NodeInfo.node_id``) of the one live node that declares ``resource``."""
    [node_id] = [n.node_id for n in api.runtime().nodes() if n.alive and resource in n.resources]
    return node_id


def node_info() -> dict:
    """Where the calling task runs: its node's Flight location and its pid."""
    return {"flight": os.environ.get("SLUICE_NODE_FLIGHT"), "pid": os.getpid()}


def self_signed_cert(directory: Path) -> tuple[bytes, bytes]:
    """A certificate and key for localhost / 127.0.0.1, also written to ``directory``
    as cert.pem and key.pem."""
    cert, key = _cert_with_cryptography()  # cryptography comes with the dev extras
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(key)
    return cert, key


def _cert_with_cryptography() -> tuple[bytes, bytes]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization as pem
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(pem.Encoding.PEM, pem.PrivateFormat.PKCS8, pem.NoEncryption())
    return cert.public_bytes(pem.Encoding.PEM), key_pem
