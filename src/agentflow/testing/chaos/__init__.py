"""Chaos on real processes: masters and workers in network namespaces, a nemesis, checkers.

A Jepsen-style suite (`python -m agentflow.testing.chaos`, `make chaos`): each host is a
network namespace on one bridge; a seeded nemesis kills, pauses, partitions, slows and fills
the disks of real master and worker processes while clients record every operation with its
invocation and completion times (`history`); checkers then read the whole history.
"""
