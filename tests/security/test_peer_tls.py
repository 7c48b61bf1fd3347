"""Issue 12, TLS on the peer transport: masters with ``--tls-cert/--tls-key/--ca`` link over
mutual TLS; the cluster token alone (plaintext), a certificate of another CA, or one that does
not name the dialed host makes no peer.

Before: the peer port spoke plaintext whatever the TLS flags (only the API served HTTPS), so a
token holder on the path read what masters replicate, and the certificate checks below did not
exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow import Client
from agentflow.cluster import peerwire
from agentflow.cluster.peertls import PeerTLS, peer_tls
from agentflow.cluster.transport import PeerAddress, Transport
from agentflow.config import MasterConfig
from agentflow.errors import ConfigError
from agentflow.raft import Message, MessageType
from agentflow.testing.ports import free_port
from tests.e2e.procs import BIN, Proc, Processes, wait_until
from tests.security.certs import CA, make_ca

TOKEN = "peer-tls-cluster-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The cluster's CA and certificates, a foreign CA's, and one for the wrong host."""
    root = tmp_path_factory.mktemp("pki")
    ca, foreign = make_ca(root / "ca"), make_ca(root / "foreign", "another CA")
    return {
        "ca": ca,
        "m": {name: ca.issue(name) for name in ("m1", "m2", "m3")},
        "foreign": foreign,
        "foreign_cert": foreign.issue("intruder"),
        "wrong_host": ca.issue("elsewhere", "DNS:elsewhere.example"),
    }


def _tls(ca: CA, cert_key: tuple[Path, Path]) -> PeerTLS:
    return peer_tls(cert_key[0], cert_key[1], ca.cert)


# -- the contexts --------------------------------------------------------------------------------


def test_contexts_require_certificates_both_ways_and_trust_only_the_ca(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    ca: CA = pki["ca"]
    cert, key = pki["m"]["m1"]
    tls = peer_tls(cert, key, ca.cert)
    assert tls.server.verify_mode == ssl.CERT_REQUIRED  # a dialer must show a certificate
    assert tls.client.verify_mode == ssl.CERT_REQUIRED
    assert tls.client.check_hostname  # ... naming the host of the address dialed
    for context in (tls.server, tls.client):
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "agentflow test CA"),),)
        ]  # no system roots
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2

    with pytest.raises(ConfigError, match=r"ca\.key|--ca"):
        peer_tls(cert, key, ca.key)  # a key is no CA bundle
    with pytest.raises(ConfigError, match=r"nowhere\.pem"):
        peer_tls(tmp_path / "nowhere.pem", key, ca.cert)
    with pytest.raises(ConfigError, match="--tls-key"):
        peer_tls(cert, pki["foreign_cert"][1], ca.cert)  # a key that is not the cert's


def test_master_config_builds_peer_tls_only_for_a_peer_port(pki: dict[str, Any]) -> None:
    ca: CA = pki["ca"]
    cert, key = (str(p) for p in pki["m"]["m1"])
    single = MasterConfig(tls_cert=cert, tls_key=key)
    assert single.peer_tls() is None  # no peer port: TLS is the API's only
    cluster = MasterConfig(peers="m2=127.0.0.1:1", cluster_token=TOKEN, tls_cert=cert, tls_key=key)
    with pytest.raises(ConfigError, match="needs --ca"):
        cluster.peer_tls()
    plain = MasterConfig(peers="m2=127.0.0.1:1", cluster_token=TOKEN, tls_ca=str(ca.cert))
    assert plain.peer_tls() is None  # --ca alone: authenticated peers, not encrypted
    tls = MasterConfig(
        peers="m2=127.0.0.1:1", cluster_token=TOKEN, tls_cert=cert, tls_key=key, tls_ca=str(ca.cert)
    ).peer_tls()
    assert tls is not None and tls.server.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("ca", "why"), [(None, "needs --ca"), ("/nowhere/ca.pem", "/nowhere/ca.pem")]
)
def test_a_tls_cluster_without_a_usable_ca_is_refused_at_start(
    pki: dict[str, Any], tmp_path: Path, ca: str | None, why: str
) -> None:
    cert, key = pki["m"]["m1"]
    argv = [str(BIN / "agentflow-master"), "--data-dir", str(tmp_path / "d")]
    argv += ["--port", str(free_port()), "--peers", "m2=127.0.0.1:1", "--cluster-token", TOKEN]
    argv += ["--tls-cert", str(cert), "--tls-key", str(key), *(["--ca", ca] if ca else [])]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], done.stderr
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


# -- two transports in one process ---------------------------------------------------------------


