"""Certificates made for a test with ``openssl``: a CA, and certificates it signs.

Keys are P-256 (fast to make). Certificates allow both server and client authentication, as a
master's does: it serves its API and peer port with it and presents it when dialing peers.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CA", "make_ca", "make_certificates"]

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True, slots=True)
class CA:
    cert: Path
    key: Path

    def issue(self, name: str, sans: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
        """A certificate for ``sans`` signed by this CA, in its directory: (cert, key)."""
        root = self.cert.parent
        cert, key, csr, ext = (root / f"{name}{s}" for s in (".pem", ".key", ".csr", ".ext"))
        _openssl("req", *_EC, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n"
            "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return cert, key


def make_ca(root: Path, name: str = "agentflow test CA") -> CA:
    """A self-signed CA in ``root`` (created if needed)."""
    root.mkdir(parents=True, exist_ok=True)
    ca = CA(root / "ca.pem", root / "ca.key")
    _openssl(
        "req", "-x509", *_EC, "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(ca.key), "-out", str(ca.cert),
    )  # fmt: skip
    return ca


def make_certificates(root: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 and localhost: (ca, cert, key)."""
    ca = make_ca(root)
    cert, key = ca.issue("cert")
    return ca.cert, cert, key
