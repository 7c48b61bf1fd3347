"""``agentflow cluster backup`` and ``agentflow cluster restore``: a running cluster's state to
a file, and a file to the data dir of a new cluster (:mod:`agentflow.cluster.backup`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import httpx

from agentflow.cli.tasks import client_options, make_client
from agentflow.client import Client
from agentflow.client._core import raise_for_problem
from agentflow.cluster.backup import read_backup
from agentflow.cluster.restore import seed_from_backup
from agentflow.errors import UnavailableError

__all__ = ["backup", "restore"]

BACKUP_TIMEOUT_S = 600.0  # a read of the whole stream; the leader images the state first


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@client_options
def backup(master_url: str | None, api_token: str | None, file: Path) -> None:
    """Save a consistent snapshot of the state, taken by the leader at its applied index, to
    FILE (an admin token). The file is checked whole before it replaces FILE."""
    started = time.perf_counter()
    with make_client(master_url, api_token) as client:
        leader = client.request("GET", "/api/v1/cluster")["leader_url"]
        if not leader:
            raise UnavailableError("no leader known: a backup needs a cluster with a quorum")
        partial = file.with_name(f".{file.name}.partial")
        try:
            size = _download(client, leader, partial)
            header, _body = read_backup(partial)
            os.replace(partial, file)
        finally:
            partial.unlink(missing_ok=True)
    _fsync_dir(file.parent)
    click.echo(
        f"backed up index {header.index} term {header.term} of cluster {header.cluster_id}"
        f" ({size} bytes, sha256 {header.body_sha256[:16]}, digest {header.state_digest[:16]})"
        f" to {file} in {time.perf_counter() - started:.2f}s"
    )


def _download(client: Client, leader: str, path: Path) -> int:
    """Stream the leader's backup into ``path`` (fsynced); its size."""
    url = leader.rstrip("/") + "/api/v1/cluster/backup"
    try:
        return _stream_to(client, url, path)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"the backup from {leader} failed: {exc}") from None


def _stream_to(client: Client, url: str, path: Path) -> int:
    size = 0
    with httpx.stream(
        "GET", url, headers=client.auth_headers, verify=client.verify, timeout=BACKUP_TIMEOUT_S
    ) as response:
        if response.status_code != 200:
            response.read()
            raise_for_problem(response)
        with path.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    return size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The new master's data dir (must not exist or be empty).",
)
@click.option("--node-id", required=True, help="The new master's id.")
@click.option(
    "--raft-address",
    default="127.0.0.1:6768",
    show_default=True,
    help="host:port of its Raft listener, as the members that join reach it.",
)
@click.option(
    "--api-url",
    default="http://127.0.0.1:6767",
    show_default=True,
    help="Its HTTP API URL, as clients and members reach it.",
)
def restore(file: Path, data_dir: Path, node_id: str, raft_address: str, api_url: str) -> None:
    """Check the backup FILE and seed DATA_DIR with it: a new one-member cluster (with a new
    cluster uid: the members of the backed-up cluster are refused). Start `agentflow master`
    on DATA_DIR with the same id and addresses, then add the others with --join and
    `agentflow cluster add-member`."""
    started = time.perf_counter()
    header, body = read_backup(file)
    uid = seed_from_backup(
        data_dir, header, body, node_id=node_id, raft_address=raft_address, api_url=api_url
    )
    click.echo(
        f"restored index {header.index} term {header.term} (digest {header.state_digest[:16]})"
        f" into {data_dir} as {node_id}, new cluster uid {uid},"
        f" in {time.perf_counter() - started:.2f}s"
    )
