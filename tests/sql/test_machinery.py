"""The parts around the store that need no server: a missing driver is one line naming the
extra to install, and the throwaway servers say why they cannot run."""

import os
import sys
from pathlib import Path

import pytest

from agentflow.cluster.sql import LogStore, parse_store
from agentflow.errors import ConfigError
from agentflow.testing import sqlserve


@pytest.mark.parametrize(
    ("text", "module", "says"),
    [
        ("postgresql://u:pw@h/db", "psycopg", "install agentflow[postgresql] (psycopg)"),
        ("mariadb://u:pw@h/db", "pymysql", "install agentflow[mysql] (PyMySQL)"),
    ],
)
def test_a_missing_driver_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, text: str, module: str, says: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    url = parse_store(text)
    assert url is not None
    with pytest.raises(ConfigError, match=r"\*\*\*") as caught:
        LogStore(url)
    assert says in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_unavailable_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlserve, "PG_BIN_DIRS", ("/nonexistent",))
    monkeypatch.setattr(sqlserve.shutil, "which", lambda _name: None)
    monkeypatch.setattr(sqlserve.Path, "exists", lambda _self: False)
    assert "PostgreSQL is not installed" in (sqlserve.unavailable("postgresql") or "")
    assert "MariaDB is not installed" in (sqlserve.unavailable("mysql") or "")
    with pytest.raises(ValueError, match="unknown dialect"):
        sqlserve.unavailable("sqlite")


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user only when root")
def test_a_root_the_server_account_cannot_reach_is_refused_by_name(tmp_path: Path) -> None:
    if sqlserve.unavailable("postgresql") is not None:
        pytest.skip(sqlserve.unavailable("postgresql") or "")
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    server = sqlserve.PostgresServer(hidden / "root")
    with pytest.raises(RuntimeError, match="not traversable by postgres"):
        server.start()
    assert not server.running
    server.stop()  # never started: nothing to do
