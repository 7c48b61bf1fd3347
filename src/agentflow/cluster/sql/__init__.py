"""The command log kept in an external SQL database (PostgreSQL, MySQL/MariaDB): issue 20.

Owns the second implementation of the master's command log seam
(:class:`agentflow.cluster.seam.MasterLog`): :class:`agentflow.cluster.sql.sqllog.SqlLog`, a log
whose entries are rows of one table, appended by the one master holding a fenced lease row and
tailed by the others. It holds no business rules (``agentflow.state`` does) and never imports
``agentflow.api``. The database is reached through a store (:mod:`agentflow.cluster.sql.contract`
says what the log needs of it); its modules are imported lazily, so a master on the embedded
Raft log never loads a database driver.
"""
