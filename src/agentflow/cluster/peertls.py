"""Mutual TLS between masters: the contexts of the peer listener and of its dialers.

A master with ``--tls-cert/--tls-key`` in a cluster serves its peer port over TLS with that
certificate and dials its peers with it too; both sides verify the other against ``--ca``. The
listener requires a client certificate (a dialer without one signed by the CA is refused during
the TLS handshake, before the cluster-token handshake starts); the dialer checks that the
listener's certificate names the host it dialed (the host of the peer's Raft address, an IP
address or a DNS name). So every master's certificate names the host other masters reach it by
and allows both server and client authentication (or states no extended key usage).

The cluster-token handshake and the per-frame MAC of :mod:`agentflow.cluster.peerwire` run
inside the TLS session unchanged: TLS adds confidentiality and a second, certificate-based proof.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from agentflow.errors import ConfigError

__all__ = ["PeerTLS", "peer_tls"]


@dataclass(frozen=True, slots=True, eq=False)
class PeerTLS:
    """The two contexts of one master: ``server`` for its peer port, ``client`` for dialing."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def peer_tls(
    cert: str | os.PathLike[str], key: str | os.PathLike[str], ca: str | os.PathLike[str]
) -> PeerTLS:
    """Contexts presenting ``cert``/``key`` and trusting only ``ca``, both ways.

    Refuses (:class:`ConfigError`, naming the file) a certificate, key or CA bundle that
    cannot be read or does not match.
    """
    server = _context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca)
    server.verify_mode = ssl.CERT_REQUIRED  # a dialer proves its certificate too
    client = _context(ssl.PROTOCOL_TLS_CLIENT, cert, key, ca)
    client.check_hostname = True  # the certificate names the host of the address dialed
    client.verify_mode = ssl.CERT_REQUIRED
    return PeerTLS(server=server, client=client)


def _context(
    protocol: int,
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str],
) -> ssl.SSLContext:
    # Only ``ca`` is trusted (no system roots): a certificate of a public CA makes no peer.
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA bundle --ca {ca}: {_why(exc)}") from None
    try:
        context.load_cert_chain(os.fspath(cert), os.fspath(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load --tls-cert {cert} with --tls-key {key}: {_why(exc)}"
        ) from None
    return context


def _why(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return exc.strerror or str(exc)
