"""The command log kept in an external SQL database (PostgreSQL, MySQL/MariaDB): issue 20.

The second implementation of the master's command log seam
(:class:`agentflow.cluster.seam.MasterLog`): :class:`agentflow.cluster.sql.sqllog.SqlLog`, a log
whose entries are rows of one table, appended by the one master holding a fenced lease row and
tailed by the others. Owns the ``--store`` URL (:mod:`.url`, pure), the SQL of each dialect
(:mod:`.dialect`), the versioned schema (:mod:`.migrations`) and :class:`LogStore`, one
synchronous connection that appends entries fenced by the lease row on the database's clock and
keeps the snapshot and the members' rows (:mod:`.contract` says what the log needs of it), and
the task history's tables (:mod:`.history`: finished tasks, attempts, workflows, lock and
message events, written by the writer, read by every master and by users' own tools). It
holds no business rules (``agentflow.state`` does), never imports ``agentflow.api`` and never
runs a query on the event loop. Database drivers are imported only when a store connects, so a
master on the embedded Raft log never loads one.
"""

from agentflow.cluster.sql.store import Lease, LogStore, MemberRow
from agentflow.cluster.sql.url import StoreUrl, parse_store

__all__ = ["Lease", "LogStore", "MemberRow", "StoreUrl", "parse_store"]