async def _link(
    tls_a: PeerTLS,
    tls_b: PeerTLS,
    until: Callable[[list[Message], list[str]], bool],
    warnings: list[str],
) -> tuple[list[Message], bool, bool]:
    """``a`` and ``b`` dial each other and send one heartbeat each way until ``until`` holds.

    Returns what arrived and whether a->b and b->a linked.
    """
    got: list[Message] = []
    kwargs: dict[str, Any] = {"cluster_id": "c1", "token": TOKEN, "host": "127.0.0.1"}
    a = Transport(node_id="a", port=free_port(), on_message=got.append,
                  on_unreachable=lambda _p: None, tls=tls_a, **kwargs)  # fmt: skip
    b = Transport(node_id="b", port=free_port(), on_message=got.append,
                  on_unreachable=lambda _p: None, tls=tls_b, **kwargs)  # fmt: skip
    await a.start()
    await b.start()
    a.set_peer("b", PeerAddress("127.0.0.1", b._port))
    b.set_peer("a", PeerAddress("127.0.0.1", a._port))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not until(got, warnings):
            assert loop.time() < deadline, (got, warnings)
            for src, dst in ((a, "b"), (b, "a")):
                if src.connected(dst):
                    src.send(Message(type=MessageType.HEARTBEAT, from_=src.node_id, to=dst, term=1))
            await asyncio.sleep(0.02)
        return got, a.connected("b"), b.connected("a")
    finally:
        await a.close()
        await b.close()


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _run_link(
    tls_a: PeerTLS, tls_b: PeerTLS, until: Callable[[list[Message], list[str]], bool]
) -> tuple[list[Message], bool, bool, list[str]]:
    handler = _Warnings()
    logger = logging.getLogger("agentflow.cluster.transport")
    logger.addHandler(handler)
    try:
        got, ab, ba = asyncio.run(_link(tls_a, tls_b, until, handler.lines))
    finally:
        logger.removeHandler(handler)
    return got, ab, ba, handler.lines


def test_transports_link_over_mutual_tls(pki: dict[str, Any]) -> None:
    ca = pki["ca"]
    _got, ab, ba, warnings = _run_link(
        _tls(ca, pki["m"]["m1"]),
        _tls(ca, pki["m"]["m2"]),
        lambda got, _w: {m.from_ for m in got} == {"a", "b"},
    )
    assert ab and ba and not warnings


def test_a_certificate_of_another_ca_makes_no_peer_either_way(pki: dict[str, Any]) -> None:
    """Same token, same cluster: ``b``'s certificate is of a foreign CA (which it trusts)."""

    def both_refused(_got: list[Message], warnings: list[str]) -> bool:
        return all(any(w.startswith(f"TLS to {p} ") for w in warnings) for p in "ab")

    got, ab, ba, warnings = _run_link(
        _tls(pki["ca"], pki["m"]["m1"]), _tls(pki["foreign"], pki["foreign_cert"]), both_refused
    )
    assert got == [] and not ab and not ba
    assert any("CERTIFICATE_VERIFY_FAILED" in w for w in warnings), warnings


def test_a_certificate_not_naming_the_dialed_host_is_refused_by_the_dialer(
    pki: dict[str, Any],
) -> None:
    """``b``'s certificate is of the right CA but names elsewhere.example, not 127.0.0.1: ``a``
    refuses to link to it; ``b`` dialing ``a`` (whose certificate names 127.0.0.1) links."""

    def settled(got: list[Message], warnings: list[str]) -> bool:
        return any(m.from_ == "b" for m in got) and any(w.startswith("TLS to b") for w in warnings)

    got, ab, ba, warnings = _run_link(
        _tls(pki["ca"], pki["m"]["m1"]), _tls(pki["ca"], pki["wrong_host"]), settled
    )
    assert not ab and ba
    assert {m.from_ for m in got} == {"b"}
    assert any("IP address mismatch" in w or "Hostname mismatch" in w for w in warnings), warnings


# -- a cluster of real masters -------------------------------------------------------------------


