"""The cluster token's sources and the rules for when one is needed (issue 12, peers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.config import MasterConfig, resolve
from agentflow.errors import ConfigError


def test_the_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "cluster.token"
    path.write_text("  s3cret-from-a-file\n")
    config = MasterConfig(peers="m2=127.0.0.1:7", cluster_token_file=path)
    assert config.peer_token() == "s3cret-from-a-file"
    from_env = resolve(MasterConfig, {}, env={"AGENTFLOW_CLUSTER_TOKEN_FILE": str(path)})
    assert from_env.peer_token() == "s3cret-from-a-file"


def test_a_single_master_needs_no_token_and_has_none_built_in() -> None:
    assert MasterConfig().peer_token() is None


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (MasterConfig(peers="m2=127.0.0.1:7"), "needs --cluster-token"),
        (MasterConfig(join=True), "needs --cluster-token"),
        (MasterConfig(join=True, cluster_token=" "), "empty"),
        (MasterConfig(cluster_token="a", cluster_token_file=Path("f")), "not both"),
        (MasterConfig(join=True, cluster_token_file=Path("/nonexistent/t")), "cannot read"),
    ],
)
def test_a_cluster_without_a_usable_token_is_refused(config: MasterConfig, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        config.peer_token()
