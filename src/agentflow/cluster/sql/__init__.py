"""The command log kept in an external SQL database (PostgreSQL, MySQL/MariaDB).

Owns the ``--store`` URL (:mod:`.url`, pure), the SQL of each dialect (:mod:`.dialect`), the
versioned schema (:mod:`.migrations`) and :class:`LogStore`, one synchronous connection that
appends entries fenced by a lease row on the database's clock, and keeps the snapshot and the
members' rows. It must not import ``agentflow.api`` nor run on the event loop: its owner calls
it from a thread of its own. Entry points: :func:`parse_store` and :class:`LogStore`.
"""

from agentflow.cluster.sql.store import Lease, LogStore, MemberRow
from agentflow.cluster.sql.url import StoreUrl, parse_store

__all__ = ["Lease", "LogStore", "MemberRow", "StoreUrl", "parse_store"]