def _tls_cluster(procs: Processes, root: Path, pki: dict[str, Any]) -> dict[str, str]:
    """m1..m3 with TLS on their API and peer port: {name: https URL}, once a leader is agreed."""
    ca: CA = pki["ca"]
    ports = {n: (free_port(), free_port()) for n in ("m1", "m2", "m3")}
    urls = {n: f"https://127.0.0.1:{api}" for n, (api, _raft) in ports.items()}
    for name, (api, raft) in ports.items():
        cert, key = pki["m"][name]
        peers = ",".join(f"{o}=127.0.0.1:{r}" for o, (_a, r) in ports.items() if o != name)
        argv = [
            str(BIN / "agentflow-master"), "--node-id", name, "--port", str(api),
            "--raft-port", str(raft), "--data-dir", str(root / f"{name}-data"),
            "--peers", peers, "--cluster-token", TOKEN, "--log-level", "info",
            "--heartbeat-interval", "0.5s",
            "--tls-cert", str(cert), "--tls-key", str(key), "--ca", str(ca.cert),
        ]  # fmt: skip
        procs.procs.append(Proc(argv, root / f"{name}.log"))
    trusted = ssl.create_default_context(cafile=str(ca.cert))

    def leader_agreed() -> bool:
        views = []
        for proc in procs.procs:
            assert proc.alive(), proc.log()
        for url in urls.values():
            try:
                views.append(httpx.get(url + "/api/v1/cluster", verify=trusted, timeout=2).json())
            except (httpx.HTTPError, ValueError):
                return False
        leaders = {v.get("leader_id") for v in views}
        return len(leaders) == 1 and None not in leaders

    wait_until(leader_agreed, 30, "a leader agreed by three TLS masters")
    return urls


def _master(procs: Processes, name: str) -> Proc:
    (proc,) = (p for p in procs.procs if p.argv[1:3] == ["--node-id", name])
    return proc


def _hello_answer(sock: socket.socket | ssl.SSLSocket, member: str, to: str) -> bytes:
    """Send today's hello as ``member`` and read what comes back until the peer closes."""
    hello = {"k": "hello", "v": peerwire.VERSION, "cluster": "agentflow", "from": member, "to": to}
    sock.sendall(peerwire.encode_frame(hello | {"nonce": b"\1" * 16, "info": {}}))
    sock.settimeout(10)
    data = b""
    with contextlib.suppress(ConnectionResetError, ssl.SSLError):
        while chunk := sock.recv(65536):
            data += chunk
            if len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
                break  # a whole frame: the challenge
    return data


def _is_challenge(data: bytes) -> bool:
    try:
        return peerwire.decode_challenge(data[4:])[0] == peerwire.VERSION
    except (peerwire.FrameError, ValueError, KeyError, TypeError):
        return False


def _tls_socket(port: int, ca: CA, cert_key: tuple[Path, Path] | None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca.cert))  # the cluster's CA: we trust it
    if cert_key is not None:
        context.load_cert_chain(*cert_key)
    return context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
    )


def test_a_tls_cluster_commits_and_refuses_plaintext_and_foreign_certificates(
    procs: Processes, tmp_path: Path, pki: dict[str, Any]
) -> None:
    ca: CA = pki["ca"]
    urls = _tls_cluster(procs, tmp_path, pki)
    with Client(urls["m2"], ca=str(ca.cert)) as client:
        leader = client.request("GET", "/api/v1/cluster")["leader_id"]
    follower = next(n for n in urls if n != leader)
    procs.worker("w1", ",".join(urls.values()), "--ca", str(ca.cert))
    with Client(urls[follower], ca=str(ca.cert)) as client:  # forwarded to the leader, in TLS
        task = client.submit(f"{sys.executable} -c 'print(42)'")
        assert client.wait(task.id, timeout_s=30).status == "completed"
    reader = next(n for n in urls if n not in (leader, follower))
    with Client(urls[reader], ca=str(ca.cert)) as client:
        assert [t.id for t in client.list()] == [task.id]
        before = client.request("GET", "/api/v1/cluster")

    argv = _master(procs, leader).argv
    port = int(argv[argv.index("--raft-port") + 1])
    member = follower  # a member's id, with the right cluster token: all a plaintext peer had

    # Plaintext: the hello is read as a TLS ClientHello and the connection closed, unanswered.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        assert not _is_challenge(_hello_answer(plain, member, leader))
    # TLS without a certificate, or with one of another CA: the handshake is refused.
    for cert_key in (None, pki["foreign_cert"]):
        try:
            sock = _tls_socket(port, ca, cert_key)
        except ssl.SSLError:
            continue  # refused during the handshake (TLS 1.2)
        with sock:  # TLS 1.3: the refusal is an alert on the first read
            assert not _is_challenge(_hello_answer(sock, member, leader))
    # A certificate of the cluster's CA is answered (so the refusals above were the TLS checks).
    with _tls_socket(port, ca, pki["m"][member]) as good:
        assert _is_challenge(_hello_answer(good, member, leader))

    # Nothing committed, no term moved; the cluster still commits.
    with Client(urls[reader], ca=str(ca.cert)) as client:
        after = client.request("GET", "/api/v1/cluster")
        assert after["leader_id"] == leader and after["term"] == before["term"]
        second = client.submit("true")
        assert client.wait(second.id, timeout_s=30).status == "completed"
        assert {t.id for t in client.list()} == {task.id, second.id}
    assert _master(procs, leader).alive()
